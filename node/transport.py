"""Peer transport over aiohttp: one persistent HTTP connection per peer, messages batched per request.

Invariants:
- sending never blocks the driver: messages go into a per-peer queue; one sender task per peer drains
  it, packing everything queued into one signed envelope per POST (natural batching under load);
- a peer that is down costs a bounded queue and a short back-off; Raft retransmits what was lost, so a
  full queue drops the oldest messages rather than growing without bound;
- inbound requests are checked in two steps: the signed ``X-Cemp-Peer`` header (``node.peer.PeerGate``: a
  current member, not replayed) before the body is read, then the envelope (``node.peer.open_envelope``:
  signature, addressing, replay) before anything reaches the driver; a bad one is answered 4xx, counted by
  reason and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from node.crypto import KeyPair
from node.httpguard import CLIENT_KEEPALIVE_S, read_body
from node.peer import (
    PEER_HEADER,
    PeerError,
    PeerGate,
    ReplayGuard,
    Sequencer,
    open_envelope,
    request_header,
    seal,
)
from node.tasks import cancel_and_wait
from node.tls import scheme
from node.types import PublicKey

log = logging.getLogger(__name__)

PEER_PATH = "/peer/v1/msgs"
MAX_QUEUE = 10_000
MAX_BATCH = 4096
MAX_PEER_BODY = 96 << 20
"""Largest envelope a node accepts; the public routes are held to ``node.api.MAX_BODY``."""
ENVELOPE_BUDGET = 24 << 20
"""A sender stops adding messages to an envelope past this many (estimated) bytes."""


class Transport:
    def __init__(
        self,
        chain_id: str,
        me: str,
        key: KeyPair,
        members: dict[str, PublicKey],
        addresses: dict[str, str],
        deliver: Callable[[str, list[Any]], None],
        genesis_hash: bytes,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: reach the peers over HTTPS, verified with this context (``node.tls.client_context``)."""
        self.tls = tls
        self.genesis_hash = genesis_hash
        self.seqs = Sequencer()
        self.replay = ReplayGuard()
        self.gate = PeerGate(genesis_hash, me, lambda: self.members, accept=lambda: self.accept)
        self.chain_id = chain_id
        self.me = me
        self.key = key
        self.members = members
        self.addresses = addresses
        self.deliver = deliver
        self.queues: dict[str, deque[Any]] = {p: deque() for p in addresses if p != me}
        self.wake: dict[str, asyncio.Event] = {p: asyncio.Event() for p in self.queues}
        self.dropped: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.received = 0
        self.reachable: dict[str, bool] = dict.fromkeys(self.queues, False)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.accept: dict[str, tuple[bytes, ...]] = {}
        """Keys accepted from peers in a key rotation (``set_keys``), beyond their key in ``members``."""

    def set_keys(self, key: KeyPair, accept: dict[str, tuple[bytes, ...]]) -> None:
        self.key = key
        self.accept = accept

    def set_peers(self, members: dict[str, PublicKey], addresses: dict[str, str]) -> None:
        """Follow a membership change: new peers get a queue and a sender, removed ones lose theirs."""
        self.members = members
        for peer, addr in addresses.items():
            if peer == self.me:
                continue
            self.addresses[peer] = addr
            if peer not in self.queues and peer in members:
                self.queues[peer] = deque()
                self.wake[peer] = asyncio.Event()
                self.reachable[peer] = False
                if self._session is not None:
                    self._tasks.append(asyncio.create_task(self._sender(peer), name=f"peer-send-{peer}"))
        for peer in [p for p in self.queues if p not in members]:
            self.queues[peer].clear()

    # --- outbound --------------------------------------------------------------------------------
    def send(self, to: str, msg: Any) -> None:
        q = self.queues.get(to)
        if q is None or to not in self.members:
            self.dropped["unknown_peer"] += 1
            return
        if len(q) >= MAX_QUEUE:
            q.popleft()
            self.dropped["queue_full"] += 1
        q.append(msg)
        self.wake[to].set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5, connect=1),
            connector=aiohttp.TCPConnector(
                limit_per_host=2, keepalive_timeout=CLIENT_KEEPALIVE_S, ssl=self.tls or True
            ),
        )
        for peer in self.queues:
            self._tasks.append(asyncio.create_task(self._sender(peer), name=f"peer-send-{peer}"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

    async def _sender(self, peer: str) -> None:
        q = self.queues[peer]
        ev = self.wake[peer]
        url = f"{scheme(self.tls)}://{self.addresses[peer]}{PEER_PATH}"
        backoff = 0.0
        assert self._session is not None
        while True:
            await ev.wait()
            ev.clear()
            while q:
                batch = [q.popleft()]
                size = _size(batch[0])
                while q and len(batch) < MAX_BATCH and size + _size(q[0]) <= ENVELOPE_BUDGET:
                    size += _size(q[0])
                    batch.append(q.popleft())
                body = seal(self.genesis_hash, self.chain_id, self.me, peer, batch, self.key, self.seqs)
                headers = {
                    "Content-Type": "application/msgpack",
                    **request_header(
                        self.key, self.genesis_hash, self.me, peer, "POST", PEER_PATH, len(body), self.seqs
                    ),
                }
                try:
                    async with self._session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        if r.status >= 400:
                            self.dropped[f"refused_{r.status}"] += len(batch)
                    self.sent[peer] += len(batch)
                    self.reachable[peer] = True
                    backoff = 0.0
                except (aiohttp.ClientError, TimeoutError, OSError) as e:
                    # A certificate the consortium CA does not vouch for (or naming another host) is counted
                    # apart, and logged once per peer: it is a configuration fault, not a down peer.
                    tls_fault = isinstance(e, aiohttp.ClientSSLError | ssl.SSLError)
                    if tls_fault and self.dropped[f"tls_{peer}"] == 0:
                        log.warning("TLS to peer %s at %s failed: %s", peer, self.addresses[peer], e)
                    self.dropped[f"tls_{peer}" if tls_fault else "unreachable"] += len(batch)
                    self.reachable[peer] = False
                    backoff = min(0.5, backoff * 2 or 0.02)
                    await asyncio.sleep(backoff)

    # --- inbound ---------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        try:
            length = request.content_length
            if length is None:
                raise PeerError("malformed", "peer messages are sent with a Content-Length")
            self.gate.check(request.method, request.path_qs, length, request.headers.get(PEER_HEADER))
            raw = await read_body(request, MAX_PEER_BODY)
            sender, msgs = open_envelope(
                raw, self.genesis_hash, self.chain_id, self.me, self.members, self.replay, accept=self.accept
            )
        except PeerError as e:
            self.dropped[e.reason] += 1
            log.debug("dropped peer envelope: %s", e)
            status = 401 if e.reason in ("unsigned", "non_member", "bad_signature") else 400
            return web.json_response({"code": e.reason, "message": str(e)}, status=status)
        self.received += len(msgs)
        self.deliver(sender, msgs)
        return web.Response(status=204)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PEER_PATH, self.handle)]


def _size(msg: Any) -> int:
    """Rough encoded size of a peer message (entries dominate; everything else is small)."""
    entries = getattr(msg, "entries", None)
    if entries:
        return 128 + sum(len(e.data) + 32 for e in entries)
    snap = getattr(msg, "snapshot", None)
    if snap is not None:
        return 256 + len(snap.data)
    txs = getattr(msg, "txs", None)
    if txs:
        return 64 + sum(len(t) + 4 for t in txs)
    return 128
