"""The charging LP on hand-solved cases: the valley is filled first, capacity and power limits bind, losses are
paid for, and the flat and habit profiles are priced as the same program with a fixed shape."""

from __future__ import annotations

import random
from datetime import date

import pytest

from accounting import tariffs as tf
from energy import plan as pl

LOSSLESS = {"boiler_efficiency": 1.0, "charge_efficiency": 1.0, "discharge_efficiency": 1.0}
PRICES = [0.2, 0.2, 0.5, 0.5]
DEMAND = [0.0, 0.0, 10.0, 10.0]


def _power(r: dict) -> list[float]:
    return [h["power_kw"] for h in r["plan"]["hours"]]


def test_capacity_binds() -> None:
    # valley can hold only 12: 12 charged at 0.2, the other 8 bought at 0.5 -> 2.4 + 4.0 = 6.4
    tank = pl.Tank(capacity_kwh=12, boiler_kw=15, standing_loss_per_h=0.0, **LOSSLESS)
    r = pl.plan(PRICES, DEMAND, tank)
    p = _power(r)
    assert r["plan"]["cost_yuan"] == pytest.approx(6.4, abs=1e-6)
    assert p[0] + p[1] == pytest.approx(12.0, abs=1e-6)
    assert p[2] + p[3] == pytest.approx(8.0, abs=1e-6)
    assert max(h["stored_kwh_end"] for h in r["plan"]["hours"]) == pytest.approx(12.0, abs=1e-6)
    assert r["plan"]["hours"][-1]["stored_kwh_end"] == pytest.approx(0.0, abs=1e-6)


def test_power_binds() -> None:
    # 5 kW in each valley hour charges 10; the other 10 must come at 0.5 -> 2.0 + 5.0 = 7.0
    tank = pl.Tank(capacity_kwh=100, boiler_kw=5, standing_loss_per_h=0.0, **LOSSLESS)
    r = pl.plan(PRICES, DEMAND, tank)
    assert _power(r) == pytest.approx([5.0, 5.0, 5.0, 5.0], abs=1e-6)
    assert r["plan"]["cost_yuan"] == pytest.approx(7.0, abs=1e-6)
    assert r["plan"]["co2_kg"] == pytest.approx(20 * pl.DEFAULT_GRID_KG_PER_KWH, abs=1e-3)


def test_infeasible_demand_is_reported() -> None:
    tank = pl.Tank(capacity_kwh=100, boiler_kw=4, standing_loss_per_h=0.0, **LOSSLESS)
    with pytest.raises(pl.Infeasible, match="cannot be met"):
        pl.plan(PRICES, DEMAND, tank)


def test_losses_are_paid_for() -> None:
    # 10 % standing loss per hour: 10 kWh from the tank in hour 1 needs 10 / 0.9 charged in hour 0 at 0.2
    # (2.222) rather than 10 bought at 0.5 (5.0); with a boiler efficiency of 0.8 the electricity is 1/0.8 more
    tank = pl.Tank(
        capacity_kwh=100,
        boiler_kw=100,
        standing_loss_per_h=0.1,
        boiler_efficiency=0.8,
        charge_efficiency=1.0,
        discharge_efficiency=1.0,
    )
    r = pl.plan([0.2, 0.5], [0.0, 10.0], tank)
    assert r["plan"]["electricity_kwh"] == pytest.approx(10 / 0.9 / 0.8, abs=1e-3)
    assert r["plan"]["cost_yuan"] == pytest.approx(10 / 0.9 / 0.8 * 0.2, abs=1e-3)
    # when storing costs more than the price gap, the boiler follows the load: 0.45 vs 0.2/0.9 = 0.222
    r2 = pl.plan([0.45, 0.2], [0.0, 10.0], tank)
    assert _power(r2) == pytest.approx([0.0, 12.5], abs=1e-6)


