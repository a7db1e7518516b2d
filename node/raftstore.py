"""Durable Raft state in the ``R`` namespace: hard state, log entries and the snapshot base.

Invariants:
- ``save`` writes entries and hard state in one synced batch; writing entries from index i first deletes every
  stored entry >= i (a leader's log overrides a follower's conflicting suffix);
- ``compact(i)`` deletes entries <= i only after the snapshot base recording i is written in the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.messages import Entry, HardState, Index, Snapshot
from node import codec
from node.store import Store
from node.types import Hash32, Height
from node.watermark import Watermark

HARD_STATE = b"Rhs"
SNAPSHOT = b"Rsnap"
ENTRY = b"Re"
ENTRY_STOP = ENTRY + b"\xff" * 9
RAFT_APPLIED = b"Mraft-applied"
"""Raft index the ledger has applied; written in the same batch as the block an entry carries."""


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """What a Raft snapshot carries: the chain height and block hash it stands for. Blocks are never pruned,
    so a node behind a compacted log catches up by fetching and fully re-verifying the blocks up to it."""

    height: Height
    block_hash: Hash32


def entry_key(index: int) -> bytes:
    return ENTRY + index.to_bytes(8, "big")


class RaftStore:
    def __init__(self, store: Store, watermark: Watermark | None = None) -> None:
        """``watermark``: the node's high-water mark, advanced after every synced hard state (the caller has
        checked the stored state against it first: ``node.integrity.check_raft_log``)."""
        self.store = store
        self.watermark = watermark
        self.last_index = 0
        last = list(self.store.iterate(ENTRY, ENTRY_STOP, reverse=True, limit=1))
        if last:
            self.last_index = int.from_bytes(last[0][0][len(ENTRY) :], "big")
        hs = self.hard_state()
        if watermark is not None and hs is not None:
            watermark.advance_raft(int(hs.term), hs.vote, int(hs.commit))

    def hard_state(self) -> HardState | None:
        raw = self.store.get(HARD_STATE)
        return None if raw is None else codec.decode(HardState, raw)

    def snapshot(self) -> Snapshot | None:
        """The stored snapshot base, with its data (the driver's reference to the block it stands for)."""
        raw = self.store.get(SNAPSHOT)
        return None if raw is None else codec.decode(Snapshot, raw)

    def entries(self, start: int = 0) -> list[Entry]:
        return [codec.decode(Entry, v) for _, v in self.store.iterate(entry_key(start), ENTRY_STOP)]

    def entry(self, index: int) -> Entry | None:
        raw = self.store.get(entry_key(index))
        return None if raw is None else codec.decode(Entry, raw)

    def save(self, hs: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        changes: dict[bytes, bytes | None] = {}
        if entries:
            first = entries[0].index
            for i in range(first, self.last_index + 1):
                changes[entry_key(i)] = None
            for e in entries:
                changes[entry_key(e.index)] = codec.encode(e)
        if snapshot is not None:
            # A snapshot from the leader replaces the stored log up to its index.
            changes[SNAPSHOT] = codec.encode(snapshot)
            for i in range(self._first_index(), snapshot.meta.index + 1):
                changes.setdefault(entry_key(i), None)
        if hs is not None:
            changes[HARD_STATE] = codec.encode(hs)
        if changes:
            self.store.write(changes, sync=True)
        if hs is not None and self.watermark is not None:
            self.watermark.advance_raft(int(hs.term), hs.vote, int(hs.commit))
        if entries:
            self.last_index = entries[-1].index
        if snapshot is not None and snapshot.meta.index > self.last_index:
            self.last_index = snapshot.meta.index

    def _first_index(self) -> int:
        first = list(self.store.iterate(ENTRY, ENTRY_STOP, limit=1))
        return int.from_bytes(first[0][0][len(ENTRY) :], "big") if first else self.last_index + 1

    def compact(self, snap: Snapshot) -> None:
        """Record ``snap`` as the snapshot base and drop the entries it covers."""
        meta = snap.meta
        changes: dict[bytes, bytes | None] = {SNAPSHOT: codec.encode(snap)}
        for i in range(self._first_index(), min(meta.index, self.last_index) + 1):
            changes[entry_key(i)] = None
        self.store.write(changes, sync=True)


__all__ = ["RAFT_APPLIED", "Index", "RaftStore", "SnapshotRef"]
