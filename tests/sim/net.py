"""The simulated network: a seeded, lossy, reordering message fabric between the nodes of one process.

Every message is delivered by a timer after a random delay (so messages on one link overtake each other),
may be dropped or duplicated, and is cut by partitions (groups that cannot talk to each other) and one-way cuts
(a can send to b, b cannot send to a). ``SimTransport`` is the driver's ``PeerTransport``: like the real one it
drops envelopes from senders that are not members. ``SimFetcher`` is the ``BlockFetcher``: it reads another
node's block store across the same fabric (blocked when the link is cut, slower when it is slow).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node import codec, schema
from node.catchup import FetchError, StateSnapshot
from node.chain import BlockResults, Certificate, ChainError
from node.seams import Deliver
from node.statesync import STATE_START, STATE_STOP
from node.types import Block, PublicKey

if TYPE_CHECKING:
    from node.server import Node


@dataclass
class NetConfig:
    drop: float = 0.0
    dup: float = 0.0
    min_delay: float = 0.0005
    max_delay: float = 0.003
    """Seconds; each message's delay is uniform in [min_delay, max_delay]."""


@dataclass
class SimNetwork:
    rng: random.Random
    loop: asyncio.AbstractEventLoop
    cfg: NetConfig = field(default_factory=NetConfig)
    groups: dict[str, int] | None = None
    cuts: set[tuple[str, str]] = field(default_factory=set)
    inboxes: dict[str, Deliver] = field(default_factory=dict)
    """The live incarnation of each node's ``deliver`` (absent while it is down)."""
    nodes: dict[str, Node] = field(default_factory=dict)
    """Live nodes, for ``SimFetcher``."""
    stats: Counter[str] = field(default_factory=Counter)
    tap: Callable[[str, str, Any], None] = lambda _a, _b, _m: None
    """Sees every message sent (the simulator's leader check)."""

    def blocked(self, a: str, b: str) -> bool:
        if (a, b) in self.cuts:
            return True
        return self.groups is not None and self.groups.get(a, -1) != self.groups.get(b, -2)

    def heal(self) -> None:
        self.groups = None
        self.cuts = set()
        self.cfg = NetConfig()

    def send(self, a: str, b: str, msg: Any) -> None:
        self.tap(a, b, msg)
        if self.blocked(a, b) or self.rng.random() < self.cfg.drop:
            self.stats["dropped"] += 1
            return
        copies = 2 if self.rng.random() < self.cfg.dup else 1
        for _ in range(copies):
            delay = self.rng.uniform(self.cfg.min_delay, self.cfg.max_delay)
            self.loop.call_later(delay, self._arrive, a, b, msg)

    def _arrive(self, a: str, b: str, msg: Any) -> None:
        inbox = self.inboxes.get(b)
        if inbox is None or self.blocked(a, b):
            self.stats["lost"] += 1
            return
        self.stats["delivered"] += 1
        inbox(a, [msg])

    def rtt(self) -> float:
        return 2 * self.rng.uniform(self.cfg.min_delay, self.cfg.max_delay)


class SimTransport:
    """``PeerTransport`` over ``SimNetwork``; receives only from members, like ``node.transport.Transport``."""

    def __init__(self, net: SimNetwork, me: str, deliver: Deliver, members: dict[str, PublicKey]) -> None:
        self.net = net
        self.me = me
        self.deliver = deliver
        self.members = dict(members)
        self.dropped: Counter[str] = Counter()
        self.reachable: dict[str, bool] = {}
        self.alive = True
        """False once the node is down: whatever its cancelled tasks still try to send goes nowhere."""

    def set_peers(self, members: dict[str, PublicKey], addresses: dict[str, str]) -> None:
        self.members = dict(members)

    def set_keys(self, key: object, accept: dict[str, tuple[bytes, ...]]) -> None:
        """Messages are not signed in memory: nothing to switch."""

    def send(self, to: str, msg: Any) -> None:
        if not self.alive:
            return
        if to not in self.members:
            self.dropped["unknown_peer"] += 1
            return
        self.net.send(self.me, to, msg)

    def _receive(self, sender: str, msgs: list[Any]) -> None:
        if not self.alive:
            return
        if sender not in self.members:
            self.dropped["non_member"] += 1
            return
        self.deliver(sender, msgs)

    async def start(self) -> None:
        self.net.inboxes[self.me] = self._receive

    async def stop(self) -> None:
        if self.net.inboxes.get(self.me) == self._receive:
            del self.net.inboxes[self.me]

    def routes(self) -> list[web.RouteDef]:
        return []


class SimFetcher:
    """``BlockFetcher`` that reads the other live nodes' stores across ``SimNetwork``."""

    def __init__(self, net: SimNetwork, me: str, peers: Callable[[], list[str]]) -> None:
        self.net = net
        self.me = me
        self._peers = peers

    def peers(self) -> list[str]:
        return [p for p in self._peers() if p != self.me]

    async def _reach(self, peer: str) -> Node:
        await asyncio.sleep(self.net.rtt())
        node = self.net.nodes.get(peer)
        if node is None or self.net.blocked(self.me, peer) or self.net.blocked(peer, self.me):
            raise FetchError(f"{peer} is unreachable")
        return node

    async def block_raw(self, peer: str, ref: int | bytes) -> bytes | None:
        led = (await self._reach(peer)).ledger
        height = ref if isinstance(ref, int) else led.height_of_hash(ref)
        if height is None or not 0 < height <= led.height:
            return None
        return led.block_raw(height)

    async def state(self, peer: str, min_height: int) -> StateSnapshot:
        store = (await self._reach(peer)).ledger.store
        raw_h = store.get(schema.META_HEIGHT)
        height = int.from_bytes(raw_h, "big") if raw_h else 0
        raw_block = store.get(schema.block(height)) if height else None
        cert_raw = store.get(schema.commit_cert(height))
        if raw_block is None or cert_raw is None or height < min_height:
            raise ChainError(f"{peer} offers no certified state at or above {min_height}")
        results = codec.decode(BlockResults, store.get(schema.block_results(height)) or b"\x91\x90").results
        pairs = [(k, v) for k, v in store.iterate(STATE_START, STATE_STOP) if schema.is_state_key(k)]
        return codec.decode(Block, raw_block), results, codec.decode(Certificate, cert_raw).sigs, pairs

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
