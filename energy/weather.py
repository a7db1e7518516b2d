"""Outdoor temperature: heating degree-days, daily weather from CSV, and a seeded Hohhot-season climate.

- ``hdd(mean_c, base_c)`` = max(base − T_mean, 0) for one day (base 18 °C by default, configurable).
- ``daily_means(hourly)``: the daily mean of hourly temperatures per local date; a day with fewer than
  ``MIN_HOURS_PER_DAY`` (12, i.e. at most 50 % missing, as CalTRACK requires) hourly values has no mean.
- ``read_daily_csv(text)``: strict import of ``date,mean_temp_c`` rows (ISO dates, each date once, −60…+60 °C);
  any bad row is a ``WeatherCSVError`` naming its line, and nothing is returned.
- ``hohhot_climate(start, days, seed)``: hourly outdoor temperatures for the demo and the tests: the normal annual
  curve (mean 6.5 °C, amplitude 17.5 K, coldest on 15 January, the same curve as ``accounting.kpi``), a synoptic
  anomaly (AR(1), φ = 0.8/day, σ = 3 K) and a diurnal swing of 8 K (coldest at 06:00, warmest at 15:00).
  A model of the climate, not a measurement; the same seed gives the same series.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

DEFAULT_BASE_C = 18.0
MIN_HOURS_PER_DAY = 12
MAX_CSV_BYTES = 2_000_000
MAX_CSV_ROWS = 20_000
T_MIN_C, T_MAX_C = -60.0, 60.0

ANNUAL_MEAN_C = 6.5
ANNUAL_AMPLITUDE_C = 17.5
COLDEST_DAY = 14  # 15 January, 0-based day of year
DIURNAL_RANGE_K = 8.0
AR_PHI = 0.8
AR_SIGMA_K = 3.0


class WeatherCSVError(ValueError):
    """A weather CSV that cannot be used, with the line that shows why."""


@dataclass(frozen=True, slots=True)
class DailyWeather:
    day: date
    mean_c: float


def hdd(mean_c: float, base_c: float = DEFAULT_BASE_C) -> float:
    """Heating degree-days of one day with daily mean temperature ``mean_c``."""
    return max(base_c - mean_c, 0.0)


def daily_means(hourly: Iterable[tuple[datetime, float]]) -> dict[date, float]:
    """Mean temperature per local date from (local time, °C) pairs; days with too few hours are left out."""
    sums: dict[date, list[float]] = {}
    for t, c in hourly:
        sums.setdefault(t.date(), []).append(c)
    return {d: sum(v) / len(v) for d, v in sorted(sums.items()) if len(v) >= MIN_HOURS_PER_DAY}


def hdd_from_hourly(
    hourly: Iterable[tuple[datetime, float]], base_c: float = DEFAULT_BASE_C
) -> dict[date, float]:
    """Heating degree-days per local date from hourly temperatures (via the daily mean)."""
    return {d: hdd(m, base_c) for d, m in daily_means(hourly).items()}


def read_daily_csv(text: str) -> list[DailyWeather]:
    """Parse ``date,mean_temp_c`` CSV text (header required; blank lines and ``#`` comments allowed)."""
    if len(text.encode()) > MAX_CSV_BYTES:
        raise WeatherCSVError(f"weather CSV is larger than {MAX_CSV_BYTES} bytes; split it by season")
    rows = [
        (i, r)
        for i, r in enumerate(csv.reader(io.StringIO(text)), start=1)
        if r and not (len(r) == 1 and not r[0].strip()) and not r[0].lstrip().startswith("#")
    ]
    if not rows:
        raise WeatherCSVError(
            "weather CSV is empty: expected a header 'date,mean_temp_c' and one row per day"
        )
    line, header = rows[0]
    if [h.strip().lower() for h in header] != ["date", "mean_temp_c"]:
        raise WeatherCSVError(
            f"line {line}: header must be 'date,mean_temp_c', got {','.join(header)[:80]!r}"
        )
    if len(rows) - 1 > MAX_CSV_ROWS:
        raise WeatherCSVError(f"weather CSV has more than {MAX_CSV_ROWS} days")
    out: dict[date, DailyWeather] = {}
    for line, r in rows[1:]:
        if len(r) != 2:
            raise WeatherCSVError(f"line {line}: expected 2 fields (date, mean_temp_c), got {len(r)}")
        try:
            d = date.fromisoformat(r[0].strip())
        except ValueError:
            raise WeatherCSVError(f"line {line}: date {r[0][:40]!r} is not YYYY-MM-DD") from None
        try:
            c = float(r[1].strip())
        except ValueError:
            raise WeatherCSVError(f"line {line}: temperature {r[1][:40]!r} is not a number (°C)") from None
        if not math.isfinite(c) or not T_MIN_C <= c <= T_MAX_C:
            raise WeatherCSVError(f"line {line}: temperature {c} °C is outside {T_MIN_C}..{T_MAX_C} °C")
        if d in out:
            raise WeatherCSVError(f"line {line}: date {d} appears twice")
        out[d] = DailyWeather(d, c)
    if not out:
        raise WeatherCSVError("weather CSV has a header but no days")
    return [out[d] for d in sorted(out)]


def normal_mean_c(d: date) -> float:
    """The normal daily mean temperature of a Hohhot-like climate on local date ``d``."""
    doy = min(d.timetuple().tm_yday - 1, 364)
    return ANNUAL_MEAN_C - ANNUAL_AMPLITUDE_C * math.cos(2 * math.pi * (doy - COLDEST_DAY) / 365)


def hohhot_climate(start: date, days: int, seed: int) -> list[tuple[datetime, float]]:
    """Hourly outdoor temperatures (local time, °C) for ``days`` days from ``start``, seeded."""
    if not 0 < days <= 3660:
        raise ValueError("days must be between 1 and 3660")
    rng = random.Random(seed)
    anomaly = rng.gauss(0.0, AR_SIGMA_K)
    innovation = AR_SIGMA_K * math.sqrt(1 - AR_PHI**2)
    out: list[tuple[datetime, float]] = []
    for i in range(days):
        d = start + timedelta(days=i)
        mean = normal_mean_c(d) + anomaly
        t0 = datetime(d.year, d.month, d.day)
        for h in range(24):
            swing = 0.5 * DIURNAL_RANGE_K * _diurnal(h)
            out.append((t0 + timedelta(hours=h), round(mean + swing, 2)))
        anomaly = AR_PHI * anomaly + rng.gauss(0.0, innovation)
    return out


def diurnal_swing_c(hour: int) -> float:
    """The normal diurnal departure from the daily mean at local ``hour`` (°C): −4 at 06:00, +4 at 15:00."""
    return 0.5 * DIURNAL_RANGE_K * _diurnal(hour)


def normal_hourly_c(t: datetime) -> float:
    """The climate-normal temperature of local hour ``t`` (no weather anomaly): what a forecast falls back on."""
    return normal_mean_c(t.date()) + diurnal_swing_c(t.hour)


def _diurnal(h: int) -> float:
    """A shape in [−1, 1] with mean 0 over the day: −1 at 06:00, +1 at 15:00 (piecewise cosine)."""
    if 6 <= h <= 15:
        return -math.cos(math.pi * (h - 6) / 9)
    k = (h - 15) % 24  # 0..14 from 15:00 to 06:00
    return math.cos(math.pi * k / 15)
