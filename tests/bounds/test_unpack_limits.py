"""Hostile msgpack bodies are refused before they cost memory: maps, huge arrays and object floods.

Each case reproduces a finding of issue 8 (a 64 MiB body of empty maps on the peer route cost +5.2 GB; 8 MiB to
``/v1/txs/batch`` +683 MB). Memory is measured with tracemalloc (peak bytes allocated while the body is refused,
beyond the body itself), not with timings.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from node import codec
from node.errors import CempError
from node.peer import Envelope, PeerError, ReplayGuard, open_envelope

MiB = 1 << 20


def _array32(n: int, item: bytes) -> bytes:
    return b"\xdd" + n.to_bytes(4, "big") + item * n


def _nested_ones(size: int) -> bytes:
    """An array of arrays of 1-tuples ``[[[0], [0], ...], ...]``: 2 input bytes per 56-byte Python tuple."""
    inner = b"\xdc\xff\xff" + b"\x91\x00" * 0xFFFF
    k = size // len(inner)
    return b"\xdc" + k.to_bytes(2, "big") + inner * k


HOSTILE = {
    "empty maps": _array32(4 * MiB - 5, b"\x80"),
    "nested 1-tuples": _nested_ones(4 * MiB),
    "uint16 flood": b"\xdc\x00\x40" + (b"\xdc\xff\xff" + b"\xcd\x01\x00" * 0xFFFF) * 0x40,
    "deep nesting": b"\x91" * 100_000 + b"\x00",
}


def _peak_while(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        try:
            fn()
        except (CempError, PeerError):
            pass
        else:
            raise AssertionError("hostile body accepted")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_msgpack_refused_with_bounded_memory(name: str) -> None:
    body = HOSTILE[name]
    peak = _peak_while(lambda: codec.decode(Envelope, body))
    assert peak < 2 * MiB, f"{name}: refusing {len(body)} bytes cost {peak / MiB:.1f} MiB"


def test_hostile_peer_envelope_refused_before_signature_with_bounded_memory() -> None:
    body = HOSTILE["empty maps"]
    peak = _peak_while(lambda: open_envelope(body, b"\0" * 32, "c", "n1", {}, ReplayGuard()))
    assert peak < 2 * MiB


def test_large_valid_objects_still_decode() -> None:
    txs = [bytes([i % 251]) * 200 for i in range(4000)]
    raw = codec._pack([txs])
    assert len(raw) > codec.WALK_ABOVE
    assert codec.unpack_raw(raw) == (tuple(txs),)
    # a flood that is well-formed but has more objects than its size allows is refused, not built
    with pytest.raises(CempError) as e:
        codec.unpack_bounded(codec._pack([[1] * 60_000] * 4))
    assert "refused before unpacking" in e.value.message


def test_array_longer_than_allowed_is_refused_from_its_header() -> None:
    with pytest.raises(CempError) as e:
        codec.unpack_bounded(_array32(10_000, b"\xc4\x00"), max_items=5000)
    assert e.value.code.name == "TOO_LARGE"


async def test_hostile_batch_body_is_refused_after_a_few_thousand_steps(node_client) -> None:  # type: ignore[no-untyped-def]
    """8 MiB to /v1/txs/batch cost +683 MB before; now the walk stops after MAX_BATCH_TXS + 1 objects."""
    _, client = node_client
    body = _nested_ones(8 * MiB - 4096)
    r = await client.post("/v1/txs/batch", data=body, headers={"Content-Type": "application/msgpack"})
    assert r.status == 413
    assert "more than 5001 msgpack objects" in (await r.json())["message"]
