"""Inventories against hand-computed figures: E = AD x EF per device, subsystem and site; boundary changes;
factor selection by year; reconciliation; location- vs market-based; data quality; rounding; determinism."""

from __future__ import annotations

from datetime import date

import pytest

from accounting.inventory import canonical, compute, finish, fmt_t
from accounting.periods import day_start_ms, parse_period
from cemp import wiring
from node.chain import Ledger
from node.errors import CempError, Code
from node.readings import Flag
from node.store import MemoryStore
from tests.accounting.chain import HOUR_MS, SITE, Chain, boundary_payload, site_payload

CORE, PIPE, MAIN, HEAT = "88.123.45/101.1.1", "88.123.45/101.1.2", "88.123.45/101.2.1", "88.123.45/106.2.1"
DAY = date(2026, 1, 1)
T0 = day_start_ms(DAY, 480)  # 2026-01-01 00:00 China Standard Time
BOUNDARY = [
    (CORE, "core-heating", "electricity", "energy.import"),
    (PIPE, "pipe-heating", "electricity", "energy.import"),
    (MAIN, "incoming", "electricity", "energy.import"),
]


def site_chain(t0: int = T0, hours: int = 24, years: tuple[int, ...] = (2021, 2022, 2023)) -> Chain:
    ch = Chain()
    ch.factors(years)
    ch.ok(ch.admin("owner", "site", site_payload()))
    core, pipe, main = ch.device(CORE), ch.device(PIPE), ch.device(MAIN)
    ch.ok(ch.admin("owner", "boundary", boundary_payload(1, t0 - 24 * HOUR_MS, BOUNDARY, main=MAIN)))
    ch.counter(core, t0, hours, 10_000)
    ch.counter(pipe, t0, hours, 5_000)
    ch.counter(main, t0, hours, 16_000)
    return ch


def inv(ch: Chain, period: str, grain: str | None = None) -> dict:
    return finish(compute(ch.store, ch.head(), SITE, period, grain))


def test_day_inventory_by_hand() -> None:
    ch = site_chain()
    r = inv(ch, "2026-01-01")
    devs = {d["handle"]: d for d in r["devices"]}
    # 24 h x 10 kWh = 240 kWh x 0.6479 kgCO2/kWh (Inner Mongolia 2023, the latest set before 2026) = 155.496 kg
    assert devs[CORE]["energy_wh"] == 240_000
    assert devs[CORE]["co2_location_ug"] == 155_496_000_000
    assert devs[PIPE]["co2_location_ug"] == 77_748_000_000  # 120 kWh x 0.6479
    assert devs[MAIN]["role"] == "main" and devs[MAIN]["energy_wh"] == 384_000
    subs = {s["subsystem"]: s for s in r["subsystems"]}
    assert set(subs) == {"core-heating", "pipe-heating"}  # the main meter is the site, not a subsystem
    tot = r["site_total"]
    assert tot["activity_source"] == "meters" and tot["energy_wh"] == 384_000
    assert tot["co2_location_ug"] == 248_793_600_000  # 384 kWh x 0.6479 = 248.7936 kg
    assert tot["co2_market_ug"] == 234_086_400_000  # 384 kWh x 0.6096 (excl. traded non-fossil) = 234.0864 kg
    assert tot["co2_location_t"] == "0.249" and tot["co2_market_t"] == "0.234"
    assert r["unmetered_remainder"]["remainder_wh"] == 384_000 - 360_000
    f = r["factors"][0]
    assert f["year"] == 2026 and f["set"]["set_id"] == "cn-mee-2023"
    assert f["location"]["key"] == "grid.province.inner-mongolia" and f["location"]["basis"] == "province"
    assert f["location"]["value"] == "0.6479" and "公告2025年第47号" in f["location"]["source"]
    assert f["residual"]["value"] == "0.6096"
    assert "latest earlier set (2023)" in f["note"]
    assert len(r["breakdown"]) == 24 and r["breakdown"][0]["label"] == "2026-01-01T00"
    assert sum(b["co2_location_ug"] for b in r["breakdown"]) == tot["co2_location_ug"]
    assert r["data_quality"]["gap_hours"] == 0 and r["data_quality"]["flagged_readings"] == 0
    assert all(len(d["aggregates_root"]) == 64 and d["aggregates"] == 24 for d in r["devices"])


