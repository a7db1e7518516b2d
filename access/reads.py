"""Who may read what: the node's ``ReadGate`` (``node.readgate``) for a CEMP chain.

A read names the data it shows (``org`` that owns it, data kind of ``access.model.DATA_KINDS``, and the device
handle or site id). The decision, made at request time against committed state and the node's clock:
1. the owning org has no data policy, or its policy leaves this kind public: anyone may read;
2. otherwise the request must carry a token (``Authorization: Bearer cemp1...`` or the web session cookie) of a key
   that speaks for an org now (an org admin key, or an active person): a member of the owning org reads it;
3. a member of another org reads it while a grant of the owning org covers it: not revoked, ``until_ms`` later
   than now, to the member's org (and, if the grant names a key, to that key), naming the data kind, and the
   device (exact handle or ``PREFIX*``) or the site; a grant naming neither devices nor sites covers all of the
   kind.
A revoked grant, an expired one, or a revoked person stops reading on the next request: nothing is cached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from access.model import (
    DataPolicyRecord,
    GrantRecord,
    PersonRecord,
    admin_org,
    device_covered,
    grants_of,
    load_person,
    load_policy,
)
from access.tokens import Token, Tokens, load_secret
from node import schema
from node.adminkeys import AdminKeys, admin_keys_at
from node.chain import genesis_hash
from node.errors import CempError, Code
from node.state import StateView
from node.store import Store
from node.types import Genesis

if TYPE_CHECKING:
    from node.server import Node

SESSION_COOKIE = "cemp_session"
VIEWER_KEY: web.RequestKey[Viewer | None] = web.RequestKey("cemp_viewer", object)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in key of a request and what it speaks for now."""

    pubkey: bytes
    org: str
    name: str
    roles: tuple[str, ...]
    """``("admin",)`` for an org admin key."""


def grant_covers(
    g: GrantRecord, viewer: Viewer, data: str, device: str | None, site: str | None, now_ms: int
) -> bool:
    p = g.payload
    if not g.active_at(now_ms) or p.grantee != viewer.org or data not in p.data:
        return False
    if p.grantee_key is not None and p.grantee_key != viewer.pubkey:
        return False
    if not p.devices and not p.sites:
        return True
    return (device is not None and device_covered(tuple(p.devices), device)) or (
        site is not None and site in p.sites
    )


class AccessGate:
    """The read gate of one node (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        genesis: Genesis,
        node_id: str,
        secret: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.tokens = Tokens(secret, genesis_hash(genesis), node_id)
        self.clock = clock
        self._orgs: dict[str, tuple[bytes, DataPolicyRecord | None, dict[str, list[GrantRecord]]]] = {}
        self._admins: AdminKeys | None = None
        """Per org: (committed height it was read at, data policy, grants by grantee). Re-read as soon as the
        height moves, so a revoke takes effect with the block that records it; an expiry is checked per request."""

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def admin_keys(self) -> AdminKeys:
        """The org admin keys in force now (for the next block), re-read when the committed height moves: a key
        a rotation replaced stops speaking for its org with the block after the rotation's."""
        raw = self.store.get(schema.META_HEIGHT)
        height = int.from_bytes(raw, "big") + 1 if raw else 1
        got = self._admins
        if got is None or got.height != height:
            got = admin_keys_at(self.store, self.genesis, height)
            self._admins = got
        return got

    # --- who is asking -----------------------------------------------------------------------------------
    def speaker(self, pubkey: bytes) -> Viewer | None:
        """What ``pubkey`` speaks for now (None: no org admin key, no active person)."""
        org = admin_org(self.admin_keys(), pubkey)
        if org is not None:
            return Viewer(pubkey, str(org.name), f"{org.name} admin", ("admin",))
        rec: PersonRecord | None = load_person(StateView(self.store), pubkey)
        if rec is None or not rec.active:
            return None
        return Viewer(pubkey, str(rec.org), str(rec.name), tuple(str(r) for r in rec.roles))

    def token_of(self, request: web.Request) -> Token | None:
        """The request's token, checked (raises 401 on a bad or expired one); None when it carries none."""
        auth = request.headers.get("Authorization", "")
        now = self.now_ms()
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer":
                return None  # another scheme (the Handle API's own): not ours to judge
            return self.tokens.check(value.strip(), b"a", now)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            try:
                return self.tokens.check(cookie, b"w", now)
            except CempError:
                return None  # a stale cookie reads as signed out; the page offers to sign in again
        return None

    def viewer(self, request: web.Request) -> Viewer | None:
        if VIEWER_KEY in request:
            return request[VIEWER_KEY]
        tok = self.token_of(request)
        v = self.speaker(tok.pubkey) if tok is not None else None
        if tok is not None and v is None:
            raise CempError(
                Code.UNAUTHENTICATED,
                "that key no longer speaks for any org (a revoked person, or an admin key a rotation replaced); sign in again with a current key",
            )
        request[VIEWER_KEY] = v
        return v

    # --- may they read it ----------------------------------------------------------------------------------
    def _org(self, org: str) -> tuple[DataPolicyRecord | None, dict[str, list[GrantRecord]]]:
        height = self.store.get(schema.META_HEIGHT) or b""  # read first: what follows is at least this new
        hit = self._orgs.get(org)
        if hit is not None and hit[0] == height:
            return hit[1], hit[2]
        pol = load_policy(StateView(self.store), org)
        by: dict[str, list[GrantRecord]] = {}
        for g in grants_of(self.store, org):
            if not g.revoked_height:
                by.setdefault(str(g.payload.grantee), []).append(g)
        if org in {o.name for o in self.genesis.orgs}:
            self._orgs[org] = (height, pol, by)
        return pol, by

    def decide(
        self, viewer: Viewer | None, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> str | None:
        """None if ``viewer`` may read it, else why not (a sentence)."""
        pol, grants = self._org(org)
        # a handle value's own permission bits made it members-only; other data, the org's policy
        if data != "handles" and (pol is None or not pol.covers(data, device)):
            return None
        what = f"{org}'s {data}" + (f" of {device}" if device else f" of site {site}" if site else "")
        if viewer is None:
            return f"{what} are for {org}'s members and those it grants them to: sign in (cemp login)"
        if viewer.org == org:
            return None
        now = self.now_ms()
        for g in grants.get(viewer.org, ()):
            if grant_covers(g, viewer, data, device, site, now):
                return None
        return f"{what} are not granted to {viewer.name} ({viewer.org}), or the grant was revoked or expired"

    def allows(
        self, request: web.Request, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> bool:
        try:
            v = self.viewer(request)
        except CempError:
            v = None
        return self.decide(v, org, data, device, site) is None

    def require(
        self, request: web.Request, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> None:
        """Raise 401 (not signed in) or 403 (signed in, not allowed) unless the request may read it."""
        v = self.viewer(request)
        why = self.decide(v, org, data, device, site)
        if why is not None:
            raise CempError(Code.UNAUTHENTICATED if v is None else Code.NOT_AUTHORIZED, why)


def gate_for(node: Node) -> AccessGate:
    """The ``node.readgate.ReadGateFactory`` of a CEMP node (listed in ``cemp.wiring``)."""
    data_dir: Path | None = node.data_dir
    return AccessGate(node.store, node.genesis, node.node_id, load_secret(data_dir))
