"""The tx kinds of people and data sharing: ``person.put``, ``person.revoke``, ``grant``, ``grant.revoke`` and
``data.policy``.

Rules (``check`` runs at admission and again on apply, after the chain's ``Authorizer`` decided who acts):
- people are registered, changed and revoked by their org's admin key only; a key that is an org admin key, a
  consortium node key, or a person of another org is refused; a revoked person is not brought back (register a
  new key: the old one may be in someone else's hands);
- grants are made and revoked for the org the sender acts for (its admin, or a person whose role allows it); the
  grantee is another genesis org (and optionally one active person or admin key of it); the term ends after the
  block time and within ``MAX_GRANT_TERM_MS``; an org holds at most ``MAX_GRANTS_PER_ORG`` grants;
- a data policy names which kinds of the org's data are members-only; admin key only.
"""

from __future__ import annotations

from typing import Any

from access.model import (
    DATA_KINDS,
    MAX_GRANT_DEVICES,
    MAX_GRANT_SITES,
    MAX_GRANT_TERM_MS,
    MAX_GRANTS_PER_ORG,
    NAME_RE,
    ROLES,
    DataPolicyPayload,
    DataPolicyRecord,
    GrantPayload,
    GrantRecord,
    GrantRevoke,
    PersonPut,
    PersonRecord,
    PersonRevoke,
    admin_org,
    load_grant,
    load_person,
    org_of,
    sorted_distinct,
)
from node import codec, schema
from node.devices import PREFIX_RE, split_handle
from node.errors import CempError, Code
from node.membership import load_nodes
from node.state import StateView
from node.store import prefix_stop
from node.txkinds import Env, Writer, acting_org
from node.types import Height, Org, ShortStr, Text, TimestampMs, Tx

_CONTROL = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


def _bad(msg: str) -> CempError:
    return CempError(Code.INVALID_PAYLOAD, msg)


def _text(value: str, what: str, required: bool) -> None:
    if required and not value.strip():
        raise _bad(f"{what} must not be empty")
    if any(ch in _CONTROL for ch in value):
        raise _bad(f"{what} holds control characters")


def _admin_only(env: Env, tx: Tx, what: str) -> Org:
    org = admin_org(env.admin_keys, tx.sender)
    if org is None:
        raise CempError(Code.NOT_AUTHORIZED, f"{what} is signed by an org's admin key only")
    return org


def _acting(env: Env, tx: Tx, what: str) -> Org:
    org = acting_org(env, tx)
    if org is None:
        raise CempError(
            Code.NOT_AUTHORIZED,
            f"{what} is signed by an org's admin key or by a person whose role allows it",
        )
    return org


def _kinds_list(values: tuple[ShortStr, ...], what: str) -> None:
    if not values or not sorted_distinct(values):
        raise _bad(f"{what} must list one or more data kinds, sorted and distinct ({', '.join(DATA_KINDS)})")
    for v in values:
        if v not in DATA_KINDS:
            raise _bad(f"{what}: unknown data kind {v!r}; known: {', '.join(DATA_KINDS)}")


