"""Test doubles shared by the transcript runner and the cluster simulator.

- ``MemoryStorage``: what a driver has durably persisted from ``Ready`` records (and nothing else), so a
  crash that throws the ``Raft`` object away and a restart from this storage models a real process crash.
- ``App``: a deterministic application that folds applied entries into a digest chain; its snapshot
  bytes name the index and digest, so state-machine safety can be checked across snapshots.
- ``fmt_*``: the one text form of entries, messages and Ready records used in transcripts and failure
  reports. ``T/I`` means term T, index I.

Invariants kept: storage only changes through ``persist``/``compact`` (the Ready contract); the app applies
indexes strictly in order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ConfigChange,
    ConfigChangeOp,
    Entry,
    EntryKind,
    HardState,
    Index,
    InstallSnapshot,
    InstallSnapshotResponse,
    Membership,
    Message,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    Term,
    TimeoutNow,
)
from consensus.raft import Ready

OP_NAMES = {
    ConfigChangeOp.ADD_VOTER: "add-voter",
    ConfigChangeOp.ADD_LEARNER: "add-learner",
    ConfigChangeOp.PROMOTE_LEARNER: "promote",
    ConfigChangeOp.REMOVE_NODE: "remove",
}


@dataclass
class MemoryStorage:
    """Durable state of one node: exactly what its driver persisted."""

    snapshot: Snapshot
    hard_state: HardState
    entries: list[Entry] = field(default_factory=list)

    def persist(self, rd: Ready) -> None:
        """Step 1 of the Ready contract: snapshot, then entries, then hard state."""
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []
        if rd.entries:
            first = rd.entries[0].index
            base = self.snapshot.meta.index
            keep = first - base - 1
            assert 0 <= keep <= len(self.entries), f"gap persisting {first} after {base}+{len(self.entries)}"
            del self.entries[keep:]
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state

    def compact(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.entries = [e for e in self.entries if e.index > snap.meta.index]

    @property
    def last_index(self) -> int:
        return self.snapshot.meta.index + len(self.entries)


def _mix(digest: bytes, e: Entry) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    h.update(digest)
    h.update(f"{e.index}/{e.term}/{int(e.kind)}/".encode())
    h.update(e.data)
    return h.digest()


@dataclass
class App:
    """A replicated state machine: the digest of every applied entry, in order."""

    applied: int = 0
    digest: bytes = b"\x00" * 8
    history: list[Entry] = field(default_factory=list)
    """Entries applied since the last snapshot restore (for transcripts)."""

    def apply(self, e: Entry) -> None:
        assert e.index == self.applied + 1, f"applying {e.index} after {self.applied}"
        self.digest = _mix(self.digest, e)
        self.applied = e.index
        self.history.append(e)

    def snapshot_data(self) -> bytes:
        return f"{self.applied}:{self.digest.hex()}".encode()

    def restore(self, data: bytes) -> None:
        index, digest = parse_snapshot_data(data)
        self.applied = index
        self.digest = digest
        self.history = []


def parse_snapshot_data(data: bytes) -> tuple[int, bytes]:
    index, digest = data.decode().split(":")
    return int(index), bytes.fromhex(digest)


# ---- text forms ------------------------------------------------------------------------------------------


def fmt_ids(ids: tuple[str, ...]) -> str:
    return "(" + ",".join(ids) + ")"


def fmt_membership(m: Membership) -> str:
    s = f"voters={fmt_ids(m.voters)}"
    if m.learners:
        s += f" learners={fmt_ids(m.learners)}"
    return s


def fmt_entry(e: Entry) -> str:
    head = f"{e.term}/{e.index}"
    if e.kind == EntryKind.NOOP:
        return f"{head} noop"
    if e.kind == EntryKind.CONFIG:
        cc = ConfigChange.decode(e.data)
        return f"{head} config {OP_NAMES[cc.op]} {cc.node}"
    return f"{head} {e.data.decode(errors='replace')!r}"


def fmt_snapshot(s: Snapshot) -> str:
    return f"{s.meta.term}/{s.meta.index} {fmt_membership(s.meta.membership)} data={s.data.decode()!r}"


def fmt_msg(m: Message) -> str:
    head = f"{m.from_}->{m.to}"
    match m:
        case RequestVote():
            kind = "PreVote" if m.pre_vote else "Vote"
            tail = " transfer" if m.transfer else ""
            return f"{head} {kind} term={m.term} last={m.last_term}/{m.last_index}{tail}"
        case RequestVoteResponse():
            kind = "PreVoteResp" if m.pre_vote else "VoteResp"
            return f"{head} {kind} term={m.term} {'granted' if m.granted else 'rejected'}"
        case AppendEntries():
            s = f"{head} App term={m.term} prev={m.prev_term}/{m.prev_index} commit={m.commit}"
            if m.entries:
                s += " entries=[" + ", ".join(fmt_entry(e) for e in m.entries) + "]"
            return s
        case AppendEntriesResponse():
            if m.success:
                return f"{head} AppResp term={m.term} ok index={m.index}"
            return (
                f"{head} AppResp term={m.term} reject index={m.index} "
                f"hint={m.reject_hint_term}/{m.reject_hint}"
            )
        case InstallSnapshot():
            return f"{head} Snap term={m.term} snap={fmt_snapshot(m.snapshot)}"
        case InstallSnapshotResponse():
            return f"{head} SnapResp term={m.term} index={m.index}"
        case TimeoutNow():
            return f"{head} TimeoutNow term={m.term}"
    raise TypeError(m)


def fmt_ready(rd: Ready) -> list[str]:
    out = []
    if rd.soft_state is not None:
        out.append(f"soft: role={rd.soft_state.role.value} leader={rd.soft_state.leader or '-'}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        out.append(f"hard: term={hs.term} vote={hs.vote or '-'} commit={hs.commit}")
    if rd.snapshot is not None:
        out.append(f"snapshot: {fmt_snapshot(rd.snapshot)}")
    if rd.entries:
        out.append("entries:")
        out.extend(f"  {fmt_entry(e)}" for e in rd.entries)
    if rd.committed_entries:
        out.append("committed:")
        out.extend(f"  {fmt_entry(e)}" for e in rd.committed_entries)
    if rd.messages:
        out.append("messages:")
        out.extend(f"  {fmt_msg(m)}" for m in rd.messages)
    return out


def zero_hard_state() -> HardState:
    return HardState(Term(0), None, Index(0))
