"""Expected-consumption models: the 3-parameter heating change-point model and its hourly time-of-week variant.

- ``fit_3ph(T, E)``: ``E = β0 + β1 · max(β2 − T, 0)`` (ASHRAE RP-1050 "3P heating"). The balance point β2 is found by
  a grid search (0.5 K over the observed temperature range, then 0.05 K around the best), each candidate by
  ordinary least squares on the hinge regressor; the lowest SSE wins. Candidates leave at least
  ``MIN_SIDE_FRACTION`` of the points on the heating side. A balance point with fewer than 1 % of the points
  above it means the data show no change point (every point is heating): the model then behaves as a 2-parameter line, and says so.
  p = 3.
- ``fit_hourly(...)``: hourly consumption against hour of day × (weekday, weekend) (48 level terms, TOWT-like) plus
  one heating slope per tariff period (peak, flat, valley) on the degree-hours ``max(τ − T_h, 0)``; τ is
  grid-searched (1 K, then 0.2 K and 0.05 K around the best). A storage plant answers cold weather with charging in the valley, so the slope per
  period is what the tariff changes. p = 48 + 3 + 1 (τ); the variant with one slope per hour of day (``hourly_by_hour``) has p = 48 + 24 + 1.
- ``select(...)``: fits both on the training hours and evaluates both on held-out hours (``holdout_mask``: every
  fourth week, so held-out days cover the whole season); the hourly variant is used only if its held-out
  CV(RMSE) beats the change-point model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from energy import metrics

MIN_SIDE_FRACTION = 0.1
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
    """For each candidate τ: (β0, β1, SSE) of e = β0 + β1·max(τ − t, 0), vectorised over τ."""
    x = np.maximum(taus[:, None] - t[None, :], 0.0)  # (k, n)
    xm = x.mean(axis=1)
    em = e.mean()
    sxx = ((x - xm[:, None]) ** 2).sum(axis=1)
    sxy = ((x - xm[:, None]) * (e - em)[None, :]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = np.where(sxx > 0, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    b0 = em - b1 * xm
    resid = e[None, :] - b0[:, None] - b1[:, None] * x
    sse = (resid**2).sum(axis=1)
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

    @property
    def p(self) -> int:
        return 48 + len(self.slopes) + 1

    def predict(self, times: Sequence[datetime], temp: Sequence[float] | Arr, bands: Sequence[str]) -> Arr:
        x = _design(times, np.asarray(temp, dtype=np.float64), bands, self.balance_c, self.by)
        coef = np.array([*self.levels, *(self.slopes[b] for b in slope_names(self.by))])
        out: Arr = x @ coef
        return out

    def to_json(self) -> dict[str, Any]:
        what = "tariff period" if self.by == "tariff" else "hour of day"
        return {
            "form": f"E_h = level[hour, weekday|weekend] + slope[{what}] * max(balance_c - T_h, 0)",
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


def _parts(times: Sequence[datetime], bands: Sequence[str], by: str) -> tuple[npt.NDArray[np.int64], Arr]:
    """The level group of each hour (hour of day, +24 on weekends) and the slope-group masks (n × k)."""
    n = len(times)
    if n != len(bands):
        raise ValueError("times, temperatures and tariff periods must have the same length")
    group = np.fromiter((tm.hour + (24 if tm.weekday() >= 5 else 0) for tm in times), dtype=np.int64, count=n)
    names = slope_names(by)
    keys = bands if by == "tariff" else [f"{tm.hour:02d}" for tm in times]
    masks = np.array([[k == b for b in names] for k in keys], dtype=np.float64).reshape(n, len(names))
    return group, masks


def _design(times: Sequence[datetime], t: Arr, bands: Sequence[str], tau: float, by: str) -> Arr:
    group, masks = _parts(times, bands, by)
    if t.size != group.size:
        raise ValueError("times, temperatures and tariff periods must have the same length")
    levels = np.zeros((group.size, 48))
    levels[np.arange(group.size), group] = 1.0
    return np.hstack([levels, masks * np.maximum(tau - t, 0.0)[:, None]])


def _fit_fixed_tau(group: npt.NDArray[np.int64], masks: Arr, t: Arr, e: Arr, tau: float) -> tuple[float, Arr]:
    """Least squares with 48 level dummies by the within transformation: demean by group, solve the k slopes,
    then each level is its group's mean residual. Exact OLS, without the full design matrix (fast)."""
    z = masks * np.maximum(tau - t, 0.0)[:, None]
    count = np.bincount(group, minlength=48).astype(np.float64)
    safe = np.where(count > 0, count, 1.0)
    e_mean = np.bincount(group, weights=e, minlength=48) / safe
    z_mean = np.stack(
        [np.bincount(group, weights=z[:, j], minlength=48) / safe for j in range(z.shape[1])], axis=1
    )
    zt = z - z_mean[group]
    et = e - e_mean[group]
    beta, *_ = np.linalg.lstsq(zt.T @ zt, zt.T @ et, rcond=None)
    sse = float(((et - zt @ beta) ** 2).sum())
    levels = e_mean - z_mean @ beta
    return sse, np.concatenate([levels, beta])


