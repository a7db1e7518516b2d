"""Day-ahead charging plan of the storage tank under a time-of-use tariff: a small linear program (HiGHS through
``scipy.optimize.linprog``).

Per hour t (Δt = 1 h, so kW and kWh per hour are the same numbers), all variables ≥ 0:
``P_t`` boiler electricity (kWh_e), ``Qdir_t`` boiler heat straight to the load, ``Qch_t`` heat into the tank,
``Qdis_t`` heat out of the tank (kWh_th), ``S_{t+1}`` the tank's heat at the end of hour t.

- boiler:   η_b · P_t = Qdir_t + Qch_t
- demand:   Qdir_t + Qdis_t = D_t  (the forecast heat demand is met exactly: heat cannot be dumped)
- tank:     S_{t+1} = (1 − λ) · S_t + η_c · Qch_t − Qdis_t / η_d,   S_0 given
- limits:   P_t ≤ P_max;  S_t ≤ S_max;  Qch_t ≤ Qch_max;  Qdis_t ≤ Qdis_max;  S_T ≥ S_0 (no borrowing from tomorrow);
  S_0 is given, or free in [0, S_max] for a steady-state day (``initial_kwh=None``: yesterday ran the same plan)
- objective: minimise Σ c_t · P_t (energy charges; demand charges are not in it).

The same program with ``P_t = k · h_t`` (one free scale k) gives the cheapest feasible operation of a fixed
profile shape h: h = 1 is "charging flat" (constant power round the clock), and a past season's mean hourly shape
is "last season's habit". A shape the tank cannot buffer is reported infeasible, with the reason, not priced.
Emissions are the plan's electricity × a location-based grid factor; with one factor for every hour they differ
between plans only by the electricity the losses cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

from accounting import tariffs as tf

MAX_HOURS = 168
# Inner Mongolia provincial grid factor for data year 2023, tCO2/MWh = kgCO2/kWh (MEE/NBS 公告2025年第47号), the
# latest row of accounting/data/grid_factors_cn.csv.
DEFAULT_GRID_KG_PER_KWH = 0.6479


@dataclass(frozen=True, slots=True)
class Tank:
    capacity_kwh: float
    """S_max, kWh_th."""
    boiler_kw: float
    """P_max, kW_e."""
    boiler_efficiency: float = 0.98
    charge_efficiency: float = 0.98
    """η_c (assumption: a stratified water tank; with η_d the round trip is 0.96)."""
    discharge_efficiency: float = 0.98
    standing_loss_per_h: float = 0.005
    """λ, fraction of the stored heat lost per hour (assumption)."""
    charge_kw: float | None = None
    discharge_kw: float | None = None
    initial_kwh: float | None = 0.0
    """Heat in the tank at the start; None: a steady-state day (the plan chooses the start, and ends with at
    least as much)."""

    def check(self) -> None:
        for name in ("capacity_kwh", "boiler_kw"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1e9):
                raise ValueError(f"{name} must be between 0 and 1e9, got {v}")
        for name in ("boiler_efficiency", "charge_efficiency", "discharge_efficiency"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.05 <= v <= 10):
                raise ValueError(f"{name} must be between 0.05 and 10, got {v}")
        if not (0 <= self.standing_loss_per_h < 1):
            raise ValueError("standing_loss_per_h must be in [0, 1)")
        for name in ("charge_kw", "discharge_kw"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and 0 <= v <= 1e9):
                raise ValueError(f"{name} must be between 0 and 1e9, got {v}")
        if self.initial_kwh is not None and not (0 <= self.initial_kwh <= self.capacity_kwh):
            raise ValueError("initial_kwh must be between 0 and the tank's capacity")


class Infeasible(ValueError):
    """No operation meets the demand within the limits."""


def _solve(
    prices: Sequence[float], demand: Sequence[float], tank: Tank, shape: Sequence[float] | None
) -> dict[str, Any]:
    n = len(prices)
    # columns: P (0..n-1), Qdir, Qch, Qdis, S_1..S_n, S_0, then k when a shape is fixed
    P, DIR, CH, DIS, S = (i * n for i in range(5))
    S0, K = 5 * n, 5 * n + 1
    nv = 5 * n + 1 + (1 if shape is not None else 0)
    rows = 3 * n + (n if shape is not None else 0)
    a = lil_matrix((rows, nv))
    b = np.zeros(rows)
    keep = 1.0 - tank.standing_loss_per_h
    for t in range(n):
        a[t, P + t] = tank.boiler_efficiency
        a[t, DIR + t] = -1.0
        a[t, CH + t] = -1.0
        a[n + t, DIR + t] = 1.0
        a[n + t, DIS + t] = 1.0
        b[n + t] = demand[t]
        r = 2 * n + t
        a[r, S + t] = 1.0
        a[r, CH + t] = -tank.charge_efficiency
        a[r, DIS + t] = 1.0 / tank.discharge_efficiency
        a[r, S0 if t == 0 else S + t - 1] = -keep
        if shape is not None:
            a[3 * n + t, P + t] = 1.0
            a[3 * n + t, K] = -shape[t]
    a_ub = np.zeros((1, nv))
    a_ub[0, S + n - 1] = -1.0  # S_0 - S_n <= 0
    a_ub[0, S0] = 1.0
    c = np.zeros(nv)
    c[P : P + n] = prices
    if shape is not None:
        c[:] = 0.0
        c[K] = float(np.dot(prices, shape))
    inf = None
    bounds = (
        [(0.0, tank.boiler_kw)] * n
        + [(0.0, inf)] * n
        + [(0.0, tank.charge_kw)] * n
        + [(0.0, tank.discharge_kw)] * n
        + [(0.0, tank.capacity_kwh)] * n
        + [(0.0, tank.capacity_kwh) if tank.initial_kwh is None else (tank.initial_kwh, tank.initial_kwh)]
        + ([(0.0, inf)] if shape is not None else [])
    )
    res = linprog(c, A_ub=a_ub, b_ub=[0.0], A_eq=a.tocsr(), b_eq=b, bounds=bounds, method="highs")
    if res.status == 2:
        raise Infeasible("the demand cannot be met within the boiler's power and the tank's capacity")
    if not res.success:
        raise RuntimeError(f"linprog failed: {res.message}")
    x = res.x
    return {
        "power_kw": x[P : P + n],
        "direct_kwh": x[DIR : DIR + n],
        "charge_kwh": x[CH : CH + n],
        "discharge_kwh": x[DIS : DIS + n],
        "stored_kwh": np.concatenate([[x[S0]], x[S : S + n]]),
    }


def _summary(
    sol: dict[str, Any], prices: Sequence[float], grid_kg_per_kwh: float, detail: bool
) -> dict[str, Any]:
    p = sol["power_kw"]
    out: dict[str, Any] = {
        "initial_kwh": round(float(sol["stored_kwh"][0]), 3),
        "electricity_kwh": round(float(p.sum()), 3),
        "cost_yuan": round(float(np.dot(p, prices)), 3),
        "co2_kg": round(float(p.sum()) * grid_kg_per_kwh, 3),
    }
    if detail:
        out["hours"] = [
            {
                "hour": t,
                "price_yuan_per_kwh": round(prices[t], 6),
                "power_kw": round(float(p[t]), 3),
                "charge_kwh": round(float(sol["charge_kwh"][t]), 3),
                "discharge_kwh": round(float(sol["discharge_kwh"][t]), 3),
                "stored_kwh_end": round(float(sol["stored_kwh"][t + 1]), 3),
            }
            for t in range(len(prices))
        ]
    return out


def plan(
    prices: Sequence[float],
    demand: Sequence[float],
    tank: Tank,
    habit: Sequence[float] | None = None,
    grid_kg_per_kwh: float = DEFAULT_GRID_KG_PER_KWH,
) -> dict[str, Any]:
    """The least-cost plan, and the same day charged flat and (when given) by the habit's hourly shape."""
    n = len(prices)
    if not 1 <= n <= MAX_HOURS:
        raise ValueError(f"a plan covers 1 to {MAX_HOURS} hours, got {n}")
    if len(demand) != n:
        raise ValueError(f"{n} prices but {len(demand)} demand values")
    for name, seq in (("price", prices), ("demand", demand)):
        if not all(math.isfinite(v) and 0 <= v <= 1e9 for v in seq):
            raise ValueError(f"every {name} must be a number between 0 and 1e9")
    if habit is not None and (
        len(habit) != n or not all(math.isfinite(v) and v >= 0 for v in habit) or sum(habit) <= 0
    ):
        raise ValueError(f"the habit profile needs {n} non-negative numbers, not all zero")
    tank.check()
    best = _summary(_solve(prices, demand, tank, None), prices, grid_kg_per_kwh, detail=True)
    out: dict[str, Any] = {
        "tank": asdict(tank),
        "demand_kwh_th": round(float(sum(demand)), 3),
        "grid_kg_per_kwh": grid_kg_per_kwh,
        "plan": best,
        "compare": {},
    }
    shapes: dict[str, Sequence[float]] = {"flat": [1.0] * n}
    if habit is not None:
        shapes["habit"] = habit
    for name, shape in shapes.items():
        try:
            s = _summary(_solve(prices, demand, tank, shape), prices, grid_kg_per_kwh, detail=False)
            s["saving_yuan"] = round(s["cost_yuan"] - best["cost_yuan"], 3)
            s["saving_co2_kg"] = round(s["co2_kg"] - best["co2_kg"], 3)
            out["compare"][name] = s
        except Infeasible as e:
            out["compare"][name] = {"infeasible": f"{e} with the {name} profile"}
    return out


def day_prices(versions: list[tf.TariffVersion], day: date) -> list[float]:
    """The 24 hourly prices (yuan/kWh) of a local date from the tariff version in force on it."""
    v = tf.version_on(versions, day)
    if v is None:
        raise ValueError(f"no tariff version is in force on {day}")
    return [p / 1e6 for p in v.prices[day.month]]
