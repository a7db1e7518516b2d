"""Boiler baselines (the case-study reproduction), KPIs, tariffs and the carbon-efficiency rating."""

from __future__ import annotations

import argparse
import json
from datetime import date
from fractions import Fraction

import pytest

from accounting import baseline as bl
from accounting import tariffs as tf
from accounting.inventory import compute, finish
from accounting.kpi import compute_kpis, hdd, tou_cost
from accounting.periods import day_start_ms
from accounting.rating import ZHEJIANG_THRESHOLDS_E3, compute_rating, grade, payload_of
from node.errors import Code
from resolver.handles import load_record
from tests.accounting.chain import BUILDING, HOUR_MS, SITE, Chain, boundary_payload, site_payload

CASE_COAL_T, CASE_GAS_T = 9066, 5177


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    bl.add_parser(sub)
    args = p.parse_args(argv)
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_design_heat_by_hand() -> None:
    # 50 W/m2 x 100,000 m2 x 24 h x 183 d = 21,960 MWh = 79,056 GJ, exactly
    assert bl.design_heat_gj(Fraction(100_000), Fraction(50), Fraction(24), Fraction(183)) == 79_056


def test_case_study_reproduction(capsys: pytest.CaptureFixture[str]) -> None:
    out = json.loads(
        run_cli(
            [
                "baseline",
                "--area",
                "100000",
                "--load",
                "50",
                "--hours",
                "24",
                "--days",
                "183",
                "--coal-efficiency",
                "0.78",
                "--gas-efficiency",
                "0.85",
                "--json",
            ],
            capsys,
        )
    )
    assert out["heat_gj"] == 79_056.0
    # coal: 79,056 / 0.78 = 101,353.85 GJ x 89.2738 tCO2/TJ = 9,048.18 t; gas: 79,056 / 0.85 = 93,007.06 GJ
    # x 55.539 tCO2/TJ = 5,165.52 t (case: 9,066 and 5,177: -0.20 % and -0.22 %)
    assert out["coal_tco2"] == pytest.approx(9048.2, abs=0.05)
    assert out["gas_tco2"] == pytest.approx(5165.5, abs=0.05)
    assert abs(out["coal_tco2"] - CASE_COAL_T) / CASE_COAL_T < 0.0025
    assert abs(out["gas_tco2"] - CASE_GAS_T) / CASE_GAS_T < 0.0025
    assert out["gas_nm3"] == pytest.approx(2_389_022, abs=1)  # 93,007 GJ / 38.931 MJ/Nm3
    assert out["electric_tco2"] == 0.0 and out["avoided_vs_coal_tco2"] == out["coal_tco2"]
    text = run_cli(["baseline", "--area", "100000", "--load", "50", "--days", "183"], capsys)
    assert "coal boiler" in text and "9,048.2" in text


def test_location_based_grid_factor_reverses_the_sign() -> None:
    heat = bl.design_heat_gj(Fraction(100_000), Fraction(50), Fraction(24), Fraction(183))
    b = bl.baseline(heat, bl.BoilerParams(grid_factor_tco2_per_mwh=Fraction("0.6479")))
    # 21,960 MWh heat / 0.98 = 22,408.2 MWh electricity x 0.6479 = 14,518.2 t: more than either boiler
    assert round(float(b.electricity_mwh), 1) == 22_408.2
    assert round(float(b.electric_tco2), 1) == 14_518.2
    assert b.avoided_vs_coal_tco2 < 0 and b.avoided_vs_gas_tco2 < 0
    hp = bl.baseline(
        heat, bl.BoilerParams(grid_factor_tco2_per_mwh=Fraction("0.6479"), electric_efficiency=Fraction(3))
    )
    assert round(float(hp.electric_tco2)) == 4_743  # a COP-3 heat pump: below coal, about equal to gas
    with pytest.raises(ValueError):
        bl.baseline(heat, bl.BoilerParams(coal_efficiency=Fraction(0)))


def test_tariff_versions_never_reprice_history() -> None:
    base = tf.load()[0]
    # windy-season hours: valley 0.48 x F + N, flat F + N, peak 1.68 x F + N (micro-yuan per kWh)
    jan = base.prices[1]
    assert (jan[2], jan[9], jan[19]) == (285_388, 456_000, 679_108)
    doc = {
        "tariff": [
            {
                "id": "a",
                "start": "2024-01-01",
                "document": "a",
                "floating_uyuan_per_kwh": 400_000,
                "fixed_uyuan_per_kwh": 100_000,
                "coal_yuan_per_t": "450",
                "coal_ncv_gj_per_t": "23.027",
                "gas_yuan_per_nm3": "3",
                "gas_ncv_mj_per_nm3": "38.931",
                "season": [{"name": "all", "months": list(range(1, 13)), "ratios_e3": [1000] * 24}],
            },
        ]
    }
    v1 = tf.parse(doc)
    t0 = day_start_ms(date(2026, 1, 1), 480) // HOUR_MS
    use = {t0: 1_000, t0 + 24: 1_000}  # 1 kWh on 1 Jan and 1 kWh on 2 Jan
    assert tou_cost(use, 480, v1)["cost_nyuan"] == 2 * 1_000 * 500_000  # 2 kWh x 0.5 yuan
    new = {**doc["tariff"][0], "id": "b", "start": "2026-01-02", "fixed_uyuan_per_kwh": 300_000}
    v2 = tf.parse({"tariff": [doc["tariff"][0], new]})
    c = tou_cost(use, 480, v2)
    assert c["cost_nyuan"] == 1_000 * 500_000 + 1_000 * 700_000  # 1 Jan keeps the old price
    assert c["hours_by_version"] == {"a": 1, "b": 1}


