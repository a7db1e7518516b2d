"""``cemp site apply FILE``: a site and its boundary described in TOML, recorded or updated on chain.

The file (see ``docs/accounting.md``)::

    [site]
    id = "hohhot-complex"
    name = "Hohhot commercial complex"
    floor_area_m2 = 100000
    address = "Hohhot, Inner Mongolia"
    province = "Inner Mongolia"
    grid_region = "North China"
    season_start = "10-15"
    season_end = "04-15"
    utc_offset_hours = 8
    building = "88.123.45/200.1"
    utility_accounts = ["5127336124"]
    hdd18_annual = 4186

    [boundary]
    effective_from = "2025-10-15T00:00"   # local time of the site, on the hour
    main_meter = "88.123.45/101.2.1"      # optional
    [[boundary.devices]]
    handle = "88.123.45/101.1.1"
    subsystem = "core-heating"
    carrier = "electricity"               # electricity | heat | none
    quantity = "energy.import"            # the counter read (empty for none)

``apply`` compares the file with the chain: a new site gets version 1 of both; a changed site gets the next site
version; a changed device list or main meter gets the next boundary version, in force from ``effective_from``
(which must then be later than the current boundary's). Nothing changed: nothing is sent.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accounting.client import submit_signed
from accounting.model import BoundaryDevice, BoundaryPayload, SitePayload
from node.chain import ChainRef
from node.client import NodeClient
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.types import Handle, ShortStr, Text, TimestampMs


class SiteFileError(ValueError):
    pass


def _get(t: dict[str, Any], key: str, typ: type, where: str) -> Any:
    v = t.get(key)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise SiteFileError(f"{where}.{key} must be a {typ.__name__}")
    return v


def parse(text: str, version: int = 1, boundary_version: int = 1) -> tuple[SitePayload, BoundaryPayload]:
    """Payloads described by a site file (versions to be filled in by ``apply``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SiteFileError(f"not valid TOML: {e}") from None
    s = doc.get("site")
    b = doc.get("boundary")
    if not isinstance(s, dict) or not isinstance(b, dict):
        raise SiteFileError("the file needs a [site] and a [boundary] table")
    hours = _get(s, "utc_offset_hours", int, "site")
    accounts = s.get("utility_accounts", [])
    if not isinstance(accounts, list) or not all(isinstance(a, str) for a in accounts):
        raise SiteFileError("site.utility_accounts must be a list of strings")
    site = SitePayload(
        site_id=ShortStr(_get(s, "id", str, "site")),
        version=version,
        name=Text(_get(s, "name", str, "site")),
        floor_area_m2=_get(s, "floor_area_m2", int, "site"),
        address=Text(_get(s, "address", str, "site")),
        province=ShortStr(_get(s, "province", str, "site")),
        grid_region=ShortStr(_get(s, "grid_region", str, "site")),
        season_start=ShortStr(_get(s, "season_start", str, "site")),
        season_end=ShortStr(_get(s, "season_end", str, "site")),
        utc_offset_min=hours * 60,
        building=Handle(_get(s, "building", str, "site")),
        utility_accounts=tuple(ShortStr(a) for a in sorted(set(accounts))),
        hdd18_annual=int(s.get("hdd18_annual", 0)),
    )
    raw_from = _get(b, "effective_from", str, "boundary")
    try:
        local = datetime.fromisoformat(raw_from).replace(tzinfo=UTC)
    except ValueError:
        raise SiteFileError(
            f"boundary.effective_from {raw_from!r} is not a local time like 2025-10-15T00:00"
        ) from None
    effective = int(local.timestamp() * 1000) - hours * 3_600_000
    devs = b.get("devices")
    if not isinstance(devs, list) or not devs:
        raise SiteFileError("the boundary needs [[boundary.devices]] entries")
    devices = []
    for i, d in enumerate(devs):
        if not isinstance(d, dict):
            raise SiteFileError(f"boundary.devices[{i}] must be a table")
        where = f"boundary.devices[{i}]"
        devices.append(
            BoundaryDevice(
                Handle(_get(d, "handle", str, where)),
                ShortStr(_get(d, "subsystem", str, where)),
                ShortStr(_get(d, "carrier", str, where)),
                ShortStr(str(d.get("quantity", ""))),
            )
        )
    main = b.get("main_meter")
    if main is not None and not isinstance(main, str):
        raise SiteFileError("boundary.main_meter must be a device handle")
    boundary = BoundaryPayload(
        site.site_id,
        boundary_version,
        TimestampMs(effective),
        tuple(sorted(devices, key=lambda x: x.handle)),
        Handle(main) if main else None,
        Text(str(b.get("note", ""))),
    )
    return site, boundary


def _site_fields(p: SitePayload) -> tuple[Any, ...]:
    return (
        p.name, p.floor_area_m2, p.address, p.province, p.grid_region, p.season_start, p.season_end,
        p.utc_offset_min, p.building, tuple(p.utility_accounts), p.hdd18_annual,
    )  # fmt: skip


def _from_json(j: dict[str, Any]) -> SitePayload:
    return SitePayload(
        ShortStr(j["site_id"]), j["version"], Text(j["name"]), j["floor_area_m2"], Text(j["address"]),
        ShortStr(j["province"]), ShortStr(j["grid_region"]), ShortStr(j["season_start"]),
        ShortStr(j["season_end"]), j["utc_offset_min"], Handle(j["building"]),
        tuple(ShortStr(a) for a in j["utility_accounts"]), j["hdd18_annual"],
    )  # fmt: skip


def _devices_json(devs: tuple[BoundaryDevice, ...]) -> list[dict[str, str]]:
    return [
        {"handle": d.handle, "subsystem": d.subsystem, "carrier": d.carrier, "quantity": d.quantity}
        for d in devs
    ]


async def apply(client: NodeClient, key: KeyPair, chain: ChainRef, path: Path) -> list[str]:
    """Record what changed between the file and the chain; returns one line per tx sent."""
    site, boundary = parse(path.read_text(encoding="utf-8"))
    done: list[str] = []
    try:
        cur = await client.get(f"/v1/sites/{site.site_id}")
    except CempError as e:
        if e.code != Code.NOT_FOUND:
            raise
        await submit_signed(client, key, chain, "site", site)
        await submit_signed(client, key, chain, "boundary", boundary)
        return [f"site {site.site_id} version 1", f"boundary version 1 ({len(boundary.devices)} devices)"]
    if _site_fields(_from_json(cur)) != _site_fields(site):
        nxt = SitePayload(*(site.site_id, cur["version"] + 1, *_site_fields(site)))
        await submit_signed(client, key, chain, "site", nxt)
        done.append(f"site {site.site_id} version {nxt.version}")
    last = cur["boundaries"][-1] if cur["boundaries"] else None
    if (
        last is None
        or last["devices"] != _devices_json(boundary.devices)
        or last["main_meter"] != boundary.main_meter
    ):
        version = (last["version"] if last else 0) + 1
        nb = BoundaryPayload(
            boundary.site_id,
            version,
            boundary.effective_from_ms,
            boundary.devices,
            boundary.main_meter,
            boundary.note,
        )
        await submit_signed(client, key, chain, "boundary", nb)
        done.append(f"boundary version {version} ({len(nb.devices)} devices)")
    return done
