"""The Hohhot load model: deterministic, seasonal, storage charging at night, realistic intensity."""

from __future__ import annotations

from datetime import timedelta

from collector.loadmodel import (
    CELL_MS,
    SUBSYSTEMS,
    TEMPERATURES,
    EnergyCounter,
    HeatingSiteModel,
    ManualClock,
    ModelClock,
    local_ms,
    local_time,
)

MIN = 60_000
HOUR = 3_600_000
MODEL = HeatingSiteModel(seed=11)
SEASON = MODEL.season_bounds(2024)


def test_deterministic_per_seed() -> None:
    t = local_ms(2025, 1, 20, 3, 17)
    assert HeatingSiteModel(seed=11).state(t) == MODEL.state(t)
    assert HeatingSiteModel(seed=12).state(t).outdoor_mdegc != MODEL.state(t).outdoor_mdegc
    s = MODEL.state(t)
    assert set(s.power_w) == set(SUBSYSTEMS) and set(s.temps_mdegc) == set(TEMPERATURES)
    assert all(isinstance(v, int) for v in [*s.power_w.values(), *s.temps_mdegc.values(), s.outdoor_mdegc])


def test_season_boundaries() -> None:
    start, end = SEASON
    assert start == local_ms(2024, 10, 15) and end == local_ms(2025, 4, 16)
    for t, on in [(start - MIN, False), (start, True), (end - MIN, True), (end, False)]:
        s = MODEL.state(t)
        assert s.in_season is on, local_time(t)
        heating = s.power_w["core_unit"] + s.power_w["pipe_heater"] + s.power_w["storage_tank"]
        assert (heating > 0) is on
        assert s.power_w["controls"] > 0  # the control cabinet never sleeps
    summer = MODEL.state(local_ms(2025, 7, 1, 12))
    assert summer.total_power_w < 2_000 and summer.heat_demand_w == 0


def test_storage_tank_charges_only_in_the_valley_window() -> None:
    start, end = SEASON
    charging_hours: set[int] = set()
    for t in range(start, end, 30 * MIN):
        s = MODEL.state(t)
        if s.power_w["storage_tank"] > 0:
            charging_hours.add(local_time(t).hour)
            assert s.valley
    assert charging_hours == {23, 0, 1, 2, 3, 4, 5, 6}
    night = MODEL.state(local_ms(2025, 1, 16, 2))
    day = MODEL.state(local_ms(2025, 1, 16, 14))
    assert night.power_w["storage_tank"] > 1_000_000 and day.power_w["storage_tank"] == 0
    # stored heat is delivered by day: the heaters carry less than the building needs
    assert day.power_w["core_unit"] + day.power_w["pipe_heater"] < day.heat_demand_w * 0.9
    # no charging before the first heating day nor after the last
    assert MODEL.state(local_ms(2024, 10, 15, 3)).power_w["storage_tank"] == 0
    assert MODEL.state(local_ms(2025, 4, 15, 23, 30)).power_w["storage_tank"] == 0
    assert MODEL.tank_plan_wh(local_time(local_ms(2025, 1, 16)).date()) <= MODEL.p.tank_capacity_wh


def test_intensity_and_temperatures_are_plausible_for_hohhot() -> None:
    start, end = SEASON
    n = heat = elec = 0
    coldest = 99_000
    monthly: dict[int, list[int]] = {}
    for t in range(start, end, HOUR):
        s = MODEL.state(t)
        n += 1
        heat += s.heat_demand_w
        elec += s.total_power_w
        coldest = min(coldest, s.outdoor_mdegc)
        monthly.setdefault(local_time(t).month, []).append(s.outdoor_mdegc)
        assert s.heat_demand_w <= 50 * 100_000  # never above the design index
        ps, pr, ss, sr = (s.temps_mdegc[k] for k in TEMPERATURES)
        assert pr < ps and sr < ss and ss < ps
    area = MODEL.p.area_m2
    assert 10 < heat / n / area < 25  # W/m² of heat, well under half of the 50 W/m² design index
    assert 10 < elec / n / area < 25
    assert coldest <= -15_000  # January nights reach the design temperature
    mean = {m: sum(v) / len(v) for m, v in monthly.items()}
    assert mean[1] < mean[11] < mean[10] and mean[1] < mean[3] < mean[4]
    assert -14_000 < mean[1] < -8_000


def test_energy_counter_is_exact_and_independent_of_the_polling_pattern() -> None:
    t0 = local_ms(2025, 1, 10, 21, 13) + 456
    a = EnergyCounter(MODEL, "storage_tank", t0, 1_000_000)
    b = EnergyCounter(MODEL, "storage_tank", t0, 1_000_000)
    t1 = t0 + 11 * HOUR + 1234
    steps = [a.at(t) for t in range(t0, t1, 7 * MIN + 333)]
    assert steps == sorted(steps)
    assert a.at(t1) == b.at(t1)
    wms = sum(
        MODEL.state(c * CELL_MS).power_w["storage_tank"] * (min((c + 1) * CELL_MS, t1) - max(c * CELL_MS, t0))
        for c in range(t0 // CELL_MS, (t1 - 1) // CELL_MS + 1)
    )
    assert b.at(t1) == 1_000_000 + wms // 3_600_000
    assert b.at(t0 + HOUR) == a.at(t0 + HOUR)  # stepping back recomputes
    assert b.at(t0 - HOUR) == 1_000_000


def test_model_clock_speed() -> None:
    wall = [1_000_000]
    clock = ModelClock(start_ms=5_000, speed=3600, wall=lambda: wall[0])
    assert clock.now_ms() == 5_000
    wall[0] += 1_000
    assert clock.now_ms() == 5_000 + 3_600_000
    m = ManualClock(7)
    assert m.advance(int(timedelta(minutes=2).total_seconds() * 1000)) == 120_007
