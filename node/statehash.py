"""Homomorphic multiset hash of the application state (LtHash-style).

The app hash commits to the set of all (key, value) pairs in the state namespaces. Each pair maps to a
4096-bit integer via SHAKE-128; the state's accumulator is their sum modulo 2^4096, so a block updates it in
O(writes) (subtract the old pair, add the new) and a snapshot receiver can recompute it from the pairs alone
and check it against a quorum-certified header. 4096-bit lanes keep generalised-birthday attacks on additive
hashes far out of reach (~2^128 work).
"""

from __future__ import annotations

import hashlib

from node.types import Hash32

BITS = 4096
_NBYTES = BITS // 8
MASK = (1 << BITS) - 1


def element(key: bytes, value: bytes) -> int:
    h = hashlib.shake_128(len(key).to_bytes(4, "big") + key + value).digest(_NBYTES)
    return int.from_bytes(h, "little")


class StateHash:
    """Mutable accumulator. ``digest()`` is the 32-byte app hash."""

    __slots__ = ("acc",)

    def __init__(self, acc: int = 0) -> None:
        self.acc = acc

    def add(self, key: bytes, value: bytes) -> None:
        self.acc = (self.acc + element(key, value)) & MASK

    def remove(self, key: bytes, value: bytes) -> None:
        self.acc = (self.acc - element(key, value)) & MASK

    def to_bytes(self) -> bytes:
        return self.acc.to_bytes(_NBYTES, "little")

    @classmethod
    def from_bytes(cls, data: bytes) -> StateHash:
        if len(data) != _NBYTES:
            raise ValueError("state accumulator must be 512 bytes")
        return cls(int.from_bytes(data, "little"))

    def copy(self) -> StateHash:
        return StateHash(self.acc)

    def digest(self) -> Hash32:
        return Hash32(hashlib.sha256(b"CEMP/app-hash/v1\x00" + self.to_bytes()).digest())