def test_flat_and_habit_profiles() -> None:
    tank = pl.Tank(capacity_kwh=100, boiler_kw=15, standing_loss_per_h=0.0, **LOSSLESS)
    r = pl.plan(PRICES, DEMAND, tank, habit=[1, 1, 2, 2])
    # flat: 5 kW round the clock = 5 * (0.2 + 0.2 + 0.5 + 0.5) = 7.0
    assert r["compare"]["flat"]["cost_yuan"] == pytest.approx(7.0, abs=1e-6)
    # habit 1:1:2:2 scaled to 20 kWh: 10/3, 10/3, 20/3, 20/3 -> 4/3 + 20/3 = 8.0
    assert r["compare"]["habit"]["cost_yuan"] == pytest.approx(8.0, abs=1e-6)
    assert r["plan"]["cost_yuan"] == pytest.approx(4.0, abs=1e-6)  # everything charged at 0.2
    assert r["compare"]["habit"]["saving_yuan"] == pytest.approx(4.0, abs=1e-6)
    # a 4 kWh tank cannot buffer a flat boiler (it would hold 10 after the valley): reported, not priced
    small = pl.Tank(capacity_kwh=4, boiler_kw=15, standing_loss_per_h=0.0, **LOSSLESS)
    r3 = pl.plan(PRICES, DEMAND, small)
    assert "infeasible" in r3["compare"]["flat"]
    assert r3["plan"]["cost_yuan"] == pytest.approx(4 * 0.2 + 16 * 0.5, abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prices": [], "demand": []}, "1 to 168 hours"),
        ({"prices": [0.2], "demand": [1.0, 2.0]}, "1 prices but 2"),
        ({"prices": [float("nan")], "demand": [1.0]}, "every price"),
        ({"prices": [0.2], "demand": [-1.0]}, "every demand"),
        ({"prices": [0.2], "demand": [1.0], "habit": [0.0]}, "habit"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pl.plan(tank=pl.Tank(capacity_kwh=10, boiler_kw=10), **kwargs)
    with pytest.raises(ValueError, match="capacity"):
        pl.plan([0.2], [1.0], pl.Tank(capacity_kwh=10, boiler_kw=10, initial_kwh=11))


def test_mengxi_day_fills_both_valleys() -> None:
    # the tariffs_cn.md worked example: 60 MWh_th/day flat (2.5 MW_th), 20 MWh_th tank, 7 MW_e boiler
    prices = pl.day_prices(tf.load(), date(2026, 1, 15))
    assert prices[0] == pytest.approx(0.3281 * 0.48 + 0.1279, abs=1e-6)  # valley 0.285
    assert prices[7] == pytest.approx(0.3281 * 1.68 + 0.1279, abs=1e-6)  # peak 0.679
    r = pl.plan(prices, [2500.0] * 24, pl.Tank(capacity_kwh=20_000, boiler_kw=7_000))
    p = _power(r)
    valley = [0, 1, 2, 3, 11, 12, 13, 14, 15]
    peak = [6, 7, 18, 19, 20, 21]
    assert sum(p[h] for h in peak) == pytest.approx(0.0, abs=1e-3)  # no peak-hour electricity
    assert sum(p[h] for h in valley) > 0.8 * sum(p)
    flat = r["compare"]["flat"]
    assert flat["cost_yuan"] > r["plan"]["cost_yuan"]
    # flat charging costs at least the time-weighted mean price x the day's electricity without losses
    assert flat["cost_yuan"] >= 60_000 / 0.98 * sum(prices) / 24 - 1


def test_steady_state_day_starts_with_what_it_ends_with() -> None:
    # demand at 00:00 and 03:00, valley in between: from an empty tank hour 0 is bought at 0.5 (5.0 + 2.0 = 7.0);
    # on a steady-state day the tank starts with 10 charged yesterday in the valley and ends with 10 again (4.0)
    prices, demand = [0.5, 0.2, 0.2, 0.5], [10.0, 0.0, 0.0, 10.0]
    empty = pl.Tank(capacity_kwh=100, boiler_kw=100, standing_loss_per_h=0.0, **LOSSLESS)
    assert pl.plan(prices, demand, empty)["plan"]["cost_yuan"] == pytest.approx(7.0, abs=1e-6)
    steady = pl.Tank(capacity_kwh=100, boiler_kw=100, standing_loss_per_h=0.0, initial_kwh=None, **LOSSLESS)
    r = pl.plan(prices, demand, steady)
    assert r["plan"]["cost_yuan"] == pytest.approx(4.0, abs=1e-6)
    hours = r["plan"]["hours"]
    assert hours[-1]["stored_kwh_end"] == pytest.approx(10.0, abs=1e-6)
    assert r["plan"]["initial_kwh"] == pytest.approx(10.0, abs=1e-6)


def _brute_force(prices: list[float], demand: list[int], p_max: int, cap: int) -> float | None:
    """Cheapest integer boiler schedule of a lossless tank starting empty, by enumeration (a min-cost flow, so an
    integer optimum exists): the boiler heat serves the hour's demand first and the rest goes into the tank."""
    import itertools

    best = None
    for ps in itertools.product(range(p_max + 1), repeat=len(prices)):
        s, ok = 0, True
        for p, d in zip(ps, demand, strict=True):
            s += p - d
            if not 0 <= s <= cap:
                ok = False
                break
        if ok:
            cost = sum(p * c for p, c in zip(ps, prices, strict=True))
            best = cost if best is None else min(best, cost)
    return best


def test_lp_matches_brute_force_on_random_small_days() -> None:
    rng = random.Random(42)
    checked = infeasible = 0
    for _ in range(60):
        n = rng.choice([3, 4])
        prices = [rng.choice([0.2, 0.3, 0.5, 0.7]) for _ in range(n)]
        demand = [rng.randint(0, 5) for _ in range(n)]
        p_max, cap = rng.randint(2, 6), rng.randint(0, 8)
        expect = _brute_force(prices, demand, p_max, cap)
        tank = pl.Tank(capacity_kwh=cap, boiler_kw=p_max, standing_loss_per_h=0.0, **LOSSLESS)
        if expect is None:
            with pytest.raises(pl.Infeasible):
                pl.plan(prices, [float(d) for d in demand], tank)
            infeasible += 1
        else:
            got = pl.plan(prices, [float(d) for d in demand], tank)["plan"]["cost_yuan"]
            assert got == pytest.approx(expect, abs=1e-6), (prices, demand, p_max, cap)
            checked += 1
    assert checked >= 30 and infeasible >= 3  # both outcomes exercised
