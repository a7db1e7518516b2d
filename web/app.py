"""The web UI's routes: explorer, devices, handles, consortium status, search, CSV, live updates.

``routes(node)`` is the route provider a node wires in; every page is rendered on the server (jinja2) and works
without JavaScript; the scripts in ``static/`` only add live updates, charts and the in-browser proof check.

Invariants:
- pages read committed state only; nothing here writes;
- every query parameter is parsed with bounds before it is used; a bad one gets a 400 page (or a 4xx JSON
  body on the JSON and CSV routes) naming the parameter, an unknown height, hash or handle a 404 page;
- lists page by cursor (``web.chainview``), so a page costs the same at any chain height;
- everything a page prints is escaped by jinja2's autoescape; the only markup inserted raw is the QR SVG made
  here by ``segno``.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from accounting.sites import list_sites, load_site
from node import merkle, schema
from node.chain import header_hash
from node.errors import CempError
from node.readings import decode_reading_value
from web import handles, series, slots, units
from web.chainview import HEX64, ChainView
from web.consortium import ConsortiumStatus
from web.errors import PageError
from web.i18n import HTML_LANG, LANGS, Fmt, pick_lang, system_text
from web.text import texts

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGE_BLOCKS = 25
PAGE_TXS = 25
BLOCK_TXS_PAGE = 100
TX_READINGS_SHOWN = 60
CSV_MAX_ROWS = 1_000_000
MAX_SSE = 64
SITE_SCAN = 1000
SERIES_CACHE = 256
SSE_POLL_S = 0.5
SSE_KEEPALIVE_S = 15.0
SSE_MAX_LIFE_S = 600.0
RANGES = {"6h": 6 * 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
SEASON_MS = 183 * 86_400_000
SEASONS = ("season", "prev_season")
SEASON_START = (10, 15)
SEASON_END = (4, 15)
"""Hohhot's heating season, 15 October to 15 April inclusive (local days): ``range=season`` shows the one that
holds the device's latest reading (or the last one before it, in summer), ``prev_season`` the one before."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _static_version() -> str:
    h = hashlib.sha256()
    for p in sorted(STATIC.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(HERE / "templates")),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.globals["static_v"] = _static_version()
_ENV.filters["system_text"] = system_text


def int_param(
    request: web.Request, name: str, default: int | None, lo: int = 0, hi: int = 1 << 62
) -> int | None:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or len(raw) > 19:
        raise PageError(400, "bad_param", f"{name}={raw[:40]!r}: expected a whole number")
    v = int(raw)
    if not lo <= v <= hi:
        raise PageError(400, "bad_param", f"{name}={v}: expected a number between {lo} and {hi}")
    return v


def date_param(request: web.Request, name: str, f: Fmt) -> int | None:
    """``YYYY-MM-DD`` (a day in the site's time zone) or ``YYYY-MM-DDTHH:MM``, or Unix ms; None if absent."""
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    if raw.isdigit() and len(raw) <= 15:
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw[:32])
    except ValueError:
        raise PageError(400, "bad_param", f"{name}={raw[:40]!r}: expected a date like 2025-11-03") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=f.tz)
    ms = int(dt.timestamp() * 1000)
    if ms < 0:
        raise PageError(400, "bad_param", f"{name}={raw[:40]!r}: before 1970")
    return ms


