"""Deterministic in-process cluster simulator for the Raft state machine.

One seed fixes everything: cluster size and options, the nemesis schedule (partitions, one-way cuts,
crashes and restarts, lossy / delaying / duplicating / reordering network, leadership transfers,
membership changes, compaction), the network's random choices and every node's election rng. So a
failing seed replays exactly: ``replay(seed)``.

Each node is driven like the real driver: tick, step messages, then ready -> persist -> send -> apply ->
advance (sometimes split, with other steps between ``ready`` and ``advance``). A crash throws the Raft
object away; a restart rebuilds it from what ``MemoryStorage`` holds, i.e. only what the driver persisted.

Checked after every step (tick or message) of a node, and on every persisted Ready:
- Election Safety: at most one leader per term;
- Leader Append-Only: a leader's log only grows (cheap check each step, full comparison every 16 ticks);
- Log Matching: an (index, term) pair always names the same entry with the same predecessor term, which by
  induction means identical prefixes (plus a full pairwise comparison every 16 ticks and at the end);
- Leader Completeness: a new leader of term T holds every entry committed in a term < T;
- State Machine Safety: every index is applied with the same entry (and the same state digest, also across
  snapshots) on every node;
- durable hard state: persisted term and commit never decrease, a persisted vote never changes within a
  term, and no node grants votes to two candidates in one term, across crashes.
After the chaos phase the network heals and crashed nodes restart (nodes whose removal committed stay shut
down when pre-vote is off, as the layer above would do); then a fresh proposal must be applied by every
member within ``LIVENESS_TICKS`` ticks.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from dataclasses import dataclass, field

from consensus.messages import (
    ConfigChange,
    ConfigChangeOp,
    Entry,
    EntryKind,
    Index,
    Membership,
    Message,
    NodeId,
    RequestVoteResponse,
    Snapshot,
    Term,
    genesis_snapshot,
)
from consensus.raft import Raft, RaftConfig, RaftError, Ready, Role
from tests.consensus.harness import App, MemoryStorage, fmt_msg, parse_snapshot_data, zero_hard_state

LIVENESS_TICKS = 600


class SimFailure(AssertionError):
    """A safety or liveness violation, with everything needed to replay it."""


# ---- scenario ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    tick: int
    action: str
    args: tuple[object, ...] = ()

    def __str__(self) -> str:
        return f"t={self.tick} {self.action} {' '.join(map(str, self.args))}".rstrip()


@dataclass(frozen=True)
class Scenario:
    seed: int
    size: int
    pre_vote: bool
    check_quorum: bool
    election_ticks: int
    heartbeat_ticks: int
    max_entries: int
    chaos_ticks: int
    membership: bool
    compact_every: int
    """Compact a node's log once it applied this many entries past its snapshot (0: never)."""
    split_ready: float
    """Probability that a node's Ready is advanced only at its next processing, with steps in between."""
    crash_mid_ready: float
    """Probability that a node dies after persisting a Ready but before sending its messages (0.15 more
    for a Ready that carries a snapshot)."""
    schedule: tuple[Event, ...]

    def describe(self) -> str:
        head = (
            f"seed={self.seed} size={self.size} pre_vote={self.pre_vote} check_quorum={self.check_quorum} "
            f"election={self.election_ticks} heartbeat={self.heartbeat_ticks} max_entries={self.max_entries} "
            f"chaos_ticks={self.chaos_ticks} membership={self.membership} compact_every={self.compact_every} "
            f"split_ready={self.split_ready} crash_mid_ready={self.crash_mid_ready}"
        )
        return (
            head
            + "\nnemesis schedule:\n"
            + "\n".join(f"  {e}" for e in self.schedule if e.action != "propose")
        )


