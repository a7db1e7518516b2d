"""Sign-in: challenges a key signs, and the short-lived tokens a node issues to that key.

A person (or an org admin) proves they hold a key by signing ``DOMAIN_LOGIN || genesis hash || node id ||
challenge`` with it; the node then issues a token bound to that public key. Tokens are
``cemp1.<base64url(pubkey 32 | purpose 1 | expiry ms 8 | HMAC-SHA256 16)>``, the HMAC keyed by a secret only this
node holds (``<data dir>/access.secret``, mode 0600; a node without a data directory draws one per process).
Nothing about a token is stored: the node recomputes the HMAC, checks the expiry against its clock, and then asks
committed state whether the key still speaks for an org (so revoking a person ends their tokens at once).

Purposes: ``a`` an API bearer token (15 minutes), ``l`` a one-time login link for the web UI (2 minutes, each
used once), ``w`` the web session cookie it is exchanged for (8 hours).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from node.crypto import KeyFileError, verify, write_private_file
from node.errors import CempError, Code

DOMAIN_LOGIN = b"CEMP/login/v1\x00"
CHALLENGE_TTL_MS = 60_000
TOKEN_TTL_MS = {b"a": 15 * 60_000, b"l": 2 * 60_000, b"w": 8 * 3_600_000}
PREFIX = "cemp1."
SECRET_FILE = "access.secret"


def load_secret(data_dir: Path | None) -> bytes:
    """This node's token secret: kept in the data directory (so sessions survive a restart), else random."""
    if data_dir is None:
        return os.urandom(32)
    path = Path(data_dir) / SECRET_FILE
    try:
        raw = path.read_bytes()
        if len(raw) == 32:
            return raw
    except FileNotFoundError:
        pass
    secret = os.urandom(32)
    try:
        write_private_file(path, secret, overwrite=True)
    except KeyFileError:
        return secret
    return secret


def login_message(genesis_hash: bytes, node_id: str, challenge: bytes) -> bytes:
    """What a key signs (after ``DOMAIN_LOGIN``) to sign in at one node of one chain."""
    return genesis_hash + node_id.encode() + b"\x00" + challenge


@dataclass(frozen=True, slots=True)
class Token:
    pubkey: bytes
    purpose: bytes
    expires_ms: int


class Tokens:
    """Issues and checks challenges and tokens with one node's secret (thread-safe)."""

    def __init__(self, secret: bytes, genesis_hash: bytes, node_id: str) -> None:
        self.secret = secret
        self.genesis_hash = genesis_hash
        self.node_id = node_id
        self._used: OrderedDict[bytes, int] = OrderedDict()
        """Challenges and login links already used, until they expire (at most 100,000 remembered)."""
        self._lock = threading.Lock()

    def _mac(self, what: bytes, body: bytes) -> bytes:
        return hmac.new(self.secret, what + body, hashlib.sha256).digest()[:16]

    def challenge(self, now_ms: int) -> bytes:
        body = (now_ms + CHALLENGE_TTL_MS).to_bytes(8, "big") + os.urandom(16)
        return body + self._mac(b"challenge", body)

    def _once(self, key: bytes, expires_ms: int, now_ms: int) -> bool:
        with self._lock:
            while self._used and (next(iter(self._used.values())) < now_ms or len(self._used) > 100_000):
                self._used.popitem(last=False)
            if key in self._used:
                return False
            self._used[key] = expires_ms
            return True

    def sign_in(self, pubkey: bytes, challenge: bytes, signature: bytes, now_ms: int) -> None:
        """Check a signed challenge; raises ``CempError`` (401) unless it is fresh, ours, unused and signed by
        ``pubkey``. Whether the key may sign in at all (an org admin or an active person) is the caller's check."""
        if len(challenge) != 40 or not hmac.compare_digest(
            challenge[24:], self._mac(b"challenge", challenge[:24])
        ):
            raise CempError(
                Code.UNAUTHENTICATED, "that challenge was not issued by this node; ask for a new one"
            )
        expires = int.from_bytes(challenge[:8], "big")
        if now_ms > expires:
            raise CempError(Code.UNAUTHENTICATED, "the challenge expired (60 s); ask for a new one")
        if not verify(
            pubkey, DOMAIN_LOGIN, login_message(self.genesis_hash, self.node_id, challenge), signature
        ):
            raise CempError(Code.UNAUTHENTICATED, "the signature does not verify with that key for this node")
        if not self._once(challenge, expires, now_ms):
            raise CempError(Code.UNAUTHENTICATED, "that challenge was used already; ask for a new one")

    def issue(self, pubkey: bytes, purpose: bytes, now_ms: int) -> tuple[str, int]:
        expires = now_ms + TOKEN_TTL_MS[purpose]
        body = pubkey + purpose + expires.to_bytes(8, "big")
        raw = body + self._mac(b"token", body)
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("="), expires

    def check(self, token: str, purpose: bytes, now_ms: int) -> Token:
        """The token's key, if ``token`` is one this node issued for ``purpose`` and it has not expired."""
        if not token.startswith(PREFIX) or len(token) > 120:
            raise CempError(Code.UNAUTHENTICATED, "not a CEMP token; sign in again (cemp login)")
        try:
            raw = base64.urlsafe_b64decode(token[len(PREFIX) :] + "=" * (-len(token) % 4))
        except ValueError:
            raise CempError(Code.UNAUTHENTICATED, "the token is damaged; sign in again") from None
        if len(raw) != 57 or not hmac.compare_digest(raw[41:], self._mac(b"token", raw[:41])):
            raise CempError(
                Code.UNAUTHENTICATED, "the token was not issued by this node (or is damaged); sign in again"
            )
        if raw[32:33] != purpose:
            raise CempError(Code.UNAUTHENTICATED, "that token is for another use; sign in again")
        expires = int.from_bytes(raw[33:41], "big")
        if now_ms >= expires:
            raise CempError(Code.UNAUTHENTICATED, "the token expired; sign in again (cemp login)")
        return Token(raw[:32], purpose, expires)

    def use_login_link(self, token: str, now_ms: int) -> Token:
        t = self.check(token, b"l", now_ms)
        if not self._once(token.encode(), t.expires_ms, now_ms):
            raise CempError(Code.UNAUTHENTICATED, "that sign-in link was used already; run cemp login again")
        return t