def test_hdd_normal_sums_to_the_annual_figure() -> None:
    assert hdd(4186, date(2026, 1, 1), date(2026, 12, 31)) == pytest.approx(4186, abs=15)
    season = hdd(4186, date(2025, 10, 15), date(2026, 4, 15))
    assert 3300 < season < 4186
    assert hdd(4186, date(2026, 7, 1), date(2026, 7, 31)) == 0


def test_grades_follow_the_zhejiang_thresholds() -> None:
    t = ZHEJIANG_THRESHOLDS_E3
    assert [grade(k, t) for k in (0, 600_000, 600_001, 800_000, 1_200_000, 2_000_000, 2_000_001)] == [
        1,
        1,
        2,
        2,
        3,
        4,
        5,
    ]
    assert grade(900_000, (500, 700, 900, 1000)) == 3  # configurable scheme


def kpi_chain() -> Chain:
    ch = Chain()
    ch.factors((2023,))
    ch.ok(ch.admin("owner", "site", site_payload(area=1_000)))
    main, heat = ch.device("88.123.45/101.2.1"), ch.device("88.123.45/106.2.1", kind="meter.heat")
    t0 = day_start_ms(date(2026, 1, 1), 480)
    ch.ok(
        ch.admin(
            "owner",
            "boundary",
            boundary_payload(
                1,
                t0,
                [
                    ("88.123.45/101.2.1", "incoming", "electricity", "energy.import"),
                    ("88.123.45/106.2.1", "heat-exchanger", "heat", "heat.energy"),
                ],
                main="88.123.45/101.2.1",
            ),
        )
    )
    ch.counter(main, t0, 24, [20_000] * 12 + [30_000] * 12)  # 600 kWh: 20 then 30 kW
    ch.counter(heat, t0, 24, 24_500, quantity="heat.energy")  # 588 kWh of heat = 600 x 0.98
    return ch


def test_kpis_by_hand() -> None:
    ch = kpi_chain()
    inv = compute(ch.store, ch.head(), SITE, "2026-01-01")
    k = compute_kpis({**inv, "digest": None})
    assert k["electricity_kwh"] == 600.0 and k["electricity_kwh_per_m2"] == 0.6
    assert k["heat_source"] == "heat meters"
    assert k["power"]["electric_avg_w_per_m2"] == 25.0  # 600 kWh / 24 h / 1,000 m2
    assert k["power"]["electric_peak_w_per_m2"] == 30.0
    assert k["power"]["heat_avg_w_per_m2"] == 24.5 and k["power"]["avg_vs_reference_percent"] == 49.0
    # heat 588 kWh = 2.1168 GJ; coal: / 0.78 x 89.2738 t/TJ = 0.242269 t; gas: / 0.85 x 55.539 = 0.138314 t
    assert k["baseline"]["heat_gj"] == 2.1
    assert k["avoided_tco2"]["vs_coal_location"] == pytest.approx(0.242269 - 0.38874, abs=0.001)
    # cost: 1 Jan 2026 local hours 0-11 at 20 kWh, 12-23 at 30 kWh, windy-season Mengxi bands
    jan = tf.load()[0].prices[1]
    want = sum(20 * jan[h] for h in range(12)) + sum(30 * jan[h] for h in range(12, 24))
    assert k["cost"]["electricity_yuan"] == round(want / 1e6, 2)
    assert k["intensity"]["kgco2_per_m2_location"] == pytest.approx(0.38874, abs=1e-3)  # 600 x 0.6479 / 1000


def test_rating_tx_sets_the_building_handle() -> None:
    ch = kpi_chain()
    inv = finish(compute(ch.store, ch.head(), SITE, "2026-01-01"))
    k = compute_kpis({**compute(ch.store, ch.head(), SITE, "2026-01-01"), "digest": inv["digest"]})
    r = compute_rating(inv, k, "gas")
    # location: 0.38874 kg/m2 / gas baseline 0.138314 kg/m2 = K 2.81 -> grade 5; market: 600 x 0.6096 -> 2.64 -> 5
    assert r["grade_location"] == 5 and 2.7 < r["k_location_e6"] / 1e6 < 2.9
    rc = compute_rating(inv, k, "1")  # fixed 1 kgCO2/m2 benchmark: K = 0.389 -> grade 1
    assert rc["grade_location"] == 1
    lie = payload_of({**r, "grade_location": 1})
    res = ch.block(ch.admin("equipment", "rating", payload_of(r)), ch.admin("owner", "rating", lie))
    assert [x.code for x in res] == [Code.NOT_AUTHORIZED, Code.INVALID_PAYLOAD]
    ch.ok(ch.admin("regulator", "rating", payload_of(r)))
    rec = load_record(ch.store, BUILDING)
    assert rec is not None
    val = next(sv.value for sv in rec.values if sv.value.type == "CEMP.RATING")
    obj = json.loads(bytes(val.data))
    assert obj["grade"] == "5" and obj["period"] == "2026-01-01" and obj["inventory"] == inv["digest"]
    assert obj["k_location"] == r["k_location"]


def test_cemp_cli_has_the_accounting_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from cemp.cli import main

    argv = ["baseline", "--area", "100000", "--load", "50", "--hours", "24", "--days", "183"]
    assert main([*argv, "--coal-efficiency", "0.78", "--gas-efficiency", "0.85", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"heat_gj", "coal_tco2", "gas_tco2"} <= set(out)
    assert main(["rating", "--site", "x", "--period", "2026"]) == 2  # recording needs a key
    assert "--key" in capsys.readouterr().err
