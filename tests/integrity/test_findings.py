"""Issue 8's tamper and corruption findings, each reproduced on a copy of a stopped node's files (made by a real
three-process cluster run) and now refused: by ``cemp verify`` with one line naming what and where, and by
``cemp node``, which will not start on a damaged store, with no traceback anywhere."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cemp import wiring
from consensus.messages import Entry, EntryKind
from node import codec, schema
from node.raftstore import ENTRY, ENTRY_STOP
from node.store import LevelDBStore
from node.types import Block
from node.verify import verify_data_dir, verify_store
from node.watermark import path_beside
from tests.integrity.conftest import NodeFiles
from tests.integrity.leveldb_files import break_compressed_block

pytestmark = pytest.mark.slow

CEMP = str(Path(sys.executable).with_name("cemp"))


def node_start_refused(files: NodeFiles) -> str:
    """Run ``cemp node`` on ``files``; it must refuse to start (exit 3) with a message and no traceback."""
    proc = subprocess.run(
        [CEMP, "node", "--config", str(files.config), "--log-level", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=files.root,
    )
    assert proc.returncode == 3, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "cannot start node: storage corrupted" in proc.stderr or "cannot start node:" in proc.stderr
    return proc.stderr


def cemp_verify(files: NodeFiles) -> tuple[int, dict[str, object], str]:
    proc = subprocess.run(
        [CEMP, "verify", "--data-dir", str(files.data_dir), "--quiet", "--genesis", str(files.genesis)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return proc.returncode, json.loads(lines[0]), proc.stderr


def block_entries(store: LevelDBStore) -> list[tuple[bytes, Entry]]:
    out = []
    for k, v in store.iterate(ENTRY, ENTRY_STOP):
        e = codec.decode(Entry, v)
        if e.kind == EntryKind.NORMAL and codec.decode(Block, e.data).txs:
            out.append((k, e))
    return out


def test_pristine_copy_verifies_and_starts_clean(stopped_node: NodeFiles, tmp_path: Path) -> None:
    files = stopped_node.copy(tmp_path / "n")
    rc, doc, _ = cemp_verify(files)
    assert rc == 0 and doc["ok"] and doc["height"] == files.height, doc
    assert int(str(doc["raft_entries"])) > files.height


def test_flipped_byte_in_raft_log_is_reported(stopped_node: NodeFiles, tmp_path: Path) -> None:
    """Finding: a flipped byte in the Raft log passed ``cemp verify`` (6 of 6). Now every flip in an entry that
    carries a block, anywhere in the entry's bytes, is reported and names the entry."""
    files = stopped_node.copy(tmp_path / "n")
    rng = random.Random(8_1)
    store = LevelDBStore(files.ledger, create=False)
    try:
        entries = block_entries(store)
        assert len(entries) >= 8
        trials = 0
        for key, e in entries:
            raw = codec.encode(e)
            for pos in rng.sample(range(len(raw)), 6):
                flipped = bytearray(raw)
                flipped[pos] ^= 1 << rng.randrange(8)
                store.write({key: bytes(flipped)}, sync=False)
                try:
                    rep = verify_store(store, wiring.kinds(), workers=0)
                finally:
                    store.write({key: raw}, sync=False)
                assert not rep.ok, f"flip at byte {pos} of {schema.describe_key(key)} went unnoticed"
                assert "raft" in rep.problem, rep.problem
                trials += 1
        assert trials >= 48
        assert verify_store(store, wiring.kinds(), workers=0).ok
        # The case: one tx byte of the block inside an entry (the header and its signature intact).
        key, e = entries[len(entries) // 2]
        data = bytearray(e.data)
        data[-10] ^= 0x01
        store.write({key: codec.encode(Entry(e.term, e.index, e.kind, bytes(data)))}, sync=True)
    finally:
        store.close()
    rep = verify_data_dir(files.data_dir, wiring.kinds(), workers=0)
    assert not rep.ok and f"raft log entry {int.from_bytes(key[2:], 'big')}" in rep.problem, rep.problem
    err = node_start_refused(files)
    assert "raft log entry" in err


def test_truncated_write_ahead_log_is_a_rollback(stopped_node: NodeFiles, tmp_path: Path) -> None:
    """Finding: truncating the newest LevelDB .log rolled the chain back silently; verify passed at a lower
    height and the node served the shorter chain. The high-water mark beside the store catches it."""
    files = stopped_node.copy(tmp_path / "n")
    (log,) = files.ledger.glob("*.log")
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    rep = verify_data_dir(files.data_dir, wiring.kinds(), workers=0)
    assert not rep.ok
    assert f"this node had committed block {files.height}" in rep.problem, rep.problem
    err = node_start_refused(files)
    assert "high-water mark" in err


def test_deleted_watermark_is_reported(stopped_node: NodeFiles, tmp_path: Path) -> None:
    files = stopped_node.copy(tmp_path / "n")
    path_beside(files.ledger).unlink()
    rep = verify_data_dir(files.data_dir, wiring.kinds(), workers=0)
    assert not rep.ok and "high-water mark file" in rep.problem and "missing" in rep.problem
    node_start_refused(files)


def test_node_refuses_tampered_block_bodies(stopped_node: NodeFiles, tmp_path: Path) -> None:
    """Finding: ``cemp node`` started on a copy whose block bodies verify flagged, and served them with 200."""
    files = stopped_node.copy(tmp_path / "n")
    store = LevelDBStore(files.ledger, create=False)
    try:
        for h in (2, files.height - 1):
            raw = bytearray(store.get(schema.block(h)) or b"")
            raw[-5] ^= 0x20  # inside the last tx
            store.write({schema.block(h): bytes(raw)}, sync=True)
    finally:
        store.close()
    assert not verify_data_dir(files.data_dir, wiring.kinds(), workers=0).ok
    err = node_start_refused(files)
    assert "block 2" in err or f"block {files.height - 1}" in err


def test_manifest_damage_deleted_table_and_bad_compressed_block(
    stopped_node: NodeFiles, tmp_path: Path
) -> None:
    """Finding: MANIFEST damage, a deleted table file and an undecodable compressed block ended in raw
    ``CorruptionError`` tracebacks. Now: one line naming the file, from verify (in process and as a command)
    and from node start."""
    cases = {
        "manifest": lambda led: _flip(next(led.glob("MANIFEST-*")), 20),
        "deleted table": lambda led: next(led.glob("*.ldb")).unlink(),
        "bad compressed block": lambda led: break_compressed_block(next(led.glob("*.ldb"))),
    }
    for name, damage in cases.items():
        files = stopped_node.copy(tmp_path / name.replace(" ", "-"))
        damage(files.ledger)
        rep = verify_data_dir(files.data_dir, wiring.kinds(), workers=0)
        assert not rep.ok and rep.problem.startswith("storage corrupted:"), (name, rep.problem)
        assert str(files.ledger) in rep.problem, rep.problem
        rc, doc, _ = cemp_verify(files)
        assert rc == 1 and not doc["ok"] and str(doc["problem"]).startswith("storage corrupted"), doc
        err = node_start_refused(files)
        assert "storage corrupted" in err, (name, err)


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos % len(data)] ^= 0x10
    path.write_bytes(bytes(data))


def test_rolled_back_raft_hard_state_is_reported(stopped_node: NodeFiles, tmp_path: Path) -> None:
    """The Raft hard state lives in the same write-ahead log: a rollback of it alone (a term, vote or commit
    index the node had persisted, and so promised) is caught by the high-water mark too."""
    from consensus.messages import HardState
    from node.raftstore import HARD_STATE

    files = stopped_node.copy(tmp_path / "n")
    store = LevelDBStore(files.ledger, create=False)
    try:
        hs = codec.decode(HardState, store.get(HARD_STATE) or b"")
        store.write(
            {HARD_STATE: codec.encode(HardState(hs.term, hs.vote, type(hs.commit)(hs.commit - 3)))}, sync=True
        )
    finally:
        store.close()
    rep = verify_data_dir(files.data_dir, wiring.kinds(), workers=0)
    assert not rep.ok and "raft commit index" in rep.problem, rep.problem
    node_start_refused(files)
