"""RFC 6962 Merkle tree hash (MTH) with inclusion proofs.

Leaf hash = SHA-256(0x00 || leaf), inner hash = SHA-256(0x01 || left || right); the split point for n
leaves is the largest power of two below n. The root of an empty list is SHA-256 of the empty string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from node.types import Hash32


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    n = len(hashes)
    if n == 1:
        return hashes[0]
    k = _split(n)
    return _node(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def root(leaves: Sequence[bytes]) -> Hash32:
    if not leaves:
        return Hash32(hashlib.sha256(b"").digest())
    # Bottom-up pairing yields the same tree as RFC 6962's recursive split: a left-complete binary tree.
    level = [leaf_hash(x) for x in leaves]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return Hash32(level[0])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for ``leaves[index]`` (RFC 6962 section 2.1.1), bottom-up."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    hashes = [leaf_hash(x) for x in leaves]
    path: list[bytes] = []

    def walk(hs: Sequence[bytes], m: int) -> None:
        n = len(hs)
        if n == 1:
            return
        k = _split(n)
        if m < k:
            walk(hs[:k], m)
            path.append(_root_of_hashes(hs[k:]))
        else:
            walk(hs[k:], m - k)
            path.append(_root_of_hashes(hs[:k]))

    walk(hashes, index)
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes) -> bool:
    """Check an audit path (RFC 9162 section 2.1.3.2 algorithm)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
