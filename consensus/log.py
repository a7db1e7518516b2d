"""The in-memory Raft log: a snapshot base, the entries after it, and what of it is durable and applied.

Layout: ``snapshot.meta.index`` is the last compacted index; ``entries[k]`` has index
``snapshot.meta.index + 1 + k``. The log also tracks, for the driver, which part is not yet persisted
(the *unstable* suffix and possibly the snapshot) and how far the application has applied.

Invariants kept:
- entries are contiguous and their terms never decrease;
- ``snapshot index <= applied <= committed <= last_index`` once the driver has applied the snapshot
  (``applied`` may lag the snapshot index while a received snapshot is not yet applied);
- a committed entry is never truncated (a conflict at or below ``committed`` raises ``LogSafetyError``:
  it would mean Raft's safety argument was broken somewhere);
- ``stable_index`` never exceeds ``last_index``; truncating below it lowers it, so the driver is always
  told to rewrite the changed suffix;
- ``membership`` is always the snapshot's membership with every CONFIG entry of the log applied in order
  (configurations take effect when appended; see ``consensus.raft``).
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.messages import ConfigChange, Entry, EntryKind, Index, Membership, Snapshot, SnapshotMeta, Term
from consensus.quorum import apply_change


class LogSafetyError(AssertionError):
    """An operation would remove or overwrite a committed entry."""


class Log:
    """See the module docstring."""

    __slots__ = (
        "_configs",
        "_entries",
        "_snapshot",
        "_snapshot_stable",
        "applied",
        "committed",
        "stable_index",
    )

    def __init__(self, snapshot: Snapshot, entries: Sequence[Entry] = ()) -> None:
        """A log restored from storage: everything passed in counts as persisted."""
        self._snapshot = snapshot
        self._snapshot_stable = True
        self._entries: list[Entry] = []
        self._configs: list[tuple[Index, Membership]] = []
        self.committed = snapshot.meta.index
        self.applied = snapshot.meta.index
        self.stable_index = snapshot.meta.index
        self.append(entries)
        self.stable_index = self.last_index

    # ---- reading ---------------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def first_index(self) -> Index:
        """Index of the first entry still held (may be ``last_index + 1`` when there is none)."""
        return Index(self._snapshot.meta.index + 1)

    @property
    def last_index(self) -> Index:
        return Index(self._snapshot.meta.index + len(self._entries))

    @property
    def last_term(self) -> Term:
        return self._entries[-1].term if self._entries else self._snapshot.meta.term

    def term_at(self, index: int) -> Term | None:
        """Term of the entry at ``index``; None if compacted away or beyond the end."""
        base = self._snapshot.meta.index
        if index == base:
            return self._snapshot.meta.term
        if base < index <= base + len(self._entries):
            return self._entries[index - base - 1].term
        return None

    def entry(self, index: int) -> Entry:
        base = self._snapshot.meta.index
        if not base < index <= base + len(self._entries):
            raise IndexError(f"entry {index} not in log ({base + 1}..{self.last_index})")
        return self._entries[index - base - 1]

    def slice(self, lo: int, hi: int) -> tuple[Entry, ...]:
        """Entries with ``lo <= index < hi``; both bounds must lie within the held entries."""
        base = self._snapshot.meta.index
        if lo <= base or hi > self.last_index + 1 or lo > hi:
            raise IndexError(f"slice {lo}..{hi} outside log ({base + 1}..{self.last_index})")
        return tuple(self._entries[lo - base - 1 : hi - base - 1])

    def all_entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    def is_up_to_date(self, last_index: Index, last_term: Term) -> bool:
        """Raft §5.4.1: a log ending at (last_term, last_index) is at least as up to date as this one."""
        return last_term > self.last_term or (last_term == self.last_term and last_index >= self.last_index)

    def find_conflict_by_term(self, index: Index, term: Term) -> tuple[Index, Term]:
        """The largest index <= ``index`` whose term is <= ``term``, with that term.

        Used for fast backtracking: every entry in between has a term greater than ``term``, so it cannot
        match a log whose entry at ``index`` has ``term``. Stops at the snapshot base (or returns
        ``index`` itself with term 0 if even that is unknown to this log).
        """
        i: int = min(index, self.last_index)
        base = self._snapshot.meta.index
        if i < base:
            return Index(i), Term(0)
        while i > base:
            t = self._entries[i - base - 1].term
            if t <= term:
                return Index(i), t
            i -= 1
        return Index(base), self._snapshot.meta.term

    @property
    def membership(self) -> Membership:
        """The membership in force: the latest CONFIG entry in the log wins, committed or not."""
        return self._configs[-1][1] if self._configs else self._snapshot.meta.membership

    @property
    def last_config_index(self) -> Index:
        """Index of the latest CONFIG entry (the snapshot index if the log holds none)."""
        return self._configs[-1][0] if self._configs else self._snapshot.meta.index

    def membership_at(self, index: int) -> Membership:
        """The membership after applying every entry up to ``index`` (>= the snapshot index)."""
        if index < self._snapshot.meta.index:
            raise IndexError(f"membership at {index} is compacted away")
        found = self._snapshot.meta.membership
        for at, m in self._configs:
            if at > index:
                break
            found = m
        return found

    # ---- writing ---------------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that must directly follow the last one (leader path, and restore)."""
        for e in entries:
            if e.index != self.last_index + 1:
                raise ValueError(f"entry {e.index} does not follow last index {self.last_index}")
            if e.term < self.last_term:
                raise ValueError(f"entry {e.index} has term {e.term} below last term {self.last_term}")
            self._entries.append(e)
            if e.kind == EntryKind.CONFIG:
                self._configs.append((e.index, apply_change(self.membership, ConfigChange.decode(e.data))))

    def truncate_after(self, index: Index) -> None:
        """Drop every entry above ``index``; refuses to drop a committed entry."""
        if index < self.committed:
            raise LogSafetyError(f"truncating to {index} would drop committed entries up to {self.committed}")
        if index >= self.last_index:
            return
        del self._entries[index - self._snapshot.meta.index :]
        while self._configs and self._configs[-1][0] > index:
            self._configs.pop()
        self.stable_index = min(self.stable_index, index)

    def try_append(self, prev_index: Index, prev_term: Term, entries: Sequence[Entry]) -> Index | None:
        """Follower path (Raft Fig. 2, AppendEntries rules 2-4).

        Returns the index of the last entry the message vouches for (``prev_index + len(entries)``) if
        this log holds ``prev_index`` with ``prev_term``, else None. Entries already present with the same
        term are kept (so a stale, reordered message never truncates newer entries); from the first
        conflicting one on, this log's suffix is replaced.
        """
        if self.term_at(prev_index) != prev_term:
            return None
        for k, e in enumerate(entries):
            have = self.term_at(e.index)
            if have == e.term:
                continue
            if have is not None:
                self.truncate_after(Index(e.index - 1))
            self.append(entries[k:])
            break
        return Index(prev_index + len(entries))

    def commit_to(self, index: Index) -> None:
        """Raise the commit index (never lowers it)."""
        if index > self.committed:
            if index > self.last_index:
                raise LogSafetyError(f"commit {index} beyond last index {self.last_index}")
            self.committed = index

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (received from a leader); the snapshot is unstable."""
        if snapshot.meta.index < self.committed:
            raise LogSafetyError("a snapshot below the commit index must not replace the log")
        self._snapshot = snapshot
        self._snapshot_stable = False
        self._entries = []
        self._configs = []
        self.committed = snapshot.meta.index
        self.stable_index = snapshot.meta.index

    def replay_snapshot(self) -> None:
        """Treat the snapshot and every entry after it as not yet persisted (nor the snapshot applied)."""
        self._snapshot_stable = False
        self.stable_index = self._snapshot.meta.index

    def compact(self, index: Index, data: bytes) -> Snapshot:
        """Drop the entries up to ``index`` (already applied and durable), keeping a snapshot in their place."""
        base = self._snapshot.meta.index
        if not base < index <= self.applied:
            raise ValueError(f"can only compact to an applied index in ({base}, {self.applied}], not {index}")
        if index > self.stable_index or not self._snapshot_stable:
            raise ValueError("can only compact durable entries")
        term = self.term_at(index)
        assert term is not None
        meta = SnapshotMeta(index, term, self.membership_at(index))
        self._entries = self._entries[index - base :]
        self._configs = [(at, m) for at, m in self._configs if at > index]
        self._snapshot = Snapshot(meta, data)
        return self._snapshot

    # ---- durability and application --------------------------------------------------------------------

    def unstable_snapshot(self) -> Snapshot | None:
        return None if self._snapshot_stable else self._snapshot

    def unstable_entries(self) -> tuple[Entry, ...]:
        base = self._snapshot.meta.index
        return tuple(self._entries[self.stable_index - base :])

    def stable_to(self, index: Index, term: Term) -> None:
        """The driver persisted entries up to ``index`` (whose term was ``term`` when it was handed out).

        Ignored if the log changed underneath meanwhile (the entry was truncated or replaced, or a
        snapshot replaced the log): the newer entries are still unstable and will be handed out again.
        """
        if self.term_at(index) == term and index > self.stable_index and index > self._snapshot.meta.index:
            self.stable_index = index

    def stable_snapshot_to(self, index: Index) -> None:
        """The driver persisted the snapshot at ``index``."""
        if not self._snapshot_stable and self._snapshot.meta.index == index:
            self._snapshot_stable = True

    def to_apply(self) -> tuple[Entry, ...]:
        """Committed entries the application has not applied yet (after a pending snapshot, if any)."""
        lo = max(self.applied, self._snapshot.meta.index) + 1
        if lo > self.committed:
            return ()
        return self.slice(lo, self.committed + 1)

    def applied_to(self, index: Index) -> None:
        if index > self.committed:
            raise LogSafetyError(f"applied {index} beyond commit {self.committed}")
        self.applied = max(self.applied, index)