def make_scenario(seed: int) -> Scenario:
    """Everything about one run, derived from ``seed`` alone."""
    rng = random.Random(seed)
    # One seed in four is an "election storm": short timeouts, no pre-vote or check-quorum, nodes killed
    # and restarted often, a lossy network. That is where figure-8 histories and double votes show up.
    storm = rng.random() < 0.25
    size = rng.choice((3, 3, 5))
    election = rng.choice((3, 4)) if storm else rng.choice((5, 8, 10))
    heartbeat = 1 if storm else rng.choice((1, 1, 2))
    chaos = rng.randrange(120, 280)
    membership = rng.random() < 0.3
    compact_every = rng.choice((0, 0, 3, 8, 20))
    events: list[Event] = []
    t = rng.randrange(0, 15)
    while t < chaos:
        r = rng.random()
        if storm and r < 0.4:
            target = rng.choice(("leader", "leader", "random"))
            events.append(Event(t, "bounce", (target, rng.randrange(1 << 30), rng.randrange(1, 6))))
        elif storm and r < 0.55:
            events.append(Event(t, "isolate-leader"))
        elif storm and r < 0.65:
            events.append(Event(t, "heal"))
        elif storm and r < 0.75:
            events.append(Event(t, "net", (rng.choice((0.0, 0.1, 0.3)), 0.05, rng.choice((1, 2, 3)))))
        elif r < 0.18:
            events.append(Event(t, "partition", (rng.randrange(1 << 30),)))
        elif r < 0.26:
            events.append(Event(t, "isolate-leader"))
        elif r < 0.34:
            events.append(Event(t, "cut", (rng.randrange(1 << 30),)))
        elif r < 0.48:
            events.append(Event(t, "heal"))
        elif r < 0.58:
            events.append(Event(t, "crash", (rng.choice(("leader", "random")), rng.randrange(1 << 30))))
        elif r < 0.66:
            events.append(Event(t, "restart-all"))
        elif r < 0.78:
            drop = rng.choice((0.0, 0.0, 0.05, 0.2))
            dup = rng.choice((0.0, 0.05, 0.1))
            delay = rng.choice((0, 1, 2, 4))
            events.append(Event(t, "net", (drop, dup, delay)))
        elif r < 0.84:
            events.append(Event(t, "transfer", (rng.randrange(1 << 30),)))
        if membership and rng.random() < 0.4:
            ops = ("add-learner", "add-learner", "promote", "promote", "remove", "remove-leader", "add-voter")
            events.append(Event(t, "conf", (rng.choice(ops), rng.randrange(1 << 30))))
        t += rng.randrange(1, 6) if storm else rng.randrange(1, 20)
    for t in range(chaos):
        if rng.random() < (0.5 if storm else 0.25):
            events.append(Event(t, "propose"))
    events.sort(key=lambda e: e.tick)
    return Scenario(
        seed=seed,
        size=size,
        pre_vote=not storm and rng.random() < 0.75,
        check_quorum=not storm and rng.random() < 0.75,
        election_ticks=election,
        heartbeat_ticks=heartbeat,
        max_entries=rng.choice((1, 1, 3)) if storm else rng.choice((1, 3, 64)),
        chaos_ticks=chaos,
        membership=membership,
        compact_every=compact_every,
        split_ready=rng.choice((0.0, 0.2)),
        crash_mid_ready=rng.choice((0.01, 0.03)) if storm else 0.0,
        schedule=tuple(events),
    )


# ---- network -----------------------------------------------------------------------------------------------


