"""Authentication at the REST door: Basic auth against HS_SECKEY, Ed25519 challenge-response, sessions.

- **Basic**: ``Authorization: Basic base64(quote("300:88.123.45/admin") + ":" + secret)`` (pyhandle's form; the
  user part is percent-decoded). The secret is checked against the salted scrypt hash in the HS_SECKEY value at
  that index. A successful check is remembered for ``VERIFIED_TTL_S`` (keyed by a SHA-256 of the secret, in
  memory only) so a client that sends Basic on every request does not pay scrypt every time.
- **Challenge-response** (Handle.Net's ``Authorization: Handle``): a request without credentials that needs them
  gets ``401`` with ``WWW-Authenticate: Handle sessionId="...", nonce="..."``; the client answers with
  ``Authorization: Handle sessionId="...", id="300:88.123.45/admin", type="HS_PUBKEY", cnonce="...",
  alg="Ed25519", signature="..."``, the signature being Ed25519 by the identity's HS_PUBKEY over
  ``DOMAIN_SESSION || nonce || cnonce`` (nonce and cnonce are the raw bytes of the base64 strings). Later requests
  may send only ``sessionId``. ``POST /api/sessions`` / ``GET|PUT|DELETE /api/sessions/this`` do the same.

Invariants: secrets are made here (``new_secret``, 192 random bits), never chosen by a client, because their hash
is public on chain (docs/resolver.md); a secret leaves this process only in the reply that issued it (the chain
stores only the hash; logs never see it); every failed login gets the same answer after the same work; a
session's nonce names this node and an expiry (``resolver.handles.SESSION_NONCE_LEN``) so the proof a write
carries on chain can be used by no other node and after no later time; sessions live in memory in two bounded
tables (unanswered challenges, authenticated sessions); ``RateLimiter`` buckets are bounded in number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from node import codec
from node.crypto import verify
from node.errors import CempError
from node.types import ShortStr
from resolver.handles import DOMAIN_SESSION, load_record, node_tag, value_at
from resolver.values import (
    HS_PUBKEY,
    HS_SECKEY,
    RC_AUTHENTICATION_FAILED,
    RC_INVALID_CREDENTIAL,
    HandleError,
    SecretHash,
    ValueRef,
    decode_secret,
)

SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
SESSION_TTL_S = 30 * 60
MAX_SESSIONS = 10_000
"""Unauthenticated sessions (challenges) kept; the oldest is dropped first. Authenticated sessions have their
own table of the same size, so challenges asked for by anyone never push out a logged-in client."""
MAX_AUTH_SESSIONS = 10_000
VERIFIED_TTL_S = 300.0
IDENTITY_RE = re.compile(r"^([0-9]{1,10}):(.+)$")
SECRET_BYTES = 24
"""A generated HS_SECKEY secret: 24 random bytes (192 bits), URL-safe base64 (32 characters)."""
MIN_SECRET_BITS = 128
AUTH_FAILED = "authentication failed: unknown identity or wrong secret"
"""The one answer to every failed Basic login, whatever was wrong, so it does not tell which identities exist."""
CHALLENGE_FAILED = "authentication failed: the challenge answer does not verify for this identity"


def new_secret() -> str:
    """A fresh HS_SECKEY secret with 192 bits of entropy. Secrets are only ever made here: the chain keeps a
    scrypt hash that anyone can read, which is safe only because nobody can enumerate 2^128 candidates."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: bytes, salt: bytes | None = None) -> bytes:
    """Encoded ``SecretHash`` for an HS_SECKEY value (scrypt, n=2^14, r=8, p=1, 16-byte random salt)."""
    if len(secret) * 8 < MIN_SECRET_BITS:
        raise ValueError(f"an HS_SECKEY secret has at least {MIN_SECRET_BITS} bits; use new_secret()")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=64 << 20)
    return codec.encode(SecretHash(ShortStr("scrypt"), SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest))


# Checked against when the identity has no HS_SECKEY, so a miss costs the same scrypt as a wrong secret.
_DUMMY = SecretHash(ShortStr("scrypt"), SCRYPT_N, SCRYPT_R, SCRYPT_P, b"\x00" * 16, b"\x00" * 32)


def check_secret(stored: SecretHash, secret: bytes) -> bool:
    maxmem = 128 * stored.n * stored.r * stored.p + (8 << 20)
    try:
        d = hashlib.scrypt(
            secret, salt=stored.salt, n=stored.n, r=stored.r, p=stored.p, dklen=32, maxmem=maxmem
        )
    except ValueError:
        return False
    return hmac.compare_digest(d, stored.digest)


def parse_identity(text: str) -> ValueRef:
    """``300:88.123.45/admin`` (percent-decoded already) -> ValueRef; raises rc 404 when malformed."""
    m = IDENTITY_RE.match(text)
    if not m or "/" not in m.group(2):
        raise HandleError(RC_INVALID_CREDENTIAL, f"identity {text[:80]!r} must look like 300:88.123.45/admin")
    return ValueRef(m.group(2), int(m.group(1)))  # type: ignore[arg-type]


