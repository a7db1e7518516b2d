"""Forecasts of energy, cost and emissions for the rest of the day, the month and the heating season, from the
expected-consumption model and the weather so far (and a forecast weather file when one is given).

For each horizon ``[start, end)`` that contains ``now`` (local time):
- the hours before ``now`` count as measured (an hour missing from the history is filled with the model's value
  at its measured temperature, and counted as filled);
- the hours from ``now`` on are predicted by the model selected on held-out weeks (``models.select``) at the
  forecast temperature of that hour: the forecast file's daily mean with the normal diurnal swing when the file
  covers the day, else the climate normal of that hour (``weather.normal_hourly_c``): which one is named per
  horizon;
- cost prices every hour by the tariff version in force on its local date (``accounting.tariffs``); emissions are
  electricity × a location-based grid factor (kgCO₂/kWh, Inner Mongolia 2023 by default);
- the error is the model's on held-out weeks: hourly CV(RMSE) and NMBE, and the CV(RMSE) of held-out daily
  sums; the predicted part carries a 95 % band ``1.96 · cv_daily · (predicted per day) · sqrt(days)`` (days taken
  as independent) plus the held-out bias. Weather beyond the forecast file is climate normal: its own uncertainty
  is not in the band, and the output says so.

Pure functions: no clock (``now`` is given), no I/O; the heating season is Hohhot's statutory 15 Oct – 15 Apr.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from accounting import tariffs as tf
from energy import metrics, models, weather

SEASON_START = (10, 15)
SEASON_END = (4, 15)  # inclusive
DEFAULT_GRID_KG_PER_KWH = 0.6479  # Inner Mongolia 2023 (accounting/data/grid_factors_cn.csv), as energy.plan
MIN_HISTORY_HOURS = 24 * 28
MAX_HORIZON_HOURS = 24 * 200


@dataclass(frozen=True, slots=True)
class Horizon:
    name: str
    start: datetime
    end: datetime


def season_of(now: datetime) -> Horizon:
    """The heating season containing ``now`` (or the next one, outside the season)."""
    y = now.year if (now.month, now.day) >= SEASON_START else now.year - 1
    start = datetime(y, *SEASON_START)
    end = datetime(y + 1, *SEASON_END) + timedelta(days=1)
    if now >= end:
        start, end = datetime(y + 1, *SEASON_START), datetime(y + 2, *SEASON_END) + timedelta(days=1)
    return Horizon("season", start, end)


def horizons(now: datetime) -> list[Horizon]:
    day = datetime(now.year, now.month, now.day)
    month = datetime(now.year, now.month, 1)
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1)
    return [Horizon("day", day, day + timedelta(days=1)), Horizon("month", month, nxt), season_of(now)]


def _hour_temps(
    times: Sequence[datetime], forecast_daily: dict[date, float]
) -> tuple[list[float], list[str]]:
    temps, source = [], []
    for t in times:
        if t.date() in forecast_daily:
            temps.append(forecast_daily[t.date()] + weather.diurnal_swing_c(t.hour))
            source.append("forecast")
        else:
            temps.append(weather.normal_hourly_c(t))
            source.append("climate_normal")
    return temps, source


def tariff_hours(
    versions: list[tf.TariffVersion], times: Sequence[datetime]
) -> tuple[list[str], list[float]]:
    """Tariff period and price (yuan/kWh) of every local hour."""
    cache: dict[date, tuple[list[str], list[float]]] = {}
    bands, prices = [], []
    for t in times:
        d = t.date()
        if d not in cache:
            v = tf.version_on(versions, d)
            if v is None:
                raise ValueError(f"no tariff version is in force on {d}: its prices are unknown")
            row = v.prices[d.month]
            cache[d] = (models.band_of_prices(row), [p / 1e6 for p in row])
        bands.append(cache[d][0][t.hour])
        prices.append(cache[d][1][t.hour])
    return bands, prices


def daily_error(
    times: Sequence[datetime], measured: Sequence[float], predicted: Sequence[float]
) -> dict[str, Any] | None:
    """CV(RMSE) and NMBE of complete local days' sums (held-out days), or None with fewer than 3 such days."""
    days: dict[date, list[float]] = {}
    for t, y, p in zip(times, measured, predicted, strict=True):
        days.setdefault(t.date(), [0.0, 0.0, 0.0])
        acc = days[t.date()]
        acc[0] += y
        acc[1] += p
        acc[2] += 1
    full = [(y, p) for y, p, n in days.values() if n == 24]
    if len(full) < 3 or sum(y for y, _ in full) <= 0:
        return None
    return metrics.report([y for y, _ in full], [p for _, p in full], 0, grain="day")


