"""Forecasts on a simulated season with a known truth: the measured part is exactly the history, cost prices every
hour by its own tariff, the rest-of-day prediction with a perfect weather forecast lands within its band, and the
horizons' hour accounting adds up."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

from accounting import tariffs as tf
from energy import forecast as fc
from energy import weather
from tests.energy.test_detect import simulate

NOW = datetime(2026, 1, 15, 10)


@pytest.fixture(scope="module")
def season() -> tuple[list[datetime], list[float], np.ndarray]:
    s = simulate(21)
    return s.times, s.temps, s.kwh


def test_horizons_and_season_bounds() -> None:
    hz = {h.name: h for h in fc.horizons(NOW)}
    assert hz["day"].start == datetime(2026, 1, 15) and hz["day"].end == datetime(2026, 1, 16)
    assert hz["month"].start == datetime(2026, 1, 1) and hz["month"].end == datetime(2026, 2, 1)
    assert hz["season"].start == datetime(2025, 10, 15) and hz["season"].end == datetime(2026, 4, 16)
    assert fc.season_of(datetime(2025, 12, 31, 23)).start == datetime(2025, 10, 15)
    assert fc.season_of(datetime(2026, 6, 1)).start == datetime(2026, 10, 15)  # off season: the next one
    dec = {h.name: h for h in fc.horizons(datetime(2025, 12, 3, 5))}
    assert dec["month"].end == datetime(2026, 1, 1)


def test_forecast_with_known_truth(season: tuple[list[datetime], list[float], np.ndarray]) -> None:
    times, temps, kwh = season
    history = [(t, c, float(e)) for t, c, e in zip(times, temps, kwh, strict=True) if t < NOW]
    truth = {t: (c, float(e)) for t, c, e in zip(times, temps, kwh, strict=True)}
    # a perfect forecast file for the next 7 days: the true daily means
    daily = weather.daily_means((t, c) for t, c in zip(times, temps, strict=True))
    fdaily = {d: m for d, m in daily.items() if NOW.date() <= d < NOW.date() + timedelta(days=7)}
    versions = tf.load()
    out = fc.forecast(history, NOW, versions, fdaily)
    day = out["horizons"]["day"]
    assert day["hours_measured"] == 10 and day["hours_predicted"] == 14 and day["hours_filled"] == 0
    assert day["weather"] == {"forecast_hours": 14, "climate_normal_hours": 0}
    measured = sum(truth[datetime(2026, 1, 15, h)][1] for h in range(10))
    assert day["measured_kwh"] == pytest.approx(measured, abs=0.01)
    actual_rest = sum(truth[datetime(2026, 1, 15, h)][1] for h in range(10, 24))
    assert abs(day["predicted_kwh"] - actual_rest) <= day["predicted_band_95_kwh"], (day, actual_rest)
    assert abs(day["predicted_kwh"] - actual_rest) / actual_rest < 0.1
    # cost: every hour at its own price (the measured part checked independently)
    v = tf.version_on(versions, date(2026, 1, 15))
    assert v is not None
    row = [p / 1e6 for p in v.prices[1]]
    cost_measured = sum(truth[datetime(2026, 1, 15, h)][1] * row[h] for h in range(10))
    assert day["cost_yuan"] - day["predicted_cost_yuan"] == pytest.approx(cost_measured, abs=0.05)
    assert day["co2_kg"] == pytest.approx(day["energy_kwh"] * fc.DEFAULT_GRID_KG_PER_KWH, rel=1e-6)
    month = out["horizons"]["month"]
    assert month["hours_measured"] == 14 * 24 + 10 and month["hours_predicted"] == 31 * 24 - (14 * 24 + 10)
    assert month["weather"]["forecast_hours"] == 14 + 6 * 24
    season_h = out["horizons"]["season"]
    assert season_h["hours_measured"] + season_h["hours_predicted"] == 183 * 24
    assert season_h["energy_kwh"] > month["energy_kwh"] > day["energy_kwh"]
    err = out["model_error"]
    assert err["hourly_held_out"]["p"] == 0 and err["daily_held_out"]["grain"] == "day"
    assert err["hourly_held_out"]["cv_rmse_pct"] < 15


def test_missing_history_hours_are_filled_and_counted(
    season: tuple[list[datetime], list[float], np.ndarray],
) -> None:
    times, temps, kwh = season
    history = [
        (t, c, float(e))
        for t, c, e in zip(times, temps, kwh, strict=True)
        if t < NOW and not (datetime(2026, 1, 15, 2) <= t < datetime(2026, 1, 15, 5))
    ]
    day = fc.forecast(history, NOW, tf.load())["horizons"]["day"]
    assert day["hours_filled"] == 3 and day["hours_measured"] == 7
    assert day["weather"]["climate_normal_hours"] == 14


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="4 weeks"):
        fc.forecast([(datetime(2026, 1, 1, h), 0.0, 1.0) for h in range(24)], NOW, tf.load())
    with pytest.raises(ValueError, match="grid_kg_per_kwh"):
        fc.forecast([], NOW, tf.load(), grid_kg_per_kwh=float("nan"))
