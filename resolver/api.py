"""The Handle.Net v9 JSON REST API of a CEMP node (``routes(node)`` is its route provider).

Endpoints: ``GET/PUT/DELETE /api/handles/{prefix}/{suffix}``, ``GET /api/handles?prefix=``, ``/api/prefixes``,
``/api/sessions[/this]``, ``GET /hrls/handles?URL=`` (pyhandle's search). ``?proof=true`` adds the proof of every
value (``resolver.proof``); a browser asking for HTML is redirected to the resolution page ``/handle/...``
(``web.handles``).

Invariants:
- every reply is JSON with ``responseCode`` and ``handle`` (the request's handle exactly as sent, percent-decoded,
  also on errors); the HTTP status follows from the response code (``http_status``);
- reads come from committed state only; a write becomes ONE ``handle.put``/``handle.delete`` tx, signed by this
  node's key on behalf of the authenticated identity (``resolver.handles``), and the reply is sent after that tx
  committed, so the client's next GET sees it; anything refused is refused before a tx exists (nothing written);
- failed logins and new sessions are rate-limited per address (and Basic failures per identity) with 429 and
  ``Retry-After``; scrypt and proofs run in a bounded worker pool (503 when it is full), never on the loop;
- the JSON of a public resolution is cached per request path and served only while the stored record bytes are
  the ones it was built from (checked once per new block height), so a commit invalidates it by construction.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import ipaddress
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from node import codec, schema
from node.chain import sign_tx
from node.crypto import KeyPair
from node.errors import CempError
from node.mempool import PendingView
from node.state import StateView
from node.store import prefix_stop
from node.submit import LocalEndpoint, Status, SubmitClient
from node.txkinds import Env
from node.types import (
    Handle,
    Hash32,
    Height,
    Nonce,
    PublicKey,
    ShortStr,
    Signature,
    Text,
    TimestampMs,
    Tx,
    TxLocation,
)
from resolver import credentials as cred
from resolver import idis
from resolver.handles import LIST_HANDLES, READ_VALUE, load_record, parse_name, rights_in
from resolver.kinds import Authority, HandleDelete, HandlePut, plan_delete, plan_put
from resolver.values import (
    HS_ADMIN,
    HS_SECKEY,
    MAX_JSON_DEPTH,
    PERM_ADMIN_READ,
    RC_AUTHENTICATION_FAILED,
    RC_AUTHENTICATION_NEEDED,
    RC_ERROR,
    RC_HANDLE_NOT_FOUND,
    RC_INSUFFICIENT_PERMISSIONS,
    RC_INVALID_HANDLE,
    RC_INVALID_VALUE,
    RC_NOT_SUPPORTED,
    RC_PROTOCOL_ERROR,
    RC_SERVER_BUSY,
    RC_SUCCESS,
    RC_VALUES_NOT_FOUND,
    HandleError,
    HandleRecord,
    HandleValue,
    StoredValue,
    ValueRef,
    load_json,
    norm,
    publicly_readable,
    rc_for_code,
    value_from_json,
    value_text,
    value_to_json,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
API = "/api/handles"
MAX_PUT_BODY = 256 * 1024
MAX_BODY_DEPTH = MAX_JSON_DEPTH + 4
"""A PUT body: ``{"values": [{"data": {"value": <JSON of at most MAX_JSON_DEPTH>}}]}``; deeper is refused."""
MAX_QUERY = 4096
CACHE_MAX = 100_000
JSON_TYPE = "application/json"
_CALLBACK_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$")

_STATUS = {
    1: 200,
    2: 500,
    3: 503,
    7: 503,
    4: 400,
    5: 501,
    100: 404,
    101: 409,
    102: 400,
    200: 400,
    201: 409,
    202: 400,
    301: 400,
    302: 300,
    303: 300,
    402: 401,
    400: 403,
    401: 403,
    403: 403,
    404: 403,
}


def http_status(rc: int, resolving: bool = False) -> int:
    """HTTP status for a Handle response code (Handle.Net ``statusCodeFromResponse``)."""
    if rc == RC_VALUES_NOT_FOUND and resolving:
        return 200
    return _STATUS.get(rc, 500)


FAILED_PER_IDENTITY = cred.Rate(burst=5, per_s=1 / 12)
FAILED_PER_ADDRESS = cred.Rate(burst=10, per_s=1 / 6)
SESSIONS_PER_ADDRESS = cred.Rate(burst=30, per_s=1.0)


@dataclass(frozen=True)
class ResolverConfig:
    allow_plain_http_credentials: bool = False
    """Accept credentials over plain HTTP from non-loopback clients (``CEMP_RESOLVER_ALLOW_PLAIN_HTTP=1``)."""
    public_listing: bool = False
    """Let anyone list a prefix's handles (``CEMP_RESOLVER_PUBLIC_LIST=1``); Handle.Net needs "list handles"."""
    write_timeout_s: float = 30.0
    loopback_is_local: bool = True
    """Treat loopback peers as local (credentials allowed over HTTP). Tests turn it off to act as remote."""
    failed_logins_per_identity: cred.Rate = FAILED_PER_IDENTITY
    """Failed logins (Basic or challenge answers) allowed per identity: 5 at once, then one every 12 s."""
    failed_logins_per_address: cred.Rate = FAILED_PER_ADDRESS
    """Failed logins allowed per client address: 10 at once, then one every 6 s."""
    sessions_per_address: cred.Rate = SESSIONS_PER_ADDRESS
    """New sessions (``POST /api/sessions`` and the challenges of 401 answers) per client address."""
    max_sessions: int = cred.MAX_SESSIONS
    max_authenticated_sessions: int = cred.MAX_AUTH_SESSIONS
    crypto_workers: int = 2
    """Threads for scrypt and proof building; the event loop never runs them."""
    crypto_queue: int = 16
    """Jobs waiting for those threads beyond which a request gets 503 with Retry-After."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ResolverConfig:
        e = dict(os.environ) if env is None else env

        def flag(k: str) -> bool:
            return e.get(k, "").strip().lower() in ("1", "true", "yes", "on")

        return cls(
            allow_plain_http_credentials=flag("CEMP_RESOLVER_ALLOW_PLAIN_HTTP"),
            public_listing=flag("CEMP_RESOLVER_PUBLIC_LIST"),
            write_timeout_s=float(e.get("CEMP_RESOLVER_WRITE_TIMEOUT_S", "30")),
        )


class TooMany(HandleError):
    """429 with ``Retry-After``: too many failed logins or new sessions from one address or for one identity."""

    def __init__(self, retry_after_s: float, message: str) -> None:
        super().__init__(RC_SERVER_BUSY, message)
        self.retry_after = max(1, math.ceil(retry_after_s))


class Busy(HandleError):
    """503 with ``Retry-After``: the crypto worker pool's queue is full."""

    def __init__(self, message: str) -> None:
        super().__init__(RC_SERVER_BUSY, message)


