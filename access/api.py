"""Routes of sign-in, people, grants, data policies and the audit trail (a ``node.server.RouteProvider``).

- ``POST /v1/auth/challenge`` -> a challenge (valid 60 s) for a key to sign (``access.tokens``);
- ``POST /v1/auth/token`` ``{"pubkey", "challenge", "signature", "purpose": "api"|"web"}`` -> a bearer token
  (``api``, 15 min) or a one-time web sign-in link (``web``, 2 min), for an org admin key or an active person;
- ``GET /v1/auth/whoami`` -> who the request's token speaks for;
- ``GET /v1/people[?org=]``, ``GET /v1/grants[?org=]`` (signed-in members), ``GET /v1/access/policies`` (public);
- ``GET /v1/audit?from_height&kind&actor&object&from_ms&to_ms`` (signed-in members): administrative txs, at most
  2,000 blocks per call, ``next_height`` to continue (``access.audit``);
- ``GET /login?code=`` (the web link: sets the session cookie, then goes to ``/``) and ``POST /logout``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from access import audit
from access.model import grants_of, load_policy, people
from access.reads import SESSION_COOKIE, AccessGate, Viewer, gate_for
from access.tokens import TOKEN_TTL_MS
from node.errors import CempError, Code
from node.state import StateView

if TYPE_CHECKING:
    from node.server import Node

MAX_JSON = 4096


def _hex(value: object, what: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise CempError(Code.BAD_REQUEST, f"{what} must be {2 * size} hex characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CempError(Code.BAD_REQUEST, f"{what} is not hex") from None


def _int(request: web.Request, name: str, default: int, lo: int = 0, hi: int = 1 << 62) -> int:
    raw = request.query.get(name)
    if not raw:
        return default
    if not (len(raw) <= 20 and raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise CempError(Code.BAD_REQUEST, f"{name}={raw[:40]!r} is not an integer in [{lo}, {hi}]")
    return int(raw)


def viewer_json(v: Viewer) -> dict[str, Any]:
    return {"pubkey": v.pubkey.hex(), "org": v.org, "name": v.name, "roles": list(v.roles)}


class AccessAPI:
    def __init__(self, node: Node) -> None:
        self.node = node
        gate = node.reads
        if not isinstance(gate, AccessGate):
            raise TypeError("access routes need the access read gate (cemp.wiring.READ_GATE)")
        self.gate: AccessGate = gate

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/auth/challenge", self.challenge),
            web.post("/v1/auth/token", self.token),
            web.get("/v1/auth/whoami", self.whoami),
            web.get("/v1/people", self.list_people),
            web.get("/v1/grants", self.list_grants),
            web.get("/v1/access/policies", self.policies),
            web.get("/v1/audit", self.audit),
            web.get("/login", self.login_link),
            web.post("/logout", self.logout),
        ]

    def _member(self, request: web.Request) -> Viewer:
        v = self.gate.viewer(request)
        if v is None:
            raise CempError(Code.UNAUTHENTICATED, "sign in first (cemp login --key FILE --node URL)")
        return v

    async def challenge(self, request: web.Request) -> web.Response:
        now = self.gate.now_ms()
        c = self.gate.tokens.challenge(now)
        return web.json_response(
            {
                "challenge": c.hex(),
                "expires_ms": int.from_bytes(c[:8], "big"),
                "node_id": self.node.node_id,
                "genesis_hash": self.gate.tokens.genesis_hash.hex(),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def token(self, request: web.Request) -> web.Response:
        body = await request.content.read(MAX_JSON + 1)
        if len(body) > MAX_JSON:
            raise CempError(Code.TOO_LARGE, f"a sign-in request is at most {MAX_JSON} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            raise CempError(Code.BAD_REQUEST, "send JSON: {pubkey, challenge, signature, purpose}") from None
        if not isinstance(doc, dict):
            raise CempError(Code.BAD_REQUEST, "send a JSON object: {pubkey, challenge, signature, purpose}")
        pubkey = _hex(doc.get("pubkey"), "pubkey", 32)
        challenge = _hex(doc.get("challenge"), "challenge", 40)
        sig = _hex(doc.get("signature"), "signature", 64)
        purpose = doc.get("purpose", "api")
        if purpose not in ("api", "web"):
            raise CempError(
                Code.BAD_REQUEST, "purpose must be 'api' (a bearer token) or 'web' (a sign-in link)"
            )
        now = self.gate.now_ms()
        self.gate.tokens.sign_in(pubkey, challenge, sig, now)
        v = self.gate.speaker(pubkey)
        if v is None:
            retired = self.gate.admin_keys().retired(pubkey)
            if retired is not None:
                raise CempError(
                    Code.KEY_RETIRED,
                    f"that key was org {retired[0].name}'s admin key until block {retired[1] - 1}; sign in with "
                    "the org's new admin key",
                )
            raise CempError(
                Code.NOT_AUTHORIZED, "that key is no org admin key and no active person of this consortium"
            )
        out = viewer_json(v)
        if purpose == "api":
            tok, exp = self.gate.tokens.issue(pubkey, b"a", now)
            out.update({"token": tok, "expires_ms": exp})
        else:
            tok, exp = self.gate.tokens.issue(pubkey, b"l", now)
            out.update({"login_path": f"/login?code={tok}", "expires_ms": exp})
        return web.json_response(out, headers={"Cache-Control": "no-store"})

    async def whoami(self, request: web.Request) -> web.Response:
        v = self._member(request)
        return web.json_response(viewer_json(v))

    async def list_people(self, request: web.Request) -> web.Response:
        self._member(request)
        org = request.query.get("org") or None
        rows = people(self.node.store, org)
        return web.json_response(
            {
                "people": [
                    {
                        "pubkey": r.pubkey.hex(),
                        "org": r.org,
                        "name": r.name,
                        "roles": list(r.roles),
                        "active": r.active,
                        "registered_height": r.registered_height,
                        "revoked_height": r.revoked_height or None,
                    }
                    for r in rows
                ]
            }
        )

    async def list_grants(self, request: web.Request) -> web.Response:
        self._member(request)
        orgs = (
            [request.query["org"]] if request.query.get("org") else [o.name for o in self.node.genesis.orgs]
        )
        now = self.gate.now_ms()
        out = []
        for org in orgs:
            for g in grants_of(self.node.store, org):
                p = g.payload
                out.append(
                    {
                        "grantor": g.grantor,
                        "grant_id": p.grant_id,
                        "grantee": p.grantee,
                        "grantee_key": p.grantee_key.hex() if p.grantee_key is not None else None,
                        "data": list(p.data),
                        "devices": list(p.devices),
                        "sites": list(p.sites),
                        "until_ms": p.until_ms,
                        "status": g.status(now),
                        "granted_height": g.granted_height,
                        "revoked_height": g.revoked_height or None,
                        "tx": g.tx_hash.hex(),
                    }
                )
        return web.json_response({"grants": out})

    async def policies(self, request: web.Request) -> web.Response:
        view = StateView(self.node.store)
        out = {}
        for o in self.node.genesis.orgs:
            pol = load_policy(view, o.name)
            out[o.name] = {"private": list(pol.private) if pol else [], "height": pol.height if pol else None}
        return web.json_response({"policies": out})

    async def audit(self, request: web.Request) -> web.Response:
        self._member(request)
        q = request.query
        for name in ("actor", "object", "kind"):
            if len(q.get(name, "")) > 128:
                raise CempError(Code.BAD_REQUEST, f"{name} is at most 128 characters")
        f = audit.Filters(
            actor=q.get("actor", ""),
            object=q.get("object", ""),
            kind=q.get("kind", ""),
            from_ms=_int(request, "from_ms", 0),
            to_ms=_int(request, "to_ms", 1 << 62),
        )
        start = _int(request, "from_height", 1, 1)
        led = self.node.ledger
        entries, nxt = audit.scan(
            led, start, f, max_blocks=_int(request, "max_blocks", audit.MAX_BLOCKS, 1, audit.MAX_BLOCKS)
        )
        return web.json_response({"height": led.height, "entries": entries, "next_height": nxt})

    async def login_link(self, request: web.Request) -> web.Response:
        code = request.query.get("code", "")
        if not code:
            raise web.HTTPFound("/signin")
        now = self.gate.now_ms()
        tok = self.gate.tokens.use_login_link(code, now)
        if self.gate.speaker(tok.pubkey) is None:
            raise CempError(
                Code.NOT_AUTHORIZED, "that key no longer speaks for any org; ask your org's admin"
            )
        session, _ = self.gate.tokens.issue(tok.pubkey, b"w", now)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=TOKEN_TTL_MS[b"w"] // 1000,
            httponly=True,
            samesite="Lax",
            secure=request.secure,
            path="/",
        )
        resp.headers["Cache-Control"] = "no-store"
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        resp = web.HTTPSeeOther("/")
        resp.del_cookie(SESSION_COOKIE, path="/")
        raise resp


def routes(node: Node) -> list[web.RouteDef]:
    """Route provider of sign-in, people, grants and the audit trail (listed by the composition root). It carries
    the node's read gate (``node.readgate``): a node serving these routes decides every read through it."""
    return AccessAPI(node).routes()


