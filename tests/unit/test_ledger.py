"""The apply path on the in-memory store and on LevelDB: results, indexes, determinism, restart."""

from __future__ import annotations

import random
from pathlib import Path

from cemp import wiring
from node import codec, schema
from node.chain import Ledger, header_hash
from node.errors import Code
from node.readings import decode_reading_value, fold
from node.store import LevelDBStore, MemoryStore, Store
from node.types import Block, HourlyAggregate, Nonce, Reading, ShortStr, SignedInt, TimestampMs
from tests.support.testing import GENESIS_TIME_MS, TestConsortium

T0 = GENESIS_TIME_MS + 3_600_000 * 5  # within an hour boundary-friendly window


def produce(led: Ledger, c: TestConsortium, raws: list[bytes], t: int) -> Block:
    nid = c.genesis.nodes[0].node_id
    key = c.node_keys[nid]
    staged = led.execute(
        tuple(raws), time_ms=t, proposer=nid, term=0, last_commit=led.cert(led.height) if led.height else ()
    )
    block = led.sign_block(staged, key)
    led.commit(block, staged, (led.vote(header_hash(block.header), nid, key),))
    return block


def setup_chain(store: Store) -> tuple[TestConsortium, Ledger]:
    c = TestConsortium.create()
    return c, Ledger(store, c.genesis, wiring.kinds())


