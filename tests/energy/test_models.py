"""Change-point and hourly models on data with a known truth: recovery of the balance point and slope, and the
held-out selection rule."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from energy import models, weather


def test_3ph_hand_case_exact() -> None:
    # E = 10 + 2 * max(10 - T, 0): at T = 0, 5, 10, 15, 20 -> 30, 20, 10, 10, 10 (each twice)
    t = [0.0, 5.0, 10.0, 15.0, 20.0] * 2
    e = [30.0, 20.0, 10.0, 10.0, 10.0] * 2
    m = models.fit_3ph(t, e)
    assert m.base == pytest.approx(10.0, abs=1e-9)
    assert m.slope == pytest.approx(2.0, abs=1e-9)
    # only a balance point of 10 fits exactly: below it T=5 would not be heating, above it T=15 would be
    assert m.balance_c == pytest.approx(10.0, abs=0.05)
    assert not m.at_edge
    assert m.predict([-5.0, 12.0]).tolist() == pytest.approx([40.0, 10.0], abs=0.2)


def test_3ph_recovers_truth_with_noise() -> None:
    rng = random.Random(11)
    t = [rng.uniform(-25, 20) for _ in range(2000)]
    e = [300 + 40 * max(14.0 - x, 0) + rng.gauss(0, 60) for x in t]
    m = models.fit_3ph(t, e)
    assert m.balance_c == pytest.approx(14.0, abs=0.5)
    assert m.slope == pytest.approx(40.0, rel=0.05)
    assert m.base == pytest.approx(300.0, rel=0.1)


def test_3ph_no_change_point_visible_and_errors() -> None:
    t = np.linspace(-20, 0, 50)
    m = models.fit_3ph(t, 100 - 5 * t)  # all heating: a straight line
    assert m.at_edge
    assert m.predict([-10.0]).tolist() == pytest.approx([150.0])
    with pytest.raises(ValueError, match="does not rise"):
        models.fit_3ph(t, 100 + 5 * t)
    with pytest.raises(ValueError, match="too few"):
        models.fit_3ph([1.0, 2.0], [1.0, 2.0])


def test_band_of_prices_mengxi_windy() -> None:
    f, n = 328100, 127900
    ratios = (
        [480] * 4 + [1000] * 2 + [1680] * 2 + [1000] * 3 + [480] * 5 + [1000] * 2 + [1680] * 4 + [1000] * 2
    )
    bands = models.band_of_prices([f * r // 1000 + n for r in ratios])
    assert bands.count("valley") == 9 and bands.count("peak") == 6 and bands.count("flat") == 9
    assert bands[0] == "valley" and bands[7] == "peak" and bands[4] == "flat"


def _season(seed: int) -> tuple[list[datetime], list[float], list[float], list[str]]:
    """A season of hourly use with a known truth: occupancy profile, weekend dip, and valley-heavy heating."""
    rng = random.Random(seed)
    clim = weather.hohhot_climate(date(2025, 10, 15), 182, seed)
    f, n = 328100, 127900
    ratios = (
        [480] * 4 + [1000] * 2 + [1680] * 2 + [1000] * 3 + [480] * 5 + [1000] * 2 + [1680] * 4 + [1000] * 2
    )
    day_bands = models.band_of_prices([f * r // 1000 + n for r in ratios])
    slope = {"valley": 150.0, "flat": 60.0, "peak": 30.0}
    times, temps, energy, bands = [], [], [], []
    for t, c in clim:
        b = day_bands[t.hour]
        level = 800 + (300 if 8 <= t.hour <= 20 else 0) - (200 if t.weekday() >= 5 else 0)
        times.append(t)
        temps.append(c)
        bands.append(b)
        energy.append(level + slope[b] * max(8.0 - c, 0) + rng.gauss(0, 150))
    return times, temps, energy, bands


def test_hourly_model_recovers_truth_and_beats_change_point() -> None:
    times, temps, energy, bands = _season(3)
    sel = models.select(times, temps, energy, bands)
    hm = sel["hourly"]
    assert hm["balance_c"] == pytest.approx(8.0, abs=0.5)
    assert hm["slopes"]["valley"] == pytest.approx(150.0, rel=0.05)
    assert hm["slopes"]["peak"] == pytest.approx(30.0, rel=0.15)
    assert not hm["no_change_point_visible"]
    cp_cv = sel["change_point"]["held_out"]["cv_rmse_pct"]
    hm_cv = hm["held_out"]["cv_rmse_pct"]
    assert hm_cv < cp_cv
    # the truth's slopes follow the tariff periods, which are hours of the day: both hourly variants fit it
    assert sel["chosen"] in ("hourly", "hourly_by_hour", "hourly_day_ahead")
    best = min(sel[k]["held_out"]["cv_rmse_pct"] for k in models.VARIANTS)
    assert sel[sel["chosen"]]["held_out"]["cv_rmse_pct"] == best
    assert sel["hourly_by_hour"]["fit"]["p"] == 48 + 24 + 1
    assert hm_cv <= 15.0 and abs(hm["held_out"]["nmbe_pct"]) <= 10.0
    assert hm["held_out"]["p"] == 0 and hm["fit"]["p"] == 52


def test_hourly_model_says_when_no_change_point_is_visible() -> None:
    times, temps, energy, bands = _season(3)
    # every hour heats at a balance point of 20 °C, above the season's warmest hour
    rng = random.Random(1)
    energy = [500 + 40 * max(20.0 - c, 0) + rng.gauss(0, 50) for c in temps]
    hm = models.fit_hourly(times[:2000], temps[:2000], energy[:2000], bands[:2000])
    assert hm.at_edge
    assert sum(c > hm.balance_c for c in temps[:2000]) < 20  # fewer than 1 % of the hours above it


def test_change_point_chosen_when_the_hourly_terms_do_not_help() -> None:
    # no time-of-day structure at all, few weeks: the 52-parameter model does not beat the 3-parameter one
    rng = random.Random(5)
    t0 = datetime(2026, 1, 1)
    times = [t0 + timedelta(hours=h) for h in range(24 * 28)]
    temps = [rng.uniform(-20, 15) for _ in times]
    energy = [500 + 20 * max(12 - c, 0) + rng.gauss(0, 120) for c in temps]
    bands = ["valley" if tm.hour < 4 else "flat" if tm.hour < 18 else "peak" for tm in times]
    sel = models.select(times, temps, energy, bands)
    assert sel["chosen"] == "change_point"
    for k in ("hourly", "hourly_by_hour", "hourly_day_ahead"):
        assert sel["change_point"]["held_out"]["cv_rmse_pct"] <= sel[k]["held_out"]["cv_rmse_pct"]


def test_holdout_mask_every_fourth_week() -> None:
    t0 = datetime(2026, 1, 1)
    times = [t0 + timedelta(days=d) for d in range(56)]
    mask = models.holdout_mask(times)
    assert mask.sum() == 14
    assert not mask[20] and mask[21] and mask[27] and not mask[28] and mask[49]


def test_hour_of_day_slopes_win_when_the_plant_charges_off_the_tariff_periods() -> None:
    # a plant that charges its tank 23:00-07:00 (not the Mengxi valley 00-04, 11-16): the temperature response sits
    # in hours that cut across tariff periods, so only the hour-of-day slopes follow it
    times, temps, _, bands = _season(4)
    rng = random.Random(9)
    energy = [
        600 + (150 if (t.hour >= 23 or t.hour < 7) else 20) * max(8.0 - c, 0) + rng.gauss(0, 100)
        for t, c in zip(times, temps, strict=True)
    ]
    sel = models.select(times, temps, energy, bands)
    assert sel["chosen"] == "hourly_by_hour"
    assert sel["hourly_by_hour"]["slopes"]["02"] == pytest.approx(150, rel=0.05)
    assert sel["hourly_by_hour"]["slopes"]["14"] == pytest.approx(20, rel=0.2)
    assert sel["hourly_by_hour"]["held_out"]["cv_rmse_pct"] < sel["hourly"]["held_out"]["cv_rmse_pct"]


@pytest.mark.parametrize("by", ["tariff", "hour"])
def test_vectorised_fit_equals_least_squares_on_the_full_design(by: str) -> None:
    """The grid search solves every candidate balance point at once from per-cell sums; at each τ that must be the
    same OLS as numpy's lstsq on the full design matrix (48 level dummies + one hinge column per slope group)."""
    times, temps, energy, _ = _season(6)
    rng = random.Random(2)
    # tariff periods that change within an hour-of-week group (as the Mengxi table does between months)
    bands = [models.BANDS[rng.randrange(3)] if t.month in (12, 1) else "flat" for t in times]
    cal = models.Calendar.of(times, bands)
    t, e = np.asarray(temps), np.asarray(energy)
    taus = np.array([-5.0, 3.3, 8.0])
    sse, coef = models._fit_taus(cal, by, t, e, taus)
    names = models.slope_names(by)
    keys = bands if by == "tariff" else [f"{tm.hour:02d}" for tm in times]
    for i, tau in enumerate(taus):
        x = np.zeros((len(times), 48 + len(names)))
        x[np.arange(len(times)), cal.group] = 1.0
        for j, name in enumerate(names):
            x[:, 48 + j] = [max(tau - c, 0.0) if k == name else 0.0 for k, c in zip(keys, temps, strict=True)]
        ref, *_ = np.linalg.lstsq(x, e, rcond=None)
        assert coef[i] == pytest.approx(ref, rel=1e-7, abs=1e-6)
        assert sse[i] == pytest.approx(float(((e - x @ ref) ** 2).sum()), rel=1e-8)


