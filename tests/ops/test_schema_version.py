"""Storage schema version: new stores are stamped, old ones migrated, newer or unknown ones refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cemp import wiring
from node import schema
from node.chain import Ledger
from node.migrations import MIGRATIONS, SCHEMA_VERSION, SchemaVersionError, migrate, stored_version
from node.store import LevelDBStore, MemoryStore
from node.verify import verify_store
from tests.support.testing import TestConsortium, free_port


def test_registry_covers_every_step() -> None:
    assert sorted(MIGRATIONS) == list(range(SCHEMA_VERSION))


def test_new_store_is_stamped_and_verifies(consortium: TestConsortium) -> None:
    st = MemoryStore()
    assert stored_version(st) is None
    assert migrate(st) == []
    Ledger(st, consortium.genesis, wiring.kinds())
    assert stored_version(st) == SCHEMA_VERSION
    rep = verify_store(st, wiring.kinds())
    assert rep.ok, rep.problem


def test_store_from_before_versions_is_migrated(consortium: TestConsortium) -> None:
    st = MemoryStore()
    Ledger(st, consortium.genesis, wiring.kinds())  # what an older release left: genesis, no version record
    assert st.get(schema.META_SCHEMA) is None and stored_version(st) == 0
    seen: list[str] = []
    assert migrate(st, seen.append) == [1]
    assert st.get(schema.META_SCHEMA) == b"1" and "0 to 1" in seen[0]
    assert migrate(st) == []  # idempotent


@pytest.mark.parametrize(
    ("raw", "match"),
    [(str(SCHEMA_VERSION + 1).encode(), "newer than this release"), (b"x1", "not a version")],
)
def test_newer_or_garbage_version_refused(consortium: TestConsortium, raw: bytes, match: str) -> None:
    st = MemoryStore()
    Ledger(st, consortium.genesis, wiring.kinds())
    st.write({schema.META_SCHEMA: raw}, sync=True)
    with pytest.raises(SchemaVersionError, match=match):
        migrate(st)
    assert st.get(schema.META_SCHEMA) == raw  # nothing written


def test_node_process_refuses_newer_schema_with_clear_message(tmp_path: Path) -> None:
    port = free_port()
    c = TestConsortium.create(ports=[port])
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path, nid, port)
    store = LevelDBStore(tmp_path / "data" / nid / "ledger")
    Ledger(store, c.genesis, wiring.kinds())
    store.write({schema.META_SCHEMA: b"99"}, sync=True)
    store.close()
    out = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "node", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "schema version 99, newer than this release's" in out.stderr
    assert "Traceback" not in out.stderr
