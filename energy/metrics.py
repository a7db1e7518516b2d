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

import numpy as np
import numpy.typing as npt

CONVENTION = "residual = measured - predicted; denominators n - p (p = fitted parameters; 0 on held-out data)"
HOURLY_BOUNDS = {"cv_rmse_pct": 30.0, "nmbe_pct": 10.0}
MONTHLY_BOUNDS = {"cv_rmse_pct": 15.0, "nmbe_pct": 5.0}


Series = Sequence[float] | npt.NDArray[np.float64]


def _check(y: Series, yhat: Series, p: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    a = np.asarray(y, dtype=np.float64)
    b = np.asarray(yhat, dtype=np.float64)
    n = a.size
    if a.ndim != 1 or b.shape != a.shape:
        raise ValueError(f"{n} measurements but {b.size} predictions")
    if p < 0 or n - p <= 0:
        raise ValueError(f"{n} points are too few for {p} parameters")
    mean = float(a.mean())
    if not mean > 0:
        raise ValueError("the measured mean must be positive for CV(RMSE) and NMBE")
    return a, b, mean


def cv_rmse(y: Series, yhat: Series, p: int = 0) -> float:
    """CV(RMSE) in percent."""
    a, b, mean = _check(y, yhat, p)
    sse = float(((a - b) ** 2).sum())
    return 100.0 * math.sqrt(sse / (a.size - p)) / mean


def nmbe(y: Series, yhat: Series, p: int = 0) -> float:
    """NMBE in percent (positive: the model under-predicts)."""
    a, b, mean = _check(y, yhat, p)
    return 100.0 * float((a - b).sum()) / ((a.size - p) * mean)


def report(y: Series, yhat: Series, p: int, grain: str = "hour") -> dict[str, Any]:
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