class FakeNetwork:
    """Seeded message transport: drop, delay (ticks), duplicate, reorder, partitions and one-way cuts."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.drop = 0.0
        self.dup = 0.0
        self.max_delay = 0
        self.groups: dict[NodeId, int] | None = None
        self.cuts: set[tuple[NodeId, NodeId]] = set()
        self._heap: list[tuple[int, float, int, Message]] = []
        self._seq = 0

    def blocked(self, a: NodeId, b: NodeId) -> bool:
        if (a, b) in self.cuts:
            return True
        return self.groups is not None and self.groups.get(a, -1) != self.groups.get(b, -2)

    def heal(self) -> None:
        self.groups = None
        self.cuts = set()

    def send(self, msg: Message, now: int) -> None:
        if self.blocked(msg.from_, msg.to) or self.rng.random() < self.drop:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self._seq += 1
            at = now + self.rng.randint(0, self.max_delay)
            heapq.heappush(self._heap, (at, self.rng.random(), self._seq, msg))

    def due(self, now: int) -> list[Message]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[3])
        return out

    def pending(self) -> int:
        return len(self._heap)


# ---- cluster -----------------------------------------------------------------------------------------------


@dataclass
class SimNode:
    id: NodeId
    config: RaftConfig
    storage: MemoryStorage
    app: App = field(default_factory=App)
    raft: Raft | None = None
    restarts: int = 0
    unapplied: Ready | None = None
    stopped: bool = False
    """Permanently shut down (removed from the cluster)."""


class Simulation:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed * 7 + 1)  # nemesis choices made at run time
        self.net = FakeNetwork(random.Random(sc.seed * 7 + 2))
        self.now = 0
        ids = [NodeId(f"n{i}") for i in range(1, sc.size + 1)]
        self.genesis = Membership.of(ids)
        self.nodes: dict[NodeId, SimNode] = {}
        self.next_id = sc.size + 1
        self.trace: deque[str] = deque(maxlen=60)
        self.proposals = 0
        self.stats: Counter[str] = Counter()
        """What happened (for coverage assertions): message kinds delivered, snapshots installed, ..."""
        # checker state
        self.leaders: dict[Term, NodeId] = {}
        self.lead_last: dict[NodeId, tuple[Term, Index, Entry | None]] = {}
        self.lead_copy: dict[NodeId, tuple[Term, Index, tuple[Entry, ...]]] = {}
        self.pairs: dict[tuple[Index, Term], tuple[int, bytes, Term]] = {}
        self.committed: dict[int, tuple[Term, Term]] = {}  # index -> (term committed in, entry term)
        self.max_committed = 0
        self.applied: dict[int, tuple[Term, int, bytes]] = {}
        self.digests: dict[int, bytes] = {0: App().digest}
        self.removed: set[NodeId] = set()
        self.votes: dict[tuple[NodeId, Term], NodeId] = {}
        self.restarts_due: list[tuple[int, NodeId]] = []
        for i in ids:
            self._create(i)

    # ---- plumbing ----------------------------------------------------------------------------------------

    def fail(self, what: str) -> None:
        raise SimFailure(
            f"{what}\nat tick {self.now}; replay with tests.consensus.sim.replay({self.sc.seed})\n"
            f"{self.sc.describe()}\nlast trace lines:\n" + "\n".join(self.trace)
        )

    def _create(self, nid: NodeId) -> SimNode:
        cfg = RaftConfig(
            nid,
            election_ticks=self.sc.election_ticks,
            heartbeat_ticks=self.sc.heartbeat_ticks,
            pre_vote=self.sc.pre_vote,
            check_quorum=self.sc.check_quorum,
            max_entries_per_msg=self.sc.max_entries,
        )
        node = SimNode(nid, cfg, MemoryStorage(genesis_snapshot(self.genesis), zero_hard_state()))
        self.nodes[nid] = node
        self._boot(node)
        return node

    def _boot(self, node: SimNode) -> None:
        st = node.storage
        if node.app.applied < st.snapshot.meta.index and self.rng.random() < 0.5:
            # Either the driver restores the app from the stored snapshot itself, or it passes the lower
            # applied index and Raft hands the snapshot out again in its first Ready.
            self._restore_app(node, st.snapshot)
        if node.app.applied < st.snapshot.meta.index:
            self.stats["restart behind snapshot"] += 1
        rng = random.Random(f"{self.sc.seed}/{node.id}/{node.restarts}")
        node.raft = Raft(
            node.config,
            rng,
            snapshot=st.snapshot,
            hard_state=st.hard_state,
            entries=list(st.entries),
            applied=Index(node.app.applied),
        )

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raft is not None]

    def leader(self) -> SimNode | None:
        best = None
        for n in self.live():
            assert n.raft is not None
            if n.raft.role == Role.LEADER and (best is None or n.raft.term > best.raft.term):  # type: ignore[union-attr]
                best = n
        return best

    def crash(self, node: SimNode) -> None:
        if node.raft is None:
            return
        self.trace.append(f"t={self.now} crash {node.id}")
        node.raft = None
        node.unapplied = None  # persisted and sent, but the app never applied it
        self.lead_last.pop(node.id, None)
        self.lead_copy.pop(node.id, None)

    def restart(self, node: SimNode) -> None:
        if node.raft is not None or node.stopped:
            return
        node.restarts += 1
        self.trace.append(f"t={self.now} restart {node.id}")
        self._boot(node)

    # ---- the driver loop ---------------------------------------------------------------------------------

    def process_ready(self, node: SimNode) -> bool:
        r = node.raft
        assert r is not None
        if node.unapplied is not None:
            self._finish(node, node.unapplied)
            node.unapplied = None
        if not r.has_ready():
            return False
        rd = r.ready()
        assert rd is not None
        self._persist(node, rd)
        # Sometimes die after persisting, before sending or applying; more often when the Ready carries a
        # snapshot, so restarts with the application behind the stored snapshot get exercised.
        p_crash = self.sc.crash_mid_ready + (0.15 if rd.snapshot is not None else 0.0)
        if self.now < self.sc.chaos_ticks and self.rng.random() < p_crash:
            self.crash(node)  # durable, but nothing sent and nothing applied
            self.restarts_due.append((self.now + self.rng.randrange(1, 6), node.id))
            return True
        for m in rd.messages:
            self.trace.append(f"t={self.now} send {fmt_msg(m)}")
            if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
                # One vote per node per term, across crashes: the heart of Election Safety.
                first = self.votes.setdefault((node.id, m.term), m.to)
                if first != m.to:
                    self.fail(f"Election Safety: {node.id} voted for {first} and {m.to} in term {m.term}")
            self.net.send(m, self.now)
        if self.rng.random() < self.sc.split_ready:
            node.unapplied = rd
        else:
            self._finish(node, rd)
        return True

    def _persist(self, node: SimNode, rd: Ready) -> None:
        r = node.raft
        assert r is not None
        old = node.storage.hard_state
        if rd.entries and rd.entries[0].index <= node.storage.last_index:
            self.stats["persisted log truncated"] += 1
        if rd.snapshot is not None:
            self.stats["snapshot installed"] += 1
        node.storage.persist(rd)
        hs = node.storage.hard_state
        if hs.term < old.term:
            self.fail(f"{node.id} persisted term {hs.term} after {old.term}")
        if hs.term == old.term and old.vote is not None and hs.vote != old.vote:
            self.fail(f"{node.id} changed its persisted vote in term {hs.term}: {old.vote} -> {hs.vote}")
        if hs.commit < old.commit:
            self.fail(f"{node.id} persisted commit {hs.commit} after {old.commit}")
        # Log Matching, incrementally: (index, term) must always name the same entry and predecessor term.
        if rd.entries:
            prev = r.log.term_at(rd.entries[0].index - 1)
            assert prev is not None
            for e in rd.entries:
                key = (e.index, e.term)
                val = (int(e.kind), e.data, prev)
                seen = self.pairs.setdefault(key, val)
                if seen != val:
                    self.fail(f"Log Matching: {node.id} holds {key} as {val}, another node as {seen}")
                prev = e.term
        if rd.hard_state is not None:
            self._record_commits(node, rd.hard_state.commit)

    def _record_commits(self, node: SimNode, commit: int) -> None:
        """Note newly committed indexes, with the node's current term as an upper bound of the term they
        were committed in (leaders persist a commit before any follower can learn it, so usually this is the
        committing leader itself; using a later term only makes the Leader Completeness check weaker)."""
        r = node.raft
        assert r is not None
        for i in range(self.max_committed + 1, commit + 1):
            t = r.log.term_at(i)
            if t is None:
                self.fail(f"{node.id} committed {i} but does not hold it")
            assert t is not None
            self.committed[i] = (r.term, t)
            # Leader Completeness for leaders of later terms that already exist.
            for other in self.live():
                o = other.raft
                assert o is not None
                if o.role == Role.LEADER and o.term > r.term:
                    self._check_holds(other, i, t)
        self.max_committed = max(self.max_committed, commit)

    def _check_holds(self, node: SimNode, index: int, term: Term) -> None:
        log = node.raft.log  # type: ignore[union-attr]
        if index <= log.snapshot.meta.index:
            return  # compacted: the snapshot came from applied (committed) state, checked by digests
        if log.term_at(index) != term:
            self.fail(
                f"Leader Completeness: leader {node.id} (term {node.raft.term}) lacks committed "  # type: ignore[union-attr]
                f"{term}/{index}; has term {log.term_at(index)}"
            )

    def _finish(self, node: SimNode, rd: Ready) -> None:
        r = node.raft
        assert r is not None
        if rd.snapshot is not None:
            self._restore_app(node, rd.snapshot)
        for e in rd.committed_entries:
            self._apply(node, e)
        r.advance(rd)
        due = self.sc.compact_every and node.app.applied - r.log.snapshot.meta.index >= self.sc.compact_every
        if due and node.unapplied is None and r.log.applied == node.app.applied:
            snap = r.compact(Index(node.app.applied), node.app.snapshot_data())
            node.storage.compact(snap)
            self.trace.append(f"t={self.now} compact {node.id} to {snap.meta.index}")

    def _apply(self, node: SimNode, e: Entry) -> None:
        if e.index != node.app.applied + 1:
            self.fail(f"{node.id} applies {e.index} after {node.app.applied}")
        val = (e.term, int(e.kind), e.data)
        seen = self.applied.setdefault(e.index, val)
        if seen != val:
            self.fail(
                f"State Machine Safety: {node.id} applies {val} at {e.index}, another node applied {seen}"
            )
        node.app.apply(e)
        if e.kind == EntryKind.CONFIG:
            cc = ConfigChange.decode(e.data)
            self.stats[f"applied {cc.op.name}"] += 1
            if cc.op == ConfigChangeOp.REMOVE_NODE:
                self.removed.add(cc.node)  # committed, since it is applied; ids are never reused
        d = self.digests.setdefault(e.index, node.app.digest)
        if d != node.app.digest:
            self.fail(f"State Machine Safety: {node.id} state digest differs at {e.index}")

    def _restore_app(self, node: SimNode, snap: Snapshot) -> None:
        index, digest = parse_snapshot_data(snap.data)
        if index != snap.meta.index:
            self.fail(f"snapshot data for {index} labelled {snap.meta.index}")
        known = self.digests.get(index)
        if known is None or known != digest:
            self.fail(
                f"State Machine Safety: snapshot at {index} has digest {digest.hex()}, expected {known!r}"
            )
        node.app.restore(snap.data)

    # ---- checks after each step --------------------------------------------------------------------------

    def after_step(self, node: SimNode) -> None:
        r = node.raft
        assert r is not None
        if r.role != Role.LEADER:
            self.lead_last.pop(node.id, None)
            return
        holder = self.leaders.setdefault(r.term, node.id)
        if holder != node.id:
            self.fail(f"Election Safety: {holder} and {node.id} both lead term {r.term}")
        last = self.lead_last.get(node.id)
        if last is None or last[0] != r.term:
            # New leader: it must hold everything committed in earlier terms.
            self.trace.append(f"t={self.now} {node.id} leads term {r.term}")
            self.stats["elections won"] += 1
            for i, (cterm, eterm) in self.committed.items():
                if cterm < r.term:
                    self._check_holds(node, i, eterm)
        else:
            _, prev_last, prev_entry = last
            if r.log.last_index < prev_last:
                self.fail(
                    f"Leader Append-Only: leader {node.id} log shrank from {prev_last} to {r.log.last_index}"
                )
            if (
                prev_entry is not None
                and prev_last > r.log.snapshot.meta.index
                and r.log.entry(prev_last) != prev_entry
            ):
                self.fail(f"Leader Append-Only: leader {node.id} rewrote entry {prev_last}")
        li = r.log.last_index
        self.lead_last[node.id] = (r.term, li, r.log.entry(li) if li > r.log.snapshot.meta.index else None)

    def full_check(self) -> None:
        # Leader Append-Only, in full.
        for node in self.live():
            r = node.raft
            assert r is not None
            if r.role != Role.LEADER:
                self.lead_copy.pop(node.id, None)
                continue
            entries = r.log.all_entries()
            base = r.log.snapshot.meta.index
            copy = self.lead_copy.get(node.id)
            if copy is not None and copy[0] == r.term:
                old = copy[2]
                for e in old:
                    if e.index > base and r.log.entry(e.index) != e:
                        self.fail(f"Leader Append-Only: leader {node.id} changed entry {e.index}")
            self.lead_copy[node.id] = (r.term, base, entries)
        # Log Matching, pairwise and in full.
        logs = []
        for node in self.live():
            r = node.raft
            assert r is not None
            logs.append((node.id, r.log.snapshot.meta.index, {e.index: e for e in r.log.all_entries()}))
        for a in range(len(logs)):
            for b in range(a + 1, len(logs)):
                ida, _, la = logs[a]
                idb, _, lb = logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                top = next((i for i in common if la[i].term == lb[i].term), None)
                if top is None:
                    continue
                for i in common:
                    if i <= top and la[i] != lb[i]:
                        self.fail(f"Log Matching: {ida} and {idb} agree at {top} but differ at {i}")

    # ---- nemesis -----------------------------------------------------------------------------------------

    def _pick(self, which: object, salt: object) -> SimNode | None:
        """The leader if ``which`` is "leader" and there is one, else a live node chosen by ``salt``."""
        target = self.leader() if which == "leader" else None
        live = self.live()
        if target is None and live:
            target = random.Random(str(salt)).choice(live)
        return target

    def apply_event(self, ev: Event) -> None:
        self.trace.append(f"nemesis {ev}")
        ids = sorted(n.id for n in self.nodes.values() if not n.stopped)
        a = ev.args
        match ev.action:
            case "partition":
                rng = random.Random(str(a[0]))
                self.net.groups = {i: rng.randrange(2) for i in ids}
            case "isolate-leader":
                lead = self.leader()
                if lead is not None:
                    self.net.groups = {i: (0 if i == lead.id else 1) for i in ids}
            case "cut":
                x, y = random.Random(str(a[0])).sample(ids, 2)
                self.net.cuts.add((x, y))
            case "heal":
                self.net.heal()
            case "crash":
                target = self._pick(a[0], a[1])
                if target is not None:
                    self.crash(target)
            case "bounce":
                target = self._pick(a[0], a[1])
                if target is not None:
                    self.crash(target)
                    self.restarts_due.append((self.now + int(str(a[2])), target.id))
            case "restart-all":
                for n in self.nodes.values():
                    self.restart(n)
            case "net":
                self.net.drop, self.net.dup, self.net.max_delay = (
                    float(str(a[0])),
                    float(str(a[1])),
                    int(str(a[2])),
                )
            case "transfer":
                lead = self.leader()
                if lead is not None and lead.raft is not None:
                    voters = lead.raft.membership.voters
                    to = voters[random.Random(str(a[0])).randrange(len(voters))]
                    try:
                        lead.raft.transfer_leadership(to)
                    except RaftError:
                        pass
            case "conf":
                self.conf_change(str(a[0]), random.Random(str(a[1])))
            case "propose":
                self.propose(f"v{self.proposals}".encode())
            case _:
                raise ValueError(ev.action)

    def conf_change(self, op: str, rng: random.Random) -> None:
        lead = self.leader()
        if lead is None:
            return
        r = lead.raft
        assert r is not None
        m = r.membership
        change: ConfigChange | None = None
        new_node = False
        if op in ("add-learner", "add-voter") and len(m.voters) + len(m.learners) < 7:
            nid = NodeId(f"n{self.next_id}")
            kind = ConfigChangeOp.ADD_LEARNER if op == "add-learner" else ConfigChangeOp.ADD_VOTER
            change, new_node = ConfigChange(kind, nid), True
        elif op == "promote" and m.learners:
            change = ConfigChange(ConfigChangeOp.PROMOTE_LEARNER, rng.choice(m.learners))
        elif op == "remove" and len(m.voters) > 2:
            change = ConfigChange(ConfigChangeOp.REMOVE_NODE, rng.choice(m.voters + m.learners))
        elif op == "remove-leader" and len(m.voters) > 2:
            change = ConfigChange(ConfigChangeOp.REMOVE_NODE, lead.id)
        if change is None:
            return
        try:
            r.propose_config(change)
        except RaftError:
            return
        self.trace.append(f"t={self.now} conf {change.op.name} {change.node} via {lead.id}")
        self.stats[f"conf {change.op.name}"] += 1
        if new_node:
            self.next_id += 1
            self._create(change.node)

    def propose(self, data: bytes) -> Index | None:
        lead = self.leader()
        if lead is None:
            return None
        assert lead.raft is not None
        try:
            index = lead.raft.propose(data)
        except RaftError:
            return None
        self.proposals += 1
        return index

    def stop_removed(self) -> None:
        """The layer above shuts a node down once its removal is committed (needed without pre-vote)."""
        for nid in sorted(self.removed):
            n = self.nodes[nid]
            if not n.stopped:
                self.crash(n)
                n.stopped = True

    # ---- main loop ---------------------------------------------------------------------------------------

    def run_tick(self) -> None:
        for node in self.live():
            assert node.raft is not None
            was_leader = node.raft.role == Role.LEADER
            node.raft.tick()
            if was_leader and node.raft.role != Role.LEADER:
                self.stats["check-quorum step-down"] += 1
            self.after_step(node)
        for _ in range(10):
            busy = False
            for m in self.net.due(self.now):
                dest = self.nodes.get(m.to)
                if dest is None or dest.raft is None or self.net.blocked(m.from_, m.to):
                    continue
                self.trace.append(f"t={self.now} deliver {fmt_msg(m)}")
                self.stats[type(m).__name__] += 1
                before = (dest.raft.role, dest.raft.term)
                dest.raft.step(m)
                if before[0] == Role.LEADER and dest.raft.role != Role.LEADER:
                    same = dest.raft.term == before[1]
                    self.stats["removed leader stepped down" if same else "leader saw higher term"] += 1
                self.after_step(dest)
                busy = True
            for node in self.live():
                busy = self.process_ready(node) or busy
            if not busy:
                break

    def run(self) -> None:
        sc = self.sc
        events = list(sc.schedule)
        k = 0
        try:
            while self.now < sc.chaos_ticks:
                while k < len(events) and events[k].tick <= self.now:
                    self.apply_event(events[k])
                    k += 1
                for due, nid in [d for d in self.restarts_due if d[0] <= self.now]:
                    self.restarts_due.remove((due, nid))
                    self.restart(self.nodes[nid])
                self.run_tick()
                if not sc.pre_vote:
                    self.stop_removed()
                if self.now % 16 == 0:
                    self.full_check()
                self.now += 1
            # Heal everything; then a new proposal must reach every member's application.
            self.trace.append(f"t={self.now} heal for liveness")
            self.net.heal()
            self.net.drop, self.net.dup, self.net.max_delay = 0.0, 0.0, 1
            for n in self.nodes.values():
                self.restart(n)
            probe = f"live-{sc.seed}".encode()
            index: Index | None = None
            deadline = self.now + LIVENESS_TICKS
            while self.now < deadline:
                if index is None or self._probe_lost(index, probe):
                    index = self.propose(probe)
                self.run_tick()
                if not sc.pre_vote:
                    self.stop_removed()
                if index is not None and self._probe_done(index, probe):
                    break
                self.now += 1
            else:
                self.fail(
                    f"liveness: proposal not applied by every member within {LIVENESS_TICKS} ticks of healing"
                )
            self.full_check()
        except SimFailure:
            raise
        except Exception as e:  # any crash of the state machine or the harness is a failure of this seed
            self.fail(f"{type(e).__name__}: {e}")

    def _probe_lost(self, index: Index, probe: bytes) -> bool:
        """The probe entry was overwritten (its leader lost leadership before committing it)."""
        got = self.applied.get(index)
        if got is not None:
            return got[2] != probe
        for n in self.live():
            r = n.raft
            assert r is not None
            held = r.role == Role.LEADER and index > r.log.snapshot.meta.index
            if held and (index > r.log.last_index or r.log.entry(index).data != probe):
                return True
        return False

    def _probe_done(self, index: Index, probe: bytes) -> bool:
        got = self.applied.get(index)
        if got is None or got[2] != probe:
            return False
        lead = self.leader()
        if lead is None:
            return False
        assert lead.raft is not None
        for nid in lead.raft.membership.members():
            node = self.nodes[nid]
            if node.app.applied < index:
                return False
        return True


def run_seed(seed: int) -> Simulation:
    sim = Simulation(make_scenario(seed))
    sim.run()
    return sim


def replay(seed: int) -> Simulation:
    """Re-run one seed exactly (same schedule, same network choices, same election timeouts)."""
    return run_seed(seed)
