"""Key-value storage behind one small interface, with a LevelDB implementation and an in-memory twin.

Invariant: ``write`` applies all its puts and deletes atomically (one LevelDB write batch); with
``sync=True`` it returns only after the batch is on disk.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import plyvel


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop`` in key order (descending if ``reverse``)."""
        ...

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        """Atomically put (value) or delete (None) every key in ``changes``."""
        ...

    def snapshot(self) -> ReadSnapshot:
        """A consistent read-only view as of now (later writes are invisible to it)."""
        ...

    def close(self) -> None: ...


class ReadSnapshot(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...

    def release(self) -> None: ...


def _bounded(it: Any, limit: int | None) -> Iterator[tuple[bytes, bytes]]:
    """Yield up to ``limit`` pairs from a plyvel iterator and always close it."""
    try:
        for n, kv in enumerate(it):
            if limit is not None and n >= limit:
                break
            yield kv
    finally:
        it.close()


class _LevelSnapshot:
    def __init__(self, db: plyvel.DB) -> None:
        self.snap = db.snapshot()

    def get(self, key: bytes) -> bytes | None:
        v: bytes | None = self.snap.get(key)
        return v

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        return _bounded(self.snap.iterator(start=start, stop=stop, reverse=reverse), limit)

    def release(self) -> None:
        self.snap.close()


def prefix_stop(prefix: bytes) -> bytes:
    """Smallest key greater than every key that starts with ``prefix``."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\xff" * 64
    p[-1] += 1
    return bytes(p)


class LevelDBStore:
    def __init__(self, path: Path, *, create: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True) if create else None
        self.path = path
        self.db = plyvel.DB(
            str(path),
            create_if_missing=create,
            compression="snappy",
            write_buffer_size=16 << 20,
            block_size=16 << 10,
            lru_cache_size=32 << 20,
        )

    def get(self, key: bytes) -> bytes | None:
        v: bytes | None = self.db.get(key)
        return v

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        return _bounded(self.db.iterator(start=start, stop=stop, reverse=reverse), limit)

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        with self.db.write_batch(sync=sync) as wb:
            for k, v in changes.items():
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)

    def snapshot(self) -> ReadSnapshot:
        return _LevelSnapshot(self.db)

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()


class MemoryStore:
    """In-memory twin for fast tests and for replay during ``cemp verify``."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._sorted = True

    @property
    def keys(self) -> list[bytes]:
        """Sorted keys, rebuilt lazily: writes stay O(1) while a replay inserts millions of keys."""
        if not self._sorted:
            self._keys = sorted(self.data)
            self._sorted = True
        return self._keys

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self.keys, start)
        hi = bisect.bisect_left(self.keys, stop)
        ks = self.keys[lo:hi]
        if reverse:
            ks.reverse()
        if limit is not None:
            ks = ks[:limit]
        for k in ks:
            yield k, self.data[k]

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        data = self.data
        for k, v in changes.items():
            if v is None:
                if data.pop(k, None) is not None:
                    self._sorted = False
            else:
                if k not in data:
                    self._sorted = False
                data[k] = v

    def snapshot(self) -> ReadSnapshot:
        copy = MemoryStore()
        copy.data = dict(self.data)
        copy._sorted = False
        return _MemorySnapshot(copy)

    def close(self) -> None:
        pass


class _MemorySnapshot:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.get = store.get
        self.iterate = store.iterate

    def release(self) -> None:
        self.store.data.clear()