def test_readings_apply_indexes_and_aggregates() -> None:
    c, led = setup_chain(MemoryStore())
    dev, reg = c.register_device("88.123.45/101.1.1")
    produce(led, c, [reg], T0)
    raw = dev.batch(c.chain, [(T0 + i * 60_000, "energy.import", 1000 + 10 * i, "Wh") for i in range(90)])
    b = produce(led, c, [raw], T0 + 100_000_000)
    assert led.results(b.header.height)[0].code == 0
    rec = led.store.get(schema.device("88.123.45/101.1.1"))
    assert rec is not None
    lo, hi = schema.reading_range(1, 0, 2**62)
    assert len(list(led.store.iterate(lo, hi))) == 90
    # Each reading under (device, ts, seq) with its (quantity, value, unit, flags), as the schema defines it.
    seq0 = dev.seq - 90
    for i in (0, 45, 89):
        key = schema.reading(1, T0 + i * 60_000, seq0 + 1 + i)
        assert decode_reading_value(led.store.get(key) or b"") == ("energy.import", 1000 + 10 * i, "Wh", 0)
    hour0 = T0 // 3_600_000
    agg = codec.decode(HourlyAggregate, led.store.get(schema.hourly(1, "energy.import", hour0)) or b"")
    first_hour = [1000 + 10 * i for i in range(90) if (T0 + i * 60_000) // 3_600_000 == hour0]
    assert agg.count == len(first_hour)
    assert agg.first_value == first_hour[0] and agg.last_value == first_hour[-1]
    assert agg.total == sum(first_hour)


def test_invalid_txs_marked_identically_and_block_still_applies() -> None:
    c, led = setup_chain(MemoryStore())
    c2_led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    dev, reg = c.register_device("88.123.45/101.1.1")
    good = dev.batch(c.chain, [(T0, "power", 5, "W")])
    replay = dev.batch(c.chain, [(T0 + 1, "power", 6, "W")])
    dev.seq = 0  # sequence goes backwards in the next batch
    backwards = dev.batch(c.chain, [(T0 + 2, "power", 7, "W")])
    stranger, _ = c.register_device("88.123.45/999")  # never registered
    unknown = stranger.batch(c.chain, [(T0, "power", 1, "W")])
    raws = [reg, good, replay, replay, backwards, unknown]
    b1 = produce(led, c, raws, T0 + 1000)
    res = led.results(1)
    assert [r.code for r in res] == [
        0,
        0,
        0,
        Code.NONCE_REPLAYED,
        Code.SEQUENCE_BACKWARDS,
        Code.UNKNOWN_DEVICE,
    ]
    assert "sequence 1 is not above" in res[4].reason
    # Another node applying the same block gets the same results and app hash.
    staged = c2_led.apply_block(b1)
    assert [r.code for r in staged.results] == [r.code for r in res]
    assert c2_led.app_hash == led.app_hash
    # The failed-but-authentic tx consumed its nonce; its readings were not written.
    lo, hi = schema.reading_range(1, 0, 2**62)
    assert len(list(led.store.iterate(lo, hi))) == 2


def test_tampered_block_is_refused_by_a_follower() -> None:
    c, led = setup_chain(MemoryStore())
    follower = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    _, reg = c.register_device("88.123.45/101.1.1")
    b = produce(led, c, [reg], T0)
    forged = Block(b.header, b.signature, (*b.txs, reg))
    try:
        follower.apply_block(forged)
    except Exception as e:
        assert "tx_root" in str(e)
    else:
        raise AssertionError("forged block applied")
    assert follower.height == 0
    follower.apply_block(b)
    assert follower.app_hash == led.app_hash


def test_restart_resumes_at_last_applied_height(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    c, led = setup_chain(store)
    dev, reg = c.register_device("88.123.45/101.1.1")
    produce(led, c, [reg], T0)
    for i in range(5):
        produce(led, c, [dev.batch(c.chain, [(T0 + i, "power", i, "W")])], T0 + 10 + i)
    app, last = led.app_hash, led.last_hash
    store.close()
    store2 = LevelDBStore(tmp_path / "db")
    led2 = Ledger(store2, c.genesis, wiring.kinds())
    assert (led2.height, led2.app_hash, led2.last_hash) == (6, app, last)
    produce(led2, c, [dev.batch(c.chain, [(T0 + 99, "power", 1, "W")])], T0 + 100)
    assert led2.height == 7 and led2.results(7)[0].code == 0
    store2.close()


def test_other_genesis_refused(tmp_path: Path) -> None:
    store = LevelDBStore(tmp_path / "db")
    setup_chain(store)
    try:
        Ledger(store, TestConsortium.create(chain_id="other-1").genesis, wiring.kinds())
    except Exception as e:
        assert "different genesis" in str(e)
    else:
        raise AssertionError("mixed chains")
    store.close()


def test_app_hash_equals_a_full_recomputation_over_state() -> None:
    """The per-block accumulator (net change per key) must equal hashing every state pair from scratch, also with
    keys updated many times in one block and txs rolled back."""
    from node.verify import state_digest

    c, led = setup_chain(MemoryStore())
    devs = []
    regs = []
    for i in range(3):
        d, reg = c.register_device(f"88.123.45/101.1.{i + 1}")
        devs.append(d)
        regs.append(reg)
    produce(led, c, regs, T0)
    for b in range(4):
        raws = []
        for d in devs:
            for k in range(5):  # same device record, nonce and hourly aggregate updated 5 times per block
                raws.append(d.batch(c.chain, [(T0 + b * 1000 + k * 10, "energy.import", b * 100 + k, "Wh")]))
        d0 = devs[0]
        d0.seq -= 3  # an invalid tx (sequence backwards): its writes rolled back, its nonce consumed
        raws.append(d0.batch(c.chain, [(T0, "power", 1, "W")]))
        d0.seq += 3
        raws.append(devs[1].batch(c.chain, [(T0 + b * 1000 + 99, "power", 7, "W")]))
        produce(led, c, raws, T0 + 10_000 + b)
        codes = [r.code for r in led.results(led.height)]
        assert codes.count(Code.SEQUENCE_BACKWARDS) == 1 and codes.count(0) == len(codes) - 1
        assert state_digest(led.store).digest() == led.app_hash


def test_element_cache_answers_only_for_the_value_it_hashed() -> None:
    from node.state import ElementCache
    from node.statehash import element

    cache = ElementCache(limit=2)
    cache.remember(b"nkey", b"v1", element(b"nkey", b"v1"))
    assert cache.element(b"nkey", b"v1") == element(b"nkey", b"v1")
    assert cache.element(b"nkey", b"v2") == element(b"nkey", b"v2")  # another value: hashed, not the entry
    cache.remember(b"dkey", b"x", element(b"dkey", b"x"))
    cache.remember(b"akey", b"y", element(b"akey", b"y"))  # over the limit: the oldest entry goes
    assert list(cache.entries) == [b"dkey", b"akey"]


def _fold_one_by_one(agg: HourlyAggregate | None, rs: list[Reading]) -> HourlyAggregate:
    """The reading-by-reading fold as it was first written: the reference for ``readings.fold``."""
    r0 = rs[0]
    if agg is None:
        count, total, lo, hi = 0, 0, r0.value, r0.value
        fts, fv, lts, lv, flagged = r0.ts_ms, r0.value, r0.ts_ms, r0.value, 0
    else:
        count, total, lo, hi = agg.count, agg.total, agg.minimum, agg.maximum
        fts, fv, lts, lv, flagged = (
            agg.first_ts_ms,
            agg.first_value,
            agg.last_ts_ms,
            agg.last_value,
            agg.flagged,
        )
    for r in rs:
        count += 1
        total += r.value
        lo, hi = min(lo, r.value), max(hi, r.value)
        if r.ts_ms < fts:
            fts, fv = r.ts_ms, r.value
        if r.ts_ms >= lts:
            lts, lv = r.ts_ms, r.value
        if r.flags:
            flagged += 1
    total = max(-(1 << 63), min((1 << 63) - 1, total))
    return HourlyAggregate(count, total, lo, hi, fts, fv, lts, lv, flagged)  # type: ignore[arg-type]


def test_fold_equals_folding_one_reading_at_a_time() -> None:
    """Aggregates are consensus state: the batch fold must give exactly what the one-by-one fold gives, with
    repeated and out-of-order timestamps, ties, flags and saturating totals."""
    rng = random.Random(20261205)
    for _ in range(2000):
        n = rng.randint(1, 12)
        big = rng.random() < 0.1
        rs = [
            Reading(
                Nonce(i + 1),
                TimestampMs(rng.choice([5, 6, 7, 7, 8, 9])),
                ShortStr("power"),
                SignedInt(rng.choice([(1 << 62) * rng.choice([-1, 1]), 3]) if big else rng.randint(-9, 9)),
                ShortStr("W"),
                rng.choice([0, 0, 1]),
            )
            for i in range(n)
        ]
        agg = None
        if rng.random() < 0.6:
            agg = _fold_one_by_one(None, [rng.choice(rs)])
        assert fold(agg, rs) == _fold_one_by_one(agg, rs)
