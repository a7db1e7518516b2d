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

Invariants: secrets never leave this process (the chain stores only the hash; logs never see them); a session's
nonce names this node and an expiry (``resolver.handles.SESSION_NONCE_LEN``) so the proof a write carries on
chain can be used by no other node and after no later time; sessions live in memory, bounded in number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import unquote

from node import codec
from node.crypto import verify
from node.types import ShortStr
from resolver.handles import DOMAIN_SESSION, identity_key, load_record, node_tag
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
VERIFIED_TTL_S = 300.0
IDENTITY_RE = re.compile(r"^([0-9]{1,10}):(.+)$")


def hash_secret(secret: bytes, salt: bytes | None = None) -> bytes:
    """Encoded ``SecretHash`` for an HS_SECKEY value (scrypt, n=2^14, r=8, p=1, 16-byte random salt)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=64 << 20)
    return codec.encode(SecretHash(ShortStr("scrypt"), SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest))


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
    """In-memory sessions of one node, bounded (oldest dropped first) and expiring after 30 minutes."""

    def __init__(self, node_pubkey: bytes, ttl_s: float = SESSION_TTL_S) -> None:
        self.tag = node_tag(node_pubkey)
        self.ttl_s = ttl_s
        self.items: OrderedDict[str, Session] = OrderedDict()

    def new(self) -> Session:
        now = time.time()
        expires = now + self.ttl_s
        nonce = int(expires * 1000).to_bytes(8, "big") + self.tag + os.urandom(16)
        s = Session(base64.urlsafe_b64encode(os.urandom(18)).decode(), nonce, expires)
        self.items[s.id] = s
        while len(self.items) > MAX_SESSIONS:
            self.items.popitem(last=False)
        return s

    def get(self, sid: str) -> Session | None:
        s = self.items.get(sid)
        if s is None:
            return None
        if time.time() > s.expires:
            del self.items[sid]
            return None
        return s

    def drop(self, sid: str) -> bool:
        return self.items.pop(sid, None) is not None


def answer_challenge(view: object, s: Session, params: dict[str, str]) -> None:
    """Check ``Authorization: Handle id=..., type=HS_PUBKEY, cnonce=..., signature=...`` for session ``s``."""
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
    sv = identity_key(view, ident)  # type: ignore[arg-type]
    if sv.value.type != HS_PUBKEY:
        raise HandleError(RC_AUTHENTICATION_FAILED, f"{ident.index}:{ident.handle} is not an HS_PUBKEY value")
    if not verify(bytes(sv.value.data), DOMAIN_SESSION, s.nonce + cnonce, sig):
        raise HandleError(RC_AUTHENTICATION_FAILED, "the challenge signature does not verify")
    s.identity, s.cnonce, s.signature = ident, cnonce, sig


def sign_challenge(seed_key: object, nonce: bytes, cnonce: bytes) -> bytes:
    """Client side of the challenge (tests, tools): Ed25519 over ``DOMAIN_SESSION || nonce || cnonce``."""
    from node.crypto import KeyPair

    assert isinstance(seed_key, KeyPair)
    return bytes(seed_key.sign(DOMAIN_SESSION, nonce + cnonce))


class SecretChecker:
    """Basic-auth checks with a short in-memory memory of successes (so scrypt runs once per client, not per
    request)."""

    def __init__(self) -> None:
        self.ok: dict[tuple[str, int, bytes, bytes], float] = {}

    def check(self, view: object, ident: ValueRef, secret: bytes) -> None:
        rec = load_record(view, ident.handle)  # type: ignore[arg-type]
        if rec is None:
            raise HandleError(RC_AUTHENTICATION_FAILED, f"identity handle {ident.handle} does not exist")
        sv = identity_key(view, ident)  # type: ignore[arg-type]
        if sv.value.type != HS_SECKEY:
            raise HandleError(
                RC_AUTHENTICATION_FAILED, f"{ident.index}:{ident.handle} is not an HS_SECKEY value"
            )
        stored = bytes(sv.value.data)
        key = (ident.handle.upper(), ident.index, hashlib.sha256(secret).digest(), stored)
        now = time.monotonic()
        t = self.ok.get(key)
        if t is not None and now - t < VERIFIED_TTL_S:
            return
        if not check_secret(decode_secret(stored), secret):
            raise HandleError(RC_AUTHENTICATION_FAILED, "wrong secret key for this identity")
        if len(self.ok) > 10_000:
            self.ok.clear()
        self.ok[key] = now