class Challenge(HandleError):
    """401 rc 402 with a ``WWW-Authenticate: Handle sessionId, nonce`` challenge."""

    def __init__(self, session: cred.Session, message: str) -> None:
        super().__init__(RC_AUTHENTICATION_NEEDED, message)
        self.session = session


@dataclass(frozen=True)
class Auth:
    identity: ValueRef
    method: str
    """``seckey`` (Basic) or ``session`` (Ed25519 challenge-response)."""
    session: cred.Session | None

    def authority(self) -> Authority:
        s = self.session
        if self.method == "session" and s is not None:
            return Authority(
                ShortStr("session"),
                Handle(self.identity.handle),
                self.identity.index,
                s.nonce,
                s.cnonce,
                s.signature,
            )
        return Authority(ShortStr("seckey"), Handle(self.identity.handle), self.identity.index, b"", b"", b"")


@dataclass
class _Cached:
    key: bytes
    raw: bytes | None
    body: bytes
    height: int


def dumps(obj: object, pretty: bool = False) -> bytes:
    if pretty:
        return json.dumps(obj, ensure_ascii=False, indent=2).encode()
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def node_key(node: Any) -> KeyPair:
    """The node's own key (the single-node producer's or the consensus driver's)."""
    for holder in (node, getattr(node, "producer", None), getattr(node, "driver", None)):
        key = getattr(holder, "key", None)
        if isinstance(key, KeyPair):
            return key
    raise RuntimeError("the node exposes no key; the resolver cannot sign handle txs")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def parse_query(qs: str) -> list[tuple[str, str]]:
    """Strict query parsing: malformed percent-escapes or invalid UTF-8 are refused (rc 4)."""
    if len(qs) > MAX_QUERY:
        raise HandleError(RC_PROTOCOL_ERROR, f"query string longer than {MAX_QUERY} characters")
    out = []
    for part in qs.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        try:
            out.append(
                (
                    cred.strict_unquote(k.replace("+", " "), "query parameter"),
                    cred.strict_unquote(v.replace("+", " "), "query value"),
                )
            )
        except HandleError as e:
            raise HandleError(RC_PROTOCOL_ERROR, e.message) from None
    return out


def _bool(q: dict[str, list[str]], name: str, default: bool) -> bool:
    vals = q.get(name)
    if not vals:
        return default
    v = vals[-1].lower()
    if v in ("true", "1", "yes", ""):
        return True
    if v in ("false", "0", "no"):
        return False
    raise HandleError(RC_PROTOCOL_ERROR, f"{name}={vals[-1]!r} must be true or false")


def _indices(q: dict[str, list[str]], allow_various: bool) -> tuple[list[int], bool]:
    out: list[int] = []
    various = False
    for s in q.get("index", []):
        if s.lower() == "various" and allow_various:
            various = True
            continue
        if not re.fullmatch(r"[0-9]{1,10}", s) or not 1 <= int(s) <= (1 << 31) - 1:
            raise HandleError(RC_PROTOCOL_ERROR, f"index={s!r} must be a positive integer")
        out.append(int(s))
    return out, various


def type_matches(typ: str, wanted: list[str]) -> bool:
    """``type=URL`` matches URL; ``type=HS_SITE.`` also matches HS_SITE.PREFIX (case-insensitive)."""
    t = typ.upper()
    for w in wanted:
        wu = w.upper()
        if wu.endswith("."):
            if t == wu[:-1] or t.startswith(wu):
                return True
        elif t == wu:
            return True
    return False


