"""Staged application state: a write overlay on top of committed storage, with per-tx rollback.

Invariants:
- nothing reaches the store until ``Ledger.commit`` writes the overlay in one batch;
- the state accumulator (``acc``) is derived, once, from the committed accumulator and the block's net change
  per key: for each state key written, remove its committed (original) pair and add its final pair. A key that a
  block updates many times (a device record, a nonce, an hourly aggregate) is hashed once, not once per write;
- a tx either leaves all its writes or none: ``begin``/``rollback``/``release`` journal each tx.
"""

from __future__ import annotations

from itertools import repeat

from node import schema
from node.statehash import MASK, StateHash, element
from node.store import Store

_MISSING = object()
_UPDATED = frozenset(b"dnac")
"""State namespaces whose keys blocks update (device records, nonces, hourly aggregates, counters):
only their elements are worth remembering (readings and tx locations are written once)."""


class StateView:
    """Read-only access to committed state (the query path)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)


class ElementCache:
    """Recently hashed state pairs: key -> (value, ``statehash.element(key, value)``).

    A key a block updates (a device record, a nonce, an hourly aggregate) was added to the accumulator with the
    value it now replaces, usually a block or two earlier: its element is taken from here instead of hashed again
    (SHAKE-128 to 512 bytes, the largest cost of a small block's accumulator update). An entry is used only for
    the exact value it was computed for; the cache holds at most ``limit`` entries (about 600 bytes each)."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int = 20_000) -> None:
        self.entries: dict[bytes, tuple[bytes, int]] = {}
        self.limit = limit

    def element(self, key: bytes, value: bytes) -> int:
        got = self.entries.get(key)
        if got is not None and got[0] == value:
            return got[1]
        return element(key, value)

    def remember(self, key: bytes, value: bytes, el: int) -> None:
        entries = self.entries
        if len(entries) >= self.limit and key not in entries and entries:
            entries.pop(next(iter(entries)), None)  # the oldest insertion
        entries[key] = (value, el)


class Overlay(StateView):
    def __init__(self, store: Store, acc: StateHash, elements: ElementCache | None = None) -> None:
        super().__init__(store)
        self.elements = elements
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

    def put_new_many(self, items: dict[bytes, bytes]) -> None:
        """``put_new`` of every pair (keys the caller knows are absent), journalled as one run."""
        writes = self.writes
        if self._journal is not None:
            self._journal.extend(zip(items, map(writes.get, items, repeat(_MISSING)), strict=True))
        originals = self.originals
        originals.update(dict.fromkeys(items.keys() - originals.keys()))
        writes.update(items)
        self._acc = None

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
            added = removed = 0  # summed first, reduced once (the same sum modulo 2^4096 as pair by pair)
            originals = self.originals
            is_state = schema.is_state_key
            cache = self.elements
            for key, value in self.writes.items():
                if not is_state(key):
                    continue
                original = originals.get(key)
                if original == value:
                    continue
                if original is not None:
                    removed += element(key, original) if cache is None else cache.element(key, original)
                if value is not None:
                    el = element(key, value)
                    added += el
                    if cache is not None and key[0] in _UPDATED:
                        cache.remember(key, value, el)
            self._acc = StateHash((self.base_acc.acc + added - removed) & MASK)
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
