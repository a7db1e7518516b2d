"""Handle names, records in state, and who may change them (HS_ADMIN, HS_VLIST, authorities).

Authority, top down:
- the genesis gives each org a prefix (``88.123.45``) and an admin key; a tx *signed by that admin key* may do
  anything to handles under the prefix, including the prefix handle ``0.NA/88.123.45`` (``method = org``);
- below that, everything follows the records, as in Handle.Net: an identity ``index:handle`` may change a
  handle if one of the handle's HS_ADMIN values names it, directly or through HS_VLIST groups (depth <= 5), with
  the needed bit of the 12-bit permission mask; creating a handle needs "add handle" on the nearest prefix
  handle ``0.NA/<prefix>``.

How an identity proves itself inside a tx (``Authority.method``):
- ``key``: the tx is signed by the identity's own Ed25519 HS_PUBKEY (fully checkable by anyone);
- ``session``: the tx is signed by a consortium node key and carries the identity's signature over the node's
  challenge (``DOMAIN_SESSION || nonce || cnonce``); the nonce names the node and an expiry, so only that node
  can use it, only until it expires;
- ``seckey``: the tx is signed by a node of the org that owns the identity's prefix, which vouches that the
  identity presented its HS_SECKEY (Basic auth); the chain checks the identity has an HS_SECKEY at that index.

Invariant: every function here reads only state, genesis and the tx, so every node reaches the same verdict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from node import codec, schema
from node.crypto import verify
from node.devices import PREFIX_RE, SUFFIX_RE, org_for_prefix
from node.membership import load_nodes
from node.state import StateView
from node.txkinds import Env, acting_org
from node.types import Genesis, Handle, Org, ShortStr, Tx
from resolver.values import (
    HS_ADMIN,
    HS_PUBKEY,
    HS_SECKEY,
    HS_VLIST,
    RC_AUTHENTICATION_FAILED,
    RC_INSUFFICIENT_PERMISSIONS,
    RC_INVALID_ADMIN,
    RC_INVALID_HANDLE,
    RC_SERVER_NOT_RESP,
    HandleChange,
    HandleError,
    HandleRecord,
    StoredValue,
    ValueRef,
    decode_admin,
    decode_vlist,
    norm,
)

DOMAIN_SESSION = b"CEMP/handle-session/v1\x00"
"""Domain tag of an identity's Ed25519 signature over a node's challenge (``nonce || cnonce``)."""

# HS_ADMIN permission bits (bit i = i-th character from the right of the permission string).
ADD_HANDLE = 0
DELETE_HANDLE = 1
ADD_DERIVED_PREFIX = 2
DELETE_DERIVED_PREFIX = 3
MODIFY_VALUE = 4
REMOVE_VALUE = 5
ADD_VALUE = 6
MODIFY_ADMIN = 7
REMOVE_ADMIN = 8
ADD_ADMIN = 9
READ_VALUE = 10
LIST_HANDLES = 11
ALL_RIGHTS = (1 << 12) - 1
BIT_NAMES = {
    ADD_HANDLE: "add handle",
    DELETE_HANDLE: "delete handle",
    ADD_DERIVED_PREFIX: "add derived prefix",
    DELETE_DERIVED_PREFIX: "delete derived prefix",
    MODIFY_VALUE: "modify value",
    REMOVE_VALUE: "remove value",
    ADD_VALUE: "add value",
    MODIFY_ADMIN: "modify admin",
    REMOVE_ADMIN: "remove admin",
    ADD_ADMIN: "add admin",
    READ_VALUE: "read value",
    LIST_HANDLES: "list handles",
}
MAX_GROUP_DEPTH = 5
MAX_GROUP_VISITS = 2048
"""Handle/value visits one rights check may spend on groups (``GroupBudget``); part of the consensus rules."""
NA = "0.NA"
SESSION_NONCE_LEN = 8 + 16 + 16
"""A node's challenge: expiry ms (8, big-endian) || SHA-256(node public key)[:16] || 16 random bytes."""


