"""Sites, boundaries and factor sets on chain: who may write them, versioning, and the building handle record."""

from __future__ import annotations

import json

from accounting.factors import select_set, shipped_sets
from accounting.model import Factor
from accounting.sites import boundaries, latest_boundary, load_site
from node.errors import Code
from resolver.handles import load_record
from tests.accounting.chain import BUILDING, HOUR_MS, SITE, Chain, boundary_payload, site_payload

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def test_site_created_by_owner_writes_building_record() -> None:
    ch = Chain()
    ch.ok(ch.admin("owner", "site", site_payload()))
    rec = load_site(ch.store, SITE)
    assert rec is not None and rec.payload.floor_area_m2 == 100_000 and rec.org == "owner"
    hr = load_record(ch.store, BUILDING)
    assert hr is not None
    vals = {sv.value.type: bytes(sv.value.data).decode() for sv in hr.values if sv.value.format == "string"}
    assert vals["CEMP.TEMPLATE"] == "cemp.building" and vals["CEMP.FLOOR_AREA_M2"] == "100000"


def test_site_refusals() -> None:
    ch = Chain()
    res = ch.block(
        ch.admin("equipment", "site", site_payload()),  # not an owner org
        ch.admin("owner", "site", site_payload(version=2)),  # does not exist yet
        ch.admin("owner", "site", site_payload(area=0)),
        ch.admin("owner", "site", site_payload(season_start="02-30")),
        ch.admin("owner", "site", site_payload(building="88.123.46/site.x")),  # another org's prefix
        ch.admin("owner", "site", site_payload(utility_accounts=("2", "1"))),
    )
    assert [r.code for r in res] == [
        Code.NOT_AUTHORIZED,
        Code.NOT_FOUND,
        Code.INVALID_PAYLOAD,
        Code.INVALID_PAYLOAD,
        Code.NOT_AUTHORIZED,
        Code.INVALID_PAYLOAD,
    ]
    assert load_site(ch.store, SITE) is None
    ch.ok(ch.admin("owner", "site", site_payload()))
    res = ch.block(
        ch.admin("owner", "site", site_payload(version=1)),  # stale
        ch.admin("owner", "site", site_payload(version=3)),  # skips
        ch.admin("owner", "site", site_payload(version=2, area=120_000)),
    )
    assert [r.code for r in res] == [Code.ALREADY_EXISTS, Code.ALREADY_EXISTS, 0]
    rec = load_site(ch.store, SITE)
    assert rec is not None and rec.payload.version == 2 and rec.payload.floor_area_m2 == 120_000
    old = load_site(ch.store, SITE, 1)
    assert old is not None and old.payload.floor_area_m2 == 100_000


def test_boundary_versions_and_checks() -> None:
    ch = Chain()
    ch.ok(ch.admin("owner", "site", site_payload()))
    ch.device("88.123.45/101.1.1")
    ch.device("88.123.45/101.2.1")
    devs = [("88.123.45/101.1.1", "core-heating", "electricity", "energy.import")]
    main = ("88.123.45/101.2.1", "incoming", "electricity", "energy.import")
    res = ch.block(
        ch.admin("owner", "boundary", boundary_payload(1, T0 + 5, devs)),  # not on an hour
        ch.admin(
            "owner",
            "boundary",
            boundary_payload(1, T0, [*devs, ("88.123.45/9.9", "x", "electricity", "energy.import")]),
        ),
        ch.admin(
            "owner", "boundary", boundary_payload(1, T0, devs, main="88.123.45/101.2.1")
        ),  # main not listed
        ch.admin("regulator", "boundary", boundary_payload(1, T0, devs)),
        ch.admin(
            "owner",
            "boundary",
            boundary_payload(1, T0, [("88.123.45/101.1.1", "core", "steam", "energy.import")]),
        ),
    )
    assert [r.code for r in res] == [
        Code.INVALID_PAYLOAD,
        Code.UNKNOWN_DEVICE,
        Code.INVALID_PAYLOAD,
        Code.NOT_AUTHORIZED,
        Code.INVALID_PAYLOAD,
    ]
    ch.ok(ch.admin("owner", "boundary", boundary_payload(1, T0, [*devs, main], main="88.123.45/101.2.1")))
    res = ch.block(
        ch.admin("owner", "boundary", boundary_payload(2, T0, devs)),  # not later than version 1
        ch.admin("owner", "boundary", boundary_payload(3, T0 + HOUR_MS, devs)),  # skips a version
        ch.admin("owner", "boundary", boundary_payload(2, T0 + 24 * HOUR_MS, devs)),
    )
    assert [r.code for r in res] == [Code.INVALID_PAYLOAD, Code.ALREADY_EXISTS, 0]
    recs = boundaries(ch.store, SITE)
    assert [r.payload.version for r in recs] == [1, 2]
    head = latest_boundary(ch.store, SITE)
    assert head is not None and head.payload.version == 2 and head.payload.main_meter is None


def test_factor_sets_need_the_regulator_and_select_by_year() -> None:
    ch = Chain()
    sets = shipped_sets()
    assert [s.data_year for s in sets] == [2021, 2022, 2023]
    s23 = sets[-1]
    keys = {f.key: f for f in s23.factors}
    assert keys["grid.province.inner-mongolia"].value_e6 == 647_900
    assert keys["grid.region.north-china"].value_e6 == 636_100
    assert keys["grid.excl-traded-non-fossil"].value_e6 == 609_600
    assert keys["fuel.coal.bituminous"].value_e6 == 89_273_800  # 26.18 x 0.93 x 44/12, exact
    assert keys["fuel.gas.natural"].value_e6 == 55_539_000
    assert s23.document == "MEE/NBS 公告2025年第47号" and s23.published == "2025-12-31"
    res = ch.block(ch.admin("owner", "factors", s23))
    assert res[0].code == Code.NOT_AUTHORIZED
    ch.factors((2021, 2023))
    # 2022 has no set: the latest earlier (2021); 2025 uses 2023; 2020 has none
    for year, want in ((2021, 2021), (2022, 2021), (2023, 2023), (2026, 2023)):
        rec = select_set(ch.store, year)
        assert rec is not None and rec.payload.data_year == want
    assert select_set(ch.store, 2020) is None
    # a second set for 2023 under another id is refused; a new version of the same id is accepted
    from dataclasses import replace

    other = replace(s23, set_id="cn-other-2023")
    v2 = replace(s23, version=2, factors=(*s23.factors[:-1], Factor("zz.extra", 1, "t", 2023, "test")))
    bad_order = replace(s23, version=2, factors=tuple(reversed(s23.factors)))
    res = ch.block(
        ch.admin("regulator", "factors", other),
        ch.admin("regulator", "factors", bad_order),
        ch.admin("regulator", "factors", v2),
    )
    assert [r.code for r in res] == [Code.ALREADY_EXISTS, Code.INVALID_PAYLOAD, 0]
    rec = select_set(ch.store, 2024)
    assert rec is not None and rec.payload.version == 2
    assert json.dumps(rec.payload.document, ensure_ascii=False)
