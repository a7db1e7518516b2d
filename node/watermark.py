"""The node's high-water mark: the newest block it committed and the Raft hard state it persisted, kept in a
small fsynced file outside LevelDB.

Why a file of its own: damage to LevelDB's newest write-ahead log (a truncated or deleted ``.log``) rolls the
store back to an older state that is consistent in itself. Every record inside LevelDB (height, head hash, Raft
hard state and log, commit certificates) rolls back with it, so nothing inside the store can tell. The mark
outside it survives, and a store whose chain is shorter than the mark, holds a different block at the mark's
height, or whose Raft term, vote or commit index is behind the mark's, is refused by ``cemp verify`` and at node
start.

Invariants:
- the mark only ever describes state that is already durable in the store: it is advanced after the synced
  LevelDB batch it describes, by a writer thread (``pwrite`` + ``fdatasync``), so the commit path does not wait
  for a second sync. A crash may leave the mark a step behind the store, never ahead; ``close`` (a clean stop)
  writes the latest mark before returning;
- height, Raft term and commit index in the mark never decrease;
- one 84-byte record (magic, height, block hash, term, vote digest, commit, CRC-32) at offset 0, rewritten in
  place: a write that small inside one sector is atomic on the disks a node runs on;
- the store records ``schema.META_WATERMARK`` once the file exists, so a deleted mark file is reported as damage
  rather than taken for a data directory made before marks existed.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

MAGIC = b"CEMPHWM2"
_RECORD = struct.Struct(">8sQ32sQ8sQ")
SIZE = _RECORD.size + 4


class WatermarkError(Exception):
    """The mark file is damaged, or the store disagrees with it (rolled back or rewritten)."""


@dataclass(frozen=True, slots=True)
class Mark:
    height: int
    block_hash: bytes
    term: int = 0
    """Raft term of the last hard state this node persisted (0: single node, or none yet)."""
    vote: bytes = b"\x00" * 8
    """First 8 bytes of SHA-256 of the node voted for in ``term`` (zeros: no vote)."""
    commit: int = 0
    """Raft commit index of the last hard state this node persisted."""


def vote_digest(vote: str | None) -> bytes:
    return b"\x00" * 8 if not vote else hashlib.sha256(vote.encode()).digest()[:8]


def path_beside(ledger_path: Path) -> Path:
    """Where the mark of the LevelDB directory ``ledger_path`` lives: ``<data_dir>/ledger.hwm``."""
    return ledger_path.with_name(ledger_path.name + ".hwm")


def encode(mark: Mark) -> bytes:
    body = _RECORD.pack(MAGIC, mark.height, mark.block_hash, mark.term, mark.vote, mark.commit)
    return body + zlib.crc32(body).to_bytes(4, "big")


def decode(raw: bytes, path: Path) -> Mark:
    if len(raw) != SIZE:
        raise WatermarkError(f"{path} is {len(raw)} bytes, not {SIZE}: the high-water mark file is damaged")
    body, crc = raw[:-4], raw[-4:]
    magic, height, block_hash, term, vote, commit = _RECORD.unpack(body)
    if magic != MAGIC or zlib.crc32(body).to_bytes(4, "big") != crc:
        raise WatermarkError(f"{path} fails its checksum: the high-water mark file is damaged")
    return Mark(height, block_hash, term, vote, commit)


class Watermark:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._mark: Mark | None = None
        self._written: Mark | None = None
        self._writer: threading.Thread | None = None
        self._closed = False

    def read(self) -> Mark | None:
        """The recorded mark; None if there is no file."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise WatermarkError(f"cannot read the high-water mark file {self.path}: {e}") from None
        mark = decode(raw, self.path)
        with self._lock:
            if self._mark is None:
                self._mark = self._written = mark
        return mark

    def create(self, mark: Mark) -> None:
        """Write the first mark synchronously (a new store, or one made before marks existed)."""
        with self._lock:
            self._mark = mark
            self._write_locked()

    def advance_block(self, height: int, block_hash: bytes) -> None:
        """The block at ``height`` is committed (call after the store's synced commit batch)."""
        with self._lock:
            m = self._mark or Mark(0, b"\x00" * 32)
            if height >= m.height:
                self._mark = replace(m, height=height, block_hash=bytes(block_hash))
                self._kick_locked()

    def advance_raft(self, term: int, vote: str | None, commit: int) -> None:
        """A Raft hard state was persisted (call after its synced batch)."""
        with self._lock:
            m = self._mark or Mark(0, b"\x00" * 32)
            if (term, commit) != (m.term, m.commit) or vote_digest(vote) != m.vote:
                if term > m.term:
                    m = replace(m, term=term, vote=vote_digest(vote))
                elif term == m.term and vote:
                    m = replace(m, vote=vote_digest(vote))
                self._mark = replace(m, commit=max(commit, m.commit))
                self._kick_locked()

    def _kick_locked(self) -> None:
        if self._writer is None and not self._closed:
            self._writer = threading.Thread(target=self._run, name="watermark", daemon=True)
            self._writer.start()
        self._cond.notify()

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                if self._mark == self._written:
                    self._cond.wait()
                    continue
                self._write_locked()

    def _write_locked(self) -> None:
        mark = self._mark
        if mark is None:
            return
        raw = encode(mark)
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            if created:
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)  # the new name must survive a crash too
                finally:
                    os.close(dfd)
        os.pwrite(self._fd, raw, 0)
        os.fdatasync(self._fd)
        self._written = mark

    def flush(self) -> None:
        with self._lock:
            if self._mark != self._written:
                self._write_locked()

    def close(self) -> None:
        """Write the latest mark, stop the writer and close the file."""
        with self._lock:
            if self._mark != self._written:
                self._write_locked()
            self._closed = True
            self._cond.notify()
        if self._writer is not None:
            self._writer.join()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def check_store(
    mark: Mark, height: int, hash_at: dict[int, bytes] | None, index_height: int | None
) -> str | None:
    """Why the store (head ``height``) does not hold the chain the mark vouches for; None if it does.

    ``index_height`` is what the store's hash index says about ``mark.block_hash`` (None: not indexed);
    ``hash_at`` optionally gives block hashes by height already computed by the caller.
    """
    if height < mark.height:
        return (
            f"the store's chain ends at block {height}, but this node had committed block {mark.height} "
            "(high-water mark): its newest writes were lost (a truncated or deleted LevelDB .log file?)"
        )
    if hash_at is not None and mark.height in hash_at:
        if hash_at[mark.height] != mark.block_hash:
            return (
                f"block {mark.height} is not the block this node committed at that height (high-water mark)"
            )
    elif mark.height > 0 and index_height != mark.height:
        return f"the block this node committed at height {mark.height} (high-water mark) is not in the store"
    return None


def check_raft(mark: Mark, term: int, vote: str | None, commit: int, last_index: int) -> str | None:
    """Why the store's Raft hard state (and log end) is behind what the mark says was persisted; None if not."""
    if term < mark.term:
        return (
            f"the store's raft term is {term}, but this node had persisted term {mark.term} (high-water mark)"
        )
    if term == mark.term and mark.vote != b"\x00" * 8 and vote_digest(vote) != mark.vote:
        return (
            f"the store's raft vote in term {term} is not the one this node had persisted (high-water mark)"
        )
    if commit < mark.commit:
        return f"the store's raft commit index is {commit}, but this node had persisted {mark.commit} (high-water mark)"
    if last_index < mark.commit:
        return f"the store's raft log ends at entry {last_index}, before the committed entry {mark.commit}"
    return None


__all__ = ["Mark", "Watermark", "WatermarkError", "check_raft", "check_store", "path_beside", "vote_digest"]
