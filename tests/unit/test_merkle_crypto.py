from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from node import merkle
from node.crypto import KeyFileError, KeyPair, read_key_file, verify, write_key_file
from node.types import DOMAIN_BLOCK, DOMAIN_TX


def rfc6962_mth(leaves: list[bytes]) -> bytes:
    """Straight from RFC 6962 section 2.1, recursive."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_mth(leaves[:k]) + rfc6962_mth(leaves[k:])).digest()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_root_matches_rfc(n: int) -> None:
    leaves = [os.urandom(10) for _ in range(n)]
    assert merkle.root(leaves) == rfc6962_mth(leaves)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 31])
def test_every_inclusion_proof_verifies_and_tampering_fails(n: int) -> None:
    leaves = [b"tx%d" % i for i in range(n)]
    root = merkle.root(leaves)
    for i in range(n):
        path = merkle.inclusion_proof(leaves, i)
        assert merkle.verify_inclusion(leaves[i], i, n, path, root)
        assert not merkle.verify_inclusion(leaves[i] + b"!", i, n, path, root)
        if n > 1:
            assert not merkle.verify_inclusion(leaves[i], (i + 1) % n, n, path, root)
            bad = [bytes([path[0][0] ^ 1]) + path[0][1:], *path[1:]]
            assert not merkle.verify_inclusion(leaves[i], i, n, bad, root)


def test_signature_domain_separation() -> None:
    k = KeyPair.generate()
    sig = k.sign(DOMAIN_TX, b"payload")
    assert verify(k.public, DOMAIN_TX, b"payload", sig)
    assert not verify(k.public, DOMAIN_BLOCK, b"payload", sig)
    assert not verify(KeyPair.generate().public, DOMAIN_TX, b"payload", sig)
    assert not verify(k.public, DOMAIN_TX, b"payload", sig[:-1] + bytes([sig[-1] ^ 1]))


def test_key_file_mode_and_passphrase(tmp_path: Path) -> None:
    k = KeyPair.generate()
    p = tmp_path / "a.key"
    write_key_file(p, k)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert read_key_file(p).public == k.public
    q = tmp_path / "b.key"
    write_key_file(q, k, passphrase=b"correct horse")
    assert "seed" not in q.read_text().replace("encrypted_seed", "")
    assert read_key_file(q, b"correct horse").public == k.public
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_key_file(q, b"wrong")
    with pytest.raises(KeyFileError, match="passphrase-protected"):
        read_key_file(q)
