"""Expected-consumption models: the 3-parameter heating change-point model and its hourly time-of-week variant.

- ``fit_3ph(T, E)``: ``E = β0 + β1 · max(β2 − T, 0)`` (ASHRAE RP-1050 "3P heating"). The balance point β2 is found by
  a grid search (0.5 K over the observed temperature range, then 0.05 K around the best), each candidate by
  ordinary least squares on the hinge regressor (all candidates at once from prefix sums over the points sorted
  by temperature); the lowest SSE wins. Candidates leave at least
  ``MIN_SIDE_FRACTION`` of the points on the heating side. A balance point with fewer than 1 % of the points
  above it means the data show no change point (every point is heating): the model then behaves as a 2-parameter line, and says so.
  p = 3.
- ``fit_hourly(...)``: hourly consumption against hour of day × (weekday, weekend) (48 level terms, TOWT-like) plus
  one heating slope per tariff period (peak, flat, valley) on the degree-hours ``max(τ − T_h, 0)``; τ is
  grid-searched (1 K, then 0.2 K and 0.05 K around the best), every candidate of a stage solved at once from sums
  per (level group, slope group) cell (exact OLS, the 48 levels absorbed by the within transformation; no design
  matrix). A storage plant answers cold weather with charging in the valley, so the slope per
  period is what the tariff changes. p = 48 + 3 + 1 (τ); the variant with one slope per hour of day (``hourly_by_hour``) has p = 48 + 24 + 1.
- ``select(...)``: fits both on the training hours and evaluates both on held-out hours (``holdout_mask``: every
  fourth week, so held-out days cover the whole season); the hourly variant is used only if its held-out
  CV(RMSE) beats the change-point model's. A series with no heating response has no change-point model (the entry
  says why) and is described by the hourly levels alone. ``hourly_day_ahead`` is ``hourly_by_hour`` whose night
  hours (23:00–07:00) take the coming day's daytime mean temperature: a storage plant charges at night for the
  next day's heat, which the night's own temperature does not tell (fitted with the recorded temperatures, so
  predicting with it assumes that day's forecast). ``Frame`` prepares the hours once for many series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from energy import metrics

MIN_SIDE_FRACTION = 0.1
VARIANTS = ("change_point", "hourly", "hourly_by_hour", "hourly_day_ahead")
NIGHT_START_H, NIGHT_END_H = 23, 7  # a storage plant charges 23:00-07:00 for the coming day (docs/energy.md)
BANDS = ("peak", "flat", "valley")
Arr = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ChangePoint3PH:
    base: float
    """β0: consumption above the balance point (per point: per hour or per day)."""
    slope: float
    """β1: extra consumption per kelvin below the balance point."""
    balance_c: float
    """β2: the balance (change-point) temperature, °C."""
    n: int
    at_edge: bool
    """Fewer than 1 % of the points lie above the balance point: no change point is visible."""
    p: int = 3

    def predict(self, temp: Sequence[float] | Arr) -> Arr:
        t = np.asarray(temp, dtype=np.float64)
        return self.base + self.slope * np.maximum(self.balance_c - t, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "form": "E = b0 + b1 * max(balance_c - T, 0)",
            "b0": round(self.base, 4),
            "b1": round(self.slope, 4),
            "balance_c": round(self.balance_c, 2),
            "n": self.n,
            "p": self.p,
            "no_change_point_visible": self.at_edge,
        }


def _no_change_point(t: Arr, tau: float) -> bool:
    """Fewer than 1 % of the points lie above the balance point: the data show no base level to break from."""
    return float((t > tau).mean()) < 0.01


def _candidates(t: Arr, step: float, lo: float | None = None, hi: float | None = None) -> Arr:
    q_lo = float(np.quantile(t, MIN_SIDE_FRACTION))
    lo = q_lo if lo is None else max(lo, q_lo)
    hi = float(t.max()) if hi is None else min(hi, float(t.max()))
    if hi <= lo:
        return np.array([hi])
    return np.append(np.arange(lo, hi, step), hi)


def _ols_hinge(t: Arr, e: Arr, taus: Arr) -> tuple[Arr, Arr, Arr]:
    """For each candidate τ: (β0, β1, SSE) of e = β0 + β1·max(τ − t, 0), by prefix sums over the points sorted by
    temperature (the hinge is τ − t on the points colder than τ, 0 elsewhere): O(n log n + k), exact OLS."""
    order = np.argsort(t, kind="stable")
    ts, es = t[order], e[order]
    zero = np.zeros(1)
    c_t = np.concatenate([zero, np.cumsum(ts)])
    c_tt = np.concatenate([zero, np.cumsum(ts * ts)])
    c_e = np.concatenate([zero, np.cumsum(es)])
    c_te = np.concatenate([zero, np.cumsum(ts * es)])
    j = np.searchsorted(ts, taus, side="left")  # points with t < τ
    n = float(t.size)
    sx = j * taus - c_t[j]
    sxx_raw = j * taus**2 - 2 * taus * c_t[j] + c_tt[j]
    sxe = taus * c_e[j] - c_te[j]
    em = float(e.mean())
    xm = sx / n
    sxx = sxx_raw - sx * xm
    sxy = sxe - sx * em
    syy = float(((e - em) ** 2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = sxx > 1e-12 * np.maximum(sxx_raw, 1.0)
        b1 = np.where(ok, sxy / np.where(ok, sxx, 1.0), 0.0)
    b0 = em - b1 * xm
    sse = np.maximum(syy - b1 * sxy, 0.0)
    return b0, b1, sse


def fit_3ph(temp: Sequence[float] | Arr, energy: Sequence[float] | Arr) -> ChangePoint3PH:
    """Fit the 3-parameter heating model by grid search over the balance point + least squares."""
    t = np.asarray(temp, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if t.shape != e.shape or t.ndim != 1:
        raise ValueError("temperature and energy must be equal-length series")
    if t.size < 10:
        raise ValueError(f"{t.size} points are too few to fit a change-point model (at least 10)")
    if not (np.isfinite(t).all() and np.isfinite(e).all()):
        raise ValueError("temperature and energy must be finite numbers")
    best: float | None = None
    for step in (0.5, 0.05):
        taus = _candidates(t, step) if best is None else _candidates(t, step, best - 0.5, best + 0.5)
        b0, b1, sse = _ols_hinge(t, e, taus)
        sse = np.where(b1 > 0, sse, np.inf)  # a heating model needs a positive slope
        if not np.isfinite(sse).any():
            raise ValueError(
                "consumption does not rise as it gets colder: no heating change-point model fits"
            )
        i = int(np.argmin(sse))
        best = float(taus[i])
        fit = (float(b0[i]), float(b1[i]), best)
    b0_, b1_, tau = fit
    return ChangePoint3PH(b0_, b1_, tau, int(t.size), at_edge=_no_change_point(t, tau))


def band_of_prices(row: Sequence[int]) -> list[str]:
    """Tariff period of each hour of a day's price row: below 0.8 × the day's mean price is the valley, above
    1.2 × is the peak, the rest flat (the Mengxi ratios 0.48 / 1 / 1.68 fall clearly on each side)."""
    mean = sum(row) / len(row)
    return ["valley" if p < 0.8 * mean else "peak" if p > 1.2 * mean else "flat" for p in row]


@dataclass(frozen=True, slots=True)
class HourlyModel:
    levels: tuple[float, ...]
    """48 levels: hour of day 0..23 on weekdays, then 0..23 on weekends."""
    slopes: dict[str, float]
    """Heating slope per group (tariff period, or hour of day "00".."23"), per degree-hour below the balance."""
    balance_c: float
    n: int
    at_edge: bool
    by: str = "tariff"
    temp_input: str = "hour"
    """``"hour"``: each hour's own temperature; ``"day_ahead"``: night hours take the coming day's daytime mean
    (``Calendar.day_ahead``), for plants that charge storage at night for the next day."""
    _arrays: tuple[Arr, Arr] = field(init=False, repr=False, compare=False)
    """The levels and slopes as arrays, built once (an evaluator predicts one hour at a time)."""

    def __post_init__(self) -> None:
        slopes = np.array([self.slopes[b] for b in slope_names(self.by)])
        object.__setattr__(self, "_arrays", (np.asarray(self.levels, dtype=np.float64), slopes))

    @property
    def p(self) -> int:
        return 48 + len(self.slopes) + 1

    def predict(self, times: Sequence[datetime], temp: Sequence[float] | Arr, bands: Sequence[str]) -> Arr:
        return self.predict_on(Calendar.of(times, bands), temp)

    def predict_on(self, cal: Calendar, temp: Sequence[float] | Arr, effective: bool = False) -> Arr:
        """Predictions for the calendar's hours at temperatures ``temp``; ``effective``: ``temp`` already holds
        the model's input temperatures (``Calendar.day_ahead`` of a longer series, for a ``day_ahead`` model)."""
        t = np.asarray(temp, dtype=np.float64)
        if t.size != len(cal):
            raise ValueError("times, temperatures and tariff periods must have the same length")
        if self.temp_input == "day_ahead" and not effective:
            t = cal.day_ahead(t)
        levels, slopes = self._arrays
        out: Arr = levels[cal.group] + slopes[cal.slope[self.by]] * np.maximum(self.balance_c - t, 0.0)
        return out

    def to_json(self) -> dict[str, Any]:
        what = "tariff period" if self.by == "tariff" else "hour of day"
        temp = "T_h" if self.temp_input == "hour" else "T_h (23-07 h: the coming day's 07-23 h mean)"
        return {
            "form": f"E_h = level[hour, weekday|weekend] + slope[{what}] * max(balance_c - {temp}, 0)",
            "temperature": self.temp_input,
            "balance_c": round(self.balance_c, 2),
            "slopes": {b: round(v, 4) for b, v in self.slopes.items()},
            "levels_weekday": [round(v, 3) for v in self.levels[:24]],
            "levels_weekend": [round(v, 3) for v in self.levels[24:]],
            "n": self.n,
            "p": self.p,
            "no_change_point_visible": self.at_edge,
        }


