"""Staged application state: a write overlay on top of committed storage, with per-tx rollback.

Invariants:
- nothing reaches the store until ``Ledger.commit`` writes the overlay in one batch;
- every put/delete on a state key updates the running ``StateHash`` (remove old pair, add new pair);
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
        self.acc = acc.copy()
        self._journal: list[tuple[bytes, object]] | None = None
        self._acc_before = 0

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.store.get(key)

    def _record(self, key: bytes) -> None:
        if self._journal is not None:
            self._journal.append((key, self.writes.get(key, _MISSING) if key in self.writes else _MISSING))

    def put(self, key: bytes, value: bytes) -> None:
        old = self.get(key)
        if old == value:
            return
        self._record(key)
        if schema.is_state_key(key):
            if old is not None:
                self.acc.remove(key, old)
            self.acc.add(key, value)
        self.writes[key] = value

    def put_new(self, key: bytes, value: bytes) -> None:
        """Put a key the caller knows is absent (saves a read; readings index)."""
        self._record(key)
        self.acc.add(key, value)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        old = self.get(key)
        if old is None:
            return
        self._record(key)
        if schema.is_state_key(key):
            self.acc.remove(key, old)
        self.writes[key] = None

    # --- per-tx journal ------------------------------------------------------------------
    def begin(self) -> None:
        self._journal = []
        self._acc_before = self.acc.acc

    def release(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        assert self._journal is not None, "rollback without begin"
        for key, prev in reversed(self._journal):
            if prev is _MISSING:
                self.writes.pop(key, None)
            else:
                self.writes[key] = prev  # type: ignore[assignment]
        self.acc.acc = self._acc_before
        self._journal = None
