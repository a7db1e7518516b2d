"""The node's HTTP API (aiohttp): submit txs, read blocks, txs with proofs, readings and aggregates.

Every refusal is a 4xx JSON body ``{"code": ..., "message": ...}``; nothing is written for a refused tx.
Reads come from committed state only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from node import codec, merkle, schema
from node.chain import DecodedTx, Ledger, header_hash
from node.crypto import sha256
from node.devices import load_device
from node.errors import CempError, Code
from node.httpguard import LIMITER, read_body
from node.mempool import Mempool, PendingView
from node.openapi import document as openapi_document
from node.peer import PEER_HEADER
from node.readgate import OpenReads, ReadGate
from node.readings import decode_reading_value
from node.state import StateView
from node.store import StorageError, prefix_stop
from node.types import Block, BlockHeader, DeviceRecord, Hash32, HourlyAggregate, TxLocation

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20
MAX_BATCH_TXS = 5000
MAX_READINGS_SCAN = 20_000
"""Stored readings one request may look at (a filter that matches nothing costs this much, not the history)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_storage_logged: set[str] = set()


def storage_error_response(err: StorageError) -> web.Response:
    """503 for a read that hit damaged storage: the node cannot vouch for what it would serve. Logged once per
    damaged record (the same broken block read a thousand times is one line in the log)."""
    if str(err) not in _storage_logged and len(_storage_logged) < 1000:
        _storage_logged.add(str(err))
        log.error("%s (run `cemp verify` on this data directory)", err)
    return web.json_response(
        {
            "code": "storage_corrupted",
            "message": f"{err}; this node cannot vouch for the answer, ask another",
        },
        status=503,
    )


def error_response(err: CempError) -> web.Response:
    return web.json_response(err.to_json(), status=err.status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CempError as e:
        return error_response(e)
    except web.HTTPException as e:
        if e.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                e.status, "bad_request"
            )
            msg = e.reason if e.status != 404 else f"no such endpoint: {request.method} {request.path}"
            return web.json_response({"code": code, "message": msg}, status=e.status)
        raise
    except StorageError as e:
        return storage_error_response(e)
    except asyncio.CancelledError:
        raise
    except RecursionError:
        LIMITER.warning(log, "nested", "request %s %s nested too deeply", request.method, request.path[:100])
        return web.json_response(
            {"code": "bad_request", "message": "the request is nested too deeply; flatten it"}, status=400
        )
    except Exception:
        ok, dropped = LIMITER.allow("internal")
        if ok:  # a bug, so a traceback; but never a flood of them
            log.exception(
                "unhandled error in %s %s (%d suppressed)", request.method, request.path[:100], dropped
            )
        return web.json_response(
            {"code": "internal", "message": "internal error; see the node log"}, status=500
        )


def hexh(b: bytes) -> str:
    return b.hex()


def header_json(h: BlockHeader) -> dict[str, Any]:
    return {
        "hash": hexh(header_hash(h)),
        "chain_id": h.chain_id,
        "height": h.height,
        "prev_hash": hexh(h.prev_hash),
        "time_ms": h.time_ms,
        "proposer": h.proposer,
        "term": h.term,
        "tx_root": hexh(h.tx_root),
        "results_root": hexh(h.results_root),
        "app_hash": hexh(h.app_hash),
        "last_commit": [{"node_id": s.node_id, "signature": hexh(s.signature)} for s in h.last_commit],
    }


def parse_decimal(raw: str, what: str, lo: int = 0, hi: int = 1 << 62) -> int:
    """A non-negative integer written in ASCII digits (no sign, spaces, underscores or other scripts' digits)."""
    if not (0 < len(raw) <= 20 and raw.isascii() and raw.isdigit()):
        raise CempError(Code.BAD_REQUEST, f"{what} {raw[:40]!r} is not a non-negative integer")
    v = int(raw)
    if not lo <= v <= hi:
        raise CempError(Code.BAD_REQUEST, f"{what} {v} is outside [{lo}, {hi}]")
    return v


def parse_int(request: web.Request, name: str, default: int, lo: int = 0, hi: int = 1 << 62) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (0 < len(raw) <= 20 and raw.isascii() and raw.isdigit()):
        raise CempError(
            Code.BAD_REQUEST, f"query parameter {name}={raw[:40]!r} is not a non-negative integer"
        )
    v = int(raw)
    if not lo <= v <= hi:
        raise CempError(Code.BAD_REQUEST, f"query parameter {name}={v} is outside [{lo}, {hi}]")
    return v


