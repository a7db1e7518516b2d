"""State sync: hand a consistent state snapshot to a node that is behind a compacted log, in chunks.

Server: ``POST /v1/statesync`` opens a session on a LevelDB snapshot of committed state (a block boundary, since
each block is one write batch) and returns the head block, its results and its commit certificate;
``GET /v1/statesync/{session}?after=HEX&limit=N`` returns the next state pairs in key order (msgpack).
Sessions expire after ``SESSION_TTL_S`` idle seconds.

Only current members may use it: every request carries a signed ``X-Cemp-Peer`` header (``node.peer.PeerGate``),
checked before anything is read from the store. A member holds at most ``SESSIONS_PER_MEMBER`` sessions (its
oldest is closed when it opens another) and ``MAX_SESSIONS`` in all, so no one can hold every slot; a session
answers only the member that opened it.

Client (``fetch_state``): pulls every chunk, then ``Ledger.install_snapshot`` checks the certificate and that the
pairs hash to the certified app hash before anything is written. A node installed this way has no blocks below
the snapshot height (like Fabric's join-by-snapshot); ``cemp verify`` checks it from there.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import msgpack
from aiohttp import web

from node import codec, schema
from node.chain import BlockResults, Certificate, ChainError, Ledger
from node.errors import CempError, Code
from node.peer import PEER_HEADER, PeerError, PeerGate
from node.store import ReadSnapshot, prefix_stop
from node.types import Block, CommitSig, PublicKey, TxResult

SESSION_TTL_S = 120
MAX_CHUNK = 20_000
MAX_SESSIONS = 8
SESSIONS_PER_MEMBER = 2
STATE_START = bytes([min(schema.STATE_PREFIXES)])
STATE_STOP = prefix_stop(bytes([max(schema.STATE_PREFIXES)]))


@dataclass
class _Session:
    snap: ReadSnapshot
    height: int
    touched: float
    member: str


Signer = Callable[[str, str, int], dict[str, str]]
"""(method, path with query, body length) -> the signed peer header for one request."""


class StateSyncServer:
    def __init__(
        self,
        ledger: Ledger,
        node_id: str,
        accept: Callable[[], Mapping[str, tuple[bytes, ...]]] | None = None,
    ) -> None:
        """``accept``: members' keys during a key rotation (the driver's ``peer_accept``)."""
        self.ledger = ledger
        self.sessions: dict[str, _Session] = {}
        self.gate = PeerGate(ledger.genesis_hash, node_id, self._members, accept=accept)
        self.refused = 0

    def _members(self) -> dict[str, PublicKey]:
        led = self.ledger
        nxt = led.height + 1
        return {n: PublicKey(pk) for n in led.active if (pk := led.node_key(n, nxt)) is not None}

    def member(self, request: web.Request, what: str = "state sync") -> str:
        """The member node that signed ``request``; ``CempError`` 403 otherwise."""
        try:
            return self.gate.check(
                request.method, request.path_qs, request.content_length or 0, request.headers.get(PEER_HEADER)
            )
        except PeerError as e:
            self.refused += 1
            raise CempError(Code.NOT_AUTHORIZED, f"{what} is for consortium member nodes only: {e}") from None

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self.sessions.items() if now - v.touched > SESSION_TTL_S]:
            self.sessions.pop(sid).snap.release()

    async def open(self, request: web.Request) -> web.Response:
        member = self.member(request)
        self._expire()
        mine = sorted((v.touched, k) for k, v in self.sessions.items() if v.member == member)
        for _, sid in mine[: max(0, len(mine) - SESSIONS_PER_MEMBER + 1)]:
            self.sessions.pop(sid).snap.release()
        if len(self.sessions) >= MAX_SESSIONS:
            raise CempError(Code.MEMPOOL_FULL, "too many state-sync sessions open; retry shortly")
        snap = self.ledger.store.snapshot()
        raw_h = snap.get(schema.META_HEIGHT)
        height = int.from_bytes(raw_h, "big") if raw_h else 0
        block = snap.get(schema.block(height)) if height else None
        if block is None:
            snap.release()
            raise CempError(Code.NOT_FOUND, "this node has no blocks to offer yet")
        results = snap.get(schema.block_results(height)) or codec.encode(BlockResults(()))
        cert_raw = snap.get(schema.commit_cert(height))
        if cert_raw is None:
            snap.release()
            raise CempError(Code.UNAVAILABLE, f"block {height} has no commit certificate yet; retry shortly")
        sid = secrets.token_hex(16)
        self.sessions[sid] = _Session(snap, height, time.monotonic(), member)
        return web.json_response(
            {
                "session": sid,
                "height": height,
                "block": block.hex(),
                "results": results.hex(),
                "cert": cert_raw.hex(),
            }
        )

    async def chunk(self, request: web.Request) -> web.Response:
        member = self.member(request)
        s = self.sessions.get(request.match_info["session"])
        if s is None or s.member != member:
            raise CempError(Code.NOT_FOUND, "no such state-sync session (expired?)")
        s.touched = time.monotonic()
        raw_after = request.query.get("after", "")
        raw_limit = request.query.get("limit", "5000")
        try:
            after = bytes.fromhex(raw_after) if len(raw_after) <= 512 else None
            limit = (
                int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6 else 0
            )
        except ValueError:
            after = None
        if after is None or not limit >= 1:
            raise CempError(Code.BAD_REQUEST, "after must be hex (a state key) and limit a positive integer")
        limit = min(limit, MAX_CHUNK)
        start = after + b"\x00" if after else STATE_START
        pairs = [[k, v] for k, v in s.snap.iterate(start, STATE_STOP, limit=limit) if schema.is_state_key(k)]
        return web.Response(body=msgpack.packb(pairs, use_bin_type=True), content_type="application/msgpack")

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/statesync", self.open), web.get("/v1/statesync/{session}", self.chunk)]

    def close(self) -> None:
        for s in self.sessions.values():
            s.snap.release()
        self.sessions.clear()


async def fetch_state(
    http: aiohttp.ClientSession,
    address: str,
    min_height: int,
    sign: Signer,
    chunk: int = 5000,
    *,
    scheme: str = "http",
) -> tuple[Block, tuple[TxResult, ...], tuple[CommitSig, ...], list[tuple[bytes, bytes]]]:
    """Download a state snapshot at height >= ``min_height`` from the node at ``address``; ``sign`` makes the
    peer header of each request (this node's key, addressed to that node)."""
    async with http.post(f"{scheme}://{address}/v1/statesync", headers=sign("POST", "/v1/statesync", 0)) as r:
        if r.status != 200:
            raise ChainError(f"state sync refused by {address}: {r.status} {await r.text()}")
        head = await r.json()
    if head["height"] < min_height:
        raise ChainError(f"{address} offers state at {head['height']}, below the needed {min_height}")
    block = codec.decode(Block, bytes.fromhex(head["block"]))
    results = codec.decode(BlockResults, bytes.fromhex(head["results"])).results
    cert = codec.decode(Certificate, bytes.fromhex(head["cert"])).sigs
    pairs: list[tuple[bytes, bytes]] = []
    after = b""
    while True:
        path = f"/v1/statesync/{head['session']}?after={after.hex()}&limit={chunk}"
        async with http.get(f"{scheme}://{address}{path}", headers=sign("GET", path, 0)) as r:
            if r.status != 200:
                raise ChainError(f"state chunk refused by {address}: {r.status}")
            body = await r.read()
        try:
            items = await asyncio.to_thread(codec.unpack_bounded, body, MAX_CHUNK)
        except CempError as e:
            raise ChainError(f"state chunk from {address}: {e.message}") from None
        if not isinstance(items, tuple):
            raise ChainError("state chunk is not an array")
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise ChainError("state chunk is malformed")
            k, v = item
            if not isinstance(k, bytes) or not isinstance(v, bytes) or (pairs and k <= pairs[-1][0]):
                raise ChainError("state chunk is malformed or out of order")
            pairs.append((k, v))
        if len(items) < chunk:
            break
        after = pairs[-1][0]
    return block, results, cert, pairs