# --- people --------------------------------------------------------------------------------------------------
class PersonPutKind:
    name = "person.put"
    payload_type = PersonPut

    def _check(self, view: StateView, env: Env, tx: Tx, p: PersonPut) -> tuple[Org, PersonRecord | None]:
        org = _admin_only(env, tx, "registering a person")
        _text(p.name, "name", required=True)
        if not sorted_distinct(p.roles):
            raise _bad("roles must be sorted and distinct")
        for r in p.roles:
            if r not in ROLES:
                raise _bad(f"unknown role {r!r}; roles are {', '.join(ROLES)}")
        if env.admin_keys.ever(p.pubkey) is not None:
            raise _bad("that key is (or was) an org admin key; a person needs a key of their own")
        if any(n.pubkey == p.pubkey for n in load_nodes(view, env.genesis).values()):
            raise _bad("that key is a consortium node key; a person needs a key of their own")
        old = load_person(view, p.pubkey)
        if old is not None:
            if old.org != org.name:
                raise CempError(Code.NOT_AUTHORIZED, f"that key is a person of {old.org}, not of {org.name}")
            if not old.active:
                raise CempError(
                    Code.ALREADY_EXISTS,
                    f"that key was revoked at block {old.revoked_height}; register a new key for the person",
                )
        return org, old

    def check(self, view: StateView, env: Env, tx: Tx, p: PersonPut) -> None:
        self._check(view, env, tx, p)

    def _record(self, env: Env, org: Org, old: PersonRecord | None, p: PersonPut) -> PersonRecord:
        return PersonRecord(
            pubkey=p.pubkey,
            org=org.name,
            name=p.name,
            roles=p.roles,
            registered_height=old.registered_height if old else env.height,
            updated_height=env.height,
            revoked_height=Height(0),
            revoked_reason=Text(""),
        )

    def apply(self, state: Writer, env: Env, tx: Tx, p: PersonPut) -> None:
        org, old = self._check(state, env, tx, p)  # type: ignore[arg-type]
        state.put(schema.person(p.pubkey), codec.encode(self._record(env, org, old, p)))

    def admit(self, view: StateView, env: Env, tx: Tx, p: PersonPut) -> dict[bytes, bytes]:
        org, old = self._check(view, env, tx, p)
        return {schema.person(p.pubkey): codec.encode(self._record(env, org, old, p))}

    def describe(self, p: PersonPut) -> dict[str, Any]:
        return {"pubkey": p.pubkey.hex(), "name": p.name, "roles": list(p.roles)}


class PersonRevokeKind:
    name = "person.revoke"
    payload_type = PersonRevoke

    def _check(self, view: StateView, env: Env, tx: Tx, p: PersonRevoke) -> PersonRecord:
        org = _admin_only(env, tx, "revoking a person")
        _text(p.reason, "reason", required=True)
        rec = load_person(view, p.pubkey)
        if rec is None:
            raise CempError(Code.NOT_FOUND, "no person has that key")
        if rec.org != org.name:
            raise CempError(Code.NOT_AUTHORIZED, f"that key is a person of {rec.org}, not of {org.name}")
        if not rec.active:
            raise CempError(
                Code.ALREADY_EXISTS, f"that key was already revoked at block {rec.revoked_height}"
            )
        return rec

    def check(self, view: StateView, env: Env, tx: Tx, p: PersonRevoke) -> None:
        self._check(view, env, tx, p)

    @staticmethod
    def _revoked(env: Env, rec: PersonRecord, p: PersonRevoke) -> bytes:
        return codec.encode(
            PersonRecord(
                rec.pubkey,
                rec.org,
                rec.name,
                rec.roles,
                rec.registered_height,
                env.height,
                env.height,
                p.reason,
            )
        )

    def apply(self, state: Writer, env: Env, tx: Tx, p: PersonRevoke) -> None:
        rec = self._check(state, env, tx, p)  # type: ignore[arg-type]
        state.put(schema.person(p.pubkey), self._revoked(env, rec, p))

    def admit(self, view: StateView, env: Env, tx: Tx, p: PersonRevoke) -> dict[bytes, bytes]:
        rec = self._check(view, env, tx, p)
        # A revoked record has revoked_height > 0; at admission the height is the next block's, so it is.
        return {schema.person(p.pubkey): self._revoked(env, rec, p)}

    def describe(self, p: PersonRevoke) -> dict[str, Any]:
        return {"pubkey": p.pubkey.hex(), "reason": p.reason}