def parse_hash(s: str, what: str) -> bytes:
    try:
        b = bytes.fromhex(s) if len(s) <= 64 else b""
    except ValueError:
        raise CempError(Code.BAD_REQUEST, f"{what} {s[:80]!r} is not hex") from None
    if len(b) != 32:
        raise CempError(Code.BAD_REQUEST, f"{what} must be 32 bytes (64 hex chars)")
    return b


class NodeAPI:
    """Handlers over one ledger and mempool. ``status_extra`` lets the driver add term/leader."""

    def __init__(
        self,
        ledger: Ledger,
        mempool: Mempool,
        node_id: str,
        *,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        after_admit: Callable[[list[DecodedTx]], None] | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        next_apply: Callable[[float], Awaitable[bool]] | None = None,
        behind_wait_s: float = 0.25,
        reads: ReadGate | None = None,
    ) -> None:
        self.reads: ReadGate = reads or OpenReads()
        self.member_of: Callable[[web.Request], str] | None = None
        """Checks a request signed by a member node (``X-Cemp-Peer``); given by the node (its state-sync gate)."""
        """Who may read which data (``node.readgate``): readings and hourly aggregates, payloads of txs."""
        self.ledger = ledger
        self.mempool = mempool
        self.node_id = node_id
        self.status_extra = status_extra or (lambda: {"term": 0, "leader": node_id, "role": "leader"})
        self.after_admit = after_admit
        self.wall_ms = wall_ms
        self.next_apply = next_apply
        """Waits up to the given seconds for this node to apply its next block; False if none came."""
        self.behind_wait_s = behind_wait_s
        self.held_for_apply = 0
        self._admission_tail: asyncio.Future[None] | None = None
        self.verifier = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sigcheck")
        self.started = time.time()
        self.submitted = 0
        self.rejected = 0
        self.openapi_paths: dict[str, Any] = {}
        """Paths of the extra route providers, merged into ``/openapi.json`` (``node.server.Node``)."""
        self.refused_by: collections.Counter[str] = collections.Counter()
        """Txs refused at admission, by error code (``/metrics``: ``cemp_txs_refused_total``)."""
        self.halted: str | None = None
        """Set when the node has stopped at its halt height: new txs are refused with this message (503)."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/txs", self.submit),
            web.post("/v1/txs/batch", self.submit_batch),
            web.get("/v1/txs/{hash}", self.get_tx),
            web.get("/v1/blocks", self.list_blocks),
            web.get("/v1/blocks/{ref}", self.get_block),
            web.get("/v1/devices", self.list_devices),
            web.get(r"/v1/devices/{handle:.+}/readings", self.readings),
            web.get(r"/v1/devices/{handle:.+}/hourly", self.hourly),
            web.get(r"/v1/devices/{handle:.+}", self.device),
            web.get("/v1/nonces/{pubkey}", self.nonce),
            web.get("/v1/status", self.status),
            web.get("/v1/consortium", self.consortium),
            web.get("/openapi.json", self.openapi),
        ]

    # --- submission --------------------------------------------------------------------------
    def _decode_and_verify(self, raw: bytes) -> DecodedTx:
        d = self.ledger.decode_tx(raw)
        if not self.mempool.contains(d.hash) and self.ledger.tx_location(d.hash) is None:
            self.ledger.check_signature(d)
        return d

    def _admit(self, d: DecodedTx) -> dict[str, Any] | None:
        """Admit; returns an outcome dict if the tx is already known (idempotent resubmission)."""
        loc = self.ledger.tx_location(d.hash)
        if loc is not None:
            return self._committed_json(d.hash, loc)
        if self.mempool.contains(d.hash):
            return {"tx": d.hash.hex(), "status": "pending"}
        if self.halted is not None:
            raise CempError(Code.UNAVAILABLE, self.halted)
        self.mempool.admit(d, self.wall_ms())
        self.ledger.mark_verified(d.hash)
        if self.after_admit is not None:
            self.after_admit([d])
        return None

    @staticmethod
    def _committed_json(h: bytes, loc: TxLocation) -> dict[str, Any]:
        return {
            "tx": h.hex(),
            "status": "committed",
            "height": loc.height,
            "index": loc.index,
            "result": {"code": loc.code, "ok": loc.code == 0, "reason": loc.reason},
        }

    async def _body(self, request: web.Request, limit: int) -> bytes:
        body = await read_body(request, limit)
        if not body:
            raise CempError(Code.MALFORMED, "empty body: send the encoded tx (application/msgpack)")
        return body

    async def submit(self, request: web.Request) -> web.Response:
        body = await self._body(request, self.ledger.params.max_tx_bytes + 64)
        wait = request.query.get("wait", "")
        if wait not in ("", "commit", "none"):
            raise CempError(Code.BAD_REQUEST, "wait must be 'commit' or omitted")
        timeout = parse_int(request, "timeout_ms", 30_000, 1, 600_000) / 1000
        out = await self.submit_raw(body, wait=wait == "commit", timeout_s=timeout)
        accepted = bool(out.pop("accepted", False))
        return web.json_response(out, status=202 if accepted else 200)

    async def submit_raw(self, raw: bytes, *, wait: bool, timeout_s: float) -> dict[str, Any]:
        """What ``POST /v1/txs`` does with one encoded tx, for HTTP and for in-process writers (the resolver,
        through ``node.submit.LocalEndpoint``): admission in arrival order, then (``wait``) the commit.

        Returns the outcome (``"accepted": True`` marks a new pending tx answered without waiting, HTTP 202);
        raises ``CempError`` on a refusal, or ``Code.TIMEOUT`` when the commit did not come in ``timeout_s``."""
        d, known = await self.admit_one(raw)
        if known is not None and (known["status"] == "committed" or not wait):
            return known
        if not wait:
            return {"tx": d.hash.hex(), "status": "pending", "accepted": True}
        return self._committed_json(d.hash, await self.wait_commit(d.hash, timeout_s))

    async def admit_one(self, raw: bytes) -> tuple[DecodedTx, dict[str, Any] | None]:
        """Check and admit one encoded tx, in arrival order. Returns the decoded tx and, if it was already known
        (pending or committed), its outcome; raises ``CempError`` if it is refused (nothing is written).

        Read-your-writes across nodes: a device whose tx n another node acknowledged (``wait=commit``) may send
        tx n+1 here before this node has applied that block; its nonce then looks like a gap. Such a tx is held
        (outside the arrival-order queue, so it delays nobody else) until this node applies its next block, for
        at most ``behind_wait_s``, and checked again; only a gap that outlives that is refused.
        """
        held_until: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._in_arrival_order():
                    d = self._decode_and_verify(raw)
                    known = self._admit(d)
                break
            except CempError as e:
                if e.code != Code.NONCE_GAP or self.next_apply is None:
                    self.rejected += 1
                    self.refused_by[e.code.name.lower()] += 1
                    raise
                if held_until is None:
                    held_until = loop.time() + self.behind_wait_s
                    self.held_for_apply += 1
                left = held_until - loop.time()
                if left <= 0 or not await self.next_apply(left):
                    self.rejected += 1
                    self.refused_by[e.code.name.lower()] += 1
                    raise
        self.submitted += 1
        return d, known

    async def wait_commit(self, h: bytes, timeout: float) -> TxLocation:
        fut = self.mempool.wait(h)  # type: ignore[arg-type]
        loc = self.ledger.tx_location(h)  # committed between admission and now?
        if loc is not None:
            fut.cancel()
            return loc
        try:
            async with asyncio.timeout(timeout):  # not wait_for, which can swallow a cancel on Python 3.11
                return await fut
        except TimeoutError:
            raise CempError(
                Code.TIMEOUT, f"tx {h.hex()} not committed within {timeout:.1f} s; it is still pending"
            ) from None

    async def submit_batch(self, request: web.Request) -> web.Response:
        """Body: msgpack array of encoded txs. Answer: one outcome per tx, in order."""
        body = await self._body(request, MAX_BODY)
        try:
            items = codec.unpack_bounded(body, max_items=MAX_BATCH_TXS, max_objects=MAX_BATCH_TXS + 1)
        except CempError as e:
            raise CempError(e.code, f"batch body: {e.message}") from None
        if not isinstance(items, tuple) or not all(isinstance(x, bytes) for x in items):
            raise CempError(Code.BAD_TYPE, "batch body must be a msgpack array of bin (encoded txs)")
        loop = asyncio.get_running_loop()
        half = (len(items) + 1) // 2
        parts = [items[:half], items[half:]]

        def check(part: tuple[bytes, ...]) -> list[DecodedTx | CempError]:
            out: list[DecodedTx | CempError] = []
            for raw in part:
                try:
                    out.append(self._decode_and_verify(raw))
                except CempError as e:
                    out.append(e)
            return out

        async with self._in_arrival_order():
            checked = [
                x
                for chunk in await asyncio.gather(
                    *(loop.run_in_executor(self.verifier, check, p) for p in parts)
                )
                for x in chunk
            ]
            outcomes = self._admit_all(checked)
        if request.query.get("wait") == "commit":
            timeout = parse_int(request, "timeout_ms", 30_000, 1, 600_000) / 1000
            await self._wait_all(outcomes, timeout)
        return web.json_response({"results": outcomes})

    @contextlib.asynccontextmanager
    async def _in_arrival_order(self) -> AsyncIterator[None]:
        """Admit requests in the order they arrived, even though their signatures are checked concurrently:
        a device pipelining nonce n and n+1 in two requests must not see n+1 refused as a gap."""
        prev = self._admission_tail
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._admission_tail = mine
        try:
            if prev is not None and not prev.done():
                await asyncio.shield(prev)
            yield
        finally:
            if not mine.done():
                mine.set_result(None)

    def _admit_all(self, checked: list[DecodedTx | CempError]) -> list[dict[str, Any]]:
        outcomes: list[dict[str, Any]] = []
        for item in checked:
            if isinstance(item, CempError):
                self.rejected += 1
                self.refused_by[item.code.name.lower()] += 1
                outcomes.append({"status": "rejected", **item.to_json()})
                continue
            try:
                known = self._admit(item)
            except CempError as e:
                self.rejected += 1
                self.refused_by[e.code.name.lower()] += 1
                outcomes.append({"tx": item.hash.hex(), "status": "rejected", **e.to_json()})
                continue
            self.submitted += 1
            outcomes.append(known if known is not None else {"tx": item.hash.hex(), "status": "pending"})
        return outcomes

    async def _wait_all(self, outcomes: list[dict[str, Any]], timeout: float) -> None:
        pend = [(i, bytes.fromhex(o["tx"])) for i, o in enumerate(outcomes) if o["status"] == "pending"]
        futs = [self.mempool.wait(Hash32(h)) for _, h in pend]
        if futs:
            await asyncio.wait(futs, timeout=timeout)
        for (i, h), f in zip(pend, futs, strict=True):
            if f.done() and not f.cancelled() and f.exception() is None:
                outcomes[i] = self._committed_json(h, f.result())
            elif f.done() and not f.cancelled():
                exc = f.exception()
                assert isinstance(exc, CempError)
                outcomes[i] = {"tx": h.hex(), "status": "dropped", **exc.to_json()}
            else:
                f.cancel()

    # --- reads -------------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status_json())

    def status_json(self) -> dict[str, Any]:
        led = self.ledger
        raw_schema = led.store.get(schema.META_SCHEMA) or b"0"
        body = {
            "node_id": self.node_id,
            "chain_id": led.genesis.chain_id,
            "genesis_hash": led.genesis_hash.hex(),
            "height": led.height,
            "last_block_hash": led.last_hash.hex(),
            "last_block_time_ms": led.last_time_ms,
            "app_hash": led.app_hash.hex(),
            "mempool": len(self.mempool),
            "state_base": int.from_bytes(led.store.get(schema.META_STATE_BASE) or b"", "big"),
            "uptime_s": round(time.time() - self.started, 1),
            "time_ms": self.wall_ms(),
            "schema_version": int(raw_schema) if raw_schema.isdigit() else None,
        }
        body.update(self.status_extra())
        return body

    async def nonce(self, request: web.Request) -> web.Response:
        """Last committed nonce of a sender, and the next one the mempool will accept."""
        pk = parse_hash(request.match_info["pubkey"], "public key")
        committed = self.ledger.nonce_of(StateView(self.ledger.store), pk)
        pending = self.ledger.nonce_of(PendingView(self.ledger.store, self.mempool.overlay), pk)
        return web.json_response({"pubkey": pk.hex(), "nonce": committed, "next": pending + 1})

    async def consortium(self, request: web.Request) -> web.Response:
        """Orgs from the genesis (with the admin key in force now and its rotations) and every node with whether
        it is a current member."""
        led = self.ledger
        admins = led.admin_keys()
        return web.json_response(
            {
                "chain_id": led.genesis.chain_id,
                "genesis_hash": led.genesis_hash.hex(),
                "orgs": [
                    {
                        "name": o.name,
                        "role": o.role,
                        "prefix": o.prefix,
                        "admin_key": bytes(admins.key_of(o.name) or o.admin_key).hex(),
                        "genesis_admin_key": o.admin_key.hex(),
                        "admin_key_rotations": [
                            {"since": int(e.since), "pubkey": e.pubkey.hex()}
                            for e in led.admin_epochs.get(o.name, ())
                        ],
                    }
                    for o in led.genesis.orgs
                ],
                "nodes": [
                    {
                        "node_id": n.node_id,
                        "org": n.org,
                        "pubkey": (led.node_key(n.node_id, led.height + 1) or n.pubkey).hex(),
                        "key_rotations": [
                            {"since": int(e.since), "pubkey": e.pubkey.hex()}
                            for e in led.key_epochs.get(n.node_id, ())
                        ],
                        "address": n.address,
                        "active": n.node_id in led.active,
                    }
                    for n in led.nodes.values()
                ],
            }
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(request.app, self.openapi_paths))

    def _block_for(self, ref: str) -> Block:
        led = self.ledger
        if ref.isascii() and ref.isdigit():
            height = parse_decimal(ref, "block height")
        else:
            found = led.height_of_hash(parse_hash(ref, "block hash"))
            if found is None:
                raise CempError(Code.NOT_FOUND, f"no block with hash {ref}")
            height = found
        b = led.block(height) if 0 < height <= led.height else None
        if b is None:
            raise CempError(Code.NOT_FOUND, f"no block at height {height}; the chain is at {led.height}")
        return b

    async def get_block(self, request: web.Request) -> web.Response:
        b = self._block_for(request.match_info["ref"])
        if request.query.get("format") == "msgpack":
            self._check_raw_block(request, b)
            raw = self.ledger.block_raw(b.header.height)
            assert raw is not None
            return web.Response(body=raw, content_type="application/msgpack")
        results = self.ledger.results(b.header.height, b.header)
        txs = []
        for raw, r in zip(b.txs, results, strict=True):
            txs.append({"hash": sha256(raw).hex(), "ok": r.code == 0, "code": r.code, "reason": r.reason})
        cert = self.ledger.cert(b.header.height)
        return web.json_response(
            {
                "header": header_json(b.header),
                "signature": b.signature.hex(),
                "txs": txs,
                "commit": [{"node_id": s.node_id, "signature": s.signature.hex()} for s in cert],
            }
        )

    async def list_blocks(self, request: web.Request) -> web.Response:
        led = self.ledger
        before = parse_int(request, "before", led.height + 1, 1)
        limit = parse_int(request, "limit", 20, 1, 200)
        out: list[dict[str, Any]] = []
        h = min(before - 1, led.height)
        while h >= 1 and len(out) < limit:
            b = led.block(h)
            assert b is not None
            out.append({**header_json(b.header), "tx_count": len(b.txs)})
            h -= 1
        return web.json_response({"height": led.height, "blocks": out})

    async def get_tx(self, request: web.Request) -> web.Response:
        h = parse_hash(request.match_info["hash"], "tx hash")
        loc = self.ledger.tx_location(h)
        if loc is None:
            if self.mempool.contains(h):
                return web.json_response({"tx": h.hex(), "status": "pending"})
            raise CempError(Code.NOT_FOUND, f"no tx {h.hex()} on this chain")
        b = self.ledger.block(loc.height)
        assert b is not None
        raw = b.txs[loc.index]
        body: dict[str, Any] = self._committed_json(h, loc)
        try:
            d = self.ledger.decode_tx(raw)
            body.update(
                {
                    "kind": d.tx.kind,
                    "sender": d.tx.sender.hex(),
                    "nonce": d.tx.nonce,
                    "signature": d.tx.signature.hex(),
                    "payload": d.kind.describe(d.payload),
                }
            )
        except CempError as e:
            body["decode_error"] = e.message
        body["raw"] = raw.hex()
        hidden = self.hidden_payload(request, d) if "decode_error" not in body else None
        if hidden is not None:
            body["payload"] = None
            body["raw"] = None
            body["withheld"] = hidden
        body["proof"] = {
            "leaf_index": loc.index,
            "leaf_hash": sha256(b"\x00" + raw).hex(),
            "tree_size": len(b.txs),
            "path": [p.hex() for p in merkle.inclusion_proof(b.txs, loc.index)],
            "header": header_json(b.header),
            "header_signature": b.signature.hex(),
            "commit": [
                {"node_id": s.node_id, "signature": s.signature.hex()} for s in self.ledger.cert(loc.height)
            ],
        }
        return web.json_response(body)

    def _check_raw_block(self, request: web.Request, b: Block) -> None:
        """A canonical encoded block carries every payload in it, so it goes to a member node (a request signed
        as the peer routes are: catch-up) or to a request that may read every payload in it (the JSON block and
        tx routes show the rest of the chain with the payloads this request may not read left out)."""
        if self.member_of is not None and request.headers.get(PEER_HEADER):
            self.member_of(request)  # raises 403 unless a current member node signed this request
            return
        hidden = 0
        why = ""
        for raw in b.txs:
            try:
                d = self.ledger.decode_tx(raw)
            except CempError:
                continue  # committed with a decode error: its bytes are shown by the tx route as well
            w = self.hidden_payload(request, d)
            if w is not None:
                hidden += 1
                why = why or w
        if hidden:
            signed_in = bool(request.headers.get("Authorization") or request.cookies)
            code = Code.NOT_AUTHORIZED if signed_in else Code.UNAUTHENTICATED
            raise CempError(
                code,
                f"block {b.header.height} carries {hidden} tx payload(s) this request may not read ({why}); the "
                "encoded block goes to member nodes and to viewers who may read all of it; GET "
                f"/v1/blocks/{b.header.height} (JSON) and /v1/txs/{{hash}} show the rest",
            )

    def hidden_payload(self, request: web.Request, d: DecodedTx) -> str | None:
        """Why a committed tx's payload (and raw bytes) is withheld from this request; None: shown. Asked of kinds
        that say what their payloads show (``node.txkinds.ReadScope``). The tx's hash, signer, result and
        inclusion proof stay public (the leaf hash is enough to check the proof)."""
        scope_of = getattr(d.kind, "read_scope", None)
        if scope_of is None:
            return None
        scope = scope_of(StateView(self.ledger.store), d.payload)
        if scope is None:
            return None
        org, data, device = scope
        if self.reads.allows(request, org, data, device=device):
            return None
        return f"{org}'s {data}{f' of {device}' if device else ''} are not public; sign in with a key that may read them"

    def _device(self, request: web.Request) -> Any:
        handle = request.match_info["handle"]
        dev = load_device(StateView(self.ledger.store), handle)
        if dev is None:
            raise CempError(Code.UNKNOWN_DEVICE, f"device {handle} is not registered")
        return dev

    async def device(self, request: web.Request) -> web.Response:
        dev = self._device(request)
        return web.json_response(
            {
                "handle": dev.handle,
                "pubkey": dev.pubkey.hex(),
                "org": dev.org,
                "kind": dev.kind,
                "subsystem": dev.subsystem,
                "registered_height": dev.registered_height,
                "last_seq": dev.last_seq,
                "last_ts_ms": dev.last_ts_ms,
                "readings": dev.readings,
            }
        )

    async def list_devices(self, request: web.Request) -> web.Response:
        """Devices in handle order, ``limit`` per page; ``next`` (the last handle, or null) is the ``after`` of the
        following page."""
        limit = parse_int(request, "limit", 100, 1, 1000)
        after = request.query.get("after", "")
        if len(after) > 255 or not after.isprintable():
            raise CempError(Code.BAD_REQUEST, "after is a device handle (at most 255 printable characters)")
        try:
            start = schema.device(after) + b"\x00" if after else schema.DEVICE_PREFIX
        except UnicodeEncodeError:
            raise CempError(Code.BAD_REQUEST, "after is not a valid device handle") from None
        out: list[dict[str, Any]] = []
        for _, v in self.ledger.store.iterate(start, prefix_stop(schema.DEVICE_PREFIX), limit=limit):
            d = codec.decode(DeviceRecord, v)
            out.append(
                {
                    "handle": d.handle,
                    "kind": d.kind,
                    "subsystem": d.subsystem,
                    "org": d.org,
                    "readings": d.readings,
                    "last_ts_ms": d.last_ts_ms,
                }
            )
        nxt = out[-1]["handle"] if len(out) == limit else None
        return web.json_response({"devices": out, "next": nxt})

    async def readings(self, request: web.Request) -> web.Response:
        """Readings in key order (time, then sequence), ``limit`` at most, looking at no more than
        ``MAX_READINGS_SCAN`` stored readings per request: with ``quantity`` set, a page can end before it is full.
        ``next`` (a ``ts-seq`` cursor, or null at the end) is the ``after`` of the following page."""
        dev = self._device(request)
        self.reads.require(request, dev.org, "readings", device=dev.handle)
        now = int(time.time() * 1000)
        start = parse_int(request, "from", 0)
        stop = parse_int(request, "to", now + 86_400_000)
        limit = parse_int(request, "limit", 1000, 1, 10_000)
        if stop < start:
            raise CempError(Code.BAD_REQUEST, "'to' is before 'from'")
        quantity = request.query.get("quantity") or None
        if quantity is not None and len(quantity) > 64:
            raise CempError(Code.BAD_REQUEST, "quantity is at most 64 characters")
        lo, hi = schema.reading_range(dev.devnum, start, stop)
        after = request.query.get("after")
        if after:
            ts_s, sep, seq_s = after.partition("-")
            a_ts = parse_decimal(ts_s, "after cursor time", 0, (1 << 63) - 1) if sep else -1
            a_seq = parse_decimal(seq_s, "after cursor sequence", 0, (1 << 63) - 1) if sep else -1
            if a_ts < 0:
                raise CempError(
                    Code.BAD_REQUEST, f"after={after[:60]!r} is not a cursor like 1760000000000-17"
                )
            lo = max(lo, schema.reading(dev.devnum, a_ts, a_seq) + b"\x00")
        out: list[dict[str, Any]] = []
        last: bytes | None = None
        scanned = 0
        for k, v in self.ledger.store.iterate(lo, hi, limit=MAX_READINGS_SCAN):
            scanned += 1
            last = k
            _, ts, seq = schema.parse_reading_key(k)
            q, val, unit, flags = decode_reading_value(v)
            if quantity and q != quantity:
                continue
            out.append({"seq": seq, "ts_ms": ts, "quantity": q, "value": val, "unit": unit, "flags": flags})
            if len(out) >= limit:
                break
        more = last is not None and (len(out) >= limit or scanned >= MAX_READINGS_SCAN)
        cursor = None
        if more and last is not None:
            _, ts, seq = schema.parse_reading_key(last)
            cursor = f"{ts}-{seq}"
        return web.json_response({"device": dev.handle, "readings": out, "next": cursor})

    async def hourly(self, request: web.Request) -> web.Response:
        dev = self._device(request)
        self.reads.require(request, dev.org, "readings", device=dev.handle)
        quantity = request.query.get("quantity")
        start = parse_int(request, "from", 0) // 3_600_000
        stop = parse_int(request, "to", int(time.time() * 1000) + 3_600_000) // 3_600_000 + 1
        out: list[dict[str, Any]] = []
        if quantity:
            lo, hi = schema.hourly_range(dev.devnum, quantity, start, stop)
            items = list(self.ledger.store.iterate(lo, hi, limit=10_000))
        else:
            p = schema.hourly_device_prefix(dev.devnum)
            items = [
                (k, v)
                for k, v in self.ledger.store.iterate(p, prefix_stop(p), limit=50_000)
                if start <= schema.parse_hourly_key(k)[2] < stop
            ]
        for k, v in items:
            _, q, hour = schema.parse_hourly_key(k)
            a = codec.decode(HourlyAggregate, v)
            out.append(
                {
                    "quantity": q,
                    "hour_start_ms": hour * 3_600_000,
                    "count": a.count,
                    "sum": a.total,
                    "min": a.minimum,
                    "max": a.maximum,
                    "mean": a.total / a.count if a.count else None,
                    "first_ts_ms": a.first_ts_ms,
                    "first_value": a.first_value,
                    "last_ts_ms": a.last_ts_ms,
                    "last_value": a.last_value,
                    "delta": a.last_value - a.first_value,
                    "flagged": a.flagged,
                }
            )
        return web.json_response({"device": dev.handle, "hours": out})