def select(values: tuple[StoredValue, ...], indices: list[int], types: list[str]) -> list[StoredValue]:
    """Values matching any listed index or type (all when neither is given), as Handle.Net resolves."""
    if not indices and not types:
        return list(values)
    idx = set(indices)
    return [sv for sv in values if sv.value.index in idx or (types and type_matches(sv.value.type, types))]


class Resolver:
    def __init__(self, node: Any, config: ResolverConfig | None = None) -> None:
        self.node = node
        self.ledger = node.ledger
        self.store = node.ledger.store
        self.genesis = node.ledger.genesis
        self.config = config or ResolverConfig.from_env()
        self.key = node_key(node)
        self.sessions = cred.Sessions(
            self.key.public,
            max_pending=self.config.max_sessions,
            max_authenticated=self.config.max_authenticated_sessions,
        )
        self.secrets = cred.SecretChecker()
        self.fail_by_identity = cred.RateLimiter(self.config.failed_logins_per_identity)
        self.fail_by_address = cred.RateLimiter(self.config.failed_logins_per_address)
        self.new_by_address = cred.RateLimiter(self.config.sessions_per_address)
        self.pool = ThreadPoolExecutor(self.config.crypto_workers, thread_name_prefix="resolver-crypto")
        self.pool_jobs = 0
        self.throttled = 0
        self.by_rc: dict[int, int] = {}
        """Replies built by ``reply`` and uncached resolutions, by Handle.Net responseCode (cache hits are rc 1)."""
        self.cache: dict[str, _Cached] = {}
        self.write_lock = asyncio.Lock()
        self.hits = 0
        self.misses = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", API + r"{tail:[\s\S]*}", self.handles),
            web.get("/api/prefixes", self.prefixes),
            web.get("/api/site", self.site),
            web.post("/api/sessions", self.session_new),
            web.route("*", "/api/sessions/this", self.session_this),
            web.get("/hrls/handles", self.search),
            web.get("/hrls/handles/", self.search),
        ]

    # --- replies --------------------------------------------------------------------------------------------
    def reply(
        self,
        request: web.Request,
        rc: int,
        handle: str,
        extra: dict[str, Any] | None = None,
        *,
        message: str | None = None,
        status: int | None = None,
        resolving: bool = False,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self.by_rc[rc] = self.by_rc.get(rc, 0) + 1
        body: dict[str, Any] = {"responseCode": rc, "handle": handle}
        if message is not None:
            body["message"] = message
        if extra:
            body.update(extra)
        q = request.query
        data = dumps(body, pretty="pretty" in q and q.get("pretty", "true").lower() != "false")
        ctype = JSON_TYPE
        cb = q.get("callback")
        if cb and _CALLBACK_RE.match(cb):
            data = cb.encode() + b"(" + data + b");"
            ctype = "application/javascript"
        return web.Response(
            body=data,
            status=status if status is not None else http_status(rc, resolving),
            content_type=ctype,
            charset="utf-8",
            headers=headers,
        )

    def error(
        self, request: web.Request, e: HandleError, handle: str, resolving: bool = False
    ) -> web.Response:
        headers = None
        status = None
        if isinstance(e, Challenge):
            s = e.session
            headers = {"WWW-Authenticate": f'Handle sessionId="{s.id}", nonce="{cred.b64(s.nonce)}"'}
        elif isinstance(e, TooMany):
            headers, status = {"Retry-After": str(e.retry_after)}, 429
        elif isinstance(e, Busy):
            headers, status = {"Retry-After": "1"}, 503
        return self.reply(
            request, e.rc, handle, message=e.message, resolving=resolving, headers=headers, status=status
        )

    # --- /api/handles ---------------------------------------------------------------------------------------
    async def handles(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        if method == "GET" and not request.query_string:
            accept = request.headers.get("Accept")
            if accept is None or "html" not in accept:
                hit = self._cached(request.rel_url.raw_path)
                if hit is not None:
                    return web.Response(body=hit, content_type=JSON_TYPE, charset="utf-8")
        raw_tail = request.rel_url.raw_path[len(API) :]
        echo = raw_tail[1:] if raw_tail.startswith("/") else raw_tail
        try:
            if raw_tail in ("", "/"):
                if method in ("GET", "HEAD"):
                    return await self.list_handles(request)
                raise HandleError(
                    RC_INVALID_HANDLE, "the path must name a handle: /api/handles/PREFIX/SUFFIX"
                )
            if not raw_tail.startswith("/"):
                raise HandleError(
                    RC_INVALID_HANDLE, f"no such endpoint {request.path!r}; use /api/handles/PREFIX/SUFFIX"
                )
            try:
                echo = cred.strict_unquote(echo, "handle")
            except HandleError as e:
                raise HandleError(RC_INVALID_HANDLE, e.message) from None
            q: dict[str, list[str]] = {}
            for k, v in parse_query(request.query_string):
                q.setdefault(k, []).append(v)
            if method in ("GET", "HEAD"):
                return await self.resolve(request, echo, q)
            if method == "PUT":
                return await self.put(request, echo, q)
            if method == "DELETE":
                return await self.delete(request, echo, q)
            if method == "POST":
                raise HandleError(
                    RC_NOT_SUPPORTED,
                    "POST on /api/handles is not supported here; use GET with query parameters",
                )
            return self.reply(
                request, RC_NOT_SUPPORTED, echo, message=f"method {method} is not allowed", status=405
            )
        except HandleError as e:
            return self.error(request, e, echo, resolving=method in ("GET", "HEAD"))

    def _cached(self, path: str) -> bytes | None:
        ent = self.cache.get(path)
        if ent is None:
            return None
        h = self.ledger.height
        if ent.height != h:
            # A block committed since: the body is still good iff the stored record is the same bytes.
            if self.store.get(ent.key) != ent.raw:
                del self.cache[path]
                return None
            ent.height = h
        self.hits += 1
        return ent.body

    def _remember(self, path: str, key: bytes, raw: bytes, body: bytes, height: int) -> None:
        """Cache ``body``, built from the stored bytes ``raw`` read after ``height`` was (so a commit in
        between only makes the next request re-check the bytes)."""
        if len(self.cache) >= CACHE_MAX:
            self.cache.pop(next(iter(self.cache)))
        self.cache[path] = _Cached(key, raw, body, height)

    def _wants_html(self, request: web.Request, q: dict[str, list[str]]) -> bool:
        fmt = q.get("format", [""])[-1].lower()
        if fmt in ("html", "json"):
            return fmt == "html"
        accept = request.headers.get("Accept", "")
        if "html" not in accept:
            return False
        # A browser lists text/html before (or without) application/json.
        i_html = accept.find("text/html")
        i_json = accept.find("application/json")
        return i_html >= 0 and (i_json < 0 or i_html < i_json)

    async def resolve(self, request: web.Request, echo: str, q: dict[str, list[str]]) -> web.StreamResponse:
        height = self.ledger.height
        name = parse_name(self.genesis, echo)
        if self._wants_html(request, q):
            # Pages for people live in web/ (``web.handles``): send the browser there.
            lang = q.get("lang", [""])[-1]
            tail = f"?lang={quote(lang)}" if lang else ""
            raise web.HTTPSeeOther(f"/handle/{quote(name.handle, safe='/')}{tail}")
        view = StateView(self.store)
        key = schema.handle_record(norm(name.handle))
        raw = self.store.get(key)  # one read: the body below and its cache entry come from these bytes
        rec = None if raw is None else codec.decode(HandleRecord, raw)
        if rec is None or rec.deleted or raw is None:
            raise HandleError(RC_HANDLE_NOT_FOUND, f"handle {echo} not found")
        indices, _ = _indices(q, allow_various=False)
        types = q.get("type", [])
        public_only = _bool(q, "publicOnly", True)
        admin_read = False
        member = request.headers.get("Authorization", "").lower().startswith("bearer ")
        if not public_only and member:
            # A consortium member's token (``access``): values that are not public-read are shown to the members of
            # the handle's org and to whom it granted ``handles`` data covering this handle.
            self.node.reads.require(request, name.org.name, "handles", device=name.handle)
            admin_read = True
        elif not public_only:
            auth = await self.authenticate(request, required=True)
            assert auth is not None
            admin_read = bool(rights_in(view, rec, auth.identity) >> READ_VALUE & 1)
            if not admin_read:
                raise HandleError(
                    RC_INSUFFICIENT_PERMISSIONS,
                    f"{auth.identity.index}:{auth.identity.handle} lacks the read-value right on {echo}",
                )
        visible = [
            sv
            for sv in rec.values
            if publicly_readable(sv.value)
            or (admin_read and sv.value.permissions & PERM_ADMIN_READ and sv.value.type != HS_SECKEY)
        ]
        chosen = select(tuple(visible), indices, types)
        extra: dict[str, Any] = {"values": [value_to_json(sv) for sv in chosen]}
        if _bool(q, "proof", False):
            from resolver import proof

            extra["proof"] = await self.offload(proof.build, self.ledger, rec, chosen)
        rc = RC_SUCCESS if chosen else RC_VALUES_NOT_FOUND
        # Cache only the canonical spelling (one entry per handle), so odd spellings cannot fill memory.
        if rc == RC_SUCCESS and not q and echo == rec.handle and request.rel_url.raw_path == f"{API}/{echo}":
            body = dumps({"responseCode": rc, "handle": echo, **extra})
            self._remember(request.rel_url.raw_path, key, raw, body, height)
            self.misses += 1
            self.by_rc[rc] = self.by_rc.get(rc, 0) + 1
            return web.Response(body=body, content_type=JSON_TYPE, charset="utf-8")
        return self.reply(request, rc, echo, extra, resolving=True)

    # --- authentication -------------------------------------------------------------------------------------
    def credentials_allowed(self, request: web.Request) -> bool:
        if request.secure or self.config.allow_plain_http_credentials:
            return True
        return self.config.loopback_is_local and is_loopback(request.remote)

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the crypto worker pool (scrypt, proofs); 503 when its queue is full."""
        if self.pool_jobs >= self.config.crypto_workers + self.config.crypto_queue:
            raise Busy("the node is busy with other logins and proofs; retry in a second")
        self.pool_jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))
        finally:
            self.pool_jobs -= 1

    def new_session(self, request: web.Request) -> cred.Session:
        """A new challenge session, at most ``sessions_per_address`` per client address."""
        key = f"ip:{request.remote}"
        wait = self.new_by_address.retry_after(key)
        if wait > 0:
            self.throttled += 1
            raise TooMany(wait, "too many new sessions from this address; retry after the Retry-After delay")
        self.new_by_address.spend(key)
        return self.sessions.new()

    def _login_gate(self, request: web.Request, ident: ValueRef | None) -> tuple[str, str | None]:
        """Refuse (429) before any work when this address, or this identity (Basic only: a secret can be
        guessed, an Ed25519 signature cannot, so challenge answers are limited per address only and nobody can
        lock a key holder out), has failed too often lately."""
        by_ip = f"ip:{request.remote}"
        by_id = None if ident is None else f"id:{ident.index}:{norm(ident.handle)}"
        wait = self.fail_by_address.retry_after(by_ip)
        if by_id is not None:
            wait = max(wait, self.fail_by_identity.retry_after(by_id))
        if wait > 0:
            self.throttled += 1
            raise TooMany(wait, "too many failed logins from this address or for this identity; retry later")
        return by_ip, by_id

    def _login_failed(self, keys: tuple[str, str | None]) -> None:
        self.fail_by_address.spend(keys[0])
        if keys[1] is not None:
            self.fail_by_identity.spend(keys[1])

    async def authenticate(self, request: web.Request, required: bool) -> Auth | None:
        header = request.headers.get("Authorization", "")
        if not header:
            if not required:
                return None
            s = self.new_session(request)
            raise Challenge(s, "authentication needed: send Basic credentials or answer the Handle challenge")
        if not self.credentials_allowed(request):
            raise HandleError(
                RC_AUTHENTICATION_FAILED,
                "credentials over plain HTTP from a non-loopback address are refused; use HTTPS "
                "(or the operator sets CEMP_RESOLVER_ALLOW_PLAIN_HTTP=1)",
            )
        scheme = header.split(" ", 1)[0].lower()
        view = StateView(self.store)
        if scheme == "basic":
            ident, secret = cred.parse_basic(header)
            ckey, stored, fresh = self.secrets.lookup(view, ident, secret)
            if fresh:  # verified a moment ago: no scrypt, and no lock-out of a client that knows its secret
                return Auth(ident, "seckey", None)
            keys = self._login_gate(request, ident)
            if not await self.offload(self.secrets.verify, ckey, stored, secret):
                self._login_failed(keys)
                raise HandleError(RC_AUTHENTICATION_FAILED, cred.AUTH_FAILED)
            return Auth(ident, "seckey", None)
        if scheme == "handle":
            params = cred.parse_handle_auth(header)
            if params.get("clientCert", "").lower() == "true":
                raise HandleError(
                    RC_AUTHENTICATION_FAILED,
                    "client certificates are not supported; use Basic auth against HS_SECKEY or the Ed25519 "
                    "HS_PUBKEY challenge",
                )
            sid = params.get("sessionId", "")
            found = self.sessions.get(sid)
            if found is None:
                if "signature" in params:
                    raise HandleError(
                        RC_AUTHENTICATION_FAILED, "unknown or expired session; ask for a new challenge"
                    )
                raise Challenge(
                    self.new_session(request), "unknown or expired session; here is a new challenge"
                )
            s = found
            if "signature" in params:
                self.answer(request, view, s, params)
            if s.identity is None:
                if required:
                    raise Challenge(s, "this session is not authenticated yet; answer its challenge")
                return None
            return Auth(s.identity, "session", s)
        raise HandleError(
            RC_AUTHENTICATION_FAILED, f"unsupported Authorization scheme {scheme!r}; use Basic or Handle"
        )

    def answer(self, request: web.Request, view: StateView, s: cred.Session, params: dict[str, str]) -> None:
        """Check a challenge answer (failures rate-limited per address) and promote the session."""
        keys = self._login_gate(request, None)
        try:
            cred.answer_challenge(view, s, params)
        except HandleError as e:
            if e.rc == RC_AUTHENTICATION_FAILED:
                self._login_failed(keys)
            raise
        self.sessions.promote(s)

    # --- writes ----------------------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> object:
        if request.content_length is not None and request.content_length > MAX_PUT_BODY:
            raise HandleError(RC_INVALID_VALUE, f"request body over {MAX_PUT_BODY} bytes")
        data = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            data.extend(chunk)
            if len(data) > MAX_PUT_BODY:
                raise HandleError(RC_INVALID_VALUE, f"request body over {MAX_PUT_BODY} bytes")
        if not data:
            raise HandleError(RC_PROTOCOL_ERROR, 'empty body: send {"values": [...]}')
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise HandleError(RC_PROTOCOL_ERROR, "body is not UTF-8") from None
        try:
            return load_json(text, "body", floats=True, max_depth=MAX_BODY_DEPTH)
        except HandleError as e:
            raise HandleError(RC_PROTOCOL_ERROR, e.message) from None

    async def put(self, request: web.Request, echo: str, q: dict[str, list[str]]) -> web.Response:
        mint = _bool(q, "mintNewSuffix", False)
        if mint:
            if not echo.endswith("/"):
                raise HandleError(RC_INVALID_HANDLE, "with mintNewSuffix=true the path must end in '/'")
            echo = echo + uuid.uuid4().hex.upper()
        name = parse_name(self.genesis, echo)
        overwrite = _bool(q, "overwrite", True)
        indices, various = _indices(q, allow_various=True)
        auth = await self.authenticate(request, required=True)
        assert auth is not None
        body = await self._body(request)
        raw_values: object
        if isinstance(body, list):
            raw_values = body
        elif isinstance(body, dict) and "values" in body:
            if "handle" in body and body["handle"] != echo and norm(str(body["handle"])) != norm(echo):
                raise HandleError(
                    RC_INVALID_HANDLE, f"body names handle {body['handle']!r}, the path {echo!r}"
                )
            raw_values = body["values"]
        elif isinstance(body, dict):
            raw_values = [body]
        else:
            raise HandleError(RC_PROTOCOL_ERROR, 'body must be [values], {"values": [...]} or one value')
        if not isinstance(raw_values, list) or not raw_values:
            raise HandleError(RC_INVALID_VALUE, "values must be a non-empty list")
        parsed = [value_from_json(v, f"value #{i}") for i, v in enumerate(raw_values)]
        if indices and not various and sorted(indices) != sorted(p.value.index for p in parsed):
            raise HandleError(
                RC_INVALID_VALUE,
                f"the index parameters {sorted(indices)} must match the indices in the body "
                f"{sorted(p.value.index for p in parsed)} (or use index=various)",
            )
        values: list[HandleValue] = []
        issued: list[dict[str, Any]] = []
        for p in parsed:
            if p.value.type == HS_SECKEY:
                # The node makes the secret (192 random bits): the hash goes on the public chain, and only a
                # secret nobody can enumerate keeps that hash from being guessed offline.
                secret = cred.new_secret()
                data = await self.offload(cred.hash_secret, secret.encode())
                values.append(HandleValue(**{**_fields(p.value), "data": data}))
                issued.append({"index": p.value.index, "secret": secret})
            else:
                values.append(p.value)
        partial = bool(indices) or various
        mode = ("update" if overwrite else "add") if partial else ("replace" if overwrite else "create")
        if not partial and not any(v.type == HS_ADMIN for v in values):
            # As the Handle.Net servlet does: a new record without HS_ADMIN gets one for whoever created it.
            free = next(i for i in range(100, 1 << 31) if i not in {v.index for v in values})
            ident = auth.identity
            values.append(idis.admin_value(free, ident.handle, ident.index, idis.DEFAULT_ADMIN_PERMS))
        payload = HandlePut(Handle(name.handle), ShortStr(mode), tuple(values), auth.authority())
        loc = await self.write("handle.put", payload, creating=mode == "create")
        del loc
        if issued:
            # The one reply that carries a secret: to the authenticated writer who asked for it, once.
            return self.reply(
                request,
                RC_SUCCESS,
                echo,
                {"secrets": issued},
                status=200 if overwrite else 201,
                headers={"Cache-Control": "no-store"},
            )
        return self.reply(request, RC_SUCCESS, echo, status=200 if overwrite else 201)

    async def delete(self, request: web.Request, echo: str, q: dict[str, list[str]]) -> web.Response:
        name = parse_name(self.genesis, echo)
        indices, _ = _indices(q, allow_various=False)
        auth = await self.authenticate(request, required=True)
        assert auth is not None
        payload = HandleDelete(Handle(name.handle), tuple(indices), auth.authority())
        await self.write("handle.delete", payload, creating=False)
        return self.reply(request, RC_SUCCESS, echo)

    def _env(self) -> Env:
        return Env(
            self.genesis,
            Height(self.ledger.height + 1),
            TimestampMs(max(int(time.time() * 1000), self.ledger.last_time_ms + 1)),
            Hash32(b"\x00" * 32),
            0,
            admins=self.ledger.admin_keys(),
        )

    async def write(self, kind: str, payload: HandlePut | HandleDelete, creating: bool) -> TxLocation:
        """Check, sign with the node key, submit, and wait for commit. One write at a time per node, so the
        node key's nonces never race (and a follower's forwarded tx is committed before the next is signed)."""
        async with self.write_lock:
            mp = self.node.mempool
            view = PendingView(self.store, mp.overlay)
            nonce = self.ledger.nonce_of(view, self.key.public) + 1
            probe = Tx(
                self.genesis.chain_id,
                ShortStr(kind),
                PublicKey(self.key.public),
                Nonce(nonce),
                b"",  # type: ignore[arg-type]
                Signature(b"\x00" * 64),
            )
            if isinstance(payload, HandlePut):
                plan_put(view, self._env(), probe, payload)
            else:
                plan_delete(view, self._env(), probe, payload)
            raw, h = sign_tx(self.key, self.ledger.chain, kind, nonce, payload)
            if len(raw) > self.genesis.params.max_tx_bytes:
                raise HandleError(
                    RC_INVALID_VALUE,
                    f"the record makes a tx of {len(raw)} bytes; the chain's limit is {self.genesis.params.max_tx_bytes}",
                )
            try:
                loc = await submit_and_wait(self.node, raw, h, self.config.write_timeout_s)
            except HandleError:
                raise
            except CempError as e:
                raise HandleError(rc_for_code(e.code, creating), e.message) from None
        if loc.code != 0:
            raise HandleError(rc_for_code(loc.code, creating), f"the chain refused the write: {loc.reason}")
        return loc

    # --- listing, prefixes, search ---------------------------------------------------------------------------
    async def list_handles(self, request: web.Request) -> web.Response:
        q: dict[str, list[str]] = {}
        for k, v in parse_query(request.query_string):
            q.setdefault(k, []).append(v)
        given = q.get("prefix", [""])[-1]
        try:
            if not given:
                raise HandleError(RC_PROTOCOL_ERROR, "list handles with GET /api/handles?prefix=PREFIX")
            prefix = given[5:] if given.upper().startswith("0.NA/") else given
            name = parse_name(self.genesis, f"0.NA/{prefix}")
            page = _int_param(q, "page", -1)
            size = _int_param(q, "pageSize", -1)
            if not self.config.public_listing:
                auth = await self.authenticate(request, required=True)
                assert auth is not None
                prec = load_record(StateView(self.store), name.handle)
                if not rights_in(StateView(self.store), prec, auth.identity) >> LIST_HANDLES & 1:
                    raise HandleError(
                        RC_INSUFFICIENT_PERMISSIONS,
                        f"{auth.identity.index}:{auth.identity.handle} lacks 'list handles' on 0.NA/{prefix}",
                    )
            start = schema.handle_record(norm(prefix) + "/")
            handles: list[str] = []
            total = 0
            lo = page * size if page >= 0 and size > 0 else 0
            hi = 1 << 62 if size < 0 else lo + size  # pageSize=0: only the count
            for _, v in self.store.iterate(start, prefix_stop(start)):
                if v[-1] != 0:  # the record's last field is its deleted flag (msgpack fixint 0 or 1)
                    continue
                if lo <= total < hi:
                    handles.append(_record_handle(v))
                total += 1
            extra: dict[str, Any] = {"prefix": given, "totalCount": str(total)}
            if page >= 0:
                extra["page"] = page
            if size >= 0:
                extra["pageSize"] = size
            extra["handles"] = handles
            return self.reply(request, RC_SUCCESS, given, extra)
        except HandleError as e:
            return self.error(request, e, given)

    async def prefixes(self, request: web.Request) -> web.Response:
        g = self.genesis
        return self.reply(
            request,
            RC_SUCCESS,
            "",
            {
                "prefixes": [o.prefix for o in g.orgs],
                "orgs": [{"prefix": o.prefix, "org": o.name, "role": o.role} for o in g.orgs],
            },
        )

    async def site(self, request: web.Request) -> web.Response:
        return self.reply(
            request,
            RC_SUCCESS,
            "",
            {
                "site": {
                    "chainId": self.genesis.chain_id,
                    "node": self.node.node_id,
                    "protocolVersion": "2.11",
                    "primary": True,
                    "prefixes": [o.prefix for o in self.genesis.orgs],
                }
            },
        )

    async def search(self, request: web.Request) -> web.Response:
        """pyhandle ``search_handle``: ``GET /hrls/handles?URL=*pattern*`` -> JSON array of handles.

        Values arrive un-encoded; ``*`` is a wildcard; matching is case-insensitive over publicly readable
        values. Needs credentials (any identity), like the reverse-lookup servlet.
        """
        try:
            await self.authenticate(request, required=True)
            terms: list[tuple[str, str]] = []
            for part in request.query_string.split("&"):
                k, sep, v = part.partition("=")
                if not sep or not k:
                    continue
                terms.append((cred.strict_unquote(k, "key"), cred.strict_unquote(v, "value")))
            if not terms:
                raise HandleError(RC_PROTOCOL_ERROR, "give at least one TYPE=value term, e.g. URL=*example*")
            prefix = next((v for k, v in terms if k == "prefix"), None)
            terms = [(k, v.lower()) for k, v in terms if k not in ("prefix", "limit")]
            start = schema.HANDLE_RECORD_PREFIX + (norm(prefix) + "/" if prefix else "").encode()
            out: list[str] = []
            for _, raw in self.store.iterate(start, prefix_stop(start)):
                if raw[-1] != 0:
                    continue
                rec = codec.decode(HandleRecord, raw)
                if all(_term_matches(rec, k, pat) for k, pat in terms):
                    out.append(rec.handle)
                    if len(out) >= 1000:
                        break
            return web.json_response(out)
        except HandleError as e:
            return self.error(request, e, "")

    # --- sessions ----------------------------------------------------------------------------------------------
    async def session_new(self, request: web.Request) -> web.Response:
        try:
            s = self.new_session(request)
        except HandleError as e:
            return self.error(request, e, "")
        return self.reply(
            request,
            RC_SUCCESS,
            "",
            {"sessionId": s.id, "nonce": cred.b64(s.nonce), "authenticated": False},
            status=201,
        )

    async def session_this(self, request: web.Request) -> web.StreamResponse:
        try:
            params = (
                cred.parse_handle_auth(request.headers.get("Authorization", ""))
                if request.headers.get("Authorization", "").lower().startswith("handle")
                else {}
            )
            s = self.sessions.get(params.get("sessionId", ""))
            if s is None:
                raise HandleError(
                    RC_AUTHENTICATION_NEEDED, "no such session; POST /api/sessions for a new one"
                )
            if request.method == "DELETE":
                self.sessions.drop(s.id)
                return web.Response(status=204)
            if request.method == "PUT":
                if not self.credentials_allowed(request):
                    raise HandleError(
                        RC_AUTHENTICATION_FAILED, "credentials over plain HTTP are refused; use HTTPS"
                    )
                self.answer(request, StateView(self.store), s, params)
            elif request.method != "GET":
                return self.reply(request, RC_NOT_SUPPORTED, "", message="use GET, PUT or DELETE", status=405)
            info: dict[str, Any] = {
                "sessionId": s.id,
                "nonce": cred.b64(s.nonce),
                "authenticated": s.identity is not None,
            }
            if s.identity is not None:
                info["id"] = f"{s.identity.index}:{s.identity.handle}"
            return self.reply(request, RC_SUCCESS, "", info)
        except HandleError as e:
            return self.error(request, e, "")


def _term_matches(rec: HandleRecord, typ: str, pattern: str) -> bool:
    for sv in rec.values:
        v = sv.value
        if (
            v.type.upper() == typ.upper()
            and publicly_readable(v)
            and v.format == "string"
            and fnmatch.fnmatchcase(value_text(v).lower(), pattern)
        ):
            return True
    return False


def _record_handle(raw: bytes) -> str:
    return codec.decode(HandleRecord, raw).handle


def _int_param(q: dict[str, list[str]], name: str, default: int) -> int:
    vals = q.get(name)
    if not vals:
        return default
    s = vals[-1]
    if not re.fullmatch(r"[0-9]{1,9}", s):
        raise HandleError(RC_PROTOCOL_ERROR, f"{name}={s!r} must be a non-negative integer")
    return int(s)


def _fields(v: HandleValue) -> dict[str, Any]:
    return {f: getattr(v, f) for f in v.__dataclass_fields__}


async def submit_and_wait(node: Any, raw: bytes, tx_hash: bytes, timeout_s: float) -> TxLocation:
    """Submit ``raw`` through this node's own admission path (``node.submit.LocalEndpoint``: the same arrival
    order, nonce-gap hold, mempool and forwarding to the leader as ``POST /v1/txs?wait=commit``) with the one
    submission client, and wait for the commit. Raises ``CempError`` on a refusal and ``HandleError`` when it
    did not commit in time (it may still commit)."""
    client = SubmitClient([LocalEndpoint(node.api)], check_chain=False)
    out = await client.submit_once(raw, timeout_ms=max(1, int(timeout_s * 1000)))
    if out.status == Status.COMMITTED:
        assert out.height is not None and out.index is not None
        return TxLocation(Height(out.height), out.index, out.result_code, Text(out.reason))
    if out.status in (Status.TIMEOUT, Status.LEADER_UNKNOWN):
        raise HandleError(
            RC_ERROR,
            f"the write was not committed within {timeout_s:.0f} s ({out.message}); it may still commit"
            f" (tx {tx_hash.hex()})",
        )
    err = out.error
    assert err is not None
    raise err


class _Metrics:
    """Prometheus collector reading the resolver's counters (nothing is done per request)."""

    def __init__(self, r: Resolver) -> None:
        self.r = r

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = CounterMetricFamily("cemp_resolver_resolutions", "Public resolutions served", labels=["cache"])
        c.add_metric(["hit"], self.r.hits)
        c.add_metric(["miss"], self.r.misses)
        yield c
        yield GaugeMetricFamily(
            "cemp_resolver_cache_entries", "Cached resolution bodies", value=len(self.r.cache)
        )
        yield GaugeMetricFamily("cemp_resolver_sessions", "Open Handle sessions", value=len(self.r.sessions))
        by_rc = dict(self.r.by_rc)
        by_rc[RC_SUCCESS] = by_rc.get(RC_SUCCESS, 0) + self.r.hits
        rc = CounterMetricFamily(
            "cemp_resolver_requests", "Handle API replies by responseCode (1 = success)", labels=["rc"]
        )
        for code, n in sorted(by_rc.items()):
            rc.add_metric([str(code)], n)
        yield rc
        yield CounterMetricFamily(
            "cemp_resolver_throttled",
            "Requests refused with 429 (failed logins, new sessions)",
            value=self.r.throttled,
        )


def routes(node: Any) -> list[web.RouteDef]:
    """``node.server.RouteProvider`` (listed in ``cemp.wiring.ROUTES``): the resolver's routes for one node."""
    r = Resolver(node)
    node.resolver = r
    registry = getattr(getattr(node, "metrics", None), "registry", None)
    if registry is not None:
        registry.register(_Metrics(r))
    return r.routes()


__all__ = ["Resolver", "ResolverConfig", "http_status", "routes", "submit_and_wait"]
