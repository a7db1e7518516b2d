"""The consensus driver: the one loop that steps Raft, persists, sends, applies blocks and cuts new ones.

Order inside one turn of the loop (etcd's Ready contract, see ``consensus.raft.Ready``):
1. feed ticks, received peer messages and forwarded txs into the state machine and the mempool;
2. on the leader, maybe cut a block: execute it on the applied head, sign it, ``propose`` it;
3. take ``ready()``: persist snapshot/entries/hard state in one synced batch BEFORE sending anything
   (a vote or an append ack promises durable state), then send messages, then apply committed blocks
   in log order through the ledger's one apply path, then ``advance()``.
The loop sleeps until something happens (a message, a forwarded tx, an applied block, a finished block execution)
or the next tick or block-cut deadline; nothing polls.

Blocks are Raft entries. The leader cuts block H+1 only when every entry in its log is applied and a majority
of nodes has signed block H (those votes go into H+1's header), so a block's parent is always the applied head.
A committed entry whose block does not extend the applied head (a stale leader's proposal) or does not check
out (header, proposer signature, commit votes, roots) is skipped by every node alike; its txs go back to the
mempools. Followers check a block's proposer signature before they store and acknowledge it.

Everything outside the process comes through seams (``node.seams``): the clock, the peer transport, the rng that
randomises election timeouts, where blocking work runs, and the ``BlockFetcher`` that catch-up (``node.catchup``)
and the refetch of damaged blocks use to get blocks from the peers. A one-node consortium is a one-voter Raft
cluster run by this same driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from consensus.messages import (
    AppendEntries,
    ConfigChange,
    ConfigChangeOp,
    Entry,
    EntryKind,
    Index,
    Membership,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
    genesis_snapshot,
)
from consensus.raft import InvalidConfigChange, NotLeader, ProposalDropped, Raft, RaftConfig, Ready, Role
from node import codec, merkle, schema
from node.catchup import BlockFetcher, CatchUp, FetchError, HttpFetcher
from node.chain import ChainError, DecodedTx, Ledger, StagedBlock, header_hash, quorum
from node.crypto import KeyPair, verify
from node.errors import CempError
from node.mempool import Mempool
from node.peer import RAFT_TYPES, CommitVote, ForwardTxs, RequestSigner
from node.raftstore import RAFT_APPLIED, RaftStore, SnapshotRef
from node.seams import Clock, Offload, PeerTransport, SystemClock, TransportFactory
from node.tasks import cancel_and_wait
from node.transport import Transport
from node.types import DOMAIN_BLOCK, DOMAIN_VOTE, Blob, Block, CommitSig, Hash32, Height, PublicKey

log = logging.getLogger(__name__)

COMPACT_EVERY = 5_000
PEER_KEY_GRACE = 16
"""Blocks after a node's key rotation during which its peers still accept its old key on peer messages (a peer
that has not applied the switch yet signs with the old one); blocks and votes switch exactly at the height."""
"""Default: keep this many applied entries in the Raft log; compact once twice as many pile up."""


@dataclass(slots=True)
class _Prepared:
    """A block executed on top of ``parent`` whose header still waits for the parent's commit votes."""

    parent: Hash32
    staged: StagedBlock
    batch: list[DecodedTx]


@dataclass(slots=True)
class _Staged:
    index: int
    block_hash: Hash32
    staged: StagedBlock
    block: Block
    batch: list[DecodedTx]


