"""The whole-node simulator: complete CEMP nodes in one process, on a fake network, a fake clock and a fake disk.

Each simulated node is a real ``node.server.Node`` (consensus driver, ledger, mempool, admission) over a
``SimStore``; only its seams differ (``node.seams``): a virtual clock (``VirtualTimeLoop``), the seeded
``SimNetwork`` for peer messages and block fetching, inline execution instead of threads, a seeded rng.

One seed fixes everything: cluster size, parameters, the nemesis schedule (partitions, one-way cuts, a lossy /
duplicating / slow network, process crashes, power failures that lose unsynced writes, power failures in the
middle of a synced write, restarts, a node added and one removed through ``membership`` txs) and the clients
(devices submitting signed readings to random nodes, retrying on other nodes until a node acknowledges the commit).
A failing seed raises ``SimFailure`` with a one-line replay command; ``python -m tests.sim SEED`` replays it.

Checked at every step (each durable write, each message sent):
- no two nodes commit different blocks at a height (every write of a new head is compared with the first
  block any node committed at that height);
- every committed block carries a commit certificate of a majority of the current members, on its parent
  (checked here independently of the ledger's own check);
- at most one node acts as leader (sends appends) in a term;
- every append acknowledgement and every vote a node sends is already on its disk (synced) when it is sent.
After the run (network healed, every node restarted, the clients finished): every live node has the same height,
head hash and app hash; every acknowledged reading tx is in every live node's chain exactly once, with an OK
result; no tx that nobody submitted is on chain; every device holds exactly the readings acknowledged to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cemp import wiring
from consensus.messages import AppendEntries, AppendEntriesResponse, HardState, RequestVoteResponse, Snapshot
from node import codec, crypto, schema
from node.catchup import BlockFetcher
from node.chain import ChainRef, genesis_hash, header_hash, quorum, sign_tx
from node.crypto import KeyPair, sha256, verify
from node.devices import load_device
from node.errors import CempError, Code
from node.keyrotation import DOMAIN_KEY_POSSESSION, NodeKeyRotation, claim_message
from node.membership import DOMAIN_MEMBERSHIP, Approval, MembershipChange, MembershipTx, approval_message
from node.raftstore import HARD_STATE, SNAPSHOT, entry_key
from node.seams import InlineExecutor, Seams, run_inline
from node.server import Node
from node.state import StateView
from node.types import (
    DOMAIN_VOTE,
    Block,
    DeviceRegistration,
    Handle,
    Height,
    Nonce,
    PublicKey,
    Reading,
    ReadingBatch,
    ShortStr,
    SignedInt,
    TimestampMs,
)
from tests.sim.disk import PowerFailure, SimStore
from tests.sim.loop import VirtualTimeLoop
from tests.sim.net import NetConfig, SimFetcher, SimNetwork, SimTransport
from tests.support.testing import GENESIS_TIME_MS, ORG_SPECS, make_genesis, node_names

GENESIS_MS = GENESIS_TIME_MS
REPLAY = "python -m tests.sim {seed}"


class SimFailure(AssertionError):
    """A safety or liveness violation, with the seed, the scenario and the last trace lines."""


def key_for(seed: int, name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(f"cemp-sim/{seed}/{name}".encode()).digest())


# ---- scenario ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    args: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return f"t={self.at:.3f} {self.action} {' '.join(map(str, self.args))}".rstrip()


@dataclass(frozen=True)
class Scenario:
    seed: int
    size: int
    devices: int
    chaos_s: float
    tick_ms: int
    election_ticks: int
    compact_every: int
    catchup: str
    membership: bool
    schedule: tuple[Event, ...]
    rotate: bool = False
    """Clients send each tx to another node than the one that acknowledged the previous (read-your-writes)."""

    def describe(self) -> str:
        head = (
            f"seed={self.seed} size={self.size} devices={self.devices} chaos_s={self.chaos_s} "
            f"tick_ms={self.tick_ms} election_ticks={self.election_ticks} compact_every={self.compact_every} "
            f"catchup={self.catchup} membership={self.membership}"
        )
        return head + "\nnemesis schedule:\n" + "\n".join(f"  {e}" for e in self.schedule)


def make_scenario(seed: int, scale: float = 1.0) -> Scenario:
    """Everything about one run, from ``seed`` alone. ``scale`` stretches the chaos phase (deep runs)."""
    rng = random.Random(seed)
    size = rng.choice((3, 3, 3, 5))
    tick_ms = rng.choice((20, 50))
    chaos = round(rng.uniform(1.5, 3.5) * scale, 3)
    membership = rng.random() < 0.25
    events: list[Event] = []
    t = rng.uniform(0.05, 0.3)
    while t < chaos:
        r = rng.random()
        if r < 0.12:
            events.append(Event(t, "partition", (rng.randrange(1 << 30),)))
        elif r < 0.20:
            events.append(Event(t, "isolate-leader"))
        elif r < 0.28:
            events.append(Event(t, "cut", (rng.randrange(1 << 30),)))
        elif r < 0.42:
            events.append(Event(t, "heal"))
        elif r < 0.54:
            drop = rng.choice((0.0, 0.05, 0.2))
            dup = rng.choice((0.0, 0.05, 0.2))
            hi = rng.choice((0.003, 0.02, 0.08))
            events.append(Event(t, "net", (drop, dup, hi)))
        elif r < 0.64:
            events.append(Event(t, "kill", (rng.choice(("leader", "random")), rng.randrange(1 << 30))))
        elif r < 0.72:
            events.append(Event(t, "power-off", (rng.choice(("leader", "random")), rng.randrange(1 << 30))))
        elif r < 0.80:
            events.append(Event(t, "fail-sync", (rng.choice(("leader", "random")), rng.randrange(1 << 30))))
        elif r < 0.90:
            events.append(Event(t, "restart", (rng.randrange(1 << 30),)))
        t += rng.uniform(0.05, 0.4)
    rot = random.Random(seed * 7 + 99)  # its own stream: the other events stay what they were for each seed
    if rot.random() < 0.3:
        events.append(
            Event(round(rot.uniform(0.05, chaos * 0.8), 3), "rotate-key", (rot.randrange(1 << 30),))
        )
    if membership:
        events.append(Event(round(rng.uniform(0.1, chaos * 0.5), 3), "add-node"))
        events.append(
            Event(round(rng.uniform(chaos * 0.4, chaos), 3), "remove-node", (rng.randrange(1 << 30),))
        )
    events.sort(key=lambda e: e.at)
    return Scenario(
        seed=seed,
        size=size,
        devices=rng.choice((1, 2, 3)),
        chaos_s=chaos,
        tick_ms=tick_ms,
        election_ticks=rng.choice((5, 10)),
        compact_every=rng.choice((3, 8, 1000)),
        catchup=rng.choice(("blocks", "blocks", "state")),
        membership=membership,
        schedule=tuple(Event(round(e.at, 3), e.action, e.args) for e in events),
    )


# ---- the world ---------------------------------------------------------------------------------------------


class SimClock:
    def __init__(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop

    def monotonic(self) -> float:
        return self.loop.time()

    def wall_ms(self) -> int:
        return GENESIS_MS + int(self.loop.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class SimNode:
    id: str
    key: KeyPair
    durable: dict[bytes, bytes] = field(default_factory=dict)
    store: SimStore | None = None
    node: Node | None = None
    task: asyncio.Task[None] | None = None
    incarnation: int = 0
    removed: bool = False
    """Its removal committed: it stays down."""
    more_keys: list[KeyPair] = field(default_factory=list)
    """Keys a rotation gave it (its operator put the new key file beside the old one before the rotation)."""


@dataclass
class Device:
    handle: str
    key: KeyPair
    nonce: int = 0
    seq: int = 0


class World:
    check_durable_sends = True
    """Check at every send that acks and votes are durable (off: only the end-to-end checks remain)."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.loop = VirtualTimeLoop()
        self.rng = random.Random(sc.seed * 7 + 1)
        self.net = SimNetwork(random.Random(sc.seed * 7 + 2), self.loop)
        self.net.tap = self._tap
        self.clock = SimClock(self.loop)
        self.trace: deque[str] = deque(maxlen=80)
        self.stats: Counter[str] = Counter()
        self.admins = {name: key_for(sc.seed, f"admin/{name}") for name, _, _ in ORG_SPECS}
        self.admin_nonce: Counter[str] = Counter()
        self.nodes = {nid: SimNode(nid, key_for(sc.seed, f"node/{nid}")) for nid, _ in node_names(sc.size)}
        self.genesis = make_genesis(
            f"cemp-sim-{sc.seed}",
            self.admins,
            [(nid, org, self.nodes[nid].key.public, f"{nid}:1") for nid, org in node_names(sc.size)],
            GENESIS_MS,
            tick_ms=sc.tick_ms,
            election_ticks=sc.election_ticks,
            heartbeat_ticks=1,
            block_interval_ms=10,
        )
        self.kinds = wiring.kinds()
        self.devices = [Device(f"88.123.45/9.{i}", key_for(sc.seed, f"dev/{i}")) for i in range(sc.devices)]
        # checker state
        self.chain: dict[int, bytes] = {}
        """Height -> hash of the first block any node committed there."""
        self.leaders: dict[int, str] = {}
        self.submitted: set[bytes] = set()
        self.acked: dict[bytes, tuple[str, int]] = {}
        """Acknowledged reading txs: hash -> (device handle, height it was acknowledged at)."""
        self.acked_readings: Counter[str] = Counter()
        self.last_acker: dict[str, str] = {}
        self.clients_done = 0
        self.failure: SimFailure | None = None
        self.added: str | None = None
        self.rotations: dict[str, tuple[int, bytes]] = {}
        """Node key rotations that committed: node -> (effective height, new key)."""

    # ---- plumbing ----------------------------------------------------------------------------------------

    def log(self, line: str) -> None:
        self.trace.append(f"t={self.loop.time():.4f} {line}")

    def fail(self, what: str) -> None:
        if self.failure is None:
            self.failure = SimFailure(
                f"{what}\nat t={self.loop.time():.4f}; replay: {REPLAY.format(seed=self.sc.seed)}\n"
                f"{self.sc.describe()}\nlast trace lines:\n" + "\n".join(self.trace)
            )
        raise self.failure

    def live_ids(self) -> set[str]:
        return {sn.id for sn in self.live()}

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.node is not None]

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.live():
            assert n.node is not None
            r = n.node.driver.raft
            if r.role.value == "leader" and (best is None or r.term > best.node.driver.raft.term):  # type: ignore[union-attr]
                best = n
        return best

    def pick(self, target: str, salt: int) -> SimNode | None:
        if target == "leader":
            lead = self.leader()
            if lead is not None:
                return lead
        live = self.live()
        return random.Random(salt).choice(live) if live else None

    # ---- checks at every step ----------------------------------------------------------------------------

    def _tap(self, a: str, b: str, msg: Any) -> None:
        if isinstance(msg, AppendEntries):
            first = self.leaders.setdefault(int(msg.term), a)
            if first != a:
                self.fail(f"Election Safety: {first} and {a} both lead term {msg.term}")
            return
        # An acknowledgement or a vote promises durable state: it must already be on the disk when it is sent.
        if not self.check_durable_sends:
            return
        if isinstance(msg, AppendEntriesResponse) and msg.success:
            durable = self.nodes[a].store.durable  # type: ignore[union-attr]
            raw_snap = durable.get(SNAPSHOT)
            snap_index = codec.decode(Snapshot, raw_snap).meta.index if raw_snap else 0
            if msg.index > snap_index and entry_key(msg.index) not in durable:
                self.fail(f"{a} acknowledged entry {msg.index} to {b} before it was durable")
        elif isinstance(msg, RequestVoteResponse) and msg.granted and not msg.pre_vote:
            raw_hs = self.nodes[a].store.durable.get(HARD_STATE)  # type: ignore[union-attr]
            hs = codec.decode(HardState, raw_hs) if raw_hs else None
            if hs is None or hs.term != msg.term or hs.vote != msg.to:
                self.fail(f"{a} granted its term-{msg.term} vote to {b} before the vote was durable ({hs})")

    def _observe(self, nid: str, changes: Mapping[bytes, bytes | None]) -> None:
        raw_h = changes.get(schema.META_HEIGHT)
        last = changes.get(schema.META_LAST_HASH)
        if raw_h is None or last is None:
            return
        height = int.from_bytes(raw_h, "big")
        if height == 0:
            return
        first = self.chain.setdefault(height, last)
        if first != last:
            self.fail(
                f"two blocks committed at height {height}: {first.hex()[:16]} and {last.hex()[:16]} ({nid})"
            )
        raw_block = changes.get(schema.block(height))
        if raw_block is None or schema.META_STATE_BASE in changes:
            return
        block = codec.decode(Block, raw_block)
        if header_hash(block.header) != last:
            self.fail(f"{nid} recorded head {last.hex()[:16]} but wrote another block at {height}")
        self.log(f"{nid} commit h={height} {last.hex()[:12]} txs={len(block.txs)} term={block.header.term}")
        if height > 1:
            sn = self.nodes[nid]
            assert sn.node is not None
            active = sn.node.ledger.active
            signers = set()
            for s in block.header.last_commit:
                pk = sn.node.ledger.node_key(s.node_id, height - 1)  # its key of that height (key rotations)
                if (
                    s.node_id in active
                    and pk is not None
                    and verify(pk, DOMAIN_VOTE, block.header.prev_hash, s.signature)
                ):
                    signers.add(s.node_id)
            if len(signers) < quorum(len(active)):
                self.fail(
                    f"block {height} committed by {nid} carries {len(signers)} good votes on its parent from "
                    f"current members ({sorted(active)}); a majority needs {quorum(len(active))}"
                )

    # ---- node lifecycle ----------------------------------------------------------------------------------

    def boot(self, sn: SimNode) -> None:
        sn.incarnation += 1
        store = SimStore(sn.durable)
        store.observer = lambda ch, nid=sn.id: self._observe(nid, ch)
        store.on_power_failure = lambda nid=sn.id: self._power_failed(nid)
        # catch-up asks the node's current members, as the HTTP fetcher does (a node added later too)
        fetcher: BlockFetcher = SimFetcher(
            self.net, sn.id, lambda sn=sn: sorted(sn.node.driver.members) if sn.node is not None else []
        )
        seams = Seams(
            clock=self.clock,
            rng=random.Random(f"{self.sc.seed}/{sn.id}/{sn.incarnation}"),
            transport=lambda deliver, members, nid=sn.id: SimTransport(self.net, nid, deliver, members),
            fetcher=fetcher,
            offload=run_inline,
            preverify=InlineExecutor(),
        )
        sn.store = store
        sn.node = Node(
            self.genesis,
            store,
            sn.id,
            sn.key,
            raft_compact_every=self.sc.compact_every,
            raft_catchup=self.sc.catchup,
            kinds=self.kinds,
            seams=seams,
            key_loader=lambda pk, sn=sn: next((k for k in sn.more_keys if k.public == pk), None),
        )
        self.net.nodes[sn.id] = sn.node
        sn.task = self.loop.create_task(self._run_node(sn, sn.node), name=f"node-{sn.id}-{sn.incarnation}")
        self.log(f"boot {sn.id} #{sn.incarnation} at height {sn.node.ledger.height}")

    async def _run_node(self, sn: SimNode, node: Node) -> None:
        try:
            await node.driver.run()
        except (asyncio.CancelledError, PowerFailure):
            pass
        except Exception as e:  # the driver loop died: in a real process that stops the node
            self.log(f"{sn.id} driver crashed: {type(e).__name__}: {e}")
            self.fail(f"the driver of {sn.id} raised {type(e).__name__}: {e}")

    def _power_failed(self, nid: str) -> None:
        self.log(f"{nid} power failed during a synced write")
        self.stats["power failed mid-write"] += 1
        self.stop(self.nodes[nid], lose_unsynced=True)

    def stop(self, sn: SimNode, *, lose_unsynced: bool) -> None:
        if sn.node is None or sn.store is None:
            return
        node = sn.node
        node.driver.transport.alive = False  # type: ignore[attr-defined]
        sn.durable = sn.store.power_off(self.rng if lose_unsynced else None)
        sn.node = None
        self.net.nodes.pop(sn.id, None)
        self.net.inboxes.pop(sn.id, None)
        node.mempool.fail_all(CempError(Code.UNAVAILABLE, f"node {sn.id} went down"))
        if sn.task is not None and sn.task is not asyncio.current_task():
            sn.task.cancel()

    def restart(self, sn: SimNode) -> None:
        if sn.node is None and not sn.removed:
            self.boot(sn)

    # ---- nemesis -----------------------------------------------------------------------------------------

    def apply(self, ev: Event) -> None:
        self.log(str(ev))
        a = ev.args
        ids = sorted(self.nodes)
        match ev.action:
            case "partition":
                r = random.Random(a[0])
                self.net.groups = {n: r.randrange(2) for n in ids}
            case "isolate-leader":
                lead = self.leader()
                if lead is not None:
                    self.net.groups = {n: int(n == lead.id) for n in ids}
            case "cut":
                r = random.Random(a[0])
                x, y = r.sample(ids, 2)
                self.net.cuts.add((x, y))
            case "heal":
                self.net.heal()
            case "net":
                self.net.cfg = NetConfig(drop=a[0], dup=a[1], max_delay=a[2])
            case "kill" | "power-off":
                sn = self.pick(a[0], a[1])
                if sn is not None and len(self.live()) > 1:
                    self.stats[ev.action] += 1
                    self.stop(sn, lose_unsynced=ev.action == "power-off")
            case "fail-sync":
                sn = self.pick(a[0], a[1])
                if sn is not None and sn.store is not None:
                    sn.store.fail_in = random.Random(a[1]).randrange(4)
            case "restart":
                down = [n for n in self.nodes.values() if n.node is None and not n.removed]
                if down:
                    self.restart(random.Random(a[0]).choice(down))
            case "add-node":
                self.loop.create_task(self._add_node())
            case "remove-node":
                self.loop.create_task(self._remove_node(a[0]))
            case "rotate-key":
                self.loop.create_task(self._rotate_key(a[0]))
            case _:
                raise ValueError(ev.action)

    async def _nemesis(self) -> None:
        for ev in self.sc.schedule:
            await asyncio.sleep(max(0.0, ev.at - self.loop.time()))
            self.apply(ev)
        await asyncio.sleep(max(0.0, self.sc.chaos_s - self.loop.time()))
        self.log("heal: network repaired, every node restarted")
        self.net.heal()
        for sn in self.nodes.values():
            if sn.store is not None:
                sn.store.fail_in = -1
            self.restart(sn)

    # ---- clients -----------------------------------------------------------------------------------------

    def admin_tx(self, org: str, kind: str, payload: object) -> bytes:
        self.admin_nonce[org] += 1
        raw, h = sign_tx(self.admins[org], ChainRef.of(self.genesis), kind, self.admin_nonce[org], payload)
        self.submitted.add(h)
        return raw

    async def submit(self, raw: bytes, rng: random.Random, who: str, may_fail: tuple[str, ...] = ()) -> int:
        """Submit until some node acknowledges the commit with an OK result (as a client with failover would);
        returns the height it was acknowledged at. ``may_fail``: a refusal whose reason holds it returns -1 if it
        was committed invalid (its nonce used), -2 if admission refused it (its nonce free)."""
        h = sha256(raw)
        self.submitted.add(h)
        while True:
            live = self.live()
            if self.sc.rotate and len(live) > 1:
                live = [n for n in live if n.id != self.last_acker.get(who)]
            if not live:
                await asyncio.sleep(0.05)
                continue
            sn = rng.choice(live)
            node = sn.node
            assert node is not None
            try:
                _, known = await node.api.admit_one(raw)
            except CempError as e:
                if any(m in e.message for m in may_fail):
                    self.stats[f"refused as allowed: {e.message[:40]}"] += 1
                    return -2
                self.stats[f"refused {e.code.name.lower()}"] += 1
                await asyncio.sleep(rng.uniform(0.02, 0.1))
                continue
            loc = node.ledger.tx_location(h)
            if loc is None:
                fut = node.mempool.wait(h)
                try:
                    loc = await asyncio.wait_for(fut, rng.uniform(0.3, 1.0))
                except (TimeoutError, CempError):
                    loc = node.ledger.tx_location(h) if sn.node is node else None
            if loc is not None and known is not None and known.get("status") == "committed":
                self.stats["idempotent resubmission"] += 1
            if loc is None:
                continue
            if loc.code != 0 and any(m in loc.reason for m in may_fail):
                self.stats[f"refused as allowed: {loc.reason[:40]}"] += 1
                return -1
            if loc.code != 0:
                self.fail(f"{who}: tx {h.hex()[:16]} committed with error {loc.code} {loc.reason}")
            self.log(f"{who} acked {h.hex()[:12]} by {sn.id} at h={loc.height}")
            self.last_acker[who] = sn.id
            return int(loc.height)

    async def _admin_setup(self) -> None:
        rng = random.Random(self.sc.seed * 7 + 3)
        for d in self.devices:
            reg = DeviceRegistration(
                Handle(d.handle), PublicKey(d.key.public), ShortStr("meter.energy"), ShortStr("core")
            )
            await self.submit(self.admin_tx("owner", "device.register", reg), rng, "admin")
        self.registered.set()

    async def _client(self, i: int) -> None:
        d = self.devices[i]
        rng = random.Random(self.sc.seed * 7 + 10 + i)
        await self.registered.wait()
        value = 1000
        while self.loop.time() < self.sc.chaos_s:
            n = rng.randrange(1, 4)
            rs = []
            for _ in range(n):
                d.seq += 1
                value += rng.randrange(0, 50)
                ts = self.clock.wall_ms() - 5
                rs.append(
                    Reading(
                        Nonce(d.seq),
                        TimestampMs(ts),
                        ShortStr("energy_wh"),
                        SignedInt(value),
                        ShortStr("Wh"),
                        0,
                    )
                )
            d.nonce += 1
            raw, h = sign_tx(
                d.key,
                ChainRef.of(self.genesis),
                "readings",
                d.nonce,
                ReadingBatch(Handle(d.handle), tuple(rs)),
            )
            height = await self.submit(raw, rng, d.handle)
            self.acked[h] = (d.handle, height)
            self.acked_readings[d.handle] += n
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        self.clients_done += 1

    # ---- membership ----------------------------------------------------------------------------------------

    def _membership_tx(self, op: str, nid: str, org: str, pub: bytes) -> bytes:
        ch = MembershipChange(
            ShortStr(self.genesis.chain_id),
            ShortStr(op),
            ShortStr(nid),
            ShortStr(org),
            PublicKey(pub),
            ShortStr(f"{nid}:1"),
        )
        approvals = tuple(
            Approval(ShortStr(o), self.admins[o].sign(DOMAIN_MEMBERSHIP, approval_message(ch)))
            for o in ("owner", "equipment")
        )
        return self.admin_tx("equipment", "membership", MembershipTx(ch, approvals))

    async def _add_node(self) -> None:
        nid = "owner-9"
        sn = SimNode(nid, key_for(self.sc.seed, f"node/{nid}"))
        await self.submit(
            self._membership_tx("add", nid, "owner", sn.key.public), random.Random(self.sc.seed + 5), "admin"
        )
        self.nodes[nid] = sn
        self.added = nid
        self.stats["node added"] += 1
        self.boot(sn)

    async def _rotate_key(self, salt: int) -> None:
        """Rotate a member's node key by its org admin's tx, effective some blocks on; if the chain outruns the
        effective height before the tx commits (refused as too soon), try again with a later one."""
        r = random.Random(salt)
        ids = sorted(n for n, sn in self.nodes.items() if not sn.removed and n != self.added)
        nid = r.choice(ids)
        sn = self.nodes[nid]
        new = key_for(self.sc.seed, f"node/{nid}/rotated")
        sn.more_keys.append(new)
        nonce = 1  # signed by the node's own (current) key: one rotation per node and run
        while True:
            at = max(self.chain, default=0) + r.randrange(3, 10)
            pos = new.sign(
                DOMAIN_KEY_POSSESSION, claim_message(genesis_hash(self.genesis), nid, new.public, at)
            )
            payload = NodeKeyRotation(ShortStr(nid), PublicKey(new.public), Height(at), pos)
            raw, _ = sign_tx(sn.key, ChainRef.of(self.genesis), "node.key_rotate", nonce, payload)
            # too soon (the chain outran it: try later) or the node's removal committed first (give up)
            height = await self.submit(
                raw, r, f"rotator-{nid}", may_fail=("effective height", "is not a member")
            )
            if height > 0:
                break
            nonce += height == -1
            if self.nodes[nid].removed or nid not in self.live_ids():
                return
            # Refused at admission, the answer took no virtual time: without a pause this loop would ask again
            # and again at the same instant, and the clock would never move on (seed 3144 spun for ever).
            await asyncio.sleep(0.05)
        self.rotations[nid] = (at, new.public)
        self.stats["key rotated"] += 1

    async def _remove_node(self, salt: int) -> None:
        ids = sorted(n for n in self.nodes if n != self.added)
        nid = random.Random(salt).choice(ids)
        sn = self.nodes[nid]
        await self.submit(
            self._membership_tx("remove", nid, nid.split("-")[0], sn.key.public), random.Random(salt), "admin"
        )
        self.stats["node removed"] += 1
        sn.removed = True
        self.stop(sn, lose_unsynced=False)

    # ---- the run -------------------------------------------------------------------------------------------

    async def main(self) -> None:
        self.registered = asyncio.Event()
        for sn in list(self.nodes.values()):
            self.boot(sn)
        tasks = [self.loop.create_task(self._nemesis()), self.loop.create_task(self._admin_setup())]
        tasks += [self.loop.create_task(self._client(i)) for i in range(self.sc.devices)]
        deadline = self.sc.chaos_s + 30.0
        try:
            while True:
                await asyncio.sleep(0.05)
                if self.failure is not None:
                    raise self.failure
                if self.loop.time() > deadline:
                    self.fail(
                        "liveness: the cluster did not converge within 30 s (virtual) of healing\n"
                        + "\n".join(self.describe_nodes())
                    )
                if (
                    self.loop.time() > self.sc.chaos_s
                    and self.clients_done == self.sc.devices
                    and self._converged()
                ):
                    break
            self.final_checks()
        finally:
            for sn in self.nodes.values():
                if sn.task is not None:
                    sn.task.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(
                *tasks, *(sn.task for sn in self.nodes.values() if sn.task), return_exceptions=True
            )

    def describe_nodes(self) -> list[str]:
        out = []
        for sn in self.nodes.values():
            if sn.node is None:
                out.append(f"  {sn.id}: down{' (removed)' if sn.removed else ''}")
                continue
            d = sn.node.driver
            st = d.raft.status()
            out.append(
                f"  {sn.id}: height {sn.node.ledger.height} head {sn.node.ledger.last_hash.hex()[:12]} "
                f"role {st.role.value} term {st.term} leader {st.leader} commit {st.commit} applied {st.applied} "
                f"app_applied {d.app_applied} last {st.last_index} first {st.first_index} "
                f"voters {list(st.membership.voters)} learners {list(st.membership.learners)} "
                f"active {sorted(sn.node.ledger.active)} mempool {len(sn.node.mempool)}+{len(sn.node.mempool.inflight)} "
                f"skipped {d.skipped_blocks} staged {d.staged is not None} prepared {d.prepared is not None}"
            )
        return out

    def _converged(self) -> bool:
        live = [sn.node for sn in self.live() if not sn.removed]
        if not live or any(n is None for n in live):
            return False
        heads = {(n.ledger.height, n.ledger.last_hash, n.ledger.app_hash) for n in live if n is not None}
        return len(heads) == 1 and all(
            len(n.mempool) == 0 and not n.mempool.inflight for n in live if n is not None
        )

    def final_checks(self) -> None:
        live = [sn for sn in self.live() if not sn.removed]
        expected = sorted(n for n, sn in self.nodes.items() if not sn.removed)
        if sorted(sn.id for sn in live) != expected:
            self.fail(f"live nodes {sorted(sn.id for sn in live)} after healing; expected {expected}")
        for sn in live:
            assert sn.node is not None and sn.store is not None
            led = sn.node.ledger
            raw_base = led.store.get(schema.META_STATE_BASE)
            base = int.from_bytes(raw_base, "big") if raw_base else 0
            ok: Counter[bytes] = Counter()
            for h in range(base + 1, led.height + 1):
                block = led.block(h)
                if block is None:
                    self.fail(f"{sn.id} has no block {h} (head {led.height}, state base {base})")
                assert block is not None
                results = led.results(h)
                for raw, r in zip(block.txs, results, strict=True):
                    th = sha256(raw)
                    if th not in self.submitted:
                        self.fail(f"{sn.id}: block {h} holds tx {th.hex()[:16]} that nobody submitted")
                    if r.code == 0:
                        ok[th] += 1
            for th, (handle, height) in self.acked.items():
                if height <= base:
                    continue  # below a state snapshot: the device records below vouch for it
                if ok[th] != 1:
                    self.fail(
                        f"{sn.id}: acknowledged tx {th.hex()[:16]} of {handle} is on chain {ok[th]} times"
                    )
            view = StateView(led.store)
            for d in self.devices:
                rec = load_device(view, d.handle)
                want = self.acked_readings[d.handle]
                got = rec.readings if rec is not None else 0
                if got != want:
                    self.fail(f"{sn.id}: device {d.handle} holds {got} readings; {want} were acknowledged")
            for nid, (at, pub) in self.rotations.items():  # every node switches at the same height
                if led.node_key(nid, at) != pub or led.node_key(nid, at - 1) == pub:
                    self.fail(f"{sn.id} does not switch {nid}'s key to {pub.hex()[:16]} at height {at}")
                if led.height >= at:
                    self.stats["blocks after a rotation"] += 1
        self.stats["height"] = max(sn.node.ledger.height for sn in live if sn.node is not None)
        self.stats["acked"] = len(self.acked)