# --- the authority a handle tx carries (in the handle.put / handle.delete payloads) --------------------------
@dataclass(frozen=True, slots=True)
class Authority:
    """Who is acting and how the chain can check it (the module docstring explains each method)."""

    method: ShortStr
    """``org`` | ``key`` | ``session`` | ``seckey``."""
    identity: Handle
    """Handle of the acting identity (empty for ``org``)."""
    index: int
    """Index of the identity's HS_PUBKEY or HS_SECKEY value (0 for ``org``)."""
    nonce: bytes
    """``session``: the node's challenge (expiry, node tag, random); else empty."""
    cnonce: bytes
    """``session``: the client's nonce; else empty."""
    signature: bytes
    """``session``: the identity's Ed25519 signature over ``DOMAIN_SESSION || nonce || cnonce``; else empty."""


ORG_AUTHORITY = Authority(ShortStr("org"), Handle(""), 0, b"", b"", b"")


# --- names ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Name:
    """A parsed handle: ``prefix/suffix``; for a prefix handle ``0.NA/<p>``, ``homed`` is ``<p>``."""

    handle: str
    prefix: str
    suffix: str
    homed: str
    """The consortium prefix the handle lives under (the suffix of a ``0.NA/`` handle, else the prefix)."""
    org: Org

    @property
    def is_prefix_handle(self) -> bool:
        return self.prefix.upper() == NA


def parse_name(genesis: Genesis, handle: str) -> Name:
    """Check syntax (rc 102) and that a consortium org is home for the prefix (rc 301)."""
    if not handle or len(handle) > 255:
        raise HandleError(RC_INVALID_HANDLE, "a handle is 1 to 255 characters, like 88.123.45/101.1.1")
    if not handle.isascii() or not handle.isprintable():
        raise HandleError(
            RC_INVALID_HANDLE,
            f"handle {handle[:60]!r} holds non-ASCII or control characters; CEMP handles are ASCII",
        )
    prefix, sep, suffix = handle.partition("/")
    if not sep or not prefix or not suffix:
        raise HandleError(
            RC_INVALID_HANDLE, f"handle {handle!r} must look like PREFIX/SUFFIX, e.g. 88.123.45/101.1.1"
        )
    if not PREFIX_RE.match(prefix):
        raise HandleError(RC_INVALID_HANDLE, f"prefix {prefix!r} is not dotted segments like 88.123.45")
    segments = suffix.split("/")
    if not SUFFIX_RE.match(suffix) or any(s in ("", ".", "..") for s in segments):
        raise HandleError(
            RC_INVALID_HANDLE,
            f"suffix {suffix!r} must be printable URL-safe ASCII without empty, '.' or '..' segments",
        )
    if prefix.upper() == NA:
        if not PREFIX_RE.match(suffix):
            raise HandleError(RC_INVALID_HANDLE, f"prefix handle {handle!r} must be 0.NA/<prefix>")
        homed = suffix
    else:
        homed = prefix
    org = org_for_prefix(genesis, homed)
    if org is None:
        raise HandleError(
            RC_SERVER_NOT_RESP,
            f"prefix {homed} is not homed on this consortium (prefixes: {', '.join(o.prefix for o in genesis.orgs)})",
        )
    return Name(handle, prefix, suffix, homed, org)


def org_of_handle(genesis: Genesis, handle: str) -> Org | None:
    try:
        return parse_name(genesis, handle).org
    except HandleError:
        return None


# --- state access -----------------------------------------------------------------------------------------------
def load_any(view: StateView, handle: str) -> HandleRecord | None:
    """The stored record, tombstones included."""
    raw = view.get(schema.handle_record(norm(handle)))
    return None if raw is None else codec.decode(HandleRecord, raw)


def load_record(view: StateView, handle: str) -> HandleRecord | None:
    """The live record, or None if the handle does not exist (never created, or deleted)."""
    rec = load_any(view, handle)
    return None if rec is None or rec.deleted else rec


def load_change(view: StateView, handle: str, version: int) -> HandleChange | None:
    raw = view.get(schema.handle_change(norm(handle), version))
    return None if raw is None else codec.decode(HandleChange, raw)


def value_at(rec: HandleRecord | None, index: int) -> StoredValue | None:
    if rec is None:
        return None
    for sv in rec.values:
        if sv.value.index == index:
            return sv
    return None


# --- groups and rights ------------------------------------------------------------------------------------------
def _matches(ref: ValueRef, identity: ValueRef) -> bool:
    return norm(ref.handle) == norm(identity.handle) and ref.index in (0, identity.index)