def heating_season(ms: int, f: Fmt, back: int = 0) -> tuple[int, int]:
    """[start, end) in ms of the heating season holding local time ``ms`` (the last one ended before it, in
    summer), ``back`` seasons earlier."""
    d = datetime.fromtimestamp(ms / 1000, f.tz)
    md = (d.month, d.day)
    start_year = d.year if md >= SEASON_START else d.year - 1
    start_year -= back
    start = datetime(start_year, *SEASON_START, tzinfo=f.tz)
    end = datetime(start_year + 1, *SEASON_END, tzinfo=f.tz) + timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class WebUI:
    """Handlers over one node (``node.ledger``, ``node.node_id``, ``node.api.status_extra``)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.ledger = node.ledger
        self.store = node.ledger.store
        self.view = ChainView(node.ledger)
        self.consortium = ConsortiumStatus(node)
        self.sse_clients = 0
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._panel_kept: dict[tuple[str, int, str], tuple[float, Any]] = {}
        """Device panels with ``keep_s``: (monotonic time rendered, HTML) per (panel, device, language)."""
        self._panel_busy: set[tuple[str, int, str]] = set()
        self._panel_tasks: set[asyncio.Task[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        p = self.page
        return [
            web.get("/", p(self.home)),
            web.get("/blocks", p(self.blocks)),
            web.get("/block/{ref}", p(self.block)),
            web.get("/txs", p(self.txs)),
            web.get("/tx/{hash}", p(self.tx)),
            web.get("/devices", p(self.devices)),
            web.get(r"/device/{handle:.+}/series.json", self.series_json),
            web.get(r"/device/{handle:.+}", p(self.device)),
            web.get(r"/handle/{handle:.+}", p(self.handle)),
            web.get("/consortium", p(self.consortium_page)),
            web.get("/search", p(self.search)),
            web.get("/signin", p(self.signin)),
            web.get("/stats.json", self.machine(self.stats_json)),
            web.get("/events", self.events),
            web.get("/static/{path:.+}", self.static),
        ]

    async def static(self, request: web.Request) -> web.StreamResponse:
        """Files under ``web/static`` only (no path escapes); cached a day, URLs carry a content version."""
        rel = request.match_info["path"]
        target = (STATIC / rel).resolve()
        if ".." in rel.split("/") or not target.is_relative_to(STATIC.resolve()) or not target.is_file():
            return web.json_response(
                {"code": "not_found", "message": f"no static file {rel[:80]}"}, status=404
            )
        return web.FileResponse(target, headers={"Cache-Control": "public, max-age=86400"})

    # --- rendering ---------------------------------------------------------------------------------
    def ctx(self, request: web.Request) -> dict[str, Any]:
        lang = pick_lang(request)
        f = Fmt(lang)
        q = {k: v for k, v in request.query.items() if k != "lang"}

        def switch(code: str) -> str:
            return request.path + "?" + urlencode({**q, "lang": code})

        def url(path: str, **params: Any) -> str:
            clean = {k: v for k, v in params.items() if v is not None and v != ""}
            return path + ("?" + urlencode(clean) if clean else "")

        return {
            "t": texts(lang),
            "f": f,
            "lang": lang,
            "html_lang": HTML_LANG[lang],
            "langs": [(code, label, switch(code)) for code, label in LANGS],
            "url": url,
            "q": quote,
            "path": request.path,
            "node_id": self.node.node_id,
            "chain_id": self.ledger.genesis.chain_id,
            "height": self.ledger.height,
            "tz": f.tz_name(),
            "search_q": "",
            "nav_extra": slots.NAV,
            "viewer": self.viewer(request),
        }

    def viewer(self, request: web.Request) -> Any:
        """The signed-in person of this request (``access.reads.Viewer``), or None; a bad token reads as none."""
        fn = getattr(self.node.reads, "viewer", None)
        if fn is None:
            return None
        try:
            return fn(request)
        except CempError:
            return None

    def may_read(self, request: web.Request, org: str, data: str, device: str | None = None) -> bool:
        return bool(self.node.reads.allows(request, org, data, device=device))

    def may_read_site(self, request: web.Request, org: str, site: str) -> bool:
        return bool(self.node.reads.allows(request, org, "sites", site=site))

    def require_site(self, request: web.Request, org: str, site: str) -> None:
        """A site's figures (portrait, report preview, report checks): 401/403 unless this request may read them."""
        try:
            self.node.reads.require(request, org, "sites", site=site)
        except CempError as e:
            raise PageError(e.status, e.code.name.lower(), e.message) from None

    def require(self, request: web.Request, org: str, data: str, device: str | None = None) -> None:
        """For JSON and CSV routes: a 401/403 JSON refusal unless this request may read it."""
        try:
            self.node.reads.require(request, org, data, device=device)
        except CempError as e:
            raise PageError(e.status, e.code.name.lower(), e.message) from None

    async def signin(self, request: web.Request) -> web.StreamResponse:
        return self.render(request, "signin.html", base_url=f"{request.scheme}://{request.host}")

    def render(self, request: web.Request, name: str, status: int = 200, **kw: Any) -> web.Response:
        c = self.ctx(request)
        c["status"] = status
        c.update(kw)
        html = _ENV.get_template(name).render(**c)
        resp = web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
        want = request.query.get("lang", "")
        if want in HTML_LANG and request.cookies.get("lang") != want:
            resp.set_cookie("lang", want, max_age=365 * 86400, path="/", samesite="Lax")
        return resp

    def page(self, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except PageError as e:
                return self.error_page(request, e.status, e.key, e.detail)
            except CempError as e:
                return self.error_page(
                    request, e.status, "bad_param" if e.status < 500 else "internal", e.message
                )

        wrapped.__name__ = handler.__name__
        return wrapped

    def machine(self, handler: Handler) -> Handler:
        """JSON and CSV routes: a refusal is a 4xx JSON body, like the node's API."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except PageError as e:
                return web.json_response({"code": e.key, "message": e.detail or e.key}, status=e.status)

        wrapped.__name__ = handler.__name__
        return wrapped

    def error_page(self, request: web.Request, status: int, key: str, detail: str) -> web.Response:
        if request.query.get("format") == "csv":
            return web.json_response({"code": key, "message": detail or key}, status=status)
        return self.render(request, "error.html", status=status, key=key, detail=detail)

    # --- CSV ---------------------------------------------------------------------------------------
    async def csv_response(
        self, request: web.Request, filename: str, header: list[str], rows: Iterable[list[Any]]
    ) -> web.StreamResponse:
        """Stream rows as UTF-8 CSV (with a BOM so spreadsheet programs read Chinese), at most CSV_MAX_ROWS."""
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
        )
        await resp.prepare(request)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        buf.write("\ufeff")
        w.writerow(header)
        for n, row in enumerate(rows, 1):
            w.writerow(row)
            if n % 2000 == 0:
                await resp.write(buf.getvalue().encode())
                buf.seek(0)
                buf.truncate()
                await asyncio.sleep(0)  # let other requests run during a long export
            if n >= CSV_MAX_ROWS:
                w.writerow([f"# stopped after {CSV_MAX_ROWS} rows; narrow the range (from/to) for the rest"])
                break
        await resp.write(buf.getvalue().encode())
        await resp.write_eof()
        return resp

    # --- explorer ----------------------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.StreamResponse:
        c = self.consortium.local()
        blocks = self.view.blocks(self.ledger.height + 1, 12)
        txs, _ = self.view.txs(None, 10)
        return self.render(request, "home.html", status_local=c, blocks=blocks, txs=txs)

    def _before(self, request: web.Request) -> int:
        v = int_param(request, "before", self.ledger.height + 1, 1)
        assert v is not None
        return v

    async def blocks(self, request: web.Request) -> web.StreamResponse:
        before = self._before(request)
        limit = int_param(request, "limit", PAGE_BLOCKS, 1, 200)
        assert limit is not None
        if request.query.get("format") == "csv":
            limit_csv = int_param(request, "limit", 10_000, 1, CSV_MAX_ROWS)
            assert limit_csv is not None
            f = Fmt(pick_lang(request))

            def csv_rows() -> Iterable[list[Any]]:
                h = min(before - 1, self.ledger.height)
                n = 0
                while h >= 1 and n < limit_csv:
                    r = self.view.header_row(h)
                    if r is not None:
                        yield [
                            r.height,
                            r.hash,
                            r.time_ms,
                            f.iso(r.time_ms),
                            r.proposer,
                            r.term,
                            r.txs,
                        ]
                    h -= 1
                    n += 1

            header = [
                "height",
                "hash",
                "time_ms",
                "time",
                "proposer",
                "term",
                "txs",
            ]
            return await self.csv_response(request, "blocks.csv", header, csv_rows())
        rows = self.view.blocks(before, limit, full=False)
        older = rows[-1].height if rows and rows[-1].height > 1 else None
        newer = before + limit if before <= self.ledger.height else None
        if newer is not None and newer > self.ledger.height:
            newer = 0  # 0 = the newest page
        return self.render(request, "blocks.html", blocks=rows, older=older, newer=newer, before=before)

    async def block(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["ref"]
        h = self.view.resolve_block(ref)
        if h is None:
            if not (ref.isdigit() or HEX64.match(ref)):
                raise PageError(400, "bad_block_ref", ref[:80])
            raise PageError(404, "no_block", ref[:80])
        b = self.view.block(h)
        assert b is not None
        start = int_param(request, "from", 0, 0, 1 << 31)
        assert start is not None
        if request.query.get("format") == "csv":
            rows = (
                [
                    r.index,
                    r.hash,
                    r.kind,
                    r.sender,
                    r.device,
                    "ok" if r.ok else "invalid",
                    r.reason,
                    r.readings,
                ]
                for r in self.view.txs_of(b)
            )
            header = ["index", "hash", "kind", "sender", "device", "result", "reason", "readings"]
            return await self.csv_response(request, f"block-{h}-txs.csv", header, rows)
        row = self.view.row(h, b)
        txs = self.view.txs_of(b, start, start + BLOCK_TXS_PAGE)
        nxt = self.view.block(h + 1)  # its header carries block h's certificate (cached decode)
        cert = nxt.header.last_commit if nxt is not None else self.ledger.cert(h)
        members = {n.node_id: n for n in self.ledger.nodes.values()}
        signers = [
            {
                "node_id": s.node_id,
                "org": members[s.node_id].org if s.node_id in members else "",
                "sig": s.signature.hex(),
            }
            for s in cert
        ]
        last_commit = [{"node_id": s.node_id, "sig": s.signature.hex()} for s in b.header.last_commit]
        return self.render(
            request,
            "block.html",
            b=b.header,
            row=row,
            block_hash=header_hash(b.header).hex(),
            signature=b.signature.hex(),
            txs=txs,
            start=start,
            page=BLOCK_TXS_PAGE,
            ntx=len(b.txs),
            signers=signers,
            last_commit=last_commit,
            quorum=len(self.ledger.active) // 2 + 1,
        )

    @staticmethod
    def _cursor(raw: str) -> tuple[int, int] | None:
        if not raw:
            return None
        h, _, i = raw.partition(".")
        if not h.isdigit() or (i and not i.isdigit()) or len(h) > 19 or len(i) > 9:
            raise PageError(400, "bad_param", f"before={raw[:40]!r}: expected HEIGHT.INDEX, e.g. 1200.3")
        return int(h), int(i) if i else 1 << 31

    async def txs(self, request: web.Request) -> web.StreamResponse:
        before = self._cursor(request.query.get("before", ""))
        if request.query.get("format") == "csv":
            limit_csv = int_param(request, "limit", 10_000, 1, CSV_MAX_ROWS)
            assert limit_csv is not None
            f = Fmt(pick_lang(request))

            def csv_rows() -> Iterable[list[Any]]:
                cur, n = before, 0
                while n < limit_csv:
                    page, cur = self.view.txs(cur, min(500, limit_csv - n))
                    for r in page:
                        yield [
                            r.hash,
                            r.height,
                            r.index,
                            r.time_ms,
                            f.iso(r.time_ms),
                            r.kind,
                            r.sender,
                            r.device,
                            "ok" if r.ok else "invalid",
                            r.reason,
                            r.readings,
                        ]
                    n += len(page)
                    if cur is None or not page:
                        return

            header = [
                "hash",
                "height",
                "index",
                "time_ms",
                "time",
                "kind",
                "sender",
                "device",
                "result",
                "reason",
                "readings",
            ]
            return await self.csv_response(request, "txs.csv", header, csv_rows())
        rows, nxt = self.view.txs(before, PAGE_TXS)
        older = f"{nxt[0]}.{nxt[1]}" if nxt is not None else None
        return self.render(
            request,
            "txs.html",
            txs=rows,
            older=older,
            paged=before is not None,
            request_before=request.query.get("before") or None,
        )

    async def tx(self, request: web.Request) -> web.StreamResponse:
        ref = request.match_info["hash"]
        if not HEX64.match(ref):
            raise PageError(400, "bad_tx_ref", ref[:80])
        h = bytes.fromhex(ref[-64:])
        loc = self.ledger.tx_location(h)
        if loc is None:
            pending = getattr(self.node, "mempool", None) is not None and self.node.mempool.contains(h)
            raise PageError(404, "tx_pending" if pending else "no_tx", h.hex())
        b = self.view.block(loc.height)
        assert b is not None
        raw = b.txs[loc.index]
        decoded: dict[str, Any] = {}
        payload_json = ""
        try:
            d = self.ledger.decode_tx(raw)
            payload = d.kind.describe(d.payload)
            decoded = {
                "kind": d.tx.kind,
                "sender": d.tx.sender.hex(),
                "nonce": d.tx.nonce,
                "signature": d.tx.signature.hex(),
            }
            payload_json = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
        except CempError as e:
            decoded = {"error": e.message}
            payload = None
        withheld = self.node.api.hidden_payload(request, d) if "error" not in decoded else None
        if withheld is not None:
            payload, payload_json = None, ""
        readings = []
        if isinstance(payload, dict) and decoded.get("kind") == "readings":
            f = Fmt(pick_lang(request))
            for r in payload.get("readings", [])[:TX_READINGS_SHOWN]:
                readings.append(
                    {**r, "shown": f.qty(r["value"], r["unit"]), "flag_names": f.flags(r["flags"])}
                )
        path = [p.hex() for p in merkle.inclusion_proof(b.txs, loc.index)]
        proof = {
            "leaf": raw.hex() if withheld is None else None,
            "leaf_hash": hashlib.sha256(b"\x00" + raw).hexdigest(),
            "index": loc.index,
            "size": len(b.txs),
            "path": path,
            "root": b.header.tx_root.hex(),
        }
        signer_device = (
            payload.get("device") if isinstance(payload, dict) and decoded.get("kind") == "readings" else None
        )
        return self.render(
            request,
            "tx.html",
            hash=h.hex(),
            loc=loc,
            header=b.header,
            block_hash=header_hash(b.header).hex(),
            decoded=decoded,
            payload_json=payload_json,
            readings=readings,
            proof=proof,
            proof_json=json.dumps(proof),
            signer_device=signer_device,
            readings_total=len(payload.get("readings", [])) if isinstance(payload, dict) else 0,
            withheld=withheld,
            raw_len=len(raw),
        )

    # --- devices -----------------------------------------------------------------------------------
    async def devices(self, request: web.Request) -> web.StreamResponse:
        after = request.query.get("after", "")[:128]
        needle = request.query.get("q", "").strip().lower()[:64]
        if request.query.get("format") == "csv":
            f = Fmt(pick_lang(request))

            def csv_rows() -> Iterable[list[Any]]:
                cur: str | None = after
                while cur is not None:
                    page, cur = self.view.devices(cur, 500, needle)
                    for d in page:
                        yield [
                            d.handle,
                            d.org,
                            d.kind,
                            d.subsystem,
                            d.registered_height,
                            d.readings,
                            d.last_ts_ms,
                            f.iso(d.last_ts_ms) if d.last_ts_ms else "",
                        ]
                    if not page and cur is not None and needle:
                        continue

            header = [
                "handle",
                "org",
                "kind",
                "subsystem",
                "registered_height",
                "readings",
                "last_ts_ms",
                "last_reading",
            ]
            return await self.csv_response(request, "devices.csv", header, csv_rows())
        rows, nxt = self.view.devices(after, 50, needle)
        return self.render(request, "devices.html", devices=rows, next_after=nxt, needle=needle)

    # A device's readings change only when it commits new ones, and then its ``last_seq`` moves: results
    # keyed by it are exact, and many viewers of a busy device share one computation per batch.
    def _latest(self, dev: Any) -> list[series.Latest]:
        key = ("latest", dev.devnum, dev.last_seq)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._remember(key, series.latest(self.store, dev))
        return hit  # type: ignore[no-any-return]

    def _series(
        self, dev: Any, quantity: str, unit: str, frm: int, to: int, points: int = series.MAX_POINTS
    ) -> dict[str, Any]:
        key = ("series", dev.devnum, dev.last_seq, quantity, frm, to, points)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._remember(key, series.series(self.store, dev, quantity, unit, frm, to, points))
        return hit  # type: ignore[no-any-return]

    def _chart_json(self, dev: Any, chart: dict[str, Any]) -> str:
        key = (
            "json",
            dev.devnum,
            dev.last_seq,
            chart["quantity"],
            chart["from_ms"],
            chart["to_ms"],
            len(chart["t"]),
        )
        hit = self._cache.get(key)
        if hit is None:
            # inside <script type="application/json">: a "</" must never end the element early
            hit = self._remember(key, json.dumps(chart, separators=(",", ":")).replace("</", "<\\/"))
        return hit  # type: ignore[no-any-return]

    def _remember(self, key: tuple[Any, ...], value: Any) -> Any:
        self._cache[key] = value
        if len(self._cache) > SERIES_CACHE:
            self._cache.popitem(last=False)
        return value

    def _device_or_404(self, request: web.Request) -> Any:
        handle = request.match_info["handle"]
        if len(handle) > 255:
            raise PageError(400, "bad_param", "handle longer than 255 characters")
        dev = self.view.device(handle)
        if dev is None:
            raise PageError(404, "no_device", handle)
        return dev

    def _range(self, request: web.Request, f: Fmt, dev: Any) -> tuple[int, int, str]:
        now = int(time.time() * 1000)
        end_default = max(dev.last_ts_ms, 0) + 60_000 if dev.last_ts_ms else now
        rng = request.query.get("range", "")
        frm = date_param(request, "from", f)
        to = date_param(request, "to", f)
        if rng and rng not in RANGES and rng not in SEASONS:
            raise PageError(
                400, "bad_param", f"range={rng[:20]!r}: use 6h, 24h, 7d, 30d, season or prev_season"
            )
        if frm is None and to is None:
            rng = rng or "24h"
            to = end_default
            if rng in SEASONS:
                frm, season_end = heating_season(end_default - 60_000, f, back=SEASONS.index(rng))
                to = min(season_end, end_default) if rng == "season" else season_end
            else:
                frm = to - RANGES[rng]
        else:
            rng = ""
            if to is None:
                to = now
            elif "T" not in request.query.get("to", "") and not request.query.get("to", "").isdigit():
                to += 86_400_000  # a date names the whole day: up to its end
            if frm is None:
                frm = to - RANGES["7d"]
        if to <= frm:
            raise PageError(400, "bad_param", "'to' must be after 'from'")
        if to - frm > 2 * SEASON_MS:
            raise PageError(400, "bad_param", "a range of at most a year, please")
        return frm, to, rng

    async def device(self, request: web.Request) -> web.StreamResponse:
        dev = self._device_or_404(request)
        f = Fmt(pick_lang(request))
        if not self.may_read(request, dev.org, "readings", dev.handle):
            if request.query.get("format") == "csv":
                self.require(request, dev.org, "readings", dev.handle)
            return self.render(
                request,
                "device.html",
                dev=dev,
                restricted=True,
                latest=[],
                chart=None,
                handle_rec=_handle_summary(self.node, dev.handle, f),
                device_slots=[],
                panels={},
                rng="",
                ranges=[],
            )
        latest = self._latest(dev)
        units_of = {x.quantity: x.unit for x in latest}
        frm, to, rng = self._range(request, f, dev)
        quantity = request.query.get("q", "")
        if quantity and quantity not in units_of:
            raise PageError(
                400,
                "bad_param",
                f"q={quantity[:40]!r}: this device reports {', '.join(units_of) or 'nothing yet'}",
            )
        if not quantity and latest:
            quantity = _default_quantity(list(units_of))
        if request.query.get("format") == "csv":
            return await self._readings_csv(
                request, dev, f, frm, to, quantity if "q" in request.query else ""
            )
        chart = self._series(dev, quantity, units_of[quantity], frm, to) if quantity else None
        handle_rec = _handle_summary(self.node, dev.handle, f)
        return self.render(
            request,
            "device.html",
            dev=dev,
            latest=latest,
            quantity=quantity,
            quantities=list(units_of),
            chart=chart,
            chart_json=self._chart_json(dev, chart) if chart else "",
            summary=series.summary(chart) if chart else None,
            frm=frm,
            to=to,
            rng=rng,
            ranges=[*RANGES, *SEASONS],
            from_date=datetime.fromtimestamp(frm / 1000, f.tz).strftime("%Y-%m-%d"),
            to_date=datetime.fromtimestamp((to - 1) / 1000, f.tz).strftime("%Y-%m-%d"),
            handle_rec=handle_rec,
            display_unit=units.display_unit,
            device_slots=[
                *slots.DEVICE_SLOTS,
                *(p.key for p in slots.DEVICE_PANELS if p.key not in slots.DEVICE_SLOTS),
            ],
            panels=await self._panels(dev, f.lang),
        )

    async def _panels(self, dev: Any, lang: str) -> dict[str, Any]:
        """The registered sections (alarms, health). A panel with ``keep_s`` (the health panel scans a week of
        readings, ~300 ms for a 1-minute meter, and changes slowly) is rendered once per device and language and
        shown from then on; once it is older than ``keep_s`` the next view still gets it and starts one rendering
        in a worker thread to replace it, so no view waits for it but the very first."""
        out: dict[str, Any] = {}
        now = time.monotonic()
        for p in slots.DEVICE_PANELS:
            if not p.keep_s:
                html = p.render(self.node, dev, lang)
            else:
                key = (p.key, dev.devnum, lang)
                kept = self._panel_kept.get(key)
                if kept is None:
                    html = await asyncio.to_thread(p.render, self.node, dev, lang)
                    self._panel_kept[key] = (now, html)
                else:
                    made, html = kept
                    if now - made > p.keep_s and key not in self._panel_busy:
                        self._panel_busy.add(key)
                        task = asyncio.create_task(self._refresh_panel(p, dev, lang, key))
                        self._panel_tasks.add(task)
                        task.add_done_callback(self._panel_tasks.discard)
            if html is not None:
                out[p.key] = html
        return out

    async def _refresh_panel(self, p: Any, dev: Any, lang: str, key: tuple[str, int, str]) -> None:
        try:
            html = await asyncio.to_thread(p.render, self.node, dev, lang)
            self._panel_kept[key] = (time.monotonic(), html)
            while len(self._panel_kept) > SERIES_CACHE:
                self._panel_kept.pop(next(iter(self._panel_kept)))
        except (
            Exception
        ):  # a failed refresh keeps the older rendering; the next view after keep_s tries again
            log.exception("refreshing the %s panel of device %s", p.key, dev.handle)
        finally:
            self._panel_busy.discard(key)

    async def _readings_csv(
        self, request: web.Request, dev: Any, f: Fmt, frm: int, to: int, quantity: str
    ) -> web.StreamResponse:
        lo, hi = schema.reading_range(dev.devnum, frm, to)

        def csv_rows() -> Iterable[list[Any]]:
            for k, v in self.store.iterate(lo, hi):
                _, ts, seq = schema.parse_reading_key(k)
                q, val, unit, flags = decode_reading_value(v)
                if quantity and q != quantity:
                    continue
                shown, du = units.to_display(val, unit)
                yield [
                    f.iso(ts),
                    ts,
                    seq,
                    q,
                    val,
                    unit,
                    str(shown),
                    du.unit,
                    flags,
                    "|".join(Fmt("en").flags(flags)),
                ]

        header = [
            "time",
            "ts_ms",
            "seq",
            "quantity",
            "value",
            "unit",
            "value_shown",
            "unit_shown",
            "flags",
            "flag_names",
        ]
        name = dev.handle.replace("/", "_")
        return await self.csv_response(request, f"{name}-readings.csv", header, csv_rows())

    async def series_json(self, request: web.Request) -> web.StreamResponse:
        try:
            dev = self._device_or_404(request)
            f = Fmt(pick_lang(request))
            self.require(request, dev.org, "readings", dev.handle)
            latest = self._latest(dev)
            units_of = {x.quantity: x.unit for x in latest}
            quantity = request.query.get("q", "")
            if quantity not in units_of:
                raise PageError(
                    400,
                    "bad_param",
                    f"q={quantity[:40]!r}: this device reports {', '.join(units_of) or 'nothing yet'}",
                )
            frm, to, _ = self._range(request, f, dev)
            pts = int_param(request, "points", series.MAX_POINTS, 10, 2000)
            assert pts is not None
            body = self._series(dev, quantity, units_of[quantity], frm, to, pts)
            return web.json_response(body)
        except PageError as e:
            return web.json_response({"code": e.key, "message": e.detail or e.key}, status=e.status)

    # --- handles -----------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:

        return handles.render(self, request)

    # --- consortium --------------------------------------------------------------------------------
    async def consortium_page(self, request: web.Request) -> web.StreamResponse:
        nodes = await self.consortium.nodes()
        if request.query.get("format") == "csv":
            rows = (
                [
                    n.node_id,
                    n.org,
                    n.address,
                    n.active,
                    n.reachable,
                    n.role,
                    n.term,
                    n.leader,
                    n.height,
                    n.lag,
                    n.last_contact_ms,
                ]
                for n in nodes
            )
            header = [
                "node_id",
                "org",
                "address",
                "member",
                "reachable",
                "role",
                "term",
                "leader",
                "height",
                "lag",
                "last_contact_ms",
            ]
            return await self.csv_response(request, "consortium.csv", header, rows)
        orgs = self.ledger.genesis.orgs
        return self.render(request, "consortium.html", nodes=nodes, orgs=orgs, now_ms=int(time.time() * 1000))

    # --- search ------------------------------------------------------------------------------------
    async def search(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("q", "").strip()[:256]
        lang = request.query.get("lang", "")
        suffix = f"?lang={lang}" if lang in HTML_LANG else ""
        if not raw:
            raise web.HTTPSeeOther("/" + suffix)
        target = self._search_target(raw)
        if target:
            raise web.HTTPSeeOther(target + suffix)
        needle = raw.lower()
        devices, _ = self.view.devices("", 50, needle)

        sites = handles.find_sites(self.store, needle, 50)
        acct = [
            {"site_id": x.payload.site_id, "name": x.payload.name, "building": x.payload.building}
            for x in list_sites(self.store, limit=SITE_SCAN)
            if needle in x.payload.site_id
            or needle in x.payload.name.lower()
            or needle in x.payload.address.lower()
        ][:50]
        return self.render(
            request, "search.html", search_q=raw, devices=devices, sites=sites, acct_sites=acct
        )

    def _search_target(self, q: str) -> str | None:
        if q.isdigit() and len(q) <= 19 and 0 < int(q) <= self.ledger.height:
            return f"/block/{int(q)}"
        if HEX64.match(q):
            h = bytes.fromhex(q[-64:])
            if self.ledger.height_of_hash(h) is not None:
                return f"/block/{h.hex()}"
            if self.ledger.tx_location(h) is not None:
                return f"/tx/{h.hex()}"
            return f"/tx/{h.hex()}"  # neither: the tx page says "not found" (or pending) with a 404
        site = load_site(self.store, q.lower()) if len(q) <= 64 else None
        if site is not None:  # an accounting site id: its building's handle page
            return "/handle/" + quote(site.payload.building, safe="/")
        if "/" in q:
            if self.view.device(q) is not None:
                return "/device/" + quote(q, safe="/")

            if handles.exists(self.store, q):
                return "/handle/" + quote(q, safe="/")
        return None

    # --- machine routes: stats and live events -----------------------------------------------------
    async def stats_json(self, request: web.Request) -> web.StreamResponse:
        minutes = int_param(request, "minutes", 60, 1, 24 * 60)
        assert minutes is not None
        body = self.view.per_minute(minutes)
        if request.query.get("format") == "csv":
            rows = (
                [t, body["blocks"][i], body["txs"][i], body["readings"][i]]
                for i, t in enumerate(body["minutes"])
            )
            return await self.csv_response(
                request, "activity.csv", ["minute_unix_s", "blocks", "txs", "readings"], rows
            )
        return web.json_response(body)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``block`` with the new block's row (rendered HTML) as each block commits."""
        if self.sse_clients >= MAX_SSE:
            return web.json_response(
                {"code": "busy", "message": "too many live viewers; retry later"}, status=503
            )
        last = request.headers.get("Last-Event-ID", "")
        seen = int(last) if last.isdigit() and len(last) < 19 else self.ledger.height
        c = self.ctx(request)
        row_tpl = _ENV.get_template("_block_row.html")
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        self.sse_clients += 1
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 2000\n\n")
            started = idle = time.monotonic()
            while time.monotonic() - started < SSE_MAX_LIFE_S and not _closing(request):
                top = self.ledger.height
                if top > seen:
                    for h in range(max(seen + 1, top - 20), top + 1):
                        r = self.view.row(h)
                        if r is None:
                            continue
                        html = row_tpl.render(**c, r=r, live=True).replace("\n", "")
                        data = json.dumps({"height": h, "txs": r.txs, "html": html}, ensure_ascii=False)
                        await resp.write(f"id: {h}\nevent: block\ndata: {data}\n\n".encode())
                    seen = top
                    idle = time.monotonic()
                elif time.monotonic() - idle > SSE_KEEPALIVE_S:
                    await resp.write(b": keepalive\n\n")
                    idle = time.monotonic()
                await asyncio.sleep(SSE_POLL_S)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.sse_clients -= 1
        return resp


def _closing(request: web.Request) -> bool:
    """True once the server is shutting down: aiohttp marks each connection ``_close`` before it waits for
    running handlers, and a live stream must end then instead of holding the shutdown."""
    proto = request.protocol
    return proto is None or bool(getattr(proto, "_close", False)) or request.transport is None


def _default_quantity(qs: list[str]) -> str:
    for want in ("power", "energy.import", "energy.total", "temp.supply"):
        if want in qs:
            return want
    return qs[0]


def _handle_summary(node: Any, handle: str, f: Fmt) -> dict[str, Any] | None:

    return handles.summary(node.ledger.store, handle, f)


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider: the web UI of one node."""
    ui = WebUI(node)
    node.web_ui = ui
    return ui.routes()


__all__ = ["PageError", "WebUI", "routes"]