def slope_names(by: str) -> tuple[str, ...]:
    return BANDS if by == "tariff" else tuple(f"{h:02d}" for h in range(24))


@dataclass(frozen=True, slots=True)
class Calendar:
    """What the hourly models need of the hours, computed once per series (devices of a site share it): the level
    group of each hour (hour of day, +24 on weekends) and its slope group under each variant."""

    group: npt.NDArray[np.int64]
    slope: dict[str, npt.NDArray[np.int64]]
    """``"tariff"``: index into ``BANDS``; ``"hour"``: hour of day."""
    day: npt.NDArray[np.int64] | None = None
    """Local day ordinal of each hour (for ``day_ahead``)."""
    charge_for: npt.NDArray[np.int64] | None = None
    """For a night hour (23:00–06:59) the ordinal of the day it charges for (the coming day), else −1."""
    _cells: dict[str, tuple[npt.NDArray[np.int64], ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def of(cls, times: Sequence[datetime], bands: Sequence[str]) -> Calendar:
        n = len(times)
        if n != len(bands):
            raise ValueError("times, temperatures and tariff periods must have the same length")
        unknown = set(bands) - set(BANDS)
        if unknown:
            raise ValueError(f"unknown tariff periods {sorted(unknown)}")
        hour = np.fromiter((tm.hour for tm in times), dtype=np.int64, count=n)
        weekend = np.fromiter((tm.weekday() >= 5 for tm in times), dtype=np.bool_, count=n)
        index = {b: i for i, b in enumerate(BANDS)}
        band = np.fromiter((index[b] for b in bands), dtype=np.int64, count=n)
        day = np.fromiter((tm.toordinal() for tm in times), dtype=np.int64, count=n)
        charge_for = np.where(hour >= NIGHT_START_H, day + 1, np.where(hour < NIGHT_END_H, day, -1))
        return cls(hour + 24 * weekend, {"tariff": band, "hour": hour}, day, charge_for)

    def __len__(self) -> int:
        return int(self.group.size)

    def cells(self, by: str) -> tuple[npt.NDArray[np.int64], ...]:
        """Rows sorted by (level group, slope group) cell: the order, each cell's first row, its level group and
        its slope group. Computed once per calendar and variant (every device and every grid stage reuses it)."""
        got = self._cells.get(by)
        if got is None:
            m = len(slope_names(by))
            cell = self.group * m + self.slope[by]
            order = np.argsort(cell, kind="stable")
            cs = cell[order]
            starts = np.flatnonzero(np.concatenate([[True], cs[1:] != cs[:-1]]))
            cells = cs[starts]
            got = (order, starts, cells // m, cells % m)
            self._cells[by] = got
        return got

    def take(self, mask: npt.NDArray[np.bool_]) -> Calendar:
        return Calendar(
            self.group[mask],
            {k: v[mask] for k, v in self.slope.items()},
            None if self.day is None else self.day[mask],
            None if self.charge_for is None else self.charge_for[mask],
        )

    def day_ahead(self, temp: Sequence[float] | Arr) -> Arr:
        """Effective temperatures of the ``day_ahead`` variant: a night hour (23:00–06:59, when a storage plant
        charges for the coming day) takes the mean of that day's 07:00–22:59 temperatures in the series (when at
        least 12 of them are there), every other hour its own. Needs the series to reach into the coming day: over
        a calendar that ends at night, the last night keeps its own temperatures."""
        t = np.asarray(temp, dtype=np.float64)
        if self.day is None or self.charge_for is None or t.size != self.group.size:
            raise ValueError("day-ahead temperatures need a calendar built from times, as long as the series")
        if t.size == 0:
            return t
        daytime = self.charge_for < 0
        d0 = int(self.day.min())
        idx = self.day[daytime] - d0
        size = int(self.day.max()) - d0 + 2
        sums = np.bincount(idx, weights=t[daytime], minlength=size)
        cnt = np.bincount(idx, minlength=size)
        target = self.charge_for - d0
        ok = (~daytime) & (target >= 0) & (target < size)
        tgt = np.where(ok, target, 0)
        good = ok & (cnt[tgt] >= 12)
        out: Arr = np.where(good, sums[tgt] / np.maximum(cnt[tgt], 1), t)
        return out


def _normal_equations(cal: Calendar, by: str, t: Arr, e: Arr, taus: Arr) -> tuple[Arr, Arr, Arr, Arr, Arr]:
    """For every candidate τ at once: the within-group (48 level dummies absorbed) normal equations of the slopes,
    ``A β = b``, with ``x = max(τ − t, 0)`` split into one column per slope group. Each hour lies in exactly one
    level group and one slope group, so every sum needed is a sum over (level group, slope group) cells; rows are
    sorted by cell once and summed with ``np.add.reduceat`` (O(k·n), no design matrix).

    Returns A (k×m×m), b (k×m), the per-group sums Sx (k×48×m) and counts and means needed for the levels."""
    m = len(slope_names(by))
    order, starts, cg, cb = cal.cells(by)
    x = np.maximum(taus[:, None] - t[order][None, :], 0.0)  # (k, n) in cell order
    eo = e[order]
    sx = np.add.reduceat(x, starts, axis=1)  # (k, C)
    sxx = np.add.reduceat(x * x, starts, axis=1)
    sxy = np.add.reduceat(x * eo[None, :], starts, axis=1)
    count = np.bincount(cal.group, minlength=48).astype(np.float64)
    safe = np.where(count > 0, count, 1.0)
    e_mean = np.bincount(cal.group, weights=e, minlength=48).astype(np.float64) / safe
    k = taus.size
    sxg = np.zeros((k, 48, m))
    sxg[:, cg, cb] = sx
    a = np.zeros((k, m, m))
    diag = np.zeros((k, m))
    np.add.at(diag.T, cb, sxx.T)
    rhs = np.zeros((k, m))
    np.add.at(rhs.T, cb, sxy.T)
    a[:, np.arange(m), np.arange(m)] = diag
    sxt = sxg.transpose(0, 2, 1)  # (k, m, 48): batched matrix products (BLAS) rather than einsum loops
    a -= sxt @ (sxg / safe[None, :, None])
    rhs -= sxt @ e_mean
    return a, rhs, sxg, count, e_mean


def _fit_taus(cal: Calendar, by: str, t: Arr, e: Arr, taus: Arr) -> tuple[Arr, Arr]:
    """SSE and coefficients (48 levels, then the slopes) of the hourly model at each candidate τ: exact OLS."""
    a, rhs, sxg, count, e_mean = _normal_equations(cal, by, t, e, taus)
    m = rhs.shape[1]
    # A slope group with no degree-hours at some τ has a zero row and column: pin its slope to 0 there.
    scale = np.maximum(np.abs(a[:, np.arange(m), np.arange(m)]).max(axis=1), 1e-300)
    empty = np.abs(a[:, np.arange(m), np.arange(m)]) <= 1e-12 * scale[:, None]
    a[:, np.arange(m), np.arange(m)] += empty
    rhs = np.where(empty, 0.0, rhs)
    beta = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
    # SSE at the optimum: Σ(e − ē_g)² − βᵀb
    sst = float(((e - e_mean[cal.group]) ** 2).sum())
    sse = sst - (beta * rhs).sum(axis=1)
    safe = np.where(count > 0, count, 1.0)
    levels = e_mean[None, :] - (sxg @ beta[:, :, None])[:, :, 0] / safe[None, :]
    return sse, np.concatenate([levels, beta], axis=1)


def fit_hourly(
    times: Sequence[datetime],
    temp: Sequence[float] | Arr,
    energy: Sequence[float] | Arr,
    bands: Sequence[str],
    by: str = "tariff",
) -> HourlyModel:
    """Fit the hourly time-of-week model with a heating slope per tariff period (``by="tariff"``) or per hour of
    day (``by="hour"``); balance point by grid search (every candidate of a stage solved at once)."""
    t = np.asarray(temp, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if not t.size == e.size == len(times) == len(bands):
        raise ValueError("times, temperatures, energy and tariff periods must have the same length")
    return fit_hourly_on(Calendar.of(times, bands), t, e, by)


def fit_hourly_on(
    cal: Calendar, temp: Sequence[float] | Arr, energy: Sequence[float] | Arr, by: str
) -> HourlyModel:
    """``fit_hourly`` on a prepared calendar (devices of a site share one)."""
    if by not in ("tariff", "hour"):
        raise ValueError("by must be 'tariff' or 'hour'")
    t = np.asarray(temp, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if e.size < 200:
        raise ValueError(f"{e.size} hours are too few for the hourly model (at least 200)")
    if not t.size == e.size == len(cal):
        raise ValueError("times, temperatures, energy and tariff periods must have the same length")
    if not (np.isfinite(t).all() and np.isfinite(e).all()):
        raise ValueError("temperature and energy must be finite numbers")
    missing = sorted(set(range(48)) - set(np.unique(cal.group).tolist()))
    if missing:
        raise ValueError(
            f"no data for {len(missing)} hour-of-week groups (e.g. group {missing[0]}): fit a full week"
        )
    best: tuple[float, float, Arr] | None = None
    for step, span in ((1.0, 0.0), (0.2, 1.0), (0.05, 0.2)):
        taus = _candidates(t, step) if best is None else _candidates(t, step, best[1] - span, best[1] + span)
        sse, coef = _fit_taus(cal, by, t, e, taus)
        i = int(np.argmin(sse))
        if best is None or sse[i] < best[0]:
            best = (float(sse[i]), float(taus[i]), coef[i])
    assert best is not None
    _, tau, coef = best
    return HourlyModel(
        tuple(float(c) for c in coef[:48]),
        {b: float(coef[48 + j]) for j, b in enumerate(slope_names(by))},
        tau,
        e.size,
        at_edge=_no_change_point(t, tau),
        by=by,
    )


def holdout_mask(times: Sequence[datetime]) -> npt.NDArray[np.bool_]:
    """True for held-out hours: every fourth week counted from the first day (so 25 % of the season)."""
    if not times:
        return np.zeros(0, dtype=bool)
    d0 = times[0].date().toordinal()
    days = np.fromiter((tm.toordinal() for tm in times), dtype=np.int64, count=len(times)) - d0
    out: npt.NDArray[np.bool_] = (days // 7) % 4 == 3
    return out


@dataclass(frozen=True, slots=True)
class Frame:
    """The hours of a series prepared once for ``select``: calendar and held-out split, with the training and
    held-out calendars. Every device of a site over the same hours shares one frame."""

    calendar: Calendar
    held_out: npt.NDArray[np.bool_]
    train_cal: Calendar
    held_cal: Calendar

    @classmethod
    def of(cls, times: Sequence[datetime], bands: Sequence[str]) -> Frame:
        cal = Calendar.of(times, bands)
        ho = holdout_mask(times)
        return cls(cal, ho, cal.take(~ho), cal.take(ho))


def predict(
    model: ChangePoint3PH | HourlyModel,
    times: Sequence[datetime],
    temp: Sequence[float] | Arr,
    bands: Sequence[str],
) -> Arr:
    if isinstance(model, ChangePoint3PH):
        return model.predict(temp)
    return model.predict(times, temp, bands)


def predict_on(
    model: ChangePoint3PH | HourlyModel, cal: Calendar, temp: Sequence[float] | Arr, effective: bool = False
) -> Arr:
    """``effective``: for a ``day_ahead`` model, ``temp`` is already ``Calendar.day_ahead`` of the whole series
    (needed when predicting a few hours whose coming day lies outside ``cal``)."""
    if isinstance(model, ChangePoint3PH):
        return model.predict(temp)
    return model.predict_on(cal, temp, effective)


def effective_temps(model: ChangePoint3PH | HourlyModel, cal: Calendar, temp: Sequence[float] | Arr) -> Arr:
    """The temperatures ``model`` takes as input over a whole series (pass slices with ``effective=True``)."""
    if isinstance(model, HourlyModel) and model.temp_input == "day_ahead":
        return cal.day_ahead(temp)
    return np.asarray(temp, dtype=np.float64)


def select(
    times: Sequence[datetime],
    temp: Sequence[float] | Arr,
    energy: Sequence[float] | Arr,
    bands: Sequence[str],
    frame: Frame | None = None,
) -> dict[str, Any]:
    """Fit the change-point model and the three hourly variants on the training hours, score all on held-out hours;
    the one with the lowest held-out CV(RMSE) is chosen (an hourly variant only where it beats the change-point
    model there). ``frame`` (``Frame.of(times, bands)``) may be passed in when several series share the hours."""
    t = np.asarray(temp, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if not t.size == e.size == len(times) == len(bands):
        raise ValueError("times, temperatures, energy and tariff periods must have the same length")
    fr = frame if frame is not None else Frame.of(times, bands)
    if len(fr.calendar) != e.size:
        raise ValueError("the frame does not match the series")
    ho = fr.held_out
    tr = ~ho
    if ho.sum() < 24 or tr.sum() < 200:
        raise ValueError("at least 4 weeks of hourly data are needed (3 to fit, 1 held out)")
    fitted: dict[str, ChangePoint3PH | HourlyModel] = {}
    out: dict[str, Any] = {}
    try:
        fitted["change_point"] = fit_3ph(t[tr], e[tr])
    except (
        ValueError
    ) as err:  # no heating response (a pump in standby): the hourly levels may still describe it
        out["change_point"] = {"unfit": str(err)}
    fitted["hourly"] = fit_hourly_on(fr.train_cal, t[tr], e[tr], by="tariff")
    fitted["hourly_by_hour"] = fit_hourly_on(fr.train_cal, t[tr], e[tr], by="hour")
    ta = fr.calendar.day_ahead(t)  # over the whole series, so held-out nights see their coming day
    fitted["hourly_day_ahead"] = replace(
        fit_hourly_on(fr.train_cal, ta[tr], e[tr], by="hour"), temp_input="day_ahead"
    )
    for name, m in fitted.items():
        tt = effective_temps(m, fr.calendar, t)
        out[name] = {
            **m.to_json(),
            "fit": metrics.report(e[tr], predict_on(m, fr.train_cal, tt[tr], effective=True), m.p),
            "held_out": metrics.report(e[ho], predict_on(m, fr.held_cal, tt[ho], effective=True), 0),
        }
    chosen = min(fitted, key=lambda k: (out[k]["held_out"]["cv_rmse_pct"], k != "change_point"))
    return {
        "chosen": chosen,
        **{k: out[k] for k in VARIANTS},
        "split": "held out: every fourth week from the first day; the rest fits",
        "_models": fitted,
    }