# --- grants --------------------------------------------------------------------------------------------------
def check_device_pattern(h: str) -> None:
    base = h[:-1] if h.endswith("*") else h
    if "*" in base:
        raise _bad(f"device {h!r}: '*' may only end a handle pattern")
    if "/" in base:
        split_handle(base if not base.endswith("/") else base + "x")
    elif not PREFIX_RE.match(base):
        raise _bad(f"device {h!r} must be a handle like 88.123.46/101.1.1, or a pattern like 88.123.46/101.*")


def _devices(org: Org, devices: tuple[str, ...]) -> None:
    if len(devices) > MAX_GRANT_DEVICES:
        raise CempError(Code.TOO_LARGE, f"at most {MAX_GRANT_DEVICES} devices or patterns")
    if not sorted_distinct(devices):
        raise _bad("devices must be sorted and distinct")
    for h in devices:
        check_device_pattern(h)
        hu = h.upper()
        if not hu.startswith(org.prefix.upper() + "/") and not hu.startswith(org.prefix.upper() + "."):
            raise CempError(Code.NOT_AUTHORIZED, f"device {h} is not under {org.name}'s prefix {org.prefix}")


class GrantKind:
    name = "grant"
    payload_type = GrantPayload

    def _check(self, view: StateView, env: Env, tx: Tx, p: GrantPayload) -> tuple[Org, GrantRecord | None]:
        org = _acting(env, tx, "a grant")
        if not NAME_RE.fullmatch(p.grant_id):
            raise _bad(f"grant_id {p.grant_id!r}: lower-case letters, digits, . _ -, e.g. heat-data-2026")
        grantee = next((o for o in env.genesis.orgs if o.name == p.grantee), None)
        if grantee is None:
            raise _bad(f"grantee {p.grantee!r} is not an org of this consortium")
        if grantee.name == org.name:
            raise _bad("an org's own members read its data already; grant to another org")
        if p.grantee_key is not None and org_of(view, p.grantee_key, env.admin_keys) != grantee.name:
            raise _bad(f"grantee_key is not an active person or the admin key of {grantee.name}")
        _kinds_list(p.data, "data")
        if len(p.sites) > MAX_GRANT_SITES:
            raise CempError(Code.TOO_LARGE, f"a grant names at most {MAX_GRANT_SITES} sites")
        if not sorted_distinct(p.sites):
            raise _bad("sites must be sorted and distinct")
        _devices(org, p.devices)
        for s in p.sites:
            if not NAME_RE.fullmatch(s):
                raise _bad(f"site id {s!r} is not a site id")
        if p.until_ms <= env.time_ms:
            raise _bad(f"until_ms {p.until_ms} is not after the block time {env.time_ms}")
        if p.until_ms > env.time_ms + MAX_GRANT_TERM_MS:
            raise _bad("a grant runs at most five years; renew it with another grant tx")
        _text(p.note, "note", required=False)
        old = load_grant(view, org.name, p.grant_id)
        if old is None:
            pre = schema.grants_of(org.name)
            n = sum(1 for _ in view.store.iterate(pre, prefix_stop(pre), limit=MAX_GRANTS_PER_ORG))
            if n >= MAX_GRANTS_PER_ORG:
                raise CempError(
                    Code.TOO_LARGE,
                    f"{org.name} holds {MAX_GRANTS_PER_ORG} grants; re-use the id of a revoked or expired one",
                )
        return org, old

    def check(self, view: StateView, env: Env, tx: Tx, p: GrantPayload) -> None:
        self._check(view, env, tx, p)

    @staticmethod
    def _record(env: Env, org: Org, p: GrantPayload) -> bytes:
        return codec.encode(
            GrantRecord(org.name, p, env.height, env.time_ms, env.tx_hash, Height(0), TimestampMs(0))
        )

    def apply(self, state: Writer, env: Env, tx: Tx, p: GrantPayload) -> None:
        org, _ = self._check(state, env, tx, p)  # type: ignore[arg-type]
        state.put(schema.grant(org.name, p.grant_id), self._record(env, org, p))

    def admit(self, view: StateView, env: Env, tx: Tx, p: GrantPayload) -> dict[bytes, bytes]:
        org, _ = self._check(view, env, tx, p)
        return {schema.grant(org.name, p.grant_id): self._record(env, org, p)}

    def describe(self, p: GrantPayload) -> dict[str, Any]:
        return {
            "grant_id": p.grant_id,
            "grantee": p.grantee,
            "grantee_key": p.grantee_key.hex() if p.grantee_key is not None else None,
            "data": list(p.data),
            "devices": list(p.devices),
            "sites": list(p.sites),
            "until_ms": p.until_ms,
            "note": p.note,
        }


