"""ASHRAE Guideline 14 error metrics of a model against measurements.

Convention (fixed here and reported with every figure):

- residual = measured − predicted, so a positive NMBE means the model under-predicts;
- ``CV(RMSE) = 100 · sqrt(Σ(y − ŷ)² / (n − p)) / ȳ``  and  ``NMBE = 100 · Σ(y − ŷ) / ((n − p) · ȳ)``, in percent,
  with p the number of fitted parameters of the model (G14-2014 Annex B). On held-out data the model fitted
  nothing to those points, so ``p = 0`` there (plain n).

Guideline 14's calibration bounds: hourly CV(RMSE) ≤ 30 % and NMBE within ±10 %; monthly ≤ 15 % and ±5 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

CONVENTION = "residual = measured - predicted; denominators n - p (p = fitted parameters; 0 on held-out data)"
HOURLY_BOUNDS = {"cv_rmse_pct": 30.0, "nmbe_pct": 10.0}
MONTHLY_BOUNDS = {"cv_rmse_pct": 15.0, "nmbe_pct": 5.0}


def _check(y: Sequence[float], yhat: Sequence[float], p: int) -> float:
    n = len(y)
    if n != len(yhat):
        raise ValueError(f"{n} measurements but {len(yhat)} predictions")
    if p < 0 or n - p <= 0:
        raise ValueError(f"{n} points are too few for {p} parameters")
    mean = sum(y) / n
    if mean <= 0:
        raise ValueError("the measured mean must be positive for CV(RMSE) and NMBE")
    return mean


def cv_rmse(y: Sequence[float], yhat: Sequence[float], p: int = 0) -> float:
    """CV(RMSE) in percent."""
    mean = _check(y, yhat, p)
    sse = sum((a - b) ** 2 for a, b in zip(y, yhat, strict=True))
    return 100.0 * math.sqrt(sse / (len(y) - p)) / mean


def nmbe(y: Sequence[float], yhat: Sequence[float], p: int = 0) -> float:
    """NMBE in percent (positive: the model under-predicts)."""
    mean = _check(y, yhat, p)
    return 100.0 * sum(a - b for a, b in zip(y, yhat, strict=True)) / ((len(y) - p) * mean)


def report(y: Sequence[float], yhat: Sequence[float], p: int, grain: str = "hour") -> dict[str, Any]:
    """Both metrics, n, p, the convention and whether Guideline 14's calibration bounds for ``grain`` are met."""
    cv, nm = cv_rmse(y, yhat, p), nmbe(y, yhat, p)
    bounds = HOURLY_BOUNDS if grain == "hour" else MONTHLY_BOUNDS
    return {
        "cv_rmse_pct": round(cv, 3),
        "nmbe_pct": round(nm, 3),
        "n": len(y),
        "p": p,
        "grain": grain,
        "convention": CONVENTION,
        "within_g14_bounds": cv <= bounds["cv_rmse_pct"] and abs(nm) <= bounds["nmbe_pct"],
        "g14_bounds": bounds,
    }