_REAL_VERIFY = crypto.verify


class _MemoVerify:
    """Ed25519 verification with its answers remembered for one run: every node checks the same block, vote
    and tx signatures, and the answer for given bytes never changes, so the simulator checks each once."""

    def __init__(self) -> None:
        self.seen: dict[bytes, bool] = {}

    def __call__(self, pubkey: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
        k = hashlib.sha256(
            b"%d|%d|" % (len(pubkey), len(domain)) + pubkey + domain + signature + message
        ).digest()
        got = self.seen.get(k)
        if got is None:
            got = self.seen[k] = _REAL_VERIFY(pubkey, domain, message, signature)
        return got


def _patch_verify(memo: _MemoVerify | None) -> None:
    """Point every core module that imported ``node.crypto.verify`` at ``memo`` (None: back to the real one)."""
    import sys

    for name, mod in list(sys.modules.items()):
        if not name.startswith(("node.", "resolver.", "cemp.")) or name == "node.crypto":
            continue
        cur = getattr(mod, "verify", None)
        if cur is _REAL_VERIFY or isinstance(cur, _MemoVerify):
            mod.verify = memo if memo is not None else _REAL_VERIFY  # type: ignore[attr-defined]


def run_seed(seed: int, scale: float | None = None) -> World:
    """Run one seed (``CEMP_SIM_SCALE`` stretches the chaos phase); raises ``SimFailure`` on any violation."""
    if scale is None:
        scale = float(os.environ.get("CEMP_SIM_SCALE", "1"))
    return run_scenario(make_scenario(seed, scale))


def run_scenario(sc: Scenario) -> World:
    logging.getLogger("node").setLevel(logging.CRITICAL)
    w = World(sc)
    asyncio.set_event_loop(w.loop)
    _patch_verify(_MemoVerify())
    try:
        w.loop.run_until_complete(w.main())
    except SimFailure:
        raise
    except Exception as e:
        try:
            w.fail(f"{type(e).__name__}: {e}")
        except SimFailure:
            raise w.failure from e  # type: ignore[misc]
    finally:
        _patch_verify(None)
        asyncio.set_event_loop(None)
        w.loop.close()
    return w


def replay(seed: int) -> World:
    """Re-run one seed exactly."""
    return run_seed(seed)