class GroupBudget:
    """A fixed count of handle and value visits that one rights check may spend on HS_VLIST groups.

    Loading a record costs one visit plus one per value it holds; looking at a group member costs one. The
    count depends only on state and on the order the records list their values, so every node runs out at the
    same visit of the same check and refuses the tx with the same code and reason. Records loaded once are kept
    for the rest of the check, so a group referenced many times is read once.
    """

    __slots__ = ("left", "records", "view")

    def __init__(self, view: StateView, visits: int = MAX_GROUP_VISITS) -> None:
        self.view = view
        self.left = visits
        self.records: dict[str, HandleRecord | None] = {}

    def spend(self, n: int, where: ValueRef) -> None:
        self.left -= n
        if self.left < 0:
            raise HandleError(
                RC_INSUFFICIENT_PERMISSIONS,
                f"checking HS_VLIST group membership through {where.index}:{where.handle} needs more than "
                f"{MAX_GROUP_VISITS} handle/value visits (the limit); use smaller or flatter admin groups",
            )

    def record(self, ref: ValueRef) -> HandleRecord | None:
        key = norm(ref.handle)
        if key not in self.records:
            rec = load_record(self.view, ref.handle)
            self.spend(1 + (len(rec.values) if rec is not None else 0), ref)
            self.records[key] = rec
        return self.records[key]


def is_member(view: StateView, identity: ValueRef, ref: ValueRef, budget: GroupBudget | None = None) -> bool:
    """Whether ``identity`` is ``ref`` itself, or a member of the HS_VLIST group ``ref`` points to, nested at most
    ``MAX_GROUP_DEPTH`` groups deep.

    Breadth first with a visited set: each group is expanded once, at the smallest depth it is reached at, which
    gives exactly the answer of trying every path up to that depth, at a cost bounded by ``budget`` (rc 401 when
    it runs out).
    """
    budget = budget if budget is not None else GroupBudget(view)
    level = [ref]
    seen: set[tuple[str, int]] = set()
    for depth in range(MAX_GROUP_DEPTH + 1):
        nxt: list[ValueRef] = []
        for r in level:
            budget.spend(1, r)
            if _matches(r, identity):
                return True
            if depth == MAX_GROUP_DEPTH or r.index == 0:
                continue
            key = (norm(r.handle), r.index)
            if key in seen:
                continue
            seen.add(key)
            sv = value_at(budget.record(r), r.index)
            if sv is not None and sv.value.type == HS_VLIST:
                nxt.extend(decode_vlist(bytes(sv.value.data)).members)
        if not nxt:
            return False
        level = nxt
    return False


def rights_in(view: StateView, rec: HandleRecord | None, identity: ValueRef) -> int:
    """Union of the permission masks of ``rec``'s HS_ADMIN values that name ``identity`` (directly or by group).

    One ``GroupBudget`` covers the whole check, however many HS_ADMIN values the record holds.
    """
    if rec is None:
        return 0
    out = 0
    budget = GroupBudget(view)
    for sv in rec.values:
        if sv.value.type == HS_ADMIN:
            a = decode_admin(bytes(sv.value.data))
            if a.permissions & ~out and is_member(view, identity, ValueRef(a.handle, a.index), budget):
                out |= a.permissions
    return out


def prefix_record(view: StateView, name: Name) -> HandleRecord | None:
    """Nearest existing prefix handle above ``name``: ``0.NA/<prefix>``, then its parents up to the org prefix.

    For a prefix handle ``0.NA/P`` itself the search starts at P's parent.
    """
    p = name.homed
    if name.is_prefix_handle:
        if "." not in p or p == name.org.prefix:
            return None
        p = p.rsplit(".", 1)[0]
    while True:
        rec = load_record(view, f"{NA}/{p}")
        if rec is not None or p == name.org.prefix or "." not in p:
            return rec
        p = p.rsplit(".", 1)[0]


# --- who is acting -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Actor:
    root: bool
    """True when the tx is signed by the admin key of the org that owns the handle's prefix."""
    identity: ValueRef | None
    label: str

    def rights(self, view: StateView, rec: HandleRecord | None) -> int:
        if self.root:
            return ALL_RIGHTS
        assert self.identity is not None
        return rights_in(view, rec, self.identity)


def session_nonce_issuer(nonce: bytes) -> bytes:
    return nonce[8:24]


def session_nonce_expiry(nonce: bytes) -> int:
    return int.from_bytes(nonce[:8], "big")


def node_tag(pubkey: bytes) -> bytes:
    return hashlib.sha256(pubkey).digest()[:16]


