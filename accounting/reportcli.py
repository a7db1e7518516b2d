"""``cemp report`` (render a site's report of a period, optionally issue it on chain), ``cemp report verify FILE``
(re-derive its figures from a node's chain) and ``cemp export`` (Parquet tables for analysts)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from accounting import render
from accounting.client import submit_signed
from accounting.report import payload_of, report_sha256
from node.chain import ChainRef
from node.client import NodeClient
from node.errors import CempError, Code


async def _token(c: NodeClient, key_file: str | None) -> dict[str, str]:
    """The Authorization header of a member's token (``access``): needed when the site's org keeps its figures
    or its devices' readings members-only; none without a key."""
    if not key_file:
        return {}
    from access.client import sign_in
    from accounting.cli import _key

    return {"Authorization": "Bearer " + (await sign_in(c, _key(key_file)))["token"]}


async def _bytes(c: NodeClient, path: str, headers: dict[str, str] | None = None, **params: Any) -> bytes:
    async with c.session.get(
        f"{c.base}{path}", params={k: str(v) for k, v in params.items()}, headers=headers or {}
    ) as r:
        if r.status >= 400:
            await c._json(r)  # raises the node's error
        return await r.read()


def cmd_report(args: argparse.Namespace) -> int:
    if args.action:
        if args.action[0] not in ("verify", "txs") or len(args.action) != 2:
            print(
                "usage: cemp report verify FILE  |  cemp report txs FILE  |  cemp report --site S --period P "
                "--format F",
                file=sys.stderr,
            )
            return 2
        if args.action[0] == "txs":
            return _txs(Path(args.action[1]))
        return _verify(Path(args.action[1]), args.nodes, args.json)
    if not args.site or not args.period:
        print("cemp report: --site and --period are needed (or: cemp report verify FILE)", file=sys.stderr)
        return 2
    if args.issue and not args.key:
        print(
            "cemp report: --issue needs --key (the site owner's or the regulator's admin key)",
            file=sys.stderr,
        )
        return 2

    async def run() -> tuple[dict[str, Any], dict[str, Any] | None]:
        async with NodeClient(args.nodes, timeout_s=300) as c:
            auth = await _token(c, args.key)
            raw = await _bytes(c, f"/v1/sites/{args.site}/report", auth, period=args.period, format="json")
            model = json.loads(raw)
            issued = None
            if args.issue:
                from accounting.cli import _key

                chain = ChainRef.from_status(await c.status())
                res = await submit_signed(c, _key(args.key), chain, "report", payload_of(model))
                issued = {"tx": res.get("tx"), "height": res.get("height")}
            return model, issued

    try:
        model, issued = asyncio.run(run())
        data = render.render(model, args.format, args.lang)
    except CempError as e:
        print(f"cemp report: {e.message}", file=sys.stderr)
        return 1
    out = Path(args.out or f"{args.site}-{args.period.replace('/', '-')}-{args.lang}.{args.format}")
    out.write_bytes(data)
    d = model["display"]
    print(
        f"{out}: {model['site']['site_id']} {model['period']['label']}: electricity {d['energy_mwh']} MWh, heat "
        f"{d['heat_gj']} GJ, Scope 2 {d['co2_location_t']} tCO2 location-based / {d['co2_market_t']} tCO2 "
        f"market-based (block {model['as_of']['height']}); report SHA-256 {report_sha256(model)}"
        + (f"; issued on chain (tx {issued['tx']})" if issued else "")
    )
    return 0


