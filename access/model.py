"""Wire objects of people, roles, data grants and data policies, and the state lookups on them.

Invariants:
- a person's key belongs to one org for ever (a key once registered is never moved to another org); an org
  admin key or a node key is never a person's key;
- a grant is keyed by (grantor org, grant id); a later ``grant`` tx with the same id replaces its scope and term,
  ``grant.revoke`` ends it; the txs themselves are the history (``cemp audit``);
- every lookup here reads committed (or staged) state only, so the apply path and every read path decide alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Protocol

from node import codec, schema
from node.adminkeys import AdminKeys
from node.store import prefix_stop
from node.types import Genesis, Handle, Hash32, Height, Org, PublicKey, ShortStr, Text, TimestampMs

ROLES: tuple[str, ...] = ("operator", "energy_manager", "maintenance_engineer", "auditor")
"""Roles a person may hold. What each may write is ``access.policy.WRITE_POLICY``; what each may read is the same
for every role: everything of the person's own org, and what other orgs granted to it or to the person."""

ADMIN = "admin"
"""The pseudo-role of an org's admin key: it holds every role (``roles_of``)."""

DATA_KINDS: tuple[str, ...] = ("documents", "handles", "readings", "sites")
"""What an org may keep members-only and grant to others: device readings (raw, hourly, latest values, charts,
CSV and Parquet exports), documents (bills, ledger entries), site figures (inventories, KPIs, baselines), and the
handle values of its handles that are not public-read (those are members-only by their own permission bits, with
or without a data policy)."""

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_GRANTS_PER_ORG = 1024
MAX_GRANT_DEVICES = 64
MAX_GRANT_SITES = 32
MAX_GRANT_TERM_MS = 5 * 366 * 86_400_000
"""A grant runs at most about five years from the block that records it; renewing is another grant tx."""


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Scanner(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...


# --- people --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PersonPut:
    """Payload of ``person.put``: an org admin registers a person's key, or changes the person's name or roles."""

    pubkey: PublicKey
    """The person's own Ed25519 key (generated on the person's machine; the admin sees only the public half)."""
    name: Text
    """Display name, e.g. ``Li Wei (energy manager)``."""
    roles: tuple[ShortStr, ...]
    """Sorted, distinct, each one of ``ROLES``; may be empty (an account that can sign in and read only)."""


@dataclass(frozen=True, slots=True)
class PersonRevoke:
    """Payload of ``person.revoke``: the key stops acting and reading at once (lost key, person left)."""

    pubkey: PublicKey
    reason: Text


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """State of a person's account (``schema.person``)."""

    pubkey: PublicKey
    org: ShortStr
    name: Text
    roles: tuple[ShortStr, ...]
    registered_height: Height
    updated_height: Height
    revoked_height: Height
    """0 while active."""
    revoked_reason: Text

    @property
    def active(self) -> bool:
        return self.revoked_height == 0


# --- grants --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GrantPayload:
    """Payload of ``grant``: the sender's org lets another org (or one of its people) read some of its data."""

    grant_id: ShortStr
    """The grantor's own name for the grant, e.g. ``owner-heat-2026``; re-using it replaces that grant."""
    grantee: ShortStr
    """The org that may read."""
    grantee_key: PublicKey | None
    """Only this person (or admin) of ``grantee``; None: every member of ``grantee``."""
    data: tuple[ShortStr, ...]
    """Sorted, distinct kinds of ``DATA_KINDS``."""
    devices: tuple[Handle, ...]
    """Device handles of the grantor covered (sorted, distinct); ``PREFIX/SUFFIX*`` covers every handle starting
    so. Empty with ``sites`` empty: all of the grantor's data of the kinds in ``data``."""
    sites: tuple[ShortStr, ...]
    """Site ids whose figures (``sites`` data) are covered, sorted, distinct."""
    until_ms: TimestampMs
    """The grant ends at this time (Unix ms): reads compare it with the node's clock, the chain with block time."""
    note: Text


@dataclass(frozen=True, slots=True)
class GrantRevoke:
    """Payload of ``grant.revoke``."""

    grant_id: ShortStr
    reason: Text


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """State of a grant (``schema.grant``)."""

    grantor: ShortStr
    payload: GrantPayload
    granted_height: Height
    granted_ms: TimestampMs
    tx_hash: Hash32
    """The ``grant`` tx that set the current scope."""
    revoked_height: Height
    """0 while not revoked."""
    revoked_ms: TimestampMs

    def active_at(self, now_ms: int) -> bool:
        return self.revoked_height == 0 and now_ms < self.payload.until_ms

    def status(self, now_ms: int) -> str:
        if self.revoked_height:
            return "revoked"
        return "active" if now_ms < self.payload.until_ms else "expired"


# --- data policy ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DataPolicyPayload:
    """Payload of ``data.policy``: which kinds of the sender org's data only its members (and grantees) may read.

    Without one, an org's data is public, as on chains from before accounts existed."""

    private: tuple[ShortStr, ...]
    """Sorted, distinct kinds of ``DATA_KINDS``."""
    devices: tuple[Handle, ...]
    """The devices whose ``readings`` and ``documents`` the policy covers (handles or ``PREFIX*`` patterns, sorted,
    distinct); empty: all of the org's (documents without a device too)."""


@dataclass(frozen=True, slots=True)
class DataPolicyRecord:
    org: ShortStr
    private: tuple[ShortStr, ...]
    devices: tuple[Handle, ...]
    height: Height

    def covers(self, data: str, device: str | None) -> bool:
        """True if the policy makes this data members-only."""
        if data not in self.private:
            return False
        if not self.devices or data == "sites":
            return True
        return device is not None and device_covered(tuple(self.devices), device)


# --- lookups -------------------------------------------------------------------------------------------------
def load_person(view: Reader, pubkey: bytes) -> PersonRecord | None:
    raw = view.get(schema.person(pubkey))
    return None if raw is None else codec.decode(PersonRecord, raw)


def load_grant(view: Reader, grantor: str, grant_id: str) -> GrantRecord | None:
    raw = view.get(schema.grant(grantor, grant_id))
    return None if raw is None else codec.decode(GrantRecord, raw)


def grants_of(view: Scanner, grantor: str) -> list[GrantRecord]:
    """Every grant ``grantor`` ever made (at most ``MAX_GRANTS_PER_ORG``), by id."""
    p = schema.grants_of(grantor)
    return [
        codec.decode(GrantRecord, v) for _, v in view.iterate(p, prefix_stop(p), limit=MAX_GRANTS_PER_ORG)
    ]


def load_policy(view: Reader, org: str) -> DataPolicyRecord | None:
    raw = view.get(schema.data_policy(org))
    return None if raw is None else codec.decode(DataPolicyRecord, raw)


def people(view: Scanner, org: str | None = None, limit: int = 10_000) -> list[PersonRecord]:
    """People of ``org`` (every org: None), active and revoked, in key order; at most ``limit`` looked at."""
    p = schema.PERSON_PREFIX
    out = [codec.decode(PersonRecord, v) for _, v in view.iterate(p, prefix_stop(p), limit=limit)]
    return [r for r in out if org is None or r.org == org]


@lru_cache(maxsize=8)
def _genesis_of(raw: bytes) -> Genesis:
    return codec.decode(Genesis, raw)


def genesis_of(view: Reader) -> Genesis:
    """The chain's genesis as its store records it (every ledger writes it at creation)."""
    raw = view.get(schema.META_GENESIS)
    if raw is None:
        raise LookupError("this store holds no genesis")
    return _genesis_of(raw)


def admin_org(admins: AdminKeys, pubkey: bytes) -> Org | None:
    """The org whose admin key ``pubkey`` is at the height ``admins`` is for (``Env.admin_keys`` in a kind,
    ``Ledger.admin_keys()`` on a read path): a rotated-out admin key is no org's admin any more."""
    return admins.org_of(pubkey)


def org_of(view: Reader, pubkey: bytes, admins: AdminKeys) -> str | None:
    """The org ``pubkey`` speaks for: the org whose admin key it is, or the org of the active person it is.

    None for any other key (a revoked person, a former admin key, a device, a node key, a stranger)."""
    org = admin_org(admins, pubkey)
    if org is not None:
        return str(org.name)
    rec = load_person(view, pubkey)
    return str(rec.org) if rec is not None and rec.active else None


def roles_of(view: Reader, pubkey: bytes, admins: AdminKeys) -> frozenset[str]:
    """The roles ``pubkey`` holds now: every role plus ``admin`` for an org admin key, the person's roles for an
    active person, nothing for anyone else (revoked people included). Pair it with ``org_of`` to know where."""
    if admin_org(admins, pubkey) is not None:
        return frozenset((*ROLES, ADMIN))
    rec = load_person(view, pubkey)
    if rec is None or not rec.active:
        return frozenset()
    return frozenset(str(r) for r in rec.roles)


def device_covered(patterns: tuple[str, ...], handle: str) -> bool:
    """True if ``handle`` is one of ``patterns`` or starts with a ``PREFIX*`` one (case-insensitively, as handles)."""
    h = handle.upper()
    for p in patterns:
        pu = p.upper()
        if (pu.endswith("*") and h.startswith(pu[:-1])) or pu == h:
            return True
    return False


def sorted_distinct(values: tuple[str, ...]) -> bool:
    return all(a < b for a, b in pairwise(values))


__all__ = [
    "ADMIN",
    "DATA_KINDS",
    "ROLES",
    "DataPolicyPayload",
    "DataPolicyRecord",
    "GrantPayload",
    "GrantRecord",
    "GrantRevoke",
    "PersonPut",
    "PersonRecord",
    "PersonRevoke",
    "ShortStr",
    "grants_of",
    "load_grant",
    "load_person",
    "load_policy",
    "org_of",
    "people",
    "roles_of",
]
