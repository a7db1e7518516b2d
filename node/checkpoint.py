"""``cemp verify``'s checkpoint: the replayed state at the last height it verified, so that the next run re-checks
only newer blocks. Kept in a LevelDB of its own beside the node's (``<data_dir>/verify-checkpoint``), never in the
node's store: the verifier must not trust what it is checking.

Invariants:
- written only after a run that found nothing wrong, into a fresh directory that then replaces the old one (a crash
  leaves the old checkpoint or none, never half of one);
- one record (key ``RECORD``) holds the genesis hash, the height, that block's hash, the replay's state accumulator
  and a SHA-256 over every other stored pair in key order; loading recomputes that digest, so a damaged checkpoint
  is noticed and replaced by a full run instead of being trusted;
- besides the state it holds the meta records and the head block a ledger needs to open on it.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from node import schema
from node.store import LevelDBStore, MemoryStore, StorageError, Store

RECORD = b"\x00verify-checkpoint"
_FMT = struct.Struct(">8s32sQ32s512s32s")
_MAGIC = b"CEMPVCP1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    genesis_hash: bytes
    height: int
    block_hash: bytes
    acc: bytes
    """The replay's state accumulator at ``height`` (512 bytes), as checked against the node's."""
    digest: bytes


def path_for(ledger_path: Path) -> Path:
    return ledger_path.with_name("verify-checkpoint")


def _digest(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    h = hashlib.sha256()
    for k, v in pairs:
        h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
    return h.digest()


def load(path: Path, genesis_hash: bytes) -> tuple[Checkpoint, MemoryStore] | str:
    """The checkpoint and a memory store holding what it saved; or why it cannot be used."""
    if not (path / "CURRENT").exists():
        return "no checkpoint"
    try:
        db = LevelDBStore(path, create=False)
    except StorageError as e:
        return f"the checkpoint is unreadable ({e.detail})"
    try:
        raw = db.get(RECORD)
        if raw is None or len(raw) != _FMT.size:
            return "the checkpoint has no valid record"
        magic, g, height, block_hash, acc, digest = _FMT.unpack(raw)
        if magic != _MAGIC or g != genesis_hash:
            return "the checkpoint belongs to another chain"
        mem = MemoryStore()
        h = hashlib.sha256()
        for k, v in db.scan_all():
            if k == RECORD:
                continue
            h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
            mem.data[k] = v
        mem._sorted = False
        if h.digest() != digest:
            return "the checkpoint's contents do not match its digest"
        return Checkpoint(g, height, block_hash, acc, digest), mem
    except StorageError as e:
        return f"the checkpoint is unreadable ({e.detail})"
    finally:
        db.close()


def save(
    path: Path, genesis_hash: bytes, height: int, block_hash: bytes, replay: MemoryStore, node: Store
) -> None:
    """Write the replay's state and meta at ``height`` (plus the head block, its index entry and results from the
    node's store) as the new checkpoint."""
    pairs: dict[bytes, bytes] = {}
    for k, v in replay.data.items():
        if schema.is_state_key(k) or k in (
            schema.META_GENESIS,
            schema.META_HEIGHT,
            schema.META_STATE_ACC,
            schema.META_LAST_HASH,
        ):
            pairs[k] = v
    if height:
        for k in (schema.block(height), schema.block_results(height), schema.block_by_hash(block_hash)):
            got = node.get(k)
            if got is not None:
                pairs[k] = got
    ordered = sorted(pairs.items())
    record = _FMT.pack(
        _MAGIC, genesis_hash, height, block_hash, pairs[schema.META_STATE_ACC], _digest(ordered)
    )
    tmp = path.with_name(path.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    db = LevelDBStore(tmp)
    try:
        for i in range(0, len(ordered), 20_000):
            db.write(dict(ordered[i : i + 20_000]), sync=False)
        db.write({RECORD: record}, sync=True)
    finally:
        db.close()
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


__all__ = ["Checkpoint", "load", "path_for", "save"]