class ConsensusDriver:
    def __init__(
        self,
        node_id: str,
        key: KeyPair,
        ledger: Ledger,
        mempool: Mempool,
        addresses: dict[str, str],
        *,
        api_addresses: dict[str, str] | None = None,
        seed: int | None = None,
        compact_every: int = COMPACT_EVERY,
        catchup: str = "blocks",
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: TransportFactory | None = None,
        fetcher: BlockFetcher | None = None,
        offload: Offload = asyncio.to_thread,
        preverify: Executor | None = None,
        tls: ssl.SSLContext | None = None,
        halt_height: int | None = None,
        key_loader: Callable[[bytes], KeyPair | None] | None = None,
    ) -> None:
        """The seams default to a real process's: the system clock, the aiohttp peer transport to ``addresses``,
        HTTP block fetching from ``api_addresses``, worker threads, and an rng seeded from ``seed`` (or the key
        and the time). ``halt_height``: apply blocks up to it and no further, cut none after it, then call
        ``on_halt`` (a coordinated upgrade's stop). ``key_loader``: finds this node's private key for a public
        key a rotation names (``node.keyrotation``; the node looks beside its key file)."""
        g = ledger.genesis
        self.clock: Clock = clock or SystemClock()
        self.offload = offload
        self.compact_every = compact_every
        self.applied_blocks: deque[tuple[int, int, Hash32]] = deque(maxlen=4 * compact_every + 16)
        """(raft index, height, block hash) of recently applied block entries, to name compaction points."""
        self.node_id = node_id
        self.key = key
        self.keys: dict[bytes, KeyPair] = {bytes(key.public): key}
        """This node's private keys by public key: the one it started with and any a rotation switched to."""
        self.key_loader = key_loader
        self._missing_key_logged: set[bytes] = set()
        self.ledger = ledger
        self.mempool = mempool
        self.params = g.params
        self.wall_ms = self.clock.wall_ms
        self.address_overrides = dict(addresses)
        self.members: dict[str, PublicKey] = self._members()
        self.api_overrides = dict(api_addresses or {})
        self.api_addresses: dict[str, str] = {}
        """Where catch-up fetches blocks: each current member's on-chain address (or its ``api_addresses``
        override). Kept current by ``_sync_members`` and updated in place: the HTTP fetcher holds this dict."""
        self._sync_api_addresses()
        self.raftstore = RaftStore(ledger.store, ledger.watermark)
        stored = self.raftstore.snapshot()
        snap = (
            stored
            if stored is not None
            else genesis_snapshot(Membership.of(NodeId(n.node_id) for n in g.nodes))
        )
        hs = self.raftstore.hard_state()
        raw_applied = ledger.store.get(RAFT_APPLIED)
        applied = int.from_bytes(raw_applied, "big") if raw_applied else snap.meta.index
        if hs is not None:
            applied = min(applied, max(hs.commit, snap.meta.index))
        if (
            stored is not None
            and stored.data
            and ledger.height < codec.decode(SnapshotRef, stored.data).height
        ):
            # The node stopped while catching up to this snapshot (it was persisted before the restore, and
            # catch-up writes no applied index until it is done). Counting it as applied would leave the ledger
            # below it for good, every later block refused as the wrong height (simulator seed 1127): mark it
            # not applied, so Raft hands it out again and catch-up resumes from the ledger's head.
            applied = min(applied, snap.meta.index - 1)
        self.raft = Raft(
            RaftConfig(
                NodeId(node_id),
                max_entries_per_msg=2,  # entries are blocks of up to MAX_BLOCK_BYTES each
                election_ticks=self.params.election_ticks,
                heartbeat_ticks=self.params.heartbeat_ticks,
            ),
            rng
            or random.Random(
                seed if seed is not None else int.from_bytes(key.public[:8], "big") ^ time.time_ns()
            ),
            snapshot=snap,
            hard_state=hs,
            entries=self.raftstore.entries(snap.meta.index + 1),
            applied=Index(applied),
        )
        make_transport: TransportFactory = transport or (
            lambda deliver, members: Transport(
                g.chain_id, node_id, key, members, addresses, deliver, ledger.genesis_hash, tls=tls
            )
        )
        self.transport: PeerTransport = make_transport(self._deliver, self.members)
        self.request_signer = RequestSigner(key, ledger.genesis_hash, node_id)
        """Signs this node's requests on peer routes (state sync); its key follows rotations (``_sync_keys``)."""
        self.peer_accept: dict[str, tuple[bytes, ...]] = {}
        """Each peer's keys accepted during a key rotation (also by the state-sync server)."""
        self.fetcher: BlockFetcher = fetcher or HttpFetcher(
            node_id, self.api_addresses, self.request_signer, addresses, tls=tls
        )
        self.catchup = CatchUp(
            node_id,
            ledger,
            self.fetcher,
            self.clock,
            offload,
            mode=catchup,
            on_block=self._caught_up_block,
            halt_height=halt_height,
        )
        self.inbox: list[tuple[str, list[Any]]] = []
        self.forward_buf: list[bytes] = []
        self.wake = asyncio.Event()
        self.staged: _Staged | None = None
        self.prepared: _Prepared | None = None
        self.preparing: asyncio.Task[_Prepared] | None = None
        self.apply_q: deque[Entry] = deque()
        self.apply_wake = asyncio.Event()
        self.apply_idle = asyncio.Event()
        """Set whenever ``apply_q`` is empty and no entry is being applied."""
        self.apply_idle.set()
        self.applied_event = asyncio.Event()
        """Set (and replaced) each time an entry is applied: ``next_apply`` waits on it."""
        self.ledger_lock = asyncio.Lock()
        """Held while a block is applied, by the apply task or by catch-up: one writer of the ledger at a time."""
        self.fetch_ahead: asyncio.Task[None] | None = None
        self._unknown_seen = 0
        self.app_applied = int(applied)
        """Raft index the application (ledger) has applied; it trails Raft's own mark while blocks apply."""
        self.cut_at: float | None = None
        self.votes: dict[tuple[int, bytes], dict[str, CommitSig]] = {}
        self.last_cut = 0.0
        self.leader: str | None = None
        self.dropped_entries = 0
        self.skipped_blocks = 0
        self.on_block: Callable[[Block], None] | None = None
        self.halt_height = halt_height
        self.halted_at: int | None = None
        self.on_halt: Callable[[int], None] | None = None
        """Called once when the ledger reaches ``halt_height`` (the node then stops accepting txs and exits)."""
        self.repaired: dict[Hash32, bytes] = {}
        """Good copies of blocks that arrived damaged, fetched from the peers, by header hash."""
        self.fetching: set[Hash32] = set()
        self.fetch_tasks: set[asyncio.Task[None]] = set()
        self.refetched_blocks = 0
        self.verifier: Executor = preverify or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="preverify"
        )

    # --- membership ------------------------------------------------------------------------------
    def _members(self) -> dict[str, PublicKey]:
        led = self.ledger
        nxt = led.height + 1
        return {
            n: PublicKey(pk)
            for n in sorted(led.active | {self.node_id})
            if (pk := led.node_key(n, nxt)) is not None
        } | {self.node_id: self.key.public}

    def key_for(self, height: int) -> KeyPair | None:
        """This node's private key for block ``height`` (its proposal, its vote on it); None (logged once) if the
        chain names a key this node does not hold."""
        pk = self.ledger.node_key(self.node_id, height)
        if pk is None:
            return self.key
        kp = self.keys.get(bytes(pk))
        if kp is None and self.key_loader is not None:
            kp = self.key_loader(bytes(pk))
            if kp is not None and kp.public == pk:
                self.keys[bytes(pk)] = kp
        if kp is None and bytes(pk) not in self._missing_key_logged:
            self._missing_key_logged.add(bytes(pk))
            log.error(
                "%s: the chain names key %s… for this node from height %d, and this node does not hold it: put "
                "its key file beside the node key (<key_file>.next); until then this node cannot sign",
                self.node_id,
                bytes(pk).hex()[:16],
                height,
            )
        return kp

    def _sync_keys(self) -> None:
        """After each applied block: sign peer messages with the key of the next block, and accept from each peer
        its keys that are current, announced, or retired within ``PEER_KEY_GRACE`` blocks."""
        led = self.ledger
        kp = self.key_for(led.height + 1)
        if kp is not None and kp is not self.key:
            if kp.public != self.key.public:
                log.info(
                    "%s: signing with the rotated node key %s… from height %d",
                    self.node_id,
                    kp.public.hex()[:16],
                    led.height + 1,
                )
            self.key = kp
        accept: dict[str, tuple[bytes, ...]] = {}
        floor = led.height + 1 - PEER_KEY_GRACE
        for n in led.active:
            epochs = led.key_epochs.get(n, ())
            if not epochs:
                continue
            keys = led.node_keys(n)
            ends = [int(e.since) for e in epochs] + [1 << 62]
            accept[n] = tuple(k for k, end in zip(keys, ends, strict=True) if end > floor)
        self.request_signer.key = self.key
        self.peer_accept = accept
        self.transport.set_keys(self.key, accept)
        self._sync_members()

    def _sync_members(self) -> None:
        members = self._members()
        if members == self.members:
            return
        self.members = members
        addresses = {k: str(v.address) for k, v in self.ledger.nodes.items()}
        addresses.update(self.address_overrides)
        self.transport.set_peers(members, addresses)
        self._sync_api_addresses()
        log.info("%s: consortium members now %s", self.node_id, sorted(self.ledger.active))

    def _sync_api_addresses(self) -> None:
        """Catch-up asks the current members, a node added by a membership change too (a node that only knew
        the genesis members would never ask it, and could not catch up once the genesis nodes were gone)."""
        nodes = self.ledger.nodes
        want = {
            n: self.api_overrides.get(n) or str(nodes[n].address)
            for n in sorted(self.members)
            if n in nodes or n in self.api_overrides
        }
        if want != self.api_addresses:
            self.api_addresses.clear()
            self.api_addresses.update(want)

    def _reconcile_raft_membership(self) -> None:
        """Leader: move Raft's membership one step towards the on-chain registry.

        An added node first joins as a learner and is promoted once its log is within a few entries of the
        leader's; a removed node leaves. One change at a time (Raft refuses overlapping changes).
        """
        st = self.raft.status()
        want = self.ledger.active
        have_voters, have_learners = set(st.membership.voters), set(st.membership.learners)
        change: ConfigChange | None = None
        for n in sorted(want - have_voters - have_learners):
            change = ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId(n))
            break
        if change is None:
            progress = {p.node: p for p in st.progress}
            for n in sorted(have_learners & want):
                p = progress.get(NodeId(n))
                if p is not None and p.match + 5 >= st.last_index:
                    change = ConfigChange(ConfigChangeOp.PROMOTE_LEARNER, NodeId(n))
                    break
        if change is None:
            for n in sorted((have_voters | have_learners) - want):
                change = ConfigChange(ConfigChangeOp.REMOVE_NODE, NodeId(n))
                break
        if change is None:
            return
        try:
            self.raft.propose_config(change)
            log.info("%s: proposed %s %s", self.node_id, change.op.name, change.node)
        except (ProposalDropped, NotLeader, InvalidConfigChange):
            pass  # another change is in flight, or not yet allowed: try again next turn

    # --- inputs ----------------------------------------------------------------------------------
    def _deliver(self, sender: str, msgs: list[Any]) -> None:
        self.inbox.append((sender, msgs))
        self.wake.set()

    def forward(self, txs: list[DecodedTx]) -> None:
        """Called by the API after admitting txs: a follower passes them on to the leader."""
        if self.raft.role != Role.LEADER:
            self.forward_buf.extend(d.raw for d in txs)
        self.wake.set()

    def status(self) -> dict[str, Any]:
        st = self.raft.status()
        return {
            "term": st.term,
            "leader": st.leader,
            "role": st.role.value if hasattr(st.role, "value") else str(st.role),
            "raft_commit": st.commit,
            "raft_applied": st.applied,
            "raft_last_index": st.last_index,
            "members": list(st.membership.voters),
            "learners": list(st.membership.learners),
            "peers_reachable": self.transport.reachable,
            "peer_drops": dict(self.transport.dropped),
            "skipped_blocks": self.skipped_blocks,
            "refetched_blocks": self.refetched_blocks,
            "snapshots_restored": self.snapshots_restored,
            "halt_height": self.halt_height,
            "halted": self.halted_at is not None,
        }

    @property
    def snapshots_restored(self) -> int:
        return self.catchup.restored

    # --- the loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.transport.start()
        await self.fetcher.start()
        applier = asyncio.create_task(self._apply_loop(), name="apply")
        clock = self.clock
        tick = self.params.tick_ms / 1000
        next_tick = clock.monotonic() + tick
        ticks = 0
        self._sync_keys()  # a restart past a rotation signs with the rotated key
        if self.ledger.height:
            self._vote_for_head()  # votes live in memory: after a restart, sign the head again
        if self._halt_reached():
            self._halt()
        if self.raft.status().membership.voters == (NodeId(self.node_id),) and self.raft.role != Role.LEADER:
            self.raft.campaign()  # the only voter: no one to wait for
        try:
            while True:
                if self.cut_at is not None and self.cut_at <= clock.monotonic():
                    # A cut came due while the leader could not cut (a config change or a block still to apply,
                    # an execution in flight). Waiting for that deadline again would be no wait at all: the loop
                    # would spin without ever yielding to the tasks that clear the way (found by the whole-node
                    # simulator: a membership change with txs pending hung the leader). The event that clears the
                    # way wakes the loop, and the cut is decided afresh.
                    self.cut_at = None
                deadline = next_tick if self.cut_at is None else min(next_tick, self.cut_at)
                timeout = deadline - clock.monotonic()
                if timeout > 0 and not self.inbox:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that arrives as
                    # the event is set, and this loop would then run on past its node's shutdown (a test's
                    # teardown awaited it forever).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self.wake.wait()
                self.wake.clear()
                now = clock.monotonic()
                if now >= next_tick:
                    self.raft.tick()
                    ticks += 1
                    next_tick = max(next_tick + tick, now)
                    if ticks % 20 == 0:
                        self._resend_head_vote()
                    self._maybe_fetch_ahead()
                self._drain_inbox()
                self._flush_forwards()
                if self.raft.role == Role.LEADER:
                    self._reconcile_raft_membership()
                await self._maybe_cut()
                while self.raft.has_ready():
                    rd = self.raft.ready()
                    assert rd is not None
                    await self._handle_ready(rd)
        finally:
            subtasks = [
                t for t in (applier, self.preparing, self.fetch_ahead, *self.fetch_tasks) if t is not None
            ]
            with contextlib.suppress(asyncio.CancelledError):  # a second cancel still lets the transport stop
                await cancel_and_wait(subtasks, 5.0)
            self.verifier.shutdown(wait=False, cancel_futures=True)
            await self.transport.stop()
            await self.fetcher.close()

    def _drain_inbox(self) -> None:
        inbox, self.inbox = self.inbox, []
        for sender, msgs in inbox:
            for m in msgs:
                if isinstance(m, RAFT_TYPES):
                    if isinstance(m, AppendEntries):
                        checked = self._entries_check_out(m, sender)
                        if checked is None:
                            self.dropped_entries += 1
                            continue
                        m = checked
                    self.raft.step(m)
                elif isinstance(m, CommitVote):
                    self._on_vote(m)
                elif isinstance(m, ForwardTxs):
                    self._on_forwarded(sender, m)

    def _preverify(self, block: Block) -> None:
        """Worker thread: check the signatures of a replicated block's txs while its commit round trip runs,
        so applying it later finds them verified (``Ledger.verified``). A bad tx is left for the apply path."""
        led = self.ledger
        for raw in block.txs:
            try:
                d = led.decode_tx(raw)
                led.check_signature(d)
                led.mark_verified(d.hash)
            except CempError:
                continue

    def _entries_check_out(self, m: AppendEntries, sender: str) -> AppendEntries | None:
        """A follower refuses (does not store or ack) a block whose proposer signature, body or chain is wrong.

        A block whose header and signature check out but whose txs do not hash to its tx root was damaged on the
        way (the leader's memory or disk): the follower fetches that block by its hash from the peers' block
        stores and, once it has a good copy, takes the entry with the good copy the next time the leader sends it
        (the leader resends what is not acknowledged). It never acknowledges a damaged copy.
        """
        blocks = []
        entries = list(m.entries)
        repaired = False
        for i, e in enumerate(entries):
            if e.kind != EntryKind.NORMAL:
                continue
            try:
                b = codec.decode(Block, e.data)
            except CempError:
                log.warning(
                    "%s: entry %d from %s does not decode; not acknowledged", self.node_id, e.index, sender
                )
                return None
            pk = self.ledger.node_key(b.header.proposer, b.header.height)
            if (
                pk is None
                or b.header.chain_id != self.ledger.genesis.chain_id
                or b.header.term != int(e.term)
            ):
                return None
            # With unapplied blocks before it, one of them may rotate the proposer's key (``node.keyrotation``: the
            # new key counts from at least two blocks later), which this node cannot know yet: such a block is
            # taken and checked on apply, with the key history of its height. The next block to apply has nothing
            # unapplied before it, and must verify now.
            if b.header.height <= self.ledger.height + 1 and not verify(
                pk, DOMAIN_BLOCK, codec.encode(b.header), b.signature
            ):
                return None
            if merkle.root(b.txs) != b.header.tx_root:
                h = header_hash(b.header)
                good = self.repaired.get(h)
                if good is None:
                    self._want_block(h, int(b.header.height), sender)
                    return None
                b = codec.decode(Block, good)
                entries[i] = replace(e, data=good)
                repaired = True
                log.info(
                    "%s: entry %d: took block %d fetched from a peer", self.node_id, e.index, b.header.height
                )
            blocks.append(b)
        # Parent hashes: blocks in one message must chain, and the first must extend our applied head when it
        # is the next height (a parent still unapplied in our log is checked on apply instead).
        led = self.ledger
        for prev, b in itertools.pairwise(blocks):
            if b.header.height != prev.header.height + 1 or b.header.prev_hash != header_hash(prev.header):
                return None
        if (
            blocks
            and blocks[0].header.height == led.height + 1
            and blocks[0].header.prev_hash != led.last_hash
        ):
            return None
        for b in blocks:
            if b.txs and b.header.height > self.ledger.height:
                self.verifier.submit(self._preverify, b)
        return replace(m, entries=tuple(entries)) if repaired else m

    def _want_block(self, block_hash: Hash32, height: int, sender: str) -> None:
        """Start fetching a block whose replicated copy was damaged (once per block at a time)."""
        if block_hash in self.fetching:
            return
        log.warning(
            "%s: block %d from %s does not match its tx root (damaged copy); fetching it from the peers",
            self.node_id,
            height,
            sender,
        )
        self.fetching.add(block_hash)
        task = asyncio.create_task(self._fetch_block(block_hash, sender), name=f"refetch-{height}")
        self.fetch_tasks.add(task)
        task.add_done_callback(self.fetch_tasks.discard)

    async def _fetch_block(self, block_hash: Hash32, sender: str) -> None:
        """Ask each peer's block store for ``block_hash`` (the sender of the damaged copy last) until one serves
        a copy whose txs hash to its signed header's tx root. Bounded: a few rounds, then the leader's next
        resend starts over."""
        peers = sorted(self.fetcher.peers(), key=lambda p: p == sender)
        try:
            for attempt in range(20):
                for peer in peers:
                    try:
                        raw = await self.fetcher.block_raw(peer, block_hash)
                        if raw is None:
                            continue
                        b = codec.decode(Block, raw)
                    except (FetchError, CempError) as err:
                        log.info("%s: refetch from %s failed: %s", self.node_id, peer, err)
                        continue
                    if header_hash(b.header) != block_hash or merkle.root(b.txs) != b.header.tx_root:
                        continue
                    if len(self.repaired) >= 16:
                        self.repaired.pop(next(iter(self.repaired)))
                    self.repaired[block_hash] = raw
                    self.refetched_blocks += 1
                    log.info(
                        "%s: fetched a good copy of block %d from %s", self.node_id, b.header.height, peer
                    )
                    return
                await self.clock.sleep(min(0.1 * (attempt + 1), 1.0))  # the peers may not have applied it yet
        finally:
            self.fetching.discard(block_hash)

    def _on_forwarded(self, sender: str, m: ForwardTxs) -> None:
        now = self.wall_ms()
        for raw in m.txs:
            try:
                d = self.ledger.decode_tx(raw)
                if self.mempool.contains(d.hash) or self.ledger.tx_location(d.hash) is not None:
                    continue
                self.ledger.check_signature(d)
                self.mempool.admit(d, now)
                self.ledger.mark_verified(d.hash)
            except CempError as e:
                log.debug("forwarded tx from %s refused: %s", sender, e.message)
        if self.raft.role != Role.LEADER:
            self.forward_buf.extend(m.txs)  # we are not the leader (any more): pass them on

    def _flush_forwards(self) -> None:
        leader = self.raft.leader
        if not self.forward_buf or leader is None or leader == self.node_id:
            if leader == self.node_id:
                self.forward_buf.clear()
            return
        chunk: list[Blob] = []
        size = 0
        for raw in self.forward_buf:  # a few MiB per message, so one envelope never grows past the peer limit
            if chunk and (size + len(raw) > 4 << 20 or len(chunk) >= 2000):
                self.transport.send(leader, ForwardTxs(tuple(chunk)))
                chunk, size = [], 0
            chunk.append(Blob(raw))
            size += len(raw)
        if chunk:
            self.transport.send(leader, ForwardTxs(tuple(chunk)))
        self.forward_buf.clear()

    # --- commit votes ----------------------------------------------------------------------------
    def _on_vote(self, v: CommitVote) -> None:
        pk = self.ledger.node_key(v.sig.node_id, int(v.height))
        if pk is None or not verify(pk, DOMAIN_VOTE, v.block_hash, v.sig.signature):
            return
        key = (int(v.height), bytes(v.block_hash))
        self._count_vote(key, v.sig)

    def _count_vote(self, key: tuple[int, bytes], sig: CommitSig) -> None:
        got = self.votes.setdefault(key, {})
        if sig.node_id in got:
            return
        got[sig.node_id] = sig
        # Keep the head's certificate on disk as soon as a majority signed it (whichever vote came last: the
        # peers' may arrive before this node applied the block itself).
        if len(got) >= quorum(len(self.ledger.active)) and key[0] == self.ledger.height:
            self._persist_cert(key)

    def _persist_cert(self, key: tuple[int, bytes]) -> None:
        from node.chain import Certificate

        if key[1] != self.ledger.last_hash:
            return
        sigs = tuple(sorted(self.votes[key].values(), key=lambda s: s.node_id))
        self.ledger.store.write({schema.commit_cert(key[0]): codec.encode(Certificate(sigs))}, sync=False)

    def _cert_for_head(self) -> tuple[CommitSig, ...] | None:
        led = self.ledger
        if led.height == 0:
            return ()
        got = {
            k: v for k, v in self.votes.get((led.height, bytes(led.last_hash)), {}).items() if k in led.active
        }
        need = quorum(len(self.ledger.active))
        if len(got) < need:
            return None
        return tuple(sorted(got.values(), key=lambda s: s.node_id))[:need] if len(got) >= need else None

    def _vote_for_head(self) -> None:
        led = self.ledger
        key = self.key_for(led.height)
        if key is None:
            return
        sig = led.vote(led.last_hash, self.node_id, key)
        v = CommitVote(led.height, led.last_hash, sig)
        self._count_vote((int(led.height), bytes(led.last_hash)), sig)
        for peer in sorted(self.ledger.active):  # sorted: the same order in every run (simulator replays)
            if peer != self.node_id:
                self.transport.send(peer, v)
        for k in [k for k in self.votes if k[0] < led.height - 8]:
            del self.votes[k]

    def _resend_head_vote(self) -> None:
        """Keep the leader supplied with our vote on the head (it may have restarted or just been elected)."""
        leader = self.raft.leader
        if leader is None or leader == self.node_id or not self.ledger.height:
            return
        key = (int(self.ledger.height), bytes(self.ledger.last_hash))
        sig = self.votes.get(key, {}).get(self.node_id)
        if sig is not None:
            self.transport.send(leader, CommitVote(self.ledger.height, self.ledger.last_hash, sig))

    # --- block production (leader) ---------------------------------------------------------------
    async def _maybe_cut(self) -> None:
        """Leader: execute the next block as soon as the head is applied, propose it once H's votes are in.

        Execution does not depend on the commit votes (they only go into the header), so the leader runs
        block H+1 while the followers are still applying H and signing it: the two overlap.
        """
        if self.preparing is not None:
            if not self.preparing.done():
                return
            task, self.preparing = self.preparing, None
            try:
                self.prepared = task.result()
            except Exception:
                log.exception(
                    "%s: executing the next block failed; its txs go back to the mempool", self.node_id
                )
                self.mempool.requeue_inflight(self.wall_ms())
                return
        if self.raft.role != Role.LEADER or self.halted_at is not None:
            self._drop_prepared()
            return
        if self.staged is not None:
            return
        st = self.raft.status()
        if self.app_applied < st.last_index or self.apply_q:
            return
        led = self.ledger
        if self.prepared is not None and self.prepared.parent != led.last_hash:
            self._drop_prepared()
        if self.halt_height is not None and led.height >= self.halt_height:
            self._drop_prepared()  # no block after the halt height, whatever else is configured
            return
        if self.prepared is None:
            if not len(self.mempool):
                return
            interval = self.params.block_interval_ms / 1000
            due = self.last_cut + interval
            if self.clock.monotonic() < due and len(self.mempool) < self.params.block_max_txs:
                self.cut_at = due  # the loop wakes up then
                return
            self.cut_at = None
            batch = self.mempool.take(self.params.block_max_txs)
            self.last_cut = self.clock.monotonic()
            # Executed in a worker thread while this loop keeps ticking; picked up on a later turn.
            self.preparing = asyncio.create_task(self._prepare(batch), name="prepare-block")
            self.preparing.add_done_callback(lambda _t: self.wake.set())
            return
        cert = self._cert_for_head()
        if cert is None:
            return
        prep, self.prepared = self.prepared, None
        prep.staged.header = replace(prep.staged.header, last_commit=cert)
        key = self.key_for(prep.staged.header.height)
        if key is None:
            self.mempool.requeue_inflight(self.wall_ms())
            return
        block = led.sign_block(prep.staged, key)
        try:
            index = self.raft.propose(codec.encode(block))
        except (NotLeader, ProposalDropped) as e:
            log.info("block not proposed (%s); txs go back to the mempool", e)
            self.mempool.requeue_inflight(self.wall_ms())
            return
        self.staged = _Staged(index, header_hash(block.header), prep.staged, block, prep.batch)

    async def _prepare(self, batch: list[DecodedTx]) -> _Prepared:
        led = self.ledger
        parent = led.last_hash
        staged = await self.offload(
            led.execute,
            tuple(d.raw for d in batch),
            time_ms=max(self.wall_ms(), led.last_time_ms + 1),
            proposer=self.node_id,
            term=int(self.raft.term),
            last_commit=(),
            decoded=list(batch),
        )
        return _Prepared(parent, staged, batch)

    def _drop_prepared(self) -> None:
        if self.prepared is not None:
            self.prepared = None
            self.mempool.requeue_inflight(self.wall_ms())

    # --- Ready -----------------------------------------------------------------------------------
    async def _handle_ready(self, rd: Ready) -> None:
        # 1. Persist before sending: a vote or an ack promises durable state.
        if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
            self.raftstore.save(rd.hard_state, rd.entries, rd.snapshot)
        # 2. Send.
        for m in rd.messages:
            self.transport.send(m.to, m)
        # 3. Apply. Committed entries go to the apply task, in order, so that long blocks never stop this loop
        #    from ticking, stepping and sending heartbeats. (Raft's own "applied" mark runs ahead of the app's;
        #    ``app_applied`` is the app's, and block cutting and compaction wait for it.)
        if rd.snapshot is not None:
            await self._drain_applies()
            # False: catch-up stopped at the halt height, short of the snapshot (its index is not applied)
            if await self._restore(rd.snapshot):
                self.app_applied = max(self.app_applied, int(rd.snapshot.meta.index))
        if rd.committed_entries:
            self.apply_q.extend(rd.committed_entries)
            self.apply_idle.clear()
            self.apply_wake.set()
        self.raft.advance(rd)
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.leader)
        await self._maybe_compact()

    async def _apply_loop(self) -> None:
        while True:
            while not self.apply_q:
                await self.apply_wake.wait()
                self.apply_wake.clear()
            e = self.apply_q[0]
            if self._halt_reached():
                # Nothing after the halt height is applied by this release: the entries stay in the Raft log
                # (persisted), and the next release applies them. This task idles until the node stops.
                self._halt()
                await asyncio.Event().wait()
            await self._apply_entry(e)
            self.apply_q.popleft()
            self.app_applied = int(e.index)
            if not self.apply_q:
                self.apply_idle.set()
            self.applied_event.set()
            self.applied_event = asyncio.Event()
            self.wake.set()  # the main loop may now cut the next block
            if self._halt_reached():
                self._halt()

    def _halt_reached(self) -> bool:
        return self.halt_height is not None and self.ledger.height >= self.halt_height

    def _halt(self) -> None:
        if self.halted_at is not None:
            return
        self.halted_at = self.ledger.height
        self._drop_prepared()
        log.warning(
            "%s: halt height %d reached (at height %d): applying and cutting stop here for a coordinated upgrade",
            self.node_id,
            self.halt_height,
            self.ledger.height,
        )
        if self.on_halt is not None:
            self.on_halt(self.ledger.height)

    async def next_apply(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this node to apply its next entry; False if none came.
        Admission uses it to hold a tx whose nonce the node is about to see (``NodeAPI.admit_one``)."""
        if len(self.ledger.active) <= 1:
            return False  # the only node: it is never behind anyone
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel (see ``run``)
                await self.applied_event.wait()
        except TimeoutError:
            return False
        return True

    async def _drain_applies(self) -> None:
        """Wait until every committed entry handed to the apply task is applied."""
        await self.apply_idle.wait()

    def _on_soft_state(self, leader: str | None) -> None:
        if leader == self.leader:
            return
        self.leader = leader
        log.info("%s: leader is now %s (term %s)", self.node_id, leader, self.raft.term)
        if leader is not None and leader != self.node_id:
            # Pass everything we hold on to the new leader, and our vote on the head so it can cut.
            self.forward_buf.extend(d.raw for d in self.mempool.pending.values())
            self.forward_buf.extend(d.raw for d in self.mempool.inflight.values())
            if self.ledger.height:
                sig = self.votes.get((self.ledger.height, bytes(self.ledger.last_hash)), {}).get(self.node_id)
                if sig is not None:
                    self.transport.send(leader, CommitVote(self.ledger.height, self.ledger.last_hash, sig))

    async def _apply_entry(self, e: Entry) -> None:
        async with self.ledger_lock:
            await self._apply_entry_locked(e)

    async def _apply_entry_locked(self, e: Entry) -> None:
        led = self.ledger
        extra = {RAFT_APPLIED: e.index.to_bytes(8, "big")}
        # Our proposal's index is reached: whatever entry sits there now, the proposal is settled. It must be
        # cleared for every entry kind: a proposal overwritten by a later leader's NOOP would otherwise block
        # this node from ever cutting again once it leads (``_maybe_cut`` waits while ``staged`` is set).
        settled = self.staged is not None and e.index >= self.staged.index
        staged = self.staged if self.staged is not None and self.staged.index == e.index else None
        if settled:
            self.staged = None
        if e.kind != EntryKind.NORMAL:
            led.store.write(extra, sync=False)
            if settled:
                self.mempool.requeue_inflight(self.wall_ms())  # the proposed block lost its place
            return
        try:
            block = codec.decode(Block, e.data)
        except CempError:
            self.skipped_blocks += 1
            led.store.write(extra, sync=False)
            return
        h = header_hash(block.header)
        if block.header.height <= led.height:
            led.store.write(extra, sync=False)  # applied before a restart
            return
        if staged is not None and staged.block_hash == h and block.header.prev_hash == led.last_hash:
            await self.offload(led.commit, block, staged.staged, (), extra)
            results_known = True
        else:
            try:
                await self.offload(led.apply_block, block, (), extra)
                results_known = True
            except ChainError as err:
                log.warning("%s: skipping committed entry %d: %s", self.node_id, e.index, err)
                self.skipped_blocks += 1
                led.store.write(extra, sync=False)
                results_known = False
        if results_known:
            self.applied_blocks.append((int(e.index), int(block.header.height), h))
            self._sync_keys()
            self._vote_for_head()
            self.mempool.committed(
                [Hash32(bytes(x)) for x in _hashes(block)], block.header.height, self.wall_ms()
            )
            if self.on_block is not None:
                self.on_block(block)
        if staged is None or not results_known or staged.block_hash != h:
            self.mempool.requeue_inflight(self.wall_ms())

    async def _maybe_compact(self) -> None:
        st = self.raft.status()
        if self.app_applied - st.first_index < self.compact_every * 2:
            return
        upto = Index(self.app_applied - self.compact_every)
        # The snapshot names the newest block at or before ``upto``. A node restoring it fetches and verifies
        # blocks up to there, then takes the log after ``upto`` (blocks it already holds are skipped).
        ref = SnapshotRef(self.ledger.height, self.ledger.last_hash)
        for idx, height, bh in reversed(self.applied_blocks):
            if idx <= upto:
                ref = SnapshotRef(Height(height), bh)
                break
        snap = self.raft.compact(upto, codec.encode(ref))
        self.raftstore.compact(snap)

    async def _restore(self, snap: Snapshot) -> bool:
        """Catch up to a snapshot's block (``node.catchup``: fetch and verify blocks, or install state)."""
        async with self.ledger_lock:
            done = await self.catchup.restore(snap)
        if done and self.staged is not None and snap.meta.index >= self.staged.index:
            # Our proposal's index is inside the snapshot: its entry will never be applied here, so it is settled
            # now, as ``_apply_entry_locked`` would settle it. Left set, its txs stayed in flight for good and the
            # node could not cut again (found by the simulator once catch-up asked the added nodes: seed 519).
            self.staged = None
            self.mempool.requeue_inflight(self.wall_ms())
        # A state snapshot skips the blocks below it: drop pending txs they committed (waiters get the location).
        self.mempool.rebuild(self.wall_ms())
        if self._halt_reached():
            self._halt()  # catch-up stopped at the halt height, as the apply loop does
        return done

    def _caught_up_block(self, block: Block) -> None:
        """Catch-up applied a fetched block: sign the new head and tell the mempool."""
        self._sync_keys()
        self._vote_for_head()
        self.mempool.committed(_hashes(block), block.header.height, self.wall_ms())

    def _maybe_fetch_ahead(self) -> None:
        """Catch up from the peers this node knows when a node it does not know talks to it.

        A node that is behind a membership change does not know the nodes it added, so its transport drops their
        envelopes ("non_member"). If such a node has become the leader, this node would never hear from Raft
        again: it fetches and verifies the blocks it misses from the peers it knows (through the same apply path
        as catch-up) until it has learnt the change; Raft entries for blocks it already holds are then skipped.
        """
        # (also envelopes that do not verify: a peer that rotated its key before this node learnt of it)
        unknown = self.transport.dropped.get("non_member", 0) + self.transport.dropped.get("bad_signature", 0)
        if unknown == self._unknown_seen or self.fetch_ahead is not None:
            return
        self._unknown_seen = unknown
        log.info("%s: envelopes from nodes it does not know: fetching blocks from its peers", self.node_id)
        self.fetch_ahead = asyncio.create_task(self._fetch_ahead(), name="fetch-ahead")

    async def _fetch_ahead(self) -> None:
        try:
            async with self.ledger_lock:
                while await self.catchup.fetch_next():
                    pass
            if self._halt_reached():
                self._halt()
        except Exception:
            log.exception("%s: fetching blocks ahead failed", self.node_id)
        finally:
            self.fetch_ahead = None
            self.wake.set()


def _hashes(block: Block) -> list[Hash32]:
    from node.crypto import sha256

    return [sha256(raw) for raw in block.txs]


__all__ = ["ConsensusDriver", "SnapshotMeta", "Term"]
