"""Raft wire and storage records: log entries, membership, snapshots, hard state and the peer messages.

Everything here is a frozen, slotted dataclass of ints, strs, bytes, enums, tuples and nested records, so the
node's codec can encode each one as an array in field order. Nothing here has behaviour beyond validation
of its own fields.

Invariants kept:
- ``Membership.voters`` and ``Membership.learners`` are sorted, duplicate-free and disjoint;
- an ``Entry`` of kind ``CONFIG`` carries an encoded ``ConfigChange`` (``ConfigChange.decode`` inverts
  ``encode``, and ``encode`` is canonical: one byte string per change);
- every message carries ``term``, ``from_`` and ``to``; the receiver's reaction to the term is the same for
  every message type (see ``consensus.raft``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NewType

NodeId = NewType("NodeId", str)
"""A node's identity. Ids are never reused: a removed node's id must not join again (the membership layer
above consensus enforces this; see ``consensus.quorum``)."""
Term = NewType("Term", int)
"""A Raft term: a logical clock that only grows; at most one leader per term."""
Index = NewType("Index", int)
"""Position in the replicated log; the first real entry has index 1, index 0 is the empty genesis prefix."""


class EntryKind(enum.IntEnum):
    """What an entry's ``data`` means to the layer above."""

    NORMAL = 0
    """Opaque application payload (for CEMP: a block)."""
    CONFIG = 1
    """An encoded ``ConfigChange``; takes effect in consensus as soon as it is appended."""
    NOOP = 2
    """Empty entry a new leader appends so it can commit entries of earlier terms (Raft §5.4.2)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. Two entries with the same index and term are identical (Log Matching)."""

    term: Term
    """Term of the leader that created the entry."""
    index: Index
    """Position in the log, >= 1."""
    kind: EntryKind
    data: bytes = b""
    """Application payload for NORMAL, encoded ``ConfigChange`` for CONFIG, empty for NOOP."""


@dataclass(frozen=True, slots=True)
class Membership:
    """The cluster configuration: who votes and who only receives the log."""

    voters: tuple[NodeId, ...]
    """Nodes whose votes and acknowledgements count towards a majority; sorted, no duplicates."""
    learners: tuple[NodeId, ...] = ()
    """Nodes that receive the log but neither vote nor count; sorted, disjoint from ``voters``."""

    def __post_init__(self) -> None:
        for name, ids in (("voters", self.voters), ("learners", self.learners)):
            if list(ids) != sorted(set(ids)):
                raise ValueError(f"membership {name} must be sorted and unique: {ids!r}")
        if set(self.voters) & set(self.learners):
            raise ValueError(f"a node cannot be both voter and learner: {self!r}")

    @staticmethod
    def of(voters: Iterable[NodeId], learners: Iterable[NodeId] = ()) -> Membership:
        """Build a membership from unordered sets."""
        return Membership(tuple(sorted(voters)), tuple(sorted(learners)))

    def members(self) -> tuple[NodeId, ...]:
        """Voters and learners, sorted."""
        return tuple(sorted(self.voters + self.learners))

    def __contains__(self, node: object) -> bool:
        return node in self.voters or node in self.learners


class ConfigChangeOp(enum.IntEnum):
    """The single-node membership changes; exactly one node changes role per config entry."""

    ADD_VOTER = 1
    """A node that is not a member becomes a voter."""
    ADD_LEARNER = 2
    """A node that is not a member becomes a learner."""
    PROMOTE_LEARNER = 3
    """A learner becomes a voter."""
    REMOVE_NODE = 4
    """A voter or learner leaves the cluster for good; its id is never used again."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A membership change, carried in the ``data`` of a CONFIG entry."""

    op: ConfigChangeOp
    node: NodeId
    context: bytes = b""
    """Opaque bytes for the layer above (e.g. the governance tx that authorised the change)."""

    def encode(self) -> bytes:
        """Canonical bytes: op (1 byte) | len(node) (1 byte) | node as UTF-8 | context."""
        node = self.node.encode()
        if not 0 < len(node) < 256:
            raise ValueError(f"node id must be 1..255 UTF-8 bytes: {self.node!r}")
        return bytes((int(self.op), len(node))) + node + self.context

    @staticmethod
    def decode(raw: bytes) -> ConfigChange:
        """Inverse of ``encode``; raises ValueError on bytes that ``encode`` cannot produce."""
        if len(raw) < 3:
            raise ValueError("config change too short")
        op = ConfigChangeOp(raw[0])
        n = raw[1]
        if n == 0 or len(raw) < 2 + n:
            raise ValueError("config change node id truncated")
        return ConfigChange(op, NodeId(raw[2 : 2 + n].decode()), raw[2 + n :])


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot sits in the log: it replaces every entry up to and including ``index``."""

    index: Index
    """Index of the last entry the snapshot covers (0 for the genesis prefix)."""
    term: Term
    """Term of that entry."""
    membership: Membership
    """The membership in force after applying every entry up to ``index``."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A compacted log prefix: metadata plus the application's opaque state at ``meta.index``."""

    meta: SnapshotMeta
    data: bytes = b""
    """The application's state (or a reference to it when the driver ships app state separately)."""