def test_vectorised_change_point_equals_direct_sums() -> None:
    rng = random.Random(4)
    t = np.array([rng.uniform(-25, 20) for _ in range(500)])
    e = np.array([300 + 40 * max(14.0 - x, 0) + rng.gauss(0, 60) for x in t])
    taus = np.array([-30.0, -10.0, 0.0, 14.0, 25.0])
    b0, b1, sse = models._ols_hinge(t, e, taus)
    for i, tau in enumerate(taus):
        x = np.maximum(tau - t, 0.0)
        if x.std() == 0:
            assert b1[i] == 0.0
            continue
        ref = np.polyfit(x, e, 1)
        assert b1[i] == pytest.approx(ref[0], rel=1e-9) and b0[i] == pytest.approx(ref[1], rel=1e-9)
        assert sse[i] == pytest.approx(float(((e - np.polyval(ref, x)) ** 2).sum()), rel=1e-8)


def test_day_ahead_temperatures_hand_case() -> None:
    t0 = datetime(2026, 1, 1)
    times = [t0 + timedelta(hours=h) for h in range(72)]
    temps = [float(h // 24) * 10 for h in range(72)]  # day 0: 0 °C, day 1: 10 °C, day 2: 20 °C all day
    cal = models.Calendar.of(times, ["flat"] * 72)
    eff = cal.day_ahead(temps)
    assert eff[3] == 0.0  # 03:00 on day 0 charges for day 0 (its 07-23 mean)
    assert eff[23] == 10.0  # 23:00 on day 0 charges for day 1
    assert eff[24 + 5] == 10.0 and eff[24 + 12] == 10.0  # day 1's night and noon
    assert eff[71] == 20.0  # 23:00 on the last day: its coming day is not in the series, so its own
    sub = cal.take(np.arange(72) < 30)
    assert sub.day_ahead(temps[:30])[23] == 0.0  # day 1 has fewer than 12 daytime hours in the slice


def test_day_ahead_variant_wins_for_a_plant_charging_for_tomorrow() -> None:
    """A tank charged 23:00-07:00 in proportion to the coming day's heat: the day-ahead variant must win on
    held-out weeks and predict with the coming day's temperatures."""
    times, temps, _, bands = _season(7)
    rng = random.Random(3)
    cal = models.Calendar.of(times, bands)
    ahead = cal.day_ahead(temps)
    energy = [
        300
        + (200 * max(10.0 - a, 0) if (t.hour >= 23 or t.hour < 7) else 10 * max(10.0 - c, 0))
        + rng.gauss(0, 60)
        for t, c, a in zip(times, temps, ahead, strict=True)
    ]
    sel = models.select(times, temps, energy, bands)
    assert sel["chosen"] == "hourly_day_ahead", {
        k: sel[k]["held_out"]["cv_rmse_pct"] for k in models.VARIANTS
    }
    assert sel["hourly_day_ahead"]["temperature"] == "day_ahead"
    assert sel["hourly_day_ahead"]["slopes"]["02"] == pytest.approx(200, rel=0.05)
    assert (
        sel["hourly_day_ahead"]["held_out"]["cv_rmse_pct"]
        < 0.7 * sel["hourly_by_hour"]["held_out"]["cv_rmse_pct"]
    )
    m = sel["_models"]["hourly_day_ahead"]
    full = models.predict(m, times, temps, bands)
    assert full[23] == pytest.approx(m.predict_on(cal, ahead, effective=True)[23])
