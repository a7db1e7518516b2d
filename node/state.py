"""Staged application state: a write overlay on top of committed storage, with per-tx rollback.

Invariants:
- nothing reaches the store until ``Ledger.commit`` writes the overlay in one batch;
- the state accumulator (``acc``) is derived, once, from the committed accumulator and the block's net change
  per key: for each state key written, remove its committed (original) pair and add its final pair. A key that a
  block updates many times (a device record, a nonce, an hourly aggregate) is hashed once, not once per write;
- a tx either leaves all its writes or none: ``begin``/``rollback``/``release`` journal each tx.
"""

from __future__ import annotations

from node import schema
from node.statehash import StateHash
from node.store import Store

_MISSING = object()


class StateView:
    """Read-only access to committed state (the query path)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)


class Overlay(StateView):
    def __init__(self, store: Store, acc: StateHash) -> None:
        super().__init__(store)
        self.writes: dict[bytes, bytes | None] = {}
        self.originals: dict[bytes, bytes | None] = {}
        """Committed value of every key this block wrote (None: absent), recorded at the first write."""
        self.base_acc = acc.copy()
        self._acc: StateHash | None = None
        self._journal: list[tuple[bytes, object]] | None = None

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.store.get(key)

    def _record(self, key: bytes, old: bytes | None) -> None:
        if key not in self.originals:
            self.originals[key] = old  # first touch: ``old`` is still the committed value
        if self._journal is not None:
            self._journal.append((key, self.writes.get(key, _MISSING)))
        self._acc = None

    def put(self, key: bytes, value: bytes) -> None:
        old = self.get(key)
        if old == value:
            return
        self._record(key, old)
        self.writes[key] = value

    def put_new(self, key: bytes, value: bytes) -> None:
        """Put a key the caller knows is absent (saves a read; readings index)."""
        self._record(key, None)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        old = self.get(key)
        if old is None:
            return
        self._record(key, old)
        self.writes[key] = None

    @property
    def acc(self) -> StateHash:
        """The accumulator after this overlay's writes (computed on demand, cached until the next write)."""
        if self._acc is None:
            acc = self.base_acc.copy()
            for key, value in self.writes.items():
                if not schema.is_state_key(key):
                    continue
                original = self.originals.get(key)
                if original == value:
                    continue
                if original is not None:
                    acc.remove(key, original)
                if value is not None:
                    acc.add(key, value)
            self._acc = acc
        return self._acc

    # --- per-tx journal ------------------------------------------------------------------
    def begin(self) -> None:
        self._journal = []

    def release(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        assert self._journal is not None, "rollback without begin"
        for key, prev in reversed(self._journal):
            if prev is _MISSING:
                self.writes.pop(key, None)
            else:
                self.writes[key] = prev  # type: ignore[assignment]
        self._journal = None
        self._acc = None