def test_market_based_with_green_certificate() -> None:
    ch = site_chain()
    cert = {
        "site": SITE,
        "certificate_id": "GEC-1",
        "period_start": "2026-01-01",
        "period_end": "2026-01-01",
        "energy_wh": 100_000,
    }
    ch.ok(ch.document("green_certificate", cert, b"gec-1"))
    r = inv(ch, "2026-01-01", "day")
    tot = r["site_total"]
    assert tot["green_wh"] == 100_000 and tot["green_unused_wh"] == 0
    assert tot["co2_location_ug"] == 248_793_600_000  # unchanged by certificates
    assert tot["co2_market_ug"] == 284_000 * 609_600  # (384 - 100) kWh x 0.6096 = 173.1264 kg
    # a certificate larger than the consumption covers it all and the rest is reported as unused
    big = {**cert, "certificate_id": "GEC-2", "energy_wh": 1_000_000}
    ch.ok(ch.document("green_certificate", big, b"gec-2"))
    tot = inv(ch, "2026-01-01", "day")["site_total"]
    assert tot["co2_market_ug"] == 0 and tot["green_wh"] == 384_000 and tot["green_unused_wh"] == 716_000


def test_certificate_spread_over_its_days() -> None:
    ch = site_chain(hours=48)
    # 100,001 Wh over 2 days: 50,001 on the first day, 50,000 on the second (remainder on the first days)
    cert = {
        "site": SITE,
        "certificate_id": "GEC-3",
        "period_start": "2026-01-01",
        "period_end": "2026-01-02",
        "energy_wh": 100_001,
    }
    ch.ok(ch.document("green_certificate", cert, b"gec-3"))
    assert inv(ch, "2026-01-01")["site_total"]["green_wh"] == 50_001
    assert inv(ch, "2026-01-02")["site_total"]["green_wh"] == 50_000


def test_boundary_change_mid_period() -> None:
    ch = site_chain()
    # from 12:00 local the pipe heater leaves the boundary (and there is no main meter any more)
    v2 = [b for b in BOUNDARY if b[0] == CORE]
    ch.ok(ch.admin("owner", "boundary", boundary_payload(2, T0 + 12 * HOUR_MS, v2)))
    r = inv(ch, "2026-01-01")
    devs = {d["handle"]: d for d in r["devices"]}
    assert devs[PIPE]["energy_wh"] == 12 * 5_000  # only the hours under version 1
    assert devs[CORE]["energy_wh"] == 24 * 10_000
    assert [b["version"] for b in r["boundaries"]] == [1, 2]
    # site: main meter for 00-12 (12 x 16 kWh), then the core meter alone (12 x 10 kWh)
    assert r["site_total"]["energy_wh"] == 12 * 16_000 + 12 * 10_000
    assert r["unmetered_remainder"]["remainder_wh"] == 12 * 16_000 - 12 * 15_000


def test_factor_year_selection() -> None:
    t22 = day_start_ms(date(2022, 6, 1), 480)
    ch = site_chain(t0=t22, hours=2, years=(2021, 2023))
    r = inv(ch, "2022-06-01")
    f = r["factors"][0]
    assert f["set"]["data_year"] == 2021 and f["location"]["value"] == "0.7025"
    assert r["site_total"]["co2_location_ug"] == 32_000 * 702_500
    ch2 = site_chain(t0=t22, hours=2, years=(2022,))
    assert inv(ch2, "2022-06-01")["site_total"]["co2_location_ug"] == 32_000 * 684_900
    ch3 = site_chain(t0=t22, hours=2, years=(2023,))
    with pytest.raises(CempError) as e:
        inv(ch3, "2022-06-01")
    assert e.value.code == Code.NOT_FOUND and "2022" in e.value.message


def test_reconciliation_meters_bill_ledger() -> None:
    ch = site_chain()
    bill = {
        "account": "5127336124",
        "period_start": "2026-01-01",
        "period_end": "2026-01-01",
        "energy_wh": 390_000,
        "amount_fen": 17_000,
    }
    ledger = {
        "account": "5127336124",
        "period_start": "2026-01-01",
        "period_end": "2026-01-01",
        "energy_wh": 400_000,
    }
    other = {**bill, "account": "999"}  # another site's bill
    ch.ok(ch.document("electricity_bill", bill, b"bill-1"), ch.document("electricity_bill", other, b"bill-2"))
    import hashlib

    from node.documents import DocumentPayload, make_fields
    from node.types import Hash32, ShortStr, Text

    row = DocumentPayload(
        ShortStr("purchase_ledger_row"),
        Hash32(hashlib.sha256(b"ledger").digest()),
        Text("text/csv"),
        1,
        None,
        make_fields(ledger),
        ShortStr("confirmed"),
        None,
    )
    ch.ok(ch.admin("owner", "document", row))
    rec = inv(ch, "2026-01-01")["reconciliation"]
    assert rec["used"] == "meters" and "100.0 %" in rec["why"]
    assert rec["meters"]["energy_wh"] == 384_000
    assert rec["settlement"]["energy_wh"] == 390_000 and len(rec["settlement"]["documents"]) == 1
    assert rec["settlement"]["difference_vs_meters_wh"] == 6_000
    assert rec["settlement"]["difference_permille"] == 15  # 6,000 / 384,000 = 1.56 %
    assert rec["ledger"]["energy_wh"] == 400_000 and rec["ledger"]["difference_vs_meters_wh"] == 16_000