def identity_key(view: StateView, identity: ValueRef) -> StoredValue:
    """The identity's value at its index; raises rc 403 unless it exists."""
    rec = load_record(view, identity.handle)
    sv = value_at(rec, identity.index)
    if sv is None:
        raise HandleError(
            RC_AUTHENTICATION_FAILED,
            f"identity {identity.index}:{identity.handle} has no value at index {identity.index}",
        )
    return sv


def actor_of(view: StateView, env: Env, tx: Tx, auth: object, name: Name) -> Actor:
    """Check ``auth`` (an ``Authority``) against the tx, genesis and state; returns who is acting."""
    assert isinstance(auth, Authority)
    g = env.genesis
    if auth.method == "org":
        if acting_org(env, tx) != name.org:
            owner_org = env.admin_keys.org_of(tx.sender)
            owner = owner_org.name if owner_org is not None else None
            raise HandleError(
                RC_INVALID_ADMIN,
                f"{name.homed} belongs to {name.org.name}; the tx is signed by "
                + (f"{owner}'s admin key" if owner else "a key that is no org admin key"),
            )
        return Actor(True, None, f"{name.org.name} admin key")
    if auth.method not in ("key", "session", "seckey"):
        raise HandleError(RC_INVALID_ADMIN, f"unknown authority method {auth.method!r}")
    identity = ValueRef(auth.identity, auth.index)
    parse_name(g, auth.identity)  # an identity is a handle of this consortium too
    sv = identity_key(view, identity)
    ident = f"{auth.index}:{auth.identity}"
    if auth.method == "key":
        if sv.value.type != HS_PUBKEY or bytes(sv.value.data) != tx.sender:
            raise HandleError(RC_AUTHENTICATION_FAILED, f"the tx is not signed by the HS_PUBKEY of {ident}")
        return Actor(False, identity, f"{ident} (own key)")
    nodes = {r.pubkey: r for r in load_nodes(view, g).values() if r.active}
    node = nodes.get(tx.sender)
    if node is None:
        raise HandleError(
            RC_INVALID_ADMIN,
            f"{auth.method} authority must come in a tx signed by a current consortium node key",
        )
    if auth.method == "session":
        if sv.value.type != HS_PUBKEY:
            raise HandleError(RC_AUTHENTICATION_FAILED, f"{ident} is not an HS_PUBKEY value")
        if len(auth.nonce) != SESSION_NONCE_LEN or not 16 <= len(auth.cnonce) <= 64:
            raise HandleError(RC_AUTHENTICATION_FAILED, "session nonce or cnonce has the wrong length")
        if session_nonce_issuer(auth.nonce) != node_tag(tx.sender):
            raise HandleError(RC_AUTHENTICATION_FAILED, "the session challenge was issued by another node")
        if env.time_ms > session_nonce_expiry(auth.nonce):
            raise HandleError(RC_AUTHENTICATION_FAILED, "the session expired before this tx was ordered")
        if not verify(bytes(sv.value.data), DOMAIN_SESSION, auth.nonce + auth.cnonce, auth.signature):
            raise HandleError(
                RC_AUTHENTICATION_FAILED, f"the challenge signature does not verify with {ident}'s key"
            )
        return Actor(False, identity, f"{ident} (session on node {node.node_id})")
    # seckey: the node vouches; only a node of the identity's own org may.
    if sv.value.type != HS_SECKEY:
        raise HandleError(RC_AUTHENTICATION_FAILED, f"{ident} is not an HS_SECKEY value")
    id_org = org_of_handle(g, auth.identity)
    if id_org is None or node.org != id_org.name:
        raise HandleError(
            RC_INVALID_ADMIN,
            f"secret-key logins of {ident} are vouched for only by nodes of {id_org.name if id_org else '?'}; "
            f"node {node.node_id} belongs to {node.org}",
        )
    return Actor(False, identity, f"{ident} (secret key, vouched by node {node.node_id})")


def require(actor: Actor, have: int, need: set[int], what: str) -> None:
    missing = [BIT_NAMES[b] for b in sorted(need) if not have >> b & 1]
    if missing:
        who = actor.label
        raise HandleError(
            RC_INSUFFICIENT_PERMISSIONS, f"{who} lacks the right to {', '.join(missing)} on {what}"
        )


__all__ = [
    "Actor",
    "Handle",
    "Name",
    "ShortStr",
    "actor_of",
    "load_record",
    "parse_name",
    "rights_in",
]