def forecast(
    history: Sequence[tuple[datetime, float, float]],
    now: datetime,
    versions: list[tf.TariffVersion],
    forecast_daily: dict[date, float] | None = None,
    grid_kg_per_kwh: float = DEFAULT_GRID_KG_PER_KWH,
) -> dict[str, Any]:
    """Energy (kWh), cost (yuan) and emissions (kgCO₂) for the rest of the day, month and heating season.

    ``history``: (local hour start, °C, kWh) of the measured hours, at least 4 weeks (the model is fitted and
    scored on them); hours at or after ``now`` are ignored. ``forecast_daily``: daily mean °C by local date."""
    if not (math.isfinite(grid_kg_per_kwh) and 0 <= grid_kg_per_kwh <= 5):
        raise ValueError("grid_kg_per_kwh must be between 0 and 5")
    now = now.replace(minute=0, second=0, microsecond=0)
    hist = sorted((t, c, e) for t, c, e in history if t < now)
    if len(hist) < MIN_HISTORY_HOURS:
        raise ValueError(
            f"{len(hist)} measured hours before {now:%Y-%m-%d %H:%M}: at least {MIN_HISTORY_HOURS} (4 weeks) are "
            "needed to fit and score the model"
        )
    if len({t for t, _, _ in hist}) != len(hist):
        raise ValueError("each local hour may appear once in the history")
    h_times = [t for t, _, _ in hist]
    h_temps = [c for _, c, _ in hist]
    h_kwh = [e for _, _, e in hist]
    h_bands, _ = tariff_hours(versions, h_times)
    sel = models.select(h_times, h_temps, h_kwh, h_bands)
    fitted = sel.pop("_models")
    chosen = sel["chosen"]
    model = fitted[chosen]
    ho = models.holdout_mask(h_times)
    ho_times = [t for t, m in zip(h_times, ho, strict=True) if m]
    ho_pred = models.predict(
        model, ho_times, np.asarray(h_temps)[ho], [b for b, m in zip(h_bands, ho, strict=True) if m]
    )
    day_err = daily_error(ho_times, np.asarray(h_kwh)[ho].tolist(), ho_pred.tolist())
    measured = {t: (c, e) for t, c, e in hist}
    fc = forecast_daily or {}
    out: dict[str, Any] = {
        "now": now.isoformat(timespec="minutes"),
        "model": chosen,
        "model_error": {
            "hourly_held_out": sel[chosen]["held_out"],
            "daily_held_out": day_err,
            "split": sel["split"],
        },
        "models_held_out_cv_rmse_pct": {
            k: sel[k].get("held_out", {}).get("cv_rmse_pct") for k in models.VARIANTS
        },
        "grid_kg_per_kwh": grid_kg_per_kwh,
        "emissions_method": "location-based: electricity x grid factor",
        "horizons": {},
    }
    cv_day = (day_err or sel[chosen]["held_out"])["cv_rmse_pct"] / 100
    bias = sel[chosen]["held_out"]["nmbe_pct"] / 100
    for hz in horizons(now):
        n = int((hz.end - hz.start) / timedelta(hours=1))
        if n > MAX_HORIZON_HOURS:
            raise ValueError(f"horizon {hz.name} spans {n} hours")
        times = [hz.start + timedelta(hours=i) for i in range(n)]
        bands, prices = tariff_hours(versions, times)
        past = [i for i, t in enumerate(times) if t < now]
        future = [i for i, t in enumerate(times) if t >= now]
        kwh = np.zeros(n)
        filled = 0
        missing = [i for i in past if times[i] not in measured]
        for i in past:
            if times[i] in measured:
                kwh[i] = measured[times[i]][1]
        # hours to predict: the future, and past hours without a measurement (at the normal temperature: the
        # history has no temperature for them either)
        todo = [*missing, *future]
        sources: list[str] = []
        if todo:
            t_todo = [times[i] for i in todo]
            temps, sources = _hour_temps(t_todo, fc)
            pred = models.predict(model, t_todo, temps, [bands[i] for i in todo])
            kwh[todo] = np.maximum(pred, 0.0)
            filled = len(missing)
        sources = sources[len(missing) :]
        fut_kwh = float(kwh[future].sum()) if future else 0.0
        days_left = len(future) / 24
        band95 = 1.96 * cv_day * (fut_kwh / days_left if days_left else 0.0) * math.sqrt(days_left)
        cost = float(np.dot(kwh, prices))
        out["horizons"][hz.name] = {
            "start": hz.start.isoformat(timespec="minutes"),
            "end": hz.end.isoformat(timespec="minutes"),
            "hours_measured": len(past) - filled,
            "hours_filled": filled,
            "hours_predicted": len(future),
            "weather": {
                "forecast_hours": sources.count("forecast"),
                "climate_normal_hours": sources.count("climate_normal"),
            },
            "energy_kwh": round(float(kwh.sum()), 3),
            "measured_kwh": round(float(kwh[past].sum()) if past else 0.0, 3),
            "predicted_kwh": round(fut_kwh, 3),
            "predicted_band_95_kwh": round(band95 + abs(bias) * fut_kwh, 3),
            "cost_yuan": round(cost, 2),
            "predicted_cost_yuan": round(
                float(np.dot(kwh[future], np.asarray(prices)[future])) if future else 0.0, 2
            ),
            "co2_kg": round(float(kwh.sum()) * grid_kg_per_kwh, 3),
            "predicted_co2_kg": round(fut_kwh * grid_kg_per_kwh, 3),
            "band_note": "95 % band of the predicted part from held-out daily errors (days independent) plus the "
            "held-out bias; weather beyond the forecast file is the climate normal and its uncertainty is not "
            "in the band",
        }
    return out