def strict_unquote(s: str, what: str) -> str:
    """Percent-decode, refusing malformed escapes and invalid UTF-8 (aiohttp would pass them through)."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", s):
        raise HandleError(RC_INVALID_CREDENTIAL, f"{what} has an invalid percent-escape")
    try:
        return unquote(s, errors="strict")
    except UnicodeDecodeError:
        raise HandleError(RC_INVALID_CREDENTIAL, f"{what} is not UTF-8 after percent-decoding") from None


def parse_basic(header: str) -> tuple[ValueRef, bytes]:
    """``Basic <b64>`` -> (identity, secret bytes)."""
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise HandleError(RC_INVALID_CREDENTIAL, "Basic credentials are not valid base64") from None
    user, sep, secret = raw.partition(b":")
    if not sep:
        raise HandleError(RC_INVALID_CREDENTIAL, "Basic credentials must be user:password")
    if re.fullmatch(rb"[0-9]{1,10}", user):
        # ``curl -u 300:88.123.45/admin:secret`` sends the user's ':' un-encoded; pyhandle sends %3A.
        h, sep2, rest = secret.partition(b":")
        if sep2 and b"/" in h:
            user, secret = user + b":" + h, rest
    try:
        user_s = user.decode("utf-8")
    except UnicodeDecodeError:
        raise HandleError(RC_INVALID_CREDENTIAL, "Basic user is not UTF-8") from None
    return parse_identity(strict_unquote(user_s, "Basic user")), secret


_PARAM_RE = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


def parse_handle_auth(header: str) -> dict[str, str]:
    """``Handle k="v", ...`` -> dict; raises rc 404 when malformed."""
    rest = header[6:].strip()
    out: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m:
            raise HandleError(
                RC_INVALID_CREDENTIAL, 'Authorization: Handle parameters must be key="value" pairs'
            )
        out[m.group(1)] = m.group(2)
        pos = m.end()
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(s: str, what: str) -> bytes:
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise HandleError(RC_INVALID_CREDENTIAL, f"{what} is not base64") from None


# --- sessions -------------------------------------------------------------------------------------------------
@dataclass
class Session:
    id: str
    nonce: bytes
    """The challenge; ``nonce[:8]`` is its expiry in Unix ms (``resolver.handles.session_nonce_expiry``)."""
    expires: float
    identity: ValueRef | None = None
    cnonce: bytes = b""
    signature: bytes = b""
    created: float = field(default_factory=time.time)


class Sessions:
    """In-memory sessions of one node, expiring after 30 minutes, in two bounded tables: challenges not yet
    answered (anyone can ask for one; the oldest is dropped first) and authenticated sessions (only a valid
    answer puts one there, so unauthenticated requests can never push a logged-in client out)."""

    def __init__(
        self,
        node_pubkey: bytes,
        ttl_s: float = SESSION_TTL_S,
        max_pending: int = MAX_SESSIONS,
        max_authenticated: int = MAX_AUTH_SESSIONS,
    ) -> None:
        self.tag = node_tag(node_pubkey)
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self.max_authenticated = max_authenticated
        self.pending: OrderedDict[str, Session] = OrderedDict()
        self.authenticated: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pending) + len(self.authenticated)

    def new(self) -> Session:
        now = time.time()
        expires = now + self.ttl_s
        nonce = int(expires * 1000).to_bytes(8, "big") + self.tag + os.urandom(16)
        s = Session(base64.urlsafe_b64encode(os.urandom(18)).decode(), nonce, expires)
        self.pending[s.id] = s
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
        return s

    def promote(self, s: Session) -> None:
        """``s`` answered its challenge: move it to the authenticated table."""
        self.pending.pop(s.id, None)
        self.authenticated[s.id] = s
        self.authenticated.move_to_end(s.id)
        while len(self.authenticated) > self.max_authenticated:
            self.authenticated.popitem(last=False)

    def get(self, sid: str) -> Session | None:
        table = self.authenticated if sid in self.authenticated else self.pending
        s = table.get(sid)
        if s is None:
            return None
        if time.time() > s.expires:
            del table[sid]
            return None
        return s

    def drop(self, sid: str) -> bool:
        return (self.pending.pop(sid, None) or self.authenticated.pop(sid, None)) is not None


def answer_challenge(view: object, s: Session, params: dict[str, str]) -> None:
    """Check ``Authorization: Handle id=..., type=HS_PUBKEY, cnonce=..., signature=...`` for session ``s``.

    A well-formed answer that fails gets the same message (and one Ed25519 verification) whether the identity
    is missing, is not an HS_PUBKEY or signed wrongly, so the answer does not tell which identities exist.
    """
    ident = parse_identity(strict_unquote(params.get("id", ""), "id"))
    typ = params.get("type", HS_PUBKEY)
    if typ != HS_PUBKEY:
        raise HandleError(
            RC_INVALID_CREDENTIAL,
            f"challenge-response with type {typ} is not offered: HS_SECKEY is stored hashed; use Basic auth "
            "over HTTPS, or an Ed25519 HS_PUBKEY",
        )
    alg = params.get("alg", "Ed25519")
    if alg.lower() != "ed25519":
        raise HandleError(RC_INVALID_CREDENTIAL, f"signature alg {alg!r} is not supported; use Ed25519")
    cnonce = unb64(params.get("cnonce", ""), "cnonce")
    sig = unb64(params.get("signature", ""), "signature")
    if not 16 <= len(cnonce) <= 64:
        raise HandleError(RC_INVALID_CREDENTIAL, "cnonce must be 16 to 64 bytes")
    sv = value_at(load_record(view, ident.handle), ident.index)  # type: ignore[arg-type]
    key = bytes(sv.value.data) if sv is not None and sv.value.type == HS_PUBKEY else _DUMMY_PUBKEY
    ok = verify(key, DOMAIN_SESSION, s.nonce + cnonce, sig)
    if not ok or key is _DUMMY_PUBKEY:
        raise HandleError(RC_AUTHENTICATION_FAILED, CHALLENGE_FAILED)
    s.identity, s.cnonce, s.signature = ident, cnonce, sig


_DUMMY_PUBKEY = bytes(32)


def sign_challenge(seed_key: object, nonce: bytes, cnonce: bytes) -> bytes:
    """Client side of the challenge (tests, tools): Ed25519 over ``DOMAIN_SESSION || nonce || cnonce``."""
    from node.crypto import KeyPair

    assert isinstance(seed_key, KeyPair)
    return bytes(seed_key.sign(DOMAIN_SESSION, nonce + cnonce))


class SecretChecker:
    """Basic-auth checks with a short in-memory memory of successes (so scrypt runs once per client, not per
    request).

    ``lookup`` reads state (on the event loop, cheap); ``verify`` runs scrypt (in the resolver's bounded worker
    pool). Every failure is the same ``AUTH_FAILED`` after the same work: an identity without an HS_SECKEY is
    checked against a dummy hash of the same cost.
    """

    def __init__(self) -> None:
        self.ok: dict[tuple[str, int, bytes, bytes], float] = {}

    def lookup(
        self, view: object, ident: ValueRef, secret: bytes
    ) -> tuple[tuple[str, int, bytes, bytes], SecretHash, bool]:
        """(cache key, stored hash or the dummy, whether a recent success makes scrypt unnecessary)."""
        sv = value_at(load_record(view, ident.handle), ident.index)  # type: ignore[arg-type]
        stored_raw = b""
        stored = _DUMMY
        if sv is not None and sv.value.type == HS_SECKEY:
            stored_raw = bytes(sv.value.data)
            try:
                stored = decode_secret(stored_raw)
            except CempError:
                stored_raw = b""
        key = (ident.handle.upper(), ident.index, hashlib.sha256(secret).digest(), stored_raw)
        t = self.ok.get(key)
        fresh = bool(stored_raw) and t is not None and time.monotonic() - t < VERIFIED_TTL_S
        return key, stored, fresh

    def verify(self, key: tuple[str, int, bytes, bytes], stored: SecretHash, secret: bytes) -> bool:
        """scrypt; thread-safe (the success memory is a dict written whole-key at a time)."""
        good = check_secret(stored, secret) and stored is not _DUMMY and bool(key[3])
        if good:
            if len(self.ok) > 10_000:
                self.ok.clear()
            self.ok[key] = time.monotonic()
        return good

    def check(self, view: object, ident: ValueRef, secret: bytes) -> None:
        """Both steps in the calling thread (tools, tests); raises rc 403 ``AUTH_FAILED``."""
        key, stored, fresh = self.lookup(view, ident, secret)
        if not fresh and not self.verify(key, stored, secret):
            raise HandleError(RC_AUTHENTICATION_FAILED, AUTH_FAILED)


# --- throttling -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rate:
    """A token bucket: ``burst`` events at once, refilled at ``per_s`` events per second."""

    burst: float
    per_s: float


class RateLimiter:
    """Token buckets keyed by strings (``ip:1.2.3.4``, ``id:300:88.123.45/admin``), bounded in number: the
    least recently used bucket is forgotten first (a forgotten bucket is a full one, so the bound only ever
    errs on the side of letting a request through)."""

    def __init__(
        self, rate: Rate, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self.clock = clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        got = self.buckets.get(key)
        if got is None:
            return self.rate.burst
        tokens, t = got
        return min(self.rate.burst, tokens + (now - t) * self.rate.per_s)

    def retry_after(self, key: str) -> float:
        """0 if an event may happen now, else the seconds until one may."""
        tokens = self._level(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate.per_s

    def spend(self, key: str) -> None:
        now = self.clock()
        self.buckets[key] = (self._level(key, now) - 1, now)
        self.buckets.move_to_end(key)
        while len(self.buckets) > self.max_keys:
            self.buckets.popitem(last=False)
