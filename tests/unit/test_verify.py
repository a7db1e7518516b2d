"""``cemp verify``: a clean chain passes; flipping any single byte of a stored block or state value fails."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cemp import wiring
from node import schema
from node.chain import Ledger
from node.store import LevelDBStore, prefix_stop
from node.verify import verify_data_dir, verify_store
from tests.support.testing import GENESIS_TIME_MS, TestConsortium
from tests.unit.test_ledger import produce

T0 = GENESIS_TIME_MS + 86_400_000


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("chain")
    store = LevelDBStore(d / "ledger")
    c = TestConsortium.create()
    led = Ledger(store, c.genesis, wiring.kinds())
    devs = []
    regs = []
    for i in range(3):
        dev, reg = c.register_device(f"88.123.45/101.1.{i + 1}")
        devs.append(dev)
        regs.append(reg)
    produce(led, c, regs, T0)
    t = T0
    for b in range(8):
        raws = []
        for dev in devs:
            raws.append(
                dev.batch(c.chain, [(t + k * 1000, "energy.import", 10 * b + k, "Wh") for k in range(5)])
            )
        t += 600_000
        produce(led, c, raws, t)
    store.close()
    return d


def test_clean_chain_verifies(chain_dir: Path) -> None:
    rep = verify_data_dir(chain_dir, wiring.kinds(), workers=2)
    assert rep.ok, rep.problem
    assert rep.height == 9 and rep.txs == 27 and rep.state_keys > 120


def _targets(store: LevelDBStore) -> list[tuple[bytes, bytes]]:
    out = list(store.iterate(schema.BLOCK, prefix_stop(schema.BLOCK)))
    for p in schema.STATE_PREFIXES:
        pb = bytes([p])
        out += list(store.iterate(pb, prefix_stop(pb)))
    return out


def test_any_flipped_byte_is_detected(chain_dir: Path) -> None:
    rng = random.Random(20261125)
    store = LevelDBStore(chain_dir / "ledger", create=False)
    try:
        targets = _targets(store)
        blocks = [kv for kv in targets if kv[0][:1] == schema.BLOCK]
        assert len(blocks) == 9
        trials = 0
        # Every block at a few random offsets, and 150 random state values.
        picks = [(k, v, rng.randrange(len(v))) for k, v in blocks for _ in range(6)]
        with_bytes = [kv for kv in targets if kv[1]]  # an empty value (an index mark) has no byte to flip
        picks += [(k, v, rng.randrange(len(v))) for k, v in rng.sample(with_bytes, 150)]
        for key, value, pos in picks:
            flipped = bytearray(value)
            flipped[pos] ^= 1 << rng.randrange(8)
            store.write({key: bytes(flipped)}, sync=False)
            try:
                rep = verify_store(store, wiring.kinds(), workers=0)
            finally:
                store.write({key: value}, sync=False)
            assert not rep.ok, f"flip at {key[:12]!r}[{pos}] went unnoticed"
            assert rep.problem
            trials += 1
        assert trials == 9 * 6 + 150
        assert verify_store(store, wiring.kinds(), workers=0).ok
    finally:
        store.close()


def test_missing_and_extra_state_keys_detected(chain_dir: Path) -> None:
    store = LevelDBStore(chain_dir / "ledger", create=False)
    try:
        k, v = next(store.iterate(b"r", b"s"))
        store.write({k: None}, sync=False)
        rep = verify_store(store, wiring.kinds(), workers=0)
        store.write({k: v}, sync=False)
        assert not rep.ok and "replay only" in rep.problem
        store.write({b"r" + b"\x00" * 20: b"\x90"}, sync=False)
        rep = verify_store(store, wiring.kinds(), workers=0)
        store.write({b"r" + b"\x00" * 20: None}, sync=False)
        assert not rep.ok and "store only" in rep.problem
    finally:
        store.close()


def test_worker_checks_catch_flipped_blocks_and_certificates(chain_dir: Path) -> None:
    """With worker processes (where block decoding, header hashes and every signature are checked first), a
    flipped byte in any block or commit certificate still fails the run."""
    rng = random.Random(20261205)
    store = LevelDBStore(chain_dir / "ledger", create=False)
    try:
        blocks = list(store.iterate(schema.BLOCK, prefix_stop(schema.BLOCK)))
        certs = list(store.iterate(b"Mcert", prefix_stop(b"Mcert")))
        assert len(blocks) == 9 and certs
        picks = [(k, v, rng.randrange(len(v))) for k, v in blocks + certs for _ in range(2)]
        for key, value, pos in picks:
            flipped = bytearray(value)
            flipped[pos] ^= 1 << rng.randrange(8)
            store.write({key: bytes(flipped)}, sync=False)
            try:
                rep = verify_store(store, wiring.kinds(), workers=2)
            finally:
                store.write({key: value}, sync=False)
            assert not rep.ok, f"flip at {key[:12]!r}[{pos}] went unnoticed"
            assert not rep.problem.startswith("internal error"), rep.problem
        assert verify_store(store, wiring.kinds(), workers=2).ok
    finally:
        store.close()


def test_non_canonical_block_is_refused_with_workers(chain_dir: Path) -> None:
    """The same value in a longer msgpack form (array16 instead of a fixarray): the worker does not vouch for
    it, so the replay decodes it canonically itself and names the block."""
    store = LevelDBStore(chain_dir / "ledger", create=False)
    try:
        key = schema.block(4)
        raw = store.get(key)
        assert raw is not None and raw[0] == 0x93
        store.write({key: b"\xdc\x00\x03" + raw[1:]}, sync=False)
        try:
            rep = verify_store(store, wiring.kinds(), workers=2)
        finally:
            store.write({key: raw}, sync=False)
        assert not rep.ok and "block 4 does not decode" in rep.problem, rep.problem
    finally:
        store.close()