def genesis_snapshot(membership: Membership) -> Snapshot:
    """The empty prefix every node of a cluster starts from (including nodes that join later)."""
    return Snapshot(SnapshotMeta(Index(0), Term(0), membership))


@dataclass(frozen=True, slots=True)
class HardState:
    """What a node must persist before it sends anything that depends on it."""

    term: Term
    """The latest term this node has seen."""
    vote: NodeId | None
    """Whom this node voted for in ``term`` (None if nobody); persisted so it can never vote twice."""
    commit: Index
    """Highest index known committed; persisting it is an optimisation, not needed for safety."""


# ---- peer messages ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A candidate (or pre-candidate) asks for a vote."""

    term: Term
    """The term the candidate campaigns for; for a pre-vote it is the candidate's term + 1, not yet adopted."""
    from_: NodeId
    to: NodeId
    last_index: Index
    """Index of the candidate's last log entry (for the up-to-date check, Raft §5.4.1)."""
    last_term: Term
    """Term of the candidate's last log entry."""
    pre_vote: bool = False
    """True for a pre-vote: a non-binding poll that changes no term and records no vote."""
    transfer: bool = False
    """True when the campaign follows a ``TimeoutNow``: receivers must not ignore it for a leader lease."""


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    """The answer to a ``RequestVote``."""

    term: Term
    """The request's term if granted, else the voter's current term."""
    from_: NodeId
    to: NodeId
    granted: bool
    pre_vote: bool = False
    """Echoes the request's ``pre_vote``."""


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Log replication and heartbeat from the leader."""

    term: Term
    from_: NodeId
    to: NodeId
    prev_index: Index
    """Index of the entry just before ``entries``; the follower must hold it with ``prev_term``."""
    prev_term: Term
    entries: tuple[Entry, ...]
    """Entries ``prev_index + 1 ...``, possibly none (a heartbeat)."""
    commit: Index
    """The leader's commit index; the follower commits at most up to ``prev_index + len(entries)``."""


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """A follower's answer to ``AppendEntries``."""

    term: Term
    from_: NodeId
    to: NodeId
    success: bool
    index: Index
    """If success: the highest index known to match the leader. If not: the rejected ``prev_index``."""
    reject_hint: Index = Index(0)
    """On reject: the largest index <= ``prev_index`` whose term is <= the request's ``prev_term``
    (or the follower's last index if shorter), so the leader can skip a whole term per round trip."""
    reject_hint_term: Term = Term(0)
    """On reject: the follower's term at ``reject_hint``."""


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """The leader sends its snapshot to a follower that needs entries the leader has compacted away.

    A single message at this layer: the driver may ship large application state out of band and put
    only a reference in ``snapshot.data``.
    """

    term: Term
    from_: NodeId
    to: NodeId
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    """A follower's answer to ``InstallSnapshot``."""

    term: Term
    from_: NodeId
    to: NodeId
    index: Index
    """The follower's index known to match the leader afterwards (snapshot index, or its commit index
    if the snapshot was older than what it already had)."""


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the leader tells an up-to-date follower to campaign at once."""

    term: Term
    from_: NodeId
    to: NodeId


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
)
"""Every message a Raft node sends to a peer."""

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "ConfigChange",
    "ConfigChangeOp",
    "Entry",
    "EntryKind",
    "HardState",
    "Index",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "Membership",
    "Message",
    "NodeId",
    "RequestVote",
    "RequestVoteResponse",
    "Snapshot",
    "SnapshotMeta",
    "Term",
    "TimeoutNow",
    "genesis_snapshot",
]
