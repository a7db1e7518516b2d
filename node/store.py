"""Key-value storage behind one small interface, with a LevelDB implementation and an in-memory twin.

Invariants:
- ``write`` applies all its puts and deletes atomically (one LevelDB write batch); with ``sync=True`` it returns
  only after the batch is on disk;
- LevelDB is opened with ``paranoid_checks`` (a damaged write-ahead log, MANIFEST or missing table file fails the
  open instead of being skipped) and every read checks the CRC of each table block it touches
  (``verify_checksums``); a bloom filter (10 bits per key) lets a lookup of an absent key skip table blocks;
- every LevelDB failure surfaces as one ``StorageError`` naming the database, what was being read and LevelDB's
  own words (which name the damaged file), never as a raw ``plyvel`` exception.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import plyvel

BLOOM_BITS_PER_KEY = 10


class StorageError(Exception):
    """The store cannot be read or written as it is: a damaged or missing file, or data that fails its checks.

    ``str()`` is one line for a person: which database, what was being read, and what is wrong.
    """

    def __init__(self, path: Path | str, what: str, detail: str) -> None:
        self.path = str(path)
        self.what = what
        self.detail = detail
        super().__init__(f"storage corrupted: {what} in {self.path}: {detail}")


def _describe(key: bytes) -> str:
    from node.schema import describe_key

    return describe_key(key)


def _plyvel_detail(e: Exception) -> str:
    """LevelDB's own words (plyvel passes them as bytes), on one line."""
    arg = e.args[0] if e.args else b""
    msg = arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)
    return (msg or type(e).__name__).replace("\n", " ")


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


def _checked(it: Any, limit: int | None, path: Path, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield up to ``limit`` pairs from a plyvel iterator as ``StorageError``s, and always close it."""
    try:
        if limit is None:  # the common whole-range scan: no per-item work in Python
            yield from it
        else:
            for n, kv in enumerate(it):
                if n >= limit:
                    break
                yield kv
    except plyvel.Error as e:
        raise StorageError(path, f"reading {_describe(start)} onwards", _plyvel_detail(e)) from None
    finally:
        it.close()


class _LevelSnapshot:
    def __init__(self, db: plyvel.DB, path: Path) -> None:
        self.path = path
        try:
            self.snap = db.snapshot()
        except plyvel.Error as e:
            raise StorageError(path, "taking a snapshot", _plyvel_detail(e)) from None

    def get(self, key: bytes) -> bytes | None:
        try:
            v: bytes | None = self.snap.get(key, verify_checksums=True)
        except plyvel.Error as e:
            raise StorageError(self.path, f"reading {_describe(key)}", _plyvel_detail(e)) from None
        return v

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        it = self.snap.iterator(start=start, stop=stop, reverse=reverse, verify_checksums=True)
        return _checked(it, limit, self.path, start)

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
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not (path / "CURRENT").exists():
            raise StorageError(
                path, "opening the database", "no CURRENT file: not a LevelDB database (or it was deleted)"
            )
        self.path = path
        try:
            self.db = plyvel.DB(
                str(path),
                create_if_missing=create,
                paranoid_checks=True,
                compression="snappy",
                write_buffer_size=16 << 20,
                block_size=16 << 10,
                lru_cache_size=32 << 20,
                bloom_filter_bits=BLOOM_BITS_PER_KEY,
            )
        except plyvel.Error as e:
            raise StorageError(path, "opening the database", _plyvel_detail(e)) from None

    def get(self, key: bytes) -> bytes | None:
        try:
            v: bytes | None = self.db.get(key, verify_checksums=True)
        except plyvel.Error as e:
            raise StorageError(self.path, f"reading {_describe(key)}", _plyvel_detail(e)) from None
        return v

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iterator(start=start, stop=stop, reverse=reverse, verify_checksums=True)
        return _checked(it, limit, self.path, start)

    def scan_all(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value, each table block CRC-checked and not cached (``cemp verify`` reads it all)."""
        it = self.db.iterator(verify_checksums=True, fill_cache=False)
        return _checked(it, None, self.path, b"")

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        try:
            with self.db.write_batch(sync=sync) as wb:
                for k, v in changes.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except plyvel.Error as e:
            raise StorageError(self.path, "writing a batch", _plyvel_detail(e)) from None

    def snapshot(self) -> ReadSnapshot:
        return _LevelSnapshot(self.db, self.path)

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

    def scan_all(self) -> Iterator[tuple[bytes, bytes]]:
        for k in list(self.keys):
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
