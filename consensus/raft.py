"""The Raft state machine: events in (``tick``, ``step``, ``propose``...), one ``Ready`` record out.

``Raft`` does no I/O and reads no clock: time is the number of ``tick()`` calls and randomness comes from
the injected ``random.Random``, so the same inputs always give the same outputs. A driver (``node/``)
loops: feed ticks and received messages, take ``ready()``, persist, send, apply, ``advance()``.

Features: follower / pre-candidate / candidate / leader; randomized election timeout in
``[election_ticks, 2 * election_ticks)``; pre-vote; check-quorum with a leader lease; log replication with
fast backtracking; a no-op entry on election, and commitment of earlier-term entries only through an
entry of the current term (Raft §5.4.2, Figure 8); single-node membership changes; learners; leadership
transfer via ``TimeoutNow``; snapshots for followers that need compacted entries; restart from persisted
state.

Invariants kept (checked by tests/consensus over many seeded schedules):
- Election Safety: a node grants at most one vote per term, and the vote is persisted before the
  response is sent (``Ready`` contract), so at most one leader per term;
- Leader Append-Only: a leader only appends to its own log; truncation happens only on followers;
- Log Matching: followers accept entries only after checking ``(prev_index, prev_term)``;
- Leader Completeness: votes go only to candidates whose log is at least as up to date (§5.4.1), and a
  leader counts replicas only for entries of its own term;
- State Machine Safety: ``Ready.committed_entries`` hands out each index once, in order, and only
  committed entries, which are never truncated (``consensus.log.LogSafetyError`` otherwise).

Membership changes take effect when the CONFIG entry is appended to a log, not when it is applied (Raft
thesis §4.1). Why: the membership is then a pure function of the log (snapshot membership plus the CONFIG
entries after it), so restart, truncation and snapshots need no extra state; and the new configuration
alone decides the commit of the change, so a 2-voter cluster can still remove a dead member. The thesis's
conditions for safety are enforced by ``propose_config``: one change at a time (no uncommitted CONFIG entry
may exist), each change alters one node, and the leader must have committed an entry of its own term first
(the fix for the single-server-change bug reported on raft-dev in 2015). A leader that removes itself keeps
leading until the change commits, without counting itself, then steps down and sends ``TimeoutNow`` to a
voter that holds its whole log. CONFIG entries also reach the driver in ``Ready.committed_entries``, in
order, so it can connect to or drop peers once a change is committed. Node ids are never reused; the
membership layer above enforces that (``consensus.quorum``).

Retransmission: there is no per-message timer. Every ``heartbeat_ticks`` the leader re-sends, to each
follower that has not acknowledged its whole log, the entries after the follower's acknowledged index
(a follower it is still probing gets its next probe), so lost or reordered messages are repaired within a
heartbeat interval; choose it well above the network round trip.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from consensus import quorum
from consensus.log import Log
from consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ConfigChange,
    Entry,
    EntryKind,
    HardState,
    Index,
    InstallSnapshot,
    InstallSnapshotResponse,
    Membership,
    Message,
    NodeId,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    Term,
    TimeoutNow,
)
from consensus.quorum import InvalidConfigChange, VoteResult

__all__ = [
    "InvalidConfigChange",
    "InvalidTransfer",
    "NotLeader",
    "PeerProgress",
    "ProposalDropped",
    "Raft",
    "RaftConfig",
    "RaftError",
    "Ready",
    "ReplicationState",
    "Role",
    "SoftState",
    "Status",
]


class RaftError(Exception):
    """Base class of errors a caller of ``Raft`` can handle."""


class NotLeader(RaftError):
    """Only the leader accepts proposals; ``leader`` is this node's best guess of who is, if any."""

    def __init__(self, leader: NodeId | None) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(RaftError):
    """The leader refused the proposal for now (transfer in progress, or a config change pending)."""