def _verify(path: Path, nodes: str, as_json: bool) -> int:
    try:
        data = path.read_bytes()
    except OSError as e:
        print(f"cemp report verify: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        _, model, _ = render.extract(data)
        sha = report_sha256(model)
        async with NodeClient(nodes, timeout_s=300) as c:
            inv = await c.get(
                f"/v1/sites/{model['site']['site_id']}/inventory", period=model["period"]["label"], txs=1
            )
            try:
                anchored: dict[str, Any] | None = await c.get(f"/v1/reports/{sha}")
            except CempError as e:
                if e.code != Code.NOT_FOUND:
                    raise
                anchored = None
        return render.verify(data, lambda s, p: inv, lambda s: anchored)

    try:
        out = asyncio.run(run())
    except CempError as e:
        print(f"cemp report verify: {e.message}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        f = out["figures"]
        print(
            f"{path}: {out['site']} {out['period']} ({out['format']}), report {out['report_sha256']}; "
            + ("issued in tx " + str(out["issued"]["tx"]) if out["issued"] else "not issued on this chain")
        )
        print(
            f"  printed: {f['energy_mwh']} MWh, {f['co2_location_t']} tCO2 location, {f['co2_market_t']} tCO2 market"
        )
        if out["match"]:
            print(
                f"  MATCH: re-derived from the chain at block {out['chain_height']}, every figure is the same"
            )
        else:
            print(f"  MISMATCH (re-derived at block {out['chain_height']}):")
            for p in out["problems"]:
                print(f"    - {p}")
    return 0 if out["match"] else 1


def _txs(path: Path) -> int:
    """Print the readings txs a report names (offline: from the file), one ``device tx_hash`` line each."""
    from accounting.report import check_txs

    try:
        _, model, _ = render.extract(path.read_bytes())
    except OSError as e:
        print(f"cemp report txs: cannot read {path}: {e.strerror}", file=sys.stderr)
        return 2
    except CempError as e:
        print(f"cemp report txs: {e.message}", file=sys.stderr)
        return 1
    problems = check_txs(model)
    prov = model.get("provenance") or {}
    for handle, hashes in sorted((prov.get("devices") or {}).items()):
        for h in hashes:
            print(f"{handle} {h}")
    kf = model["key_figures"]
    if not prov.get("listed", False) and not problems:
        print(
            f"cemp report txs: the report states {kf.get('readings_txs')} txs (root {kf.get('readings_txs_root')}) "
            "but lists none; GET /v1/sites/{id}/inventory/txs?period=&device= lists them",
            file=sys.stderr,
        )
    for p in problems:
        print(f"cemp report txs: {p}", file=sys.stderr)
    return 1 if problems else 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    async def run() -> list[tuple[Path, int]]:
        done = []
        async with NodeClient(args.nodes, timeout_s=600) as c:
            auth = await _token(c, args.key)
            for t in args.tables.split(","):
                data = await _bytes(c, f"/v1/sites/{args.site}/export/{t}.parquet", auth, period=args.period)
                p = out / f"{t}.parquet"
                p.write_bytes(data)
                done.append((p, len(data)))
        return done

    try:
        done = asyncio.run(run())
    except CempError as e:
        print(f"cemp export: {e.message}", file=sys.stderr)
        return 1
    for p, n in done:
        print(f"{p}  {n:,} bytes")
    return 0


def add_commands(sub: Any) -> None:
    rp = sub.add_parser(
        "report",
        help="a site's inventory report of a period as PDF, XLSX or HTML (--issue anchors it on chain); "
        "'cemp report verify FILE' re-checks a report against a node's chain; 'cemp report txs FILE' lists the "
        "signed readings txs it names (offline)",
    )
    rp.add_argument("action", nargs="*", help="verify FILE | txs FILE")
    rp.add_argument("--site")
    rp.add_argument("--period", help="2026-01, 2026-Q1, 2026 or 2025/26-season")
    rp.add_argument("--format", choices=render.FORMATS, default="pdf")
    rp.add_argument("--lang", choices=render.LANGS, default="zh")
    rp.add_argument("--out", help="output file (default SITE-PERIOD-LANG.FORMAT)")
    rp.add_argument(
        "--issue", action="store_true", help="record the report tx (hash + key figures, CEMP.CARBON)"
    )
    rp.add_argument(
        "--key",
        help="your key file: signs in to read members-only figures, and signs the report tx with --issue "
        "(the site owner's or the regulator's admin, or their energy manager)",
    )
    rp.add_argument("--nodes", default="http://127.0.0.1:7001", help="a node's API address")
    rp.add_argument("--json", action="store_true", help="verify: print the result as one JSON object")
    rp.set_defaults(func=cmd_report)
    ep = sub.add_parser(
        "export", help="readings, hourly aggregates and inventory of a site and period as Parquet"
    )
    ep.add_argument("--site", required=True)
    ep.add_argument("--period", required=True)
    ep.add_argument(
        "--out", required=True, help="directory for readings.parquet, hourly.parquet, inventory.parquet"
    )
    ep.add_argument("--tables", default="readings,hourly,inventory")
    ep.add_argument(
        "--key", help="your key file: sign in, for data an org keeps members-only (cemp data-policy)"
    )
    ep.add_argument("--nodes", default="http://127.0.0.1:7001", help="a node's API address")
    ep.set_defaults(func=cmd_export)