def test_gappy_meters_fall_back_to_the_bill() -> None:
    ch = Chain()
    ch.factors((2023,))
    ch.ok(ch.admin("owner", "site", site_payload()))
    main = ch.device(MAIN)
    ch.ok(ch.admin("owner", "boundary", boundary_payload(1, T0, [BOUNDARY[2]], main=MAIN)))
    ch.counter(main, T0, 12, 16_000)  # only the first 12 hours reached the chain
    bill = {
        "account": "5127336124",
        "period_start": "2026-01-01",
        "period_end": "2026-01-01",
        "energy_wh": 390_000,
        "amount_fen": 17_000,
    }
    ch.ok(ch.document("electricity_bill", bill, b"bill-1"))
    r = inv(ch, "2026-01-01")
    assert r["reconciliation"]["used"] == "settlement"
    assert r["reconciliation"]["meters"]["coverage_permille"] == 500
    assert r["site_total"]["energy_wh"] == 390_000
    assert r["site_total"]["co2_location_ug"] == 390_000 * 647_900
    assert r["data_quality"]["gap_hours"] == 12


def test_flagged_and_estimated_readings_are_counted() -> None:
    ch = site_chain(hours=2)
    dev = ch.device("88.123.45/101.1.9")
    ch.ok(
        ch.admin(
            "owner",
            "boundary",
            boundary_payload(
                2,
                T0 + 2 * HOUR_MS,
                [*BOUNDARY, ("88.123.45/101.1.9", "pump-room", "electricity", "energy.import")],
                main=MAIN,
            ),
        )
    )
    ch.counter(dev, T0 + 2 * HOUR_MS, 1, 1_000, flags=int(Flag.ESTIMATED))
    ch.counter(dev, T0 + 3 * HOUR_MS, 1, 1_000, start_wh=2_000, flags=int(Flag.SPIKE))
    r = inv(ch, "2026-01-01")
    d = {x["handle"]: x for x in r["devices"]}["88.123.45/101.1.9"]
    # hour 2: 4 ESTIMATED + the second counter's starting reading (SPIKE, at 02:59:59.999); hour 3: 4 SPIKE.
    # The first counter's starting reading (01:59:59.999) lies before the device joined the boundary.
    assert d["flagged_readings"] == 9 and d["estimated_readings"] == 4
    assert r["data_quality"]["estimated_readings"] == 4
    assert d["gap_hours"] == 22 - 2  # in the boundary from 02:00; readings in hours 2 and 3 only


def test_periods_and_bad_input() -> None:
    season = ((10, 15), (4, 15))
    p = parse_period("2025/26-season", 480, season)
    assert p.first_day == date(2025, 10, 15) and p.last_day == date(2026, 4, 15) and p.days == 183
    assert parse_period("2027/28-season", 480, season).days == 184  # 2028 is a leap year
    assert parse_period("2026-Q1", 480, season).days == 90
    assert parse_period("2026-02", 480, season).hours == 28 * 24
    ch = site_chain(hours=1)
    for label in ("2026-13", "2026/28-season", "1999", "2026-02-30", "x" * 30, "last month"):
        with pytest.raises(CempError) as e:
            inv(ch, label)
        assert e.value.code == Code.BAD_REQUEST
    with pytest.raises(CempError) as e:
        finish(compute(ch.store, ch.head(), "nope", "2026"))
    assert e.value.code == Code.NOT_FOUND