class InvalidTransfer(RaftError, ValueError):
    """Leadership can only be transferred to another voter."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class ReplicationState(enum.Enum):
    """How the leader talks to one follower (as in etcd's progress tracker)."""

    PROBE = "probe"
    """Searching for the last matching index: at most one append in flight per heartbeat or response."""
    REPLICATE = "replicate"
    """In sync: new entries are streamed as soon as they are appended."""
    SNAPSHOT = "snapshot"
    """Waiting for the follower to install a snapshot."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Static parameters of one node."""

    node_id: NodeId
    election_ticks: int = 10
    """A follower that hears nothing from a leader for a random number of ticks in
    ``[election_ticks, 2 * election_ticks)`` starts an election. Must exceed ``heartbeat_ticks``."""
    heartbeat_ticks: int = 1
    """The leader sends heartbeats (and retransmits unacknowledged entries) every this many ticks."""
    pre_vote: bool = True
    """Poll peers before starting a real election, so a partitioned node cannot inflate terms (§9.6)."""
    check_quorum: bool = True
    """A leader that did not hear from a majority within ``election_ticks`` steps down; followers that
    heard from a leader within ``election_ticks`` ignore vote requests (leader lease, thesis §4.2.3)."""
    max_entries_per_msg: int = 64
    """Upper bound on entries in one AppendEntries."""

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("need 1 <= heartbeat_ticks < election_ticks")
        if self.max_entries_per_msg < 1:
            raise ValueError("max_entries_per_msg must be >= 1")


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver may want to know about (routing proposals, metrics)."""

    leader: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the driver must do, in this order, before calling ``Raft.advance(ready)``.

    1. Persist ``snapshot`` (replacing the whole stored log), then ``entries`` (an entry at index i replaces
       every stored entry >= i), then ``hard_state``. One atomic, synced write batch is simplest; fsync is
       needed when ``must_sync``.
    2. Only then send ``messages``. Why this order: a vote response promises "I voted for you in term T",
       and an append response promises "I hold these entries"; if the node crashed after sending but before
       persisting, it could restart, vote again in T, or lose entries a leader already counted towards a
       commit, breaking Election Safety or losing a committed entry. The leader's own append messages go
       out after its entries are durable too, which is why the leader may count itself in the commit
       quorum without waiting (thesis §10.2.1).
    3. Apply ``snapshot`` (if any) to the application, then ``committed_entries`` in order. These may
       include entries from ``entries``: they are durable after step 1.
    4. Call ``advance(ready)``.

    ``tick``/``step``/``propose`` may be called between ``ready()`` and ``advance()``; their effects show up
    in the next Ready. ``ready()`` must not be called again before ``advance()``.
    """

    soft_state: SoftState | None
    """New leader/role, if changed since the last Ready."""
    hard_state: HardState | None
    """Term, vote and commit to persist, if changed since the last Ready."""
    snapshot: Snapshot | None
    """A snapshot received from the leader (or, after a restart with the application behind the stored
    snapshot, that snapshot again): persist it, then restore the application from it."""
    entries: tuple[Entry, ...]
    """Entries not yet persisted."""
    messages: tuple[Message, ...]
    """Messages to send after persisting."""
    committed_entries: tuple[Entry, ...]
    """Committed entries to apply, in index order, each handed out exactly once."""

    must_sync: bool
    """Whether the write must be fsynced: entries, a snapshot, or a new term or vote. A commit-index change
    alone need not be (a lost commit index is learnt again from the leader)."""


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """The leader's view of one follower, as reported by ``status()``."""

    node: NodeId
    match: Index
    next: Index
    state: ReplicationState
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's state for metrics, tests and the peers page."""

    node: NodeId
    role: Role
    term: Term
    vote: NodeId | None
    leader: NodeId | None
    commit: Index
    applied: Index
    first_index: Index
    last_index: Index
    last_term: Term
    membership: Membership
    progress: tuple[PeerProgress, ...]
    """Only on the leader: one row per other member, sorted by id."""
    transferee: NodeId | None


class _Progress:
    """Mutable per-follower replication state on the leader."""

    __slots__ = (
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "pending_snapshot_term",
        "recent_active",
        "sent_commit",
        "snapshot_elapsed",
        "state",
    )

    def __init__(self, next_index: Index) -> None:
        self.match = Index(0)
        self.next = next_index
        self.state = ReplicationState.PROBE
        self.paused = False
        self.recent_active = True
        self.pending_snapshot = Index(0)
        self.pending_snapshot_term = Term(0)
        self.snapshot_elapsed = 0
        self.sent_commit = Index(0)
        """Highest commit index this follower can have learnt from what we sent it."""

    def become_probe(self) -> None:
        self.state = ReplicationState.PROBE
        self.next = Index(self.match + 1)
        self.paused = False

    def become_replicate(self) -> None:
        self.state = ReplicationState.REPLICATE
        self.next = Index(self.match + 1)
        self.paused = False

    def become_snapshot(self, index: Index, term: Term) -> None:
        self.state = ReplicationState.SNAPSHOT
        self.pending_snapshot = index
        self.pending_snapshot_term = term
        self.snapshot_elapsed = 0
        self.paused = False

    def maybe_update(self, index: Index) -> bool:
        """Record that the follower matches up to ``index``; True if that is news."""
        updated = index > self.match
        if updated:
            self.match = index
        if index + 1 > self.next:
            self.next = Index(index + 1)
        return updated

    def maybe_decrease_to(self, rejected: Index, match_hint: Index) -> bool:
        """The follower rejected an append at ``rejected``; False if that rejection is stale.

        A follower whose log now ends below what it once acknowledged (``match_hint < match``) lost its log: its
        data directory was restored from a backup or rebuilt. Its match is lowered so the leader probes from
        the end of what it holds; otherwise such a rejection looks stale and the follower is never sent the
        entries again. Lowering ``match`` never lowers the commit index (it only ever advances); a delayed old
        rejection that takes this branch costs one probe round, after which the follower's answer raises
        ``match`` back."""
        if match_hint < self.match and self.state != ReplicationState.SNAPSHOT:
            self.match = match_hint
            self.next = Index(match_hint + 1)
            self.paused = False
            return True
        if self.state == ReplicationState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = Index(self.match + 1)
            return True
        if self.state == ReplicationState.SNAPSHOT or self.next - 1 != rejected:
            return False
        self.next = Index(max(min(rejected, match_hint + 1), self.match + 1))
        self.paused = False
        return True


class Raft:
    """One Raft node. See the module docstring; every public method is deterministic."""

    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        *,
        snapshot: Snapshot,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        applied: Index | None = None,
    ) -> None:
        """Start (or restart) a node from what its driver persisted.

        A brand-new node passes ``genesis_snapshot(genesis_membership)`` and nothing else; so does a node
        that joins later (it is not a member of the genesis membership, so it never campaigns until the
        leader's log, replicated to it, makes it a voter). A restarting node passes its stored snapshot,
        the stored entries after it, its hard state, and ``applied``: how far its application state got
        (default: the snapshot index). If ``applied`` is below the snapshot index (the driver crashed
        between persisting a snapshot and restoring the application from it), the first Ready carries
        the snapshot again together with every stored entry, to be persisted and applied as usual.
        """
        self._cfg = config
        self._rng = rng
        self.id = config.node_id
        self.log = Log(snapshot, entries)
        hs = (
            hard_state if hard_state is not None else HardState(snapshot.meta.term, None, snapshot.meta.index)
        )
        if hs.term < self.log.last_term:
            raise ValueError(f"hard state term {hs.term} below the last log term {self.log.last_term}")
        commit = max(hs.commit, snapshot.meta.index)
        if commit > self.log.last_index:
            raise ValueError(f"hard state commit {commit} beyond the last stored index {self.log.last_index}")
        self.log.commit_to(Index(commit))
        applied_at = snapshot.meta.index if applied is None else applied
        if not 0 <= applied_at <= commit:
            raise ValueError(f"applied {applied_at} outside [0, commit {commit}]")
        if applied_at < snapshot.meta.index:
            # The driver persisted a snapshot but crashed before the application restored it: hand the
            # snapshot out again, with the whole stored log, as if it had just arrived.
            self.log.replay_snapshot()
        self.log.applied = Index(applied_at)
        self.term = hs.term
        self.vote = hs.vote
        self.leader: NodeId | None = None
        self.role = Role.FOLLOWER
        self._msgs: list[Message] = []
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, _Progress] = {}
        self._transferee: NodeId | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._membership = self.log.membership
        self._persisted_hs = hs
        self._last_soft = SoftState(None, Role.FOLLOWER)
        self._outstanding = False
        self._reset(self.term)

    # ---- inspection ------------------------------------------------------------------------------------

    @property
    def membership(self) -> Membership:
        """The membership in force (the latest CONFIG entry in this node's log, committed or not)."""
        return self._membership

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def promotable(self) -> bool:
        """Whether this node may campaign: it is a voter in its own latest configuration."""
        return self.id in self._membership.voters

    def status(self) -> Status:
        progress: tuple[PeerProgress, ...] = ()
        if self.role == Role.LEADER:
            progress = tuple(
                PeerProgress(
                    n,
                    self._progress[n].match,
                    self._progress[n].next,
                    self._progress[n].state,
                    self._progress[n].recent_active,
                )
                for n in sorted(self._progress)
            )
        return Status(
            node=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader,
            commit=self.log.committed,
            applied=self.log.applied,
            first_index=self.log.first_index,
            last_index=self.log.last_index,
            last_term=self.log.last_term,
            membership=self._membership,
            progress=progress,
            transferee=self._transferee,
        )

    # ---- driver interface ------------------------------------------------------------------------------

    def ready(self) -> Ready | None:
        """What the driver must persist, send and apply now; None when there is nothing to do."""
        if self._outstanding:
            raise RuntimeError("advance() the previous Ready before asking for another")
        soft = SoftState(self.leader, self.role)
        hs = self.hard_state
        rd = Ready(
            soft_state=soft if soft != self._last_soft else None,
            hard_state=hs if hs != self._persisted_hs else None,
            snapshot=self.log.unstable_snapshot(),
            entries=self.log.unstable_entries(),
            messages=tuple(self._msgs),
            committed_entries=self.log.to_apply(),
            must_sync=False,
        )
        if (
            rd.soft_state is None
            and rd.hard_state is None
            and rd.snapshot is None
            and not rd.entries
            and not rd.messages
            and not rd.committed_entries
        ):
            return None
        self._msgs = []
        self._outstanding = True
        p = self._persisted_hs
        sync = bool(rd.entries) or rd.snapshot is not None or (hs.term, hs.vote) != (p.term, p.vote)
        return replace(rd, must_sync=sync)

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return something (cheap enough to poll)."""
        return bool(
            self._msgs
            or SoftState(self.leader, self.role) != self._last_soft
            or self.hard_state != self._persisted_hs
            or self.log.unstable_snapshot() is not None
            or self.log.stable_index < self.log.last_index
            or self.log.committed > max(self.log.applied, self.log.snapshot.meta.index)
        )

    def advance(self, rd: Ready) -> None:
        """The driver has persisted, sent and applied everything in ``rd``."""
        if not self._outstanding:
            raise RuntimeError("advance() without an outstanding Ready")
        self._outstanding = False
        if rd.soft_state is not None:
            self._last_soft = rd.soft_state
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.snapshot is not None:
            self.log.stable_snapshot_to(rd.snapshot.meta.index)
            self.log.applied_to(Index(max(self.log.applied, rd.snapshot.meta.index)))
        if rd.entries:
            self.log.stable_to(rd.entries[-1].index, rd.entries[-1].term)
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)

    def compact(self, index: Index, app_snapshot: bytes) -> Snapshot:
        """Replace the log prefix up to ``index`` (<= applied) by a snapshot holding ``app_snapshot``.

        The driver must persist the returned snapshot and may then delete stored entries <= ``index``.
        ``app_snapshot`` must be the application's state after applying exactly ``index``.
        """
        return self.log.compact(index, app_snapshot)

    # ---- events ----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time."""
        self._election_elapsed += 1
        if self.role == Role.LEADER:
            self._tick_leader()
        elif self.promotable() and self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._start_election(pre_vote=self._cfg.pre_vote)

    def campaign(self) -> None:
        """Start an election now (as a timeout would); no-op for a leader or a non-voter."""
        if self.role == Role.LEADER or not self.promotable():
            return
        self._election_elapsed = 0
        self._start_election(pre_vote=self._cfg.pre_vote)

    def propose(self, data: bytes) -> Index:
        """Append an application entry; returns its index. Raises NotLeader or ProposalDropped."""
        self._check_can_propose()
        return self._append_own(EntryKind.NORMAL, data)

    def propose_config(self, change: ConfigChange) -> Index:
        """Append a membership change; it takes effect on every node as soon as that node appends it.

        Raises NotLeader, ProposalDropped (another change is uncommitted, or this leader has not yet
        committed an entry of its term) or InvalidConfigChange.
        """
        self._check_can_propose()
        if self.log.term_at(self.log.committed) != self.term:
            raise ProposalDropped("the leader has not committed an entry of its own term yet")
        if self.log.last_config_index > self.log.committed:
            raise ProposalDropped("another configuration change is not committed yet")
        quorum.apply_change(self._membership, change)  # validate before appending
        return self._append_own(EntryKind.CONFIG, change.encode())

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to voter ``to``: catch it up, then send it ``TimeoutNow``.

        Proposals are refused until the transfer completes or is abandoned after ``election_ticks``.
        """
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        if to == self.id:
            return
        if to not in self._membership.voters:
            raise InvalidTransfer(f"{to} is not a voter")
        if self._transferee == to:
            return
        self._transferee = to
        self._election_elapsed = 0  # the transfer is abandoned after one election timeout
        pr = self._progress[to]
        if pr.match == self.log.last_index:
            self._send(TimeoutNow(self.term, self.id, to))
        else:
            if pr.state == ReplicationState.REPLICATE:
                pr.next = Index(pr.match + 1)  # resend what it has not acknowledged
            self._send_append(to)

    def step(self, msg: Message) -> None:
        """Handle one message from a peer."""
        if msg.to != self.id:
            raise ValueError(f"message for {msg.to} stepped into {self.id}")
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                in_lease = (
                    self._cfg.check_quorum
                    and self.leader is not None
                    and self._election_elapsed < self._cfg.election_ticks
                )
                if in_lease and not msg.transfer:
                    # A leader we heard from recently is alive: ignore the disruptive request
                    # entirely (thesis §4.2.3), without adopting its term.
                    return
                if not msg.pre_vote:
                    self._become_follower(msg.term, None)
            elif isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.granted:
                pass  # granted pre-votes carry the term we would campaign for; it is not ours yet
            elif isinstance(msg, AppendEntries | InstallSnapshot | TimeoutNow):
                self._become_follower(msg.term, msg.from_)
            else:
                self._become_follower(msg.term, None)
        elif msg.term < self.term:
            self._answer_stale(msg)
            return

        match msg:
            case AppendEntries():
                self._follow(msg.from_)
                self._handle_append(msg)
            case InstallSnapshot():
                self._follow(msg.from_)
                self._handle_snapshot(msg)
            case TimeoutNow():
                if self.role != Role.LEADER and self.promotable():
                    self._election_elapsed = 0
                    self._start_election(pre_vote=False, transfer=True)
            case RequestVote():
                self._handle_vote_request(msg)
            case RequestVoteResponse():
                self._handle_vote_response(msg)
            case AppendEntriesResponse():
                if self.role == Role.LEADER:
                    self._handle_append_response(msg)
            case InstallSnapshotResponse():
                if self.role == Role.LEADER:
                    self._handle_success(msg.from_, msg.index)

    # ---- role changes ----------------------------------------------------------------------------------

    def _reset(self, term: Term) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._cfg.election_ticks + self._rng.randrange(self._cfg.election_ticks)
        self._votes = {}
        self._progress = {}
        self._transferee = None

    def _become_follower(self, term: Term, leader: NodeId | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _follow(self, leader: NodeId) -> None:
        """A valid append or snapshot from the leader of our term arrived."""
        if self.role == Role.LEADER:
            raise AssertionError(f"two leaders in term {self.term}: {self.id} and {leader}")
        if self.role != Role.FOLLOWER:
            self._become_follower(self.term, leader)
        self.leader = leader
        self._election_elapsed = 0

    def _start_election(self, *, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            self._reset(self.term)
            self.role = Role.PRE_CANDIDATE
            campaign_term = Term(self.term + 1)
        else:
            self._reset(Term(self.term + 1))
            self.role = Role.CANDIDATE
            self.vote = self.id
            campaign_term = self.term
        self._votes = {self.id: True}
        if self._tally() is not VoteResult.PENDING:
            return
        for peer in self._membership.voters:
            if peer != self.id:
                self._send(
                    RequestVote(
                        campaign_term,
                        self.id,
                        peer,
                        self.log.last_index,
                        self.log.last_term,
                        pre_vote=pre_vote,
                        transfer=transfer,
                    )
                )

    def _tally(self) -> VoteResult:
        result = quorum.vote_result(self._membership, self._votes)
        if result is VoteResult.WON:
            if self.role == Role.PRE_CANDIDATE:
                self._start_election(pre_vote=False)
            else:
                self._become_leader()
        elif result is VoteResult.LOST:
            self._become_follower(self.term, None)
        return result

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        self._sync_progress()
        # A leader cannot know which earlier-term entries are committed until an entry of its own term is
        # (Raft §5.4.2): append a no-op at once so that happens without waiting for a client.
        self._append_own(EntryKind.NOOP, b"")

    def _sync_progress(self) -> None:
        """Make the leader's progress table match the membership (new members start probing)."""
        # Sorted iteration only: set order varies with PYTHONHASHSEED and would make runs irreproducible.
        members = [m for m in self._membership.members() if m != self.id]
        for gone in sorted(set(self._progress) - set(members)):
            del self._progress[gone]
            if self._transferee == gone:
                self._transferee = None
        for new in members:
            if new not in self._progress:
                self._progress[new] = _Progress(Index(self.log.last_index + 1))

    def _on_log_changed(self) -> None:
        """Re-read the membership after the log changed (CONFIG entries take effect when appended)."""
        if self.log.membership is self._membership:
            return
        self._membership = self.log.membership
        if self.role == Role.LEADER:
            self._sync_progress()
            if self._transferee is not None and self._transferee not in self._membership.voters:
                self._transferee = None
            self._maybe_commit()

    # ---- leader ----------------------------------------------------------------------------------------

    def _check_can_propose(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        if self._transferee is not None:
            raise ProposalDropped(f"leadership is being transferred to {self._transferee}")

    def _append_own(self, kind: EntryKind, data: bytes) -> Index:
        index = Index(self.log.last_index + 1)
        self.log.append((Entry(self.term, index, kind, data),))
        self._on_log_changed()
        if self.role == Role.LEADER:  # the change may have committed at once and removed this leader
            self._maybe_commit()
            self._bcast_append()
        return index

    def _tick_leader(self) -> None:
        if self._election_elapsed >= self._cfg.election_ticks:
            self._election_elapsed = 0
            if self._cfg.check_quorum:
                active = {n for n, p in self._progress.items() if p.recent_active} | {self.id}
                if not quorum.has_quorum(self._membership, active):
                    # Partitioned from a majority: a newer leader may exist; stop accepting proposals.
                    self._become_follower(self.term, None)
                    return
                for p in self._progress.values():
                    p.recent_active = False
            self._transferee = None
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self._cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._heartbeat()

    def _heartbeat(self) -> None:
        """Heartbeats double as retransmission: anything a follower has not acknowledged is resent."""
        last = self.log.last_index
        for peer, pr in self._progress.items():
            if pr.state == ReplicationState.PROBE:
                pr.paused = False
                self._send_append(peer)
            elif pr.state == ReplicationState.REPLICATE:
                if pr.match < last:
                    pr.next = Index(pr.match + 1)
                self._send_append(peer, empty=pr.match >= last)
            else:
                pr.snapshot_elapsed += self._cfg.heartbeat_ticks
                if pr.snapshot_elapsed >= self._cfg.election_ticks:
                    pr.become_probe()  # the snapshot (or its answer) was probably lost: start over
                    self._send_append(peer)
                else:
                    self._send_append(peer, empty=True)

    def _bcast_append(self) -> None:
        for peer, pr in self._progress.items():
            streaming = pr.state == ReplicationState.REPLICATE and pr.next <= self.log.last_index
            probing = pr.state == ReplicationState.PROBE and not pr.paused
            if streaming or probing:
                self._send_append(peer)

    def _send_append(self, peer: NodeId, *, empty: bool = False) -> None:
        pr = self._progress[peer]
        if pr.state == ReplicationState.SNAPSHOT:
            # Keep the follower's election timer quiet; it answers success once the snapshot is installed.
            msg = AppendEntries(
                self.term,
                self.id,
                peer,
                pr.pending_snapshot,
                pr.pending_snapshot_term,
                (),
                self.log.committed,
            )
            self._send(msg)
            return
        prev = Index(pr.next - 1)
        if empty and pr.state == ReplicationState.REPLICATE:
            prev = pr.match
        prev_term = self.log.term_at(prev)
        if prev_term is None:
            # The follower needs entries we compacted away.
            snap = self.log.snapshot
            pr.become_snapshot(snap.meta.index, snap.meta.term)
            self._send(InstallSnapshot(self.term, self.id, peer, snap))
            return
        entries: tuple[Entry, ...] = ()
        if not empty:
            hi = min(self.log.last_index + 1, prev + 1 + self._cfg.max_entries_per_msg)
            entries = self.log.slice(prev + 1, hi)
        self._send(AppendEntries(self.term, self.id, peer, prev, prev_term, entries, self.log.committed))
        pr.sent_commit = Index(max(pr.sent_commit, min(self.log.committed, prev + len(entries))))
        if pr.state == ReplicationState.REPLICATE and entries:
            pr.next = Index(entries[-1].index + 1)
        elif pr.state == ReplicationState.PROBE:
            pr.paused = True

    def _handle_append_response(self, msg: AppendEntriesResponse) -> None:
        pr = self._progress.get(msg.from_)
        if pr is None:
            return
        pr.recent_active = True
        if msg.success:
            self._handle_success(msg.from_, msg.index)
            return
        hint = msg.reject_hint
        if msg.reject_hint_term > 0:
            hint, _ = self.log.find_conflict_by_term(msg.reject_hint, msg.reject_hint_term)
        if pr.maybe_decrease_to(msg.index, hint):
            if pr.state == ReplicationState.REPLICATE:
                pr.become_probe()
            self._send_append(msg.from_)

    def _handle_success(self, peer: NodeId, index: Index) -> None:
        """``peer`` holds our log up to ``index`` (from an append or snapshot response)."""
        pr = self._progress.get(peer)
        if pr is None:
            return
        pr.recent_active = True
        updated = pr.maybe_update(index)
        if pr.state == ReplicationState.PROBE or (
            pr.state == ReplicationState.SNAPSHOT and pr.match >= pr.pending_snapshot
        ):
            pr.become_replicate()
        if updated and self._maybe_commit():
            if self.role != Role.LEADER:
                return
            self._bcast_commit()
        else:
            self._send_if_behind(peer)
        if peer == self._transferee and pr.match == self.log.last_index:
            self._send(TimeoutNow(self.term, self.id, peer))

    def _send_if_behind(self, peer: NodeId) -> None:
        """Stream entries not yet sent, or tell the follower a commit index it cannot know yet."""
        pr = self._progress[peer]
        if pr.state != ReplicationState.REPLICATE:
            return
        if pr.next <= self.log.last_index:
            self._send_append(peer)
        elif pr.sent_commit < min(self.log.committed, pr.match):
            self._send_append(peer, empty=True)

    def _bcast_commit(self) -> None:
        for peer in self._progress:
            self._send_if_behind(peer)

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a majority holds, if that entry is of the current term."""
        match = {n: p.match for n, p in self._progress.items()}
        match[self.id] = self.log.last_index  # durable before any peer could ack it (see Ready)
        n = quorum.committed_index(self._membership, match)
        # Figure 8: an entry of an earlier term on a majority may still be overwritten by a leader that
        # lacks it, so it is only committed indirectly, through an entry of this term.
        if n <= self.log.committed or self.log.term_at(n) != self.term:
            return False
        self.log.commit_to(n)
        if self.id not in self._membership.voters and self.log.last_config_index <= n:
            self._step_down_removed()
        return True

    def _step_down_removed(self) -> None:
        """Our removal committed: tell followers the commit, hand over to an up-to-date voter, step down."""
        self._bcast_commit()
        last = self.log.last_index
        ready = [
            v for v in self._membership.voters if v in self._progress and self._progress[v].match == last
        ]
        if ready:
            # Saves the followers an election timeout (they would otherwise wait out our lease).
            self._send(TimeoutNow(self.term, self.id, ready[0]))
        self._become_follower(self.term, None)

    # ---- follower --------------------------------------------------------------------------------------

    def _handle_append(self, msg: AppendEntries) -> None:
        log = self.log
        if msg.prev_index < log.committed:
            # Everything up to our commit index matches every leader's log; answer with that.
            self._send(AppendEntriesResponse(self.term, self.id, msg.from_, True, log.committed))
            return
        last_new = log.try_append(msg.prev_index, msg.prev_term, msg.entries)
        if last_new is None:
            if msg.prev_index > log.last_index:
                hint, hint_term = log.last_index, log.last_term
            else:
                hint, hint_term = log.find_conflict_by_term(msg.prev_index, msg.prev_term)
            self._send(
                AppendEntriesResponse(self.term, self.id, msg.from_, False, msg.prev_index, hint, hint_term)
            )
            return
        self._on_log_changed()
        # Commit only what this message vouched for: entries beyond ``last_new`` may still conflict.
        log.commit_to(Index(min(msg.commit, last_new)))
        self._send(AppendEntriesResponse(self.term, self.id, msg.from_, True, last_new))

    def _handle_snapshot(self, msg: InstallSnapshot) -> None:
        meta = msg.snapshot.meta
        if meta.index <= self.log.committed:
            self._send(InstallSnapshotResponse(self.term, self.id, msg.from_, self.log.committed))
            return
        if self.log.term_at(meta.index) == meta.term:
            # We already hold the snapshot's last entry, hence (Log Matching) everything before it.
            self.log.commit_to(meta.index)
        else:
            self.log.restore(msg.snapshot)
            self._on_log_changed()
        self._send(InstallSnapshotResponse(self.term, self.id, msg.from_, meta.index))

    # ---- elections -------------------------------------------------------------------------------------

    def _handle_vote_request(self, msg: RequestVote) -> None:
        can_vote = (
            self.vote == msg.from_
            or (self.vote is None and self.leader is None)
            or (msg.pre_vote and msg.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(msg.last_index, msg.last_term):
            self._send(RequestVoteResponse(msg.term, self.id, msg.from_, True, msg.pre_vote))
            if not msg.pre_vote:
                self.vote = msg.from_
                self._election_elapsed = 0
        else:
            self._send(RequestVoteResponse(self.term, self.id, msg.from_, False, msg.pre_vote))

    def _handle_vote_response(self, msg: RequestVoteResponse) -> None:
        if self.role == Role.PRE_CANDIDATE:
            if not msg.pre_vote or msg.term != (self.term + 1 if msg.granted else self.term):
                return
        elif self.role == Role.CANDIDATE:
            if msg.pre_vote or msg.term != self.term:
                return
        else:
            return
        if msg.from_ in self._membership.voters:
            self._votes[msg.from_] = msg.granted
            self._tally()

    def _answer_stale(self, msg: Message) -> None:
        """A message from an older term: tell the sender our term so it steps down, where that helps."""
        match msg:
            case AppendEntries():
                self._send(AppendEntriesResponse(self.term, self.id, msg.from_, False, msg.prev_index))
            case InstallSnapshot():
                self._send(InstallSnapshotResponse(self.term, self.id, msg.from_, Index(0)))
            case RequestVote():
                self._send(RequestVoteResponse(self.term, self.id, msg.from_, False, msg.pre_vote))
            case _:
                pass

    def _send(self, msg: Message) -> None:
        self._msgs.append(msg)