def _op(method: str, summary: str, params: tuple[str, ...] = ()) -> dict[str, Any]:
    err = {"description": "refused", "content": {"application/json": {}}}
    return {
        method: {
            "summary": summary,
            "parameters": [
                {"name": p, "in": "query", "required": False, "schema": {"type": "string"}} for p in params
            ],
            "responses": {"200": {"description": "ok"}, "400": err, "401": err, "403": err},
        }
    }


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/auth/challenge": _op(
        "post", "A challenge (60 s) for a key to sign (CEMP/login/v1 || genesis hash || node id)"
    ),
    "/v1/auth/token": _op(
        "post",
        "Signed challenge -> a 15-minute bearer token (purpose api) or a one-time web sign-in link (web)",
    ),
    "/v1/auth/whoami": _op("get", "Who the request's token speaks for"),
    "/v1/people": _op("get", "People of every org (or one), with roles and status (members)", ("org",)),
    "/v1/grants": _op("get", "Data grants with their status: active, revoked, expired (members)", ("org",)),
    "/v1/access/policies": _op("get", "Which kinds of each org's data are members-only"),
    "/v1/audit": _op(
        "get",
        "Administrative txs with actor, object, time and outcome, at most 2,000 blocks per call (members)",
        ("from_height", "max_blocks", "actor", "object", "kind", "from_ms", "to_ms"),
    ),
}

routes.read_gate = gate_for  # type: ignore[attr-defined]
routes.openapi_paths = OPENAPI_PATHS  # type: ignore[attr-defined]