def test_counter_restart_counts_the_rise_within_the_hour() -> None:
    ch = site_chain(hours=1)
    dev = ch.device("88.123.45/101.2.9")
    b = [*BOUNDARY[:2], ("88.123.45/101.2.9", "incoming", "electricity", "energy.import")]
    ch.ok(ch.admin("owner", "boundary", boundary_payload(2, T0, b, main="88.123.45/101.2.9")))
    q = "energy.import"
    # hour 0: 50,000 -> 66,000 (16 kWh); the meter is replaced; hour 1: the new one reads 100 -> 12,100
    vals = [(T0 - 1, q, 50_000, "Wh"), (T0 + 1_800_000, q, 58_000, "Wh"), (T0 + HOUR_MS - 1, q, 66_000, "Wh")]
    vals += [(T0 + HOUR_MS + 60_000, q, 100, "Wh"), (T0 + 2 * HOUR_MS - 1, q, 12_100, "Wh")]
    ch.ok(dev.batch(ch.c.chain, vals))
    r = inv(ch, "2026-01-01")
    d = {x["handle"]: x for x in r["devices"]}["88.123.45/101.2.9"]
    assert d["negative_delta_hours"] == 1
    assert (
        d["energy_wh"] == 16_000 + 12_000
    )  # the new meter's rise within hour 1 counts; nothing goes negative
    assert r["data_quality"]["negative_delta_hours"] == 1


def test_cost_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from accounting import inventory

    ch = site_chain(hours=1)
    monkeypatch.setattr(inventory, "MAX_DEVICE_HOURS", 3 * 24 * 31)  # three devices, one month
    assert inv(ch, "2026-01")["site_total"]["energy_wh"] == 16_000
    with pytest.raises(CempError) as e:
        inv(ch, "2026-Q1")
    assert e.value.code == Code.BAD_REQUEST and "device-hours" in e.value.message


def test_merkle_root_matches_the_core() -> None:
    from accounting.inventory import merkle_root
    from node import merkle

    for n in (0, 1, 2, 3, 7, 64, 1001):
        leaves = [i.to_bytes(4, "big") * 3 for i in range(n)]
        assert merkle_root(leaves) == merkle.root(leaves)


def test_rounding_is_for_display_only() -> None:
    assert fmt_t(500_000_000) == "0.000"  # 0.0005 t rounds half to even
    assert fmt_t(1_500_000_000) == "0.002"
    assert fmt_t(2_500_000_000) == "0.002"
    assert fmt_t(155_496_000_000) == "0.155"
    ch = site_chain(hours=3)
    r = inv(ch, "2026-01-01")
    # totals are sums of exact parts, never of rounded ones
    assert r["site_total"]["co2_location_ug"] == sum(b["co2_location_ug"] for b in r["breakdown"])


def test_determinism_two_stores_identical_bytes() -> None:
    ch = site_chain(hours=30)
    cert = {
        "site": SITE,
        "certificate_id": "GEC-1",
        "period_start": "2026-01-01",
        "period_end": "2026-01-02",
        "energy_wh": 123_457,
    }
    ch.ok(ch.document("green_certificate", cert, b"gec-1"))
    other = Ledger(MemoryStore(), ch.c.genesis, wiring.kinds())
    for block, cert_sigs in ch.blocks:
        other.apply_block(block, cert_sigs)
    from accounting.inventory import Head

    head_b = Head(other.height, other.last_hash, other.app_hash, other.last_time_ms)
    a = canonical(inv(ch, "2026-01", "day"))
    b = canonical(finish(compute(other.store, head_b, SITE, "2026-01", "day")))
    assert a == b
    assert len(a) > 1000


def test_several_sites_and_factor_basis_fallback() -> None:
    ch = site_chain(hours=1)
    other = site_payload(
        site_id="gz-mall",
        building="88.123.45/site.gz",
        province="Guangdong",
        grid_region="South China",
        utility_accounts=(),
    )
    ch.ok(ch.admin("owner", "site", other))
    from dataclasses import replace

    b = boundary_payload(1, T0 - 24 * HOUR_MS, [BOUNDARY[0]])
    ch.ok(ch.admin("owner", "boundary", replace(b, site_id="gz-mall")))
    r = finish(compute(ch.store, ch.head(), "gz-mall", "2026-01-01"))
    f = r["factors"][0]
    # the 2023 set has no Guangdong provincial factor: the South China regional one applies, and it says so
    assert f["location"]["key"] == "grid.region.south-china" and f["location"]["basis"] == "region"
    assert r["site_total"]["co2_location_ug"] == 10_000 * 404_200
    assert (
        inv(ch, "2026-01-01")["site_total"]["co2_location_ug"] == 16_000 * 647_900
    )  # the first site unchanged
