"""The outbox keeps counters and signed txs together, refuses writes that break its invariants, survives reopen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.outbox import Counters, Entry, Outbox, OutboxError

PK = b"\x01" * 32


def entry(device: str, nonce: int, seq_first: int, n: int, tag: bytes = b"") -> Entry:
    h = (device.encode() + nonce.to_bytes(4, "big") + tag).ljust(32, b"\x00")[:32]
    return Entry(device, nonce, seq_first, seq_first + n - 1, n, h, b"raw" * 20 + tag, 1)


def counters(device: str, nonce: int, seq: int) -> Counters:
    return Counters(device, PK, nonce, seq, 123, True)


def test_put_pending_remove_and_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    a = [entry("a", 1, 1, 10), entry("a", 2, 11, 5)]
    b = [entry("b", 1, 1, 3)]
    ob.put([*a, *b], [counters("a", 2, 15), counters("b", 1, 3)])
    st = ob.stats()
    assert (st.entries, st.readings) == (3, 18)
    assert st.bytes_per_reading == pytest.approx(sum(len(e.raw) for e in [*a, *b]) / 18)
    # Interleaved by device, nonce order within each device.
    assert [(e.device, e.nonce) for e in ob.pending()] == [("a", 1), ("b", 1), ("a", 2)]
    assert [(e.device, e.nonce) for e in ob.pending(per_device=1)] == [("a", 1), ("b", 1)]
    assert ob.remove_committed([a[0].tx_hash, b"\x09" * 32]) == 1
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite")
    assert [e.nonce for e in ob.pending()] == [2, 1]
    assert ob.counters("a") == counters("a", 2, 15)
    assert ob.stats().readings == 8
    assert ob.pending_devices() == {"a", "b"}


def test_put_refuses_entries_that_do_not_continue_the_counters(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    ob.put([entry("a", 1, 1, 2)], [counters("a", 1, 2)])
    with pytest.raises(OutboxError, match="does not continue"):
        ob.put([entry("a", 3, 3, 1)], [counters("a", 3, 3)])  # nonce gap
    with pytest.raises(OutboxError, match="does not continue"):
        ob.put([entry("a", 2, 2, 1)], [counters("a", 2, 2)])  # sequence overlap
    with pytest.raises(OutboxError, match="without the device's counters"):
        ob.put([entry("a", 2, 3, 1)], [])
    # Nothing of the refused writes stayed behind.
    assert ob.stats().entries == 1 and ob.counters("a") == counters("a", 1, 2)
    with pytest.raises(OutboxError, match="below pending"):
        ob.set_counters(counters("a", 0, 0))


def test_dead_letter_and_rebase_are_atomic_and_exported(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    es = [entry("a", 1, 1, 2), entry("a", 2, 3, 2), entry("a", 3, 5, 2)]
    ob.put(es, [counters("a", 3, 6)])
    # Nonce 1 refused at admission: nonces 2, 3 are re-signed as 1, 2 with the same readings.
    repl = [entry("a", 1, 3, 2, b"r"), entry("a", 2, 5, 2, b"r")]
    with pytest.raises(OutboxError, match="same readings"):
        ob.rebase("a", 1, repl[:1], counters("a", 1, 6), dead=(es[0], "bad_timestamp", "too new"))
    ob.rebase("a", 1, repl, counters("a", 2, 6), dead=(es[0], "bad_timestamp", "too new"))
    assert [(e.nonce, e.seq_first, e.raw) for e in ob.pending()] == [(1, 3, repl[0].raw), (2, 5, repl[1].raw)]
    assert ob.counters("a") == counters("a", 2, 6)
    # A tx committed but marked invalid: its nonce is used, nothing else changes.
    ob.dead_letter(ob.pending()[0], "invalid_payload", "odd", committed=True)
    dead = ob.dead_letters()
    assert [(d.nonce, d.code, d.committed) for d in dead] == [
        (1, "bad_timestamp", False),
        (1, "invalid_payload", True),
    ]
    lines = [json.loads(x) for x in (tmp_path / "deadletter.jsonl").read_text().splitlines()]
    assert [x["code"] for x in lines] == ["bad_timestamp", "invalid_payload"]
    assert lines[0]["tx"] == es[0].tx_hash.hex() and bytes.fromhex(lines[0]["raw"]) == es[0].raw
    assert ob.stats().dead == 2 and ob.stats().readings == 2