class GrantRevokeKind:
    name = "grant.revoke"
    payload_type = GrantRevoke

    def _check(self, view: StateView, env: Env, tx: Tx, p: GrantRevoke) -> GrantRecord:
        org = _acting(env, tx, "revoking a grant")
        _text(p.reason, "reason", required=False)
        rec = load_grant(view, org.name, p.grant_id)
        if rec is None:
            raise CempError(Code.NOT_FOUND, f"{org.name} has no grant {p.grant_id!r}")
        if rec.revoked_height:
            raise CempError(
                Code.ALREADY_EXISTS, f"grant {p.grant_id!r} was revoked at block {rec.revoked_height}"
            )
        return rec

    def check(self, view: StateView, env: Env, tx: Tx, p: GrantRevoke) -> None:
        self._check(view, env, tx, p)

    @staticmethod
    def _revoked(env: Env, rec: GrantRecord) -> bytes:
        return codec.encode(
            GrantRecord(
                rec.grantor,
                rec.payload,
                rec.granted_height,
                rec.granted_ms,
                rec.tx_hash,
                env.height,
                env.time_ms,
            )
        )

    def apply(self, state: Writer, env: Env, tx: Tx, p: GrantRevoke) -> None:
        rec = self._check(state, env, tx, p)  # type: ignore[arg-type]
        state.put(schema.grant(rec.grantor, p.grant_id), self._revoked(env, rec))

    def admit(self, view: StateView, env: Env, tx: Tx, p: GrantRevoke) -> dict[bytes, bytes]:
        rec = self._check(view, env, tx, p)
        return {schema.grant(rec.grantor, p.grant_id): self._revoked(env, rec)}

    def describe(self, p: GrantRevoke) -> dict[str, Any]:
        return {"grant_id": p.grant_id, "reason": p.reason}


class DataPolicyKind:
    name = "data.policy"
    payload_type = DataPolicyPayload

    def _check(self, env: Env, tx: Tx, p: DataPolicyPayload) -> Org:
        org = _admin_only(env, tx, "a data policy")
        if p.private:
            _kinds_list(p.private, "private")
        _devices(org, p.devices)
        return org

    def check(self, view: StateView, env: Env, tx: Tx, p: DataPolicyPayload) -> None:
        self._check(env, tx, p)

    def _record(self, env: Env, org: Org, p: DataPolicyPayload) -> bytes:
        return codec.encode(DataPolicyRecord(org.name, p.private, p.devices, env.height))

    def apply(self, state: Writer, env: Env, tx: Tx, p: DataPolicyPayload) -> None:
        org = self._check(env, tx, p)
        state.put(schema.data_policy(org.name), self._record(env, org, p))

    def admit(self, view: StateView, env: Env, tx: Tx, p: DataPolicyPayload) -> dict[bytes, bytes]:
        org = self._check(env, tx, p)
        return {schema.data_policy(org.name): self._record(env, org, p)}

    def describe(self, p: DataPolicyPayload) -> dict[str, Any]:
        return {"private": list(p.private), "devices": list(p.devices)}


def access_kinds() -> list[Any]:
    """The access kinds, for the composition root."""
    return [PersonPutKind(), PersonRevokeKind(), GrantKind(), GrantRevokeKind(), DataPolicyKind()]
