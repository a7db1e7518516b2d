"""The ``site`` and ``boundary`` tx kinds: buildings and the devices inside their accounting boundary.

Rules (``check`` runs them at admission and again on apply, against the state each sees, so every node decides
the same way):
- a site is created (version 1) and changed (version n+1, nothing skipped) by the admin key of an ``owner``-role
  org; later versions only by the org that created it. Its building handle lies under that org's prefix; the tx
  writes the handle's ``cemp.building`` record (name, floor area, address, owner org) through the resolver's
  record path, so the building resolves as soon as the site exists;
- a boundary version names its devices (each registered, ascending by handle), the subsystem and energy carrier of
  each, and optionally the main meter (an electricity device of the list). It is in force from an hour boundary
  ``effective_from_ms`` that is later than the previous version's; earlier hours keep the earlier boundary, so a
  change never rewrites a period already accounted with the old one;
- several sites per consortium: everything is keyed by ``site_id``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any, Protocol

from accounting.model import (
    CARRIER_ELECTRICITY,
    CARRIER_NONE,
    CARRIERS,
    BoundaryPayload,
    BoundaryRecord,
    SitePayload,
    SiteRecord,
)
from node import codec, schema
from node.devices import load_device, org_for_prefix, split_handle
from node.errors import CempError, Code
from node.readings import EARLIEST_TS_MS, HOUR_MS, QUANTITY_RE
from node.state import StateView
from node.store import prefix_stop
from node.txkinds import Env, Writer, acting_org
from node.types import Org, Tx
from resolver import idis
from resolver.kinds import admit_plan, apply_plan, plan_values

SITE_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SUBSYSTEM_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ACCOUNT_RE = re.compile(r"[0-9A-Za-z-]{1,32}")
MMDD_RE = re.compile(r"\d{2}-\d{2}")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_AREA_M2 = 100_000_000
MAX_BOUNDARY_DEVICES = 256
MAX_ACCOUNTS = 32


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Iterable(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...


def _bad(msg: str) -> CempError:
    return CempError(Code.INVALID_PAYLOAD, msg)


def _text(value: str, what: str, required: bool = True) -> None:
    if required and not value.strip():
        raise _bad(f"{what} must not be empty")
    if _CONTROL_RE.search(value):
        raise _bad(f"{what} holds control characters")


def mmdd(value: str, what: str) -> tuple[int, int]:
    """``MM-DD`` -> (month, day); 02-29 is refused (the season must exist every year)."""
    if not MMDD_RE.fullmatch(value):
        raise _bad(f"{what} {value!r} must be a day of the year as MM-DD, e.g. 10-15")
    m, d = int(value[:2]), int(value[3:])
    try:
        date(2001, m, d)
    except ValueError:
        raise _bad(f"{what} {value!r} is not a day of a (non-leap) year") from None
    return m, d


def load_site(view: Reader, site_id: str, version: int | None = None) -> SiteRecord | None:
    raw = view.get(schema.site(site_id) if version is None else schema.site_version(site_id, version))
    return None if raw is None else codec.decode(SiteRecord, raw)


def latest_boundary(view: Reader, site_id: str) -> BoundaryRecord | None:
    raw = view.get(schema.boundary_head(site_id))
    return None if raw is None else codec.decode(BoundaryRecord, raw)


def boundaries(view: Iterable, site_id: str) -> list[BoundaryRecord]:
    """Every boundary version of a site, oldest first."""
    p = schema.boundary_prefix(site_id)
    return [codec.decode(BoundaryRecord, raw) for _, raw in view.iterate(p, prefix_stop(p))]


def list_sites(view: Iterable, limit: int = 1000) -> list[SiteRecord]:
    p = schema.SITE_PREFIX
    return [codec.decode(SiteRecord, raw) for _, raw in view.iterate(p, prefix_stop(p), limit=limit)]


def site_org(env: Env, tx: Tx) -> Org:
    org = acting_org(env, tx)
    if org is None or org.role != "owner":
        raise CempError(
            Code.NOT_AUTHORIZED, "sites and boundaries are recorded by the admin key of a building-owner org"
        )
    return org


def building_values(p: SitePayload, org: Org) -> tuple[Any, ...]:
    """The ``cemp.building`` values a ``site`` tx writes at its building handle."""
    return (
        idis.admin_value(
            idis.ADMIN_INDEX, idis.prefix_handle(org.prefix), idis.GROUP_INDEX, idis.DEFAULT_ADMIN_PERMS
        ),
        idis.string_value(idis.TEMPLATE_INDEX, idis.T_TEMPLATE, "cemp.building"),
        idis.string_value(
            idis.TEMPLATE_VERSION_INDEX, idis.T_TEMPLATE_VERSION, idis.TEMPLATES["cemp.building"].version
        ),
        idis.string_value(2000, "CEMP.NAME", p.name),
        idis.string_value(2001, "CEMP.FLOOR_AREA_M2", str(p.floor_area_m2)),
        idis.string_value(2002, "CEMP.LOCATION", p.address),
        idis.string_value(2003, "CEMP.OWNER_ORG", org.name),
    )


class SiteKind:
    name = "site"
    payload_type = SitePayload

    def _check(self, view: StateView, env: Env, tx: Tx, p: SitePayload) -> tuple[Org, Any]:
        org = site_org(env, tx)
        if not SITE_ID_RE.fullmatch(p.site_id):
            raise _bad(f"site_id {p.site_id!r}: use lower-case letters, digits, . _ - (at most 64)")
        head = load_site(view, p.site_id)
        if head is None:
            if p.version != 1:
                raise CempError(Code.NOT_FOUND, f"site {p.site_id} does not exist; create it with version 1")
        else:
            if head.org != org.name:
                raise CempError(
                    Code.NOT_AUTHORIZED,
                    f"site {p.site_id} belongs to {head.org}; only its admin may change it",
                )
            if p.version != head.payload.version + 1:
                raise CempError(
                    Code.ALREADY_EXISTS,
                    f"site {p.site_id} is at version {head.payload.version}; a change must be version "
                    f"{head.payload.version + 1} (reload the site and edit again)",
                )
        _text(p.name, "name")
        _text(p.address, "address")
        _text(p.province, "province")
        _text(p.grid_region, "grid_region")
        if not 1 <= p.floor_area_m2 <= MAX_AREA_M2:
            raise _bad(f"floor_area_m2 must be between 1 and {MAX_AREA_M2:,} m², got {p.floor_area_m2}")
        mmdd(p.season_start, "season_start")
        mmdd(p.season_end, "season_end")
        if p.season_start == p.season_end:
            raise _bad("season_start and season_end must differ")
        if not -720 <= p.utc_offset_min <= 840 or p.utc_offset_min % 60:
            # whole hours: meter aggregates are per UTC hour, so local days must start on an hour boundary
            raise _bad("utc_offset_min must be whole hours between -720 and 840 minutes (480 for China)")
        if not 0 <= p.hdd18_annual <= 20_000:
            raise _bad("hdd18_annual must be between 0 and 20,000 K·d")
        if len(p.utility_accounts) > MAX_ACCOUNTS:
            raise CempError(Code.TOO_LARGE, f"at most {MAX_ACCOUNTS} utility accounts per site")
        prev = ""
        for a in p.utility_accounts:
            if not ACCOUNT_RE.fullmatch(a):
                raise _bad(f"utility account {a!r}: letters, digits and - only (at most 32)")
            if a <= prev:
                raise _bad("utility_accounts must be unique and ascending")
            prev = a
        prefix, _ = split_handle(p.building)
        owner = org_for_prefix(env.genesis, prefix)
        if owner is None or owner.name != org.name:
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"building handle {p.building} must lie under {org.name}'s prefix {org.prefix}",
            )
        plan = plan_values(view, env, p.building, building_values(p, org), f"{org.name} admin key (site)")
        return org, plan

    def check(self, view: StateView, env: Env, tx: Tx, p: SitePayload) -> None:
        self._check(view, env, tx, p)

    def _record(self, env: Env, org: Org, p: SitePayload) -> bytes:
        return codec.encode(SiteRecord(p, org.name, env.tx_hash, env.height, env.time_ms))

    def apply(self, state: Writer, env: Env, tx: Tx, p: SitePayload) -> None:
        org, plan = self._check(state, env, tx, p)  # type: ignore[arg-type]
        rec = self._record(env, org, p)
        state.put(schema.site(p.site_id), rec)
        state.put(schema.site_version(p.site_id, p.version), rec)
        apply_plan(state, plan, env, self.name)

    def admit(self, view: StateView, env: Env, tx: Tx, p: SitePayload) -> dict[bytes, bytes]:
        org, plan = self._check(view, env, tx, p)
        return {schema.site(p.site_id): self._record(env, org, p), **admit_plan(plan, env, self.name)}

    def describe(self, p: SitePayload) -> dict[str, Any]:
        return site_json(p)


def site_json(p: SitePayload) -> dict[str, Any]:
    return {
        "site_id": p.site_id,
        "version": p.version,
        "name": p.name,
        "floor_area_m2": p.floor_area_m2,
        "address": p.address,
        "province": p.province,
        "grid_region": p.grid_region,
        "season_start": p.season_start,
        "season_end": p.season_end,
        "utc_offset_min": p.utc_offset_min,
        "building": p.building,
        "utility_accounts": list(p.utility_accounts),
        "hdd18_annual": p.hdd18_annual,
    }


class BoundaryKind:
    name = "boundary"
    payload_type = BoundaryPayload

    def check(self, view: StateView, env: Env, tx: Tx, p: BoundaryPayload) -> None:
        org = site_org(env, tx)
        site = load_site(view, p.site_id)
        if site is None:
            raise CempError(
                Code.NOT_FOUND, f"site {p.site_id} does not exist; record it with a site tx first"
            )
        if site.org != org.name:
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"site {p.site_id} belongs to {site.org}; only its admin may set its boundary",
            )
        head = latest_boundary(view, p.site_id)
        want = 1 if head is None else head.payload.version + 1
        if p.version != want:
            raise CempError(
                Code.ALREADY_EXISTS,
                f"the next boundary version of {p.site_id} is {want}, not {p.version} (reload and edit again)",
            )
        if p.effective_from_ms % HOUR_MS or p.effective_from_ms < EARLIEST_TS_MS:
            raise _bad(
                "effective_from_ms must be the start of an hour (a multiple of 3,600,000 ms) after 2015"
            )
        if head is not None and p.effective_from_ms <= head.payload.effective_from_ms:
            raise _bad(
                f"boundary version {p.version} must take effect after version {head.payload.version} "
                f"(from {head.payload.effective_from_ms} ms)"
            )
        _text(p.note, "note", required=False)
        if not p.devices:
            raise _bad("a boundary needs at least one device")
        if len(p.devices) > MAX_BOUNDARY_DEVICES:
            raise CempError(Code.TOO_LARGE, f"at most {MAX_BOUNDARY_DEVICES} devices per boundary")
        prev = ""
        for i, d in enumerate(p.devices):
            if d.handle <= prev:
                raise _bad(f"device {i}: handles must be unique and ascending ({d.handle} after {prev})")
            prev = d.handle
            if load_device(view, d.handle) is None:
                raise CempError(Code.UNKNOWN_DEVICE, f"device {d.handle} is not registered")
            if not SUBSYSTEM_RE.fullmatch(d.subsystem):
                raise _bad(f"device {d.handle}: subsystem {d.subsystem!r} must be a short lower-case name")
            if d.carrier not in CARRIERS:
                raise _bad(f"device {d.handle}: carrier {d.carrier!r} must be one of {', '.join(CARRIERS)}")
            if d.carrier == CARRIER_NONE:
                if d.quantity:
                    raise _bad(f"device {d.handle}: a carrier 'none' device reads no quantity")
            elif not QUANTITY_RE.match(d.quantity):
                raise _bad(
                    f"device {d.handle}: quantity {d.quantity!r} is not a counter name like energy.import"
                )
        if p.main_meter is not None:
            main = next((d for d in p.devices if d.handle == p.main_meter), None)
            if main is None or main.carrier != CARRIER_ELECTRICITY:
                raise _bad(f"main meter {p.main_meter} must be one of the boundary's electricity devices")

    def apply(self, state: Writer, env: Env, tx: Tx, p: BoundaryPayload) -> None:
        self.check(state, env, tx, p)  # type: ignore[arg-type]
        rec = codec.encode(BoundaryRecord(p, env.tx_hash, env.height, env.time_ms))
        state.put(schema.boundary(p.site_id, p.effective_from_ms), rec)
        state.put(schema.boundary_head(p.site_id), rec)

    def admit(self, view: StateView, env: Env, tx: Tx, p: BoundaryPayload) -> dict[bytes, bytes]:
        self.check(view, env, tx, p)
        return {
            schema.boundary_head(p.site_id): codec.encode(
                BoundaryRecord(p, env.tx_hash, env.height, env.time_ms)
            )
        }

    def describe(self, p: BoundaryPayload) -> dict[str, Any]:
        return boundary_json(p)


def boundary_json(p: BoundaryPayload) -> dict[str, Any]:
    return {
        "site_id": p.site_id,
        "version": p.version,
        "effective_from_ms": p.effective_from_ms,
        "devices": [
            {"handle": d.handle, "subsystem": d.subsystem, "carrier": d.carrier, "quantity": d.quantity}
            for d in p.devices
        ],
        "main_meter": p.main_meter,
        "note": p.note,
    }


SITE_KIND = SiteKind()
BOUNDARY_KIND = BoundaryKind()