def fit_hourly(
    times: Sequence[datetime],
    temp: Sequence[float] | Arr,
    energy: Sequence[float] | Arr,
    bands: Sequence[str],
    by: str = "tariff",
) -> HourlyModel:
    """Fit the hourly time-of-week model with a heating slope per tariff period (``by="tariff"``) or per hour of
    day (``by="hour"``); balance point by grid search."""
    if by not in ("tariff", "hour"):
        raise ValueError("by must be 'tariff' or 'hour'")
    t = np.asarray(temp, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if e.size < 200:
        raise ValueError(f"{e.size} hours are too few for the hourly model (at least 200)")
    if not t.size == e.size == len(times) == len(bands):
        raise ValueError("times, temperatures, energy and tariff periods must have the same length")
    unknown = set(bands) - set(BANDS)
    if unknown:
        raise ValueError(f"unknown tariff periods {sorted(unknown)}")
    group, masks = _parts(times, bands, by)
    missing = sorted(set(range(48)) - set(group.tolist()))
    if missing:
        raise ValueError(
            f"no data for {len(missing)} hour-of-week groups (e.g. group {missing[0]}): fit a full week"
        )
    best: tuple[float, float, Arr] | None = None
    for step, span in ((1.0, 0.0), (0.2, 1.0), (0.05, 0.2)):
        taus = _candidates(t, step) if best is None else _candidates(t, step, best[1] - span, best[1] + span)
        for tau in taus:
            sse, coef = _fit_fixed_tau(group, masks, t, e, float(tau))
            if best is None or sse < best[0]:
                best = (sse, float(tau), coef)
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
    d0 = times[0].date()
    return np.array([((tm.date() - d0).days // 7) % 4 == 3 for tm in times], dtype=bool)


def predict(
    model: ChangePoint3PH | HourlyModel,
    times: Sequence[datetime],
    temp: Sequence[float] | Arr,
    bands: Sequence[str],
) -> Arr:
    if isinstance(model, ChangePoint3PH):
        return model.predict(temp)
    return model.predict(times, temp, bands)


def select(
    times: Sequence[datetime], temp: Sequence[float], energy: Sequence[float], bands: Sequence[str]
) -> dict[str, Any]:
    """Fit the change-point model and the two hourly variants on the training hours, score all on held-out hours;
    the one with the lowest held-out CV(RMSE) is chosen (an hourly variant only where it beats the change-point
    model there)."""
    t = np.asarray(temp, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    ho = holdout_mask(times)
    tr = ~ho
    if ho.sum() < 24 or tr.sum() < 200:
        raise ValueError("at least 4 weeks of hourly data are needed (3 to fit, 1 held out)")
    tt = [tm for tm, m in zip(times, tr, strict=True) if m]
    th = [tm for tm, m in zip(times, ho, strict=True) if m]
    bt = [b for b, m in zip(bands, tr, strict=True) if m]
    bh = [b for b, m in zip(bands, ho, strict=True) if m]
    fitted: dict[str, ChangePoint3PH | HourlyModel] = {
        "change_point": fit_3ph(t[tr], e[tr]),
        "hourly": fit_hourly(tt, t[tr], e[tr], bt, by="tariff"),
        "hourly_by_hour": fit_hourly(tt, t[tr], e[tr], bt, by="hour"),
    }
    out: dict[str, Any] = {}
    y = e[ho].tolist()
    for name, m in fitted.items():
        out[name] = {
            **m.to_json(),
            "fit": metrics.report(e[tr].tolist(), predict(m, tt, t[tr], bt).tolist(), m.p),
            "held_out": metrics.report(y, predict(m, th, t[ho], bh).tolist(), 0),
        }
    chosen = min(fitted, key=lambda k: (out[k]["held_out"]["cv_rmse_pct"], k != "change_point"))
    return {
        "chosen": chosen,
        **out,
        "split": "held out: every fourth week from the first day; the rest fits",
        "_models": fitted,
    }
