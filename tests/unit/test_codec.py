from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import codec
from node.errors import CempError, Code
from node.types import Handle, Nonce, Reading, ReadingBatch, ShortStr, SignedInt, TimestampMs, Tx

READING = Reading(
    Nonce(7), TimestampMs(1_763_000_000_000), ShortStr("energy.import"), SignedInt(-5), ShortStr("Wh"), 0
)


def test_roundtrip_and_field_order() -> None:
    b = codec.encode(READING)
    assert msgpack.unpackb(b) == [7, 1_763_000_000_000, "energy.import", -5, "Wh", 0]
    assert codec.decode(Reading, b) == READING


@given(
    seq=st.integers(0, 2**64 - 1),
    ts=st.integers(0, 2**64 - 1),
    value=st.integers(-(2**63), 2**63 - 1),
    q=st.text(max_size=64),
    flags=st.integers(0, 2**64 - 1),
)
def test_roundtrip_property(seq: int, ts: int, value: int, q: str, flags: int) -> None:
    r = Reading(Nonce(seq), TimestampMs(ts), ShortStr(q), SignedInt(value), ShortStr("W"), flags)
    b = codec.encode(r)
    assert codec.decode(Reading, b) == r
    assert codec.encode(codec.decode(Reading, b)) == b


@pytest.mark.parametrize(
    "raw, code",
    [
        # 7 as uint16 instead of a positive fixint: same value, non-canonical bytes
        (b"\x96\xcd\x00\x07" + codec.encode(READING)[2:], Code.NON_CANONICAL),
        # a map instead of an array: refused while unpacking (no wire object holds a map)
        (msgpack.packb({"seq": 1}), Code.MALFORMED),
        # a float where an int belongs
        (msgpack.packb([7.0, 1, "q", 1, "W", 0]), Code.BAD_TYPE),
        # trailing garbage
        (codec.encode(READING) + b"\x00", Code.MALFORMED),
        # truncated
        (codec.encode(READING)[:-1], Code.MALFORMED),
        # wrong field count
        (msgpack.packb([7, 1, "q", 1, "W"]), Code.BAD_TYPE),
        # str where bytes are expected is caught by the Tx decoder
        (msgpack.packb(["c", "k", "not-bytes", 1, b"", b"s" * 64]), Code.BAD_TYPE),
        # a value out of the signed 64-bit range
        (msgpack.packb([7, 1, "q", 2**63, "W", 0]), Code.BAD_TYPE),
    ],
)
def test_rejects(raw: bytes, code: Code) -> None:
    cls = Tx if b"not-bytes" in raw else Reading
    with pytest.raises(CempError) as e:
        codec.decode(cls, raw)
    assert e.value.code == code, e.value.message


def test_str_bin_distinction_is_canonical() -> None:
    # bytes sent as str8 would re-encode differently only if we let msgpack guess; we require bin.
    tx = msgpack.packb(["c", "k", "x" * 32, 1, b"", b"s" * 64], use_bin_type=True)
    with pytest.raises(CempError):
        codec.decode(Tx, tx)


def test_nested_tuple_limits() -> None:
    batch = ReadingBatch(Handle("88.1/x"), (READING, READING))
    assert codec.decode(ReadingBatch, codec.encode(batch)) == batch
    with pytest.raises(CempError) as e:
        codec.decode(ReadingBatch, msgpack.packb(["88.1/x", [[1, 2]]]))
    assert "readings[0]" in e.value.message


def test_floats_refused_on_encode() -> None:
    with pytest.raises(TypeError):
        codec.encode(Reading(Nonce(1), TimestampMs(1), ShortStr("q"), 1.5, ShortStr("W"), 0))  # type: ignore[arg-type]


def test_signing_bytes_shortcut_equals_reencoding() -> None:
    from node.chain import ChainRef, sign_tx, signing_bytes_of_raw, tx_signing_bytes
    from node.crypto import KeyPair

    for n in (1, 200, 70_000):
        raw, _ = sign_tx(KeyPair.generate(), ChainRef("c", b"\0" * 32), "readings", 2**40, b"x" * n)
        assert signing_bytes_of_raw(raw) == tx_signing_bytes(codec.decode(Tx, raw))
