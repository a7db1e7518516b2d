"""``cemp verify`` resumes from the height its last clean run verified (a checkpoint of the replayed state kept
beside the node's store, never in it) and re-checks only newer blocks, with the same verdict as a full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cemp import wiring
from node import schema
from node.chain import Ledger
from node.checkpoint import path_for
from node.store import LevelDBStore
from node.verify import verify_data_dir
from node.watermark import Watermark, path_beside
from tests.support.testing import GENESIS_TIME_MS, TestConsortium, TestDevice
from tests.unit.test_ledger import produce

T0 = GENESIS_TIME_MS + 86_400_000


def grow(data: Path, c: TestConsortium, devs: list[TestDevice], blocks: int, t: int) -> int:
    path = data / "ledger"
    store = LevelDBStore(path)
    wm = Watermark(path_beside(path))
    led = Ledger(store, c.genesis, wiring.kinds(), wm)
    try:
        for _ in range(blocks):
            t += 60_000
            produce(led, c, [d.batch(c.chain, [(t, "energy.import", t // 1000, "Wh")]) for d in devs], t)
    finally:
        store.close()
        wm.close()
    return t


def test_incremental_verify_resumes_and_agrees_with_a_full_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = TestConsortium.create()
    devs, regs = [], []
    for i in range(3):
        d, reg = c.register_device(f"88.123.45/101.4.{i}")
        devs.append(d)
        regs.append(reg)
    path = data / "ledger"
    store = LevelDBStore(path)
    led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(path)))
    produce(led, c, regs, T0)
    store.close()
    led.watermark.close()  # type: ignore[union-attr]
    t = grow(data, c, devs, 12, T0)

    first = verify_data_dir(data, wiring.kinds(), workers=2, incremental=True)
    assert first.ok, first.problem
    assert first.resumed_from == 0 and first.blocks == 13
    assert (path_for(path) / "CURRENT").exists()

    t = grow(data, c, devs, 5, t)
    second = verify_data_dir(data, wiring.kinds(), workers=2, incremental=True)
    assert second.ok, second.problem
    assert second.resumed_from == 13 and second.blocks == 5 and second.height == 18
    full = verify_data_dir(data, wiring.kinds(), workers=0)
    assert full.ok and full.blocks == 18
    assert (second.head_hash, second.app_hash, second.state_keys) == (
        full.head_hash,
        full.app_hash,
        full.state_keys,
    )

    # A new block tampered with is caught by the incremental run.
    grow(data, c, devs, 2, t)
    store = LevelDBStore(path, create=False)
    raw = bytearray(store.get(schema.block(20)) or b"")
    raw[-3] ^= 0x01
    store.write({schema.block(20): bytes(raw)}, sync=True)
    store.close()
    rep = verify_data_dir(data, wiring.kinds(), workers=2, incremental=True)
    assert not rep.ok and rep.resumed_from == 18 and "block 20" in rep.problem, rep.problem


def test_damaged_checkpoint_falls_back_to_a_full_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = TestConsortium.create()
    d, reg = c.register_device("88.123.45/101.4.1")
    path = data / "ledger"
    store = LevelDBStore(path)
    led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(path)))
    produce(led, c, [reg], T0)
    store.close()
    led.watermark.close()  # type: ignore[union-attr]
    grow(data, c, [d], 6, T0)
    assert verify_data_dir(data, wiring.kinds(), workers=0, incremental=True).ok
    table = next(path_for(path).glob("*.ldb"), None) or next(path_for(path).glob("*.log"))
    blob = bytearray(table.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    table.write_bytes(bytes(blob))
    rep = verify_data_dir(data, wiring.kinds(), workers=0, incremental=True)
    assert rep.ok and rep.resumed_from == 0 and rep.blocks == 7, rep.problem
    assert any("checkpoint not used" in w for w in rep.warnings), rep.warnings
    # The command line resumes by default and says from where; --full replays everything.
    cemp = str(Path(sys.executable).with_name("cemp"))
    out = subprocess.run([cemp, "verify", "--data-dir", str(data), "--quiet"], capture_output=True, text=True)
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["resumed_from"] == 7, doc
    out = subprocess.run(
        [cemp, "verify", "--data-dir", str(data), "--quiet", "--full"], capture_output=True, text=True
    )
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["resumed_from"] == 0 and doc["blocks"] == 7, doc
