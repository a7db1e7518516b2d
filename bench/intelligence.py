"""Benchmark of the energy models (issue 11), on the demo's own load model (``collector.loadmodel``, seed 1).

1. One heating season (2025-10-15 .. 2026-04-15) of hourly electricity per subsystem and of the hourly mean outdoor
   temperature, integrated exactly from the load model's one-minute cells.
2. Model accuracy: the change-point model and the two hourly variants fitted on three weeks in four and scored on the held-out
   fourth (``energy.models.select``), for the site total; ASHRAE G14 CV(RMSE) and NMBE in percent (p = 0 held out).
3. ``fit_s``: both models fitted for 100 device series of one season (the five subsystems' series, each device a
   seeded scale and ±3 % noise of one of them).
4. ``plan_ms``: the day-ahead plan for 2026-01-15 with the load model's heat demand of that day, the plant's tank
   (24 MWh_th) and heaters (2.4 + 1.5 + 3.0 MW_th), against flat charging and the load model's own habit (charging
   through 23:00-07:00).

Alarms are not built yet: ``alarm_eval_ms`` and ``false_alarms_per_season`` are null. Last line: one JSON object.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from accounting import tariffs as tf  # noqa: E402
from collector.loadmodel import SUBSYSTEMS, HeatingSiteModel, local_ms  # noqa: E402
from energy import models  # noqa: E402
from energy import plan as pl  # noqa: E402

HOUR = 3_600_000


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def season(
    m: HeatingSiteModel, first: date, days: int
) -> tuple[list[datetime], list[float], dict[str, list[float]]]:
    t0 = local_ms(first.year, first.month, first.day)
    times, temps = [], []
    kwh: dict[str, list[float]] = {s: [] for s in SUBSYSTEMS}
    for h in range(days * 24):
        a = t0 + h * HOUR
        times.append(datetime(first.year, first.month, first.day) + timedelta(hours=h))
        temps.append(sum(m.state(a + k * 600_000).outdoor_mdegc for k in range(6)) / 6000)
        for s in SUBSYSTEMS:
            kwh[s].append(m.energy_wms(s, a, a + HOUR) / 3.6e9)
    return times, temps, kwh


def main() -> None:
    m = HeatingSiteModel(seed=1)
    first = date(2025, 10, 15)
    t = time.perf_counter()
    times, temps, kwh = season(m, first, 183)
    log(f"season of {len(times)} hours from the load model in {time.perf_counter() - t:.1f} s")
    versions = tf.load()
    bands = []
    for tm in times:
        v = tf.version_on(versions, tm.date())
        assert v is not None
        bands.append(models.band_of_prices(v.prices[tm.month])[tm.hour])
    total = [sum(kwh[s][i] for s in SUBSYSTEMS) for i in range(len(times))]
    sel = models.select(times, temps, total, bands)
    chosen = sel["chosen"]
    for name in ("change_point", "hourly", "hourly_by_hour"):
        r = sel[name]
        log(
            f"site total, {name}: balance {r['balance_c']} °C; fit CV(RMSE) {r['fit']['cv_rmse_pct']} % "
            f"NMBE {r['fit']['nmbe_pct']} % (p={r['fit']['p']}); held out CV(RMSE) {r['held_out']['cv_rmse_pct']} % "
            f"NMBE {r['held_out']['nmbe_pct']} % (n={r['held_out']['n']})"
        )
    log(f"chosen on held-out data: {chosen}")

    rng = random.Random(7)
    series = []
    for i in range(100):
        base = kwh[SUBSYSTEMS[i % len(SUBSYSTEMS)]]
        k = rng.uniform(0.5, 2.0)
        series.append([max(0.0, v * k * (1 + rng.gauss(0, 0.03))) for v in base])
    t = time.perf_counter()
    fitted = 0
    for s in series:
        try:
            models.select(times, temps, s, bands)
            fitted += 1
        except ValueError:
            pass  # a series without heating response (controls in standby) has no heating model
    fit_s = time.perf_counter() - t
    log(f"100 device-seasons: {fitted} fitted in {fit_s:.2f} s")

    day = date(2026, 1, 15)
    d0 = local_ms(day.year, day.month, day.day)
    demand = [
        sum(m.state(d0 + h * HOUR + k * 60_000).heat_demand_w for k in range(60)) / 60 / 1000
        for h in range(24)
    ]
    habit = [
        sum(m.energy_wms(s, d0 + h * HOUR, d0 + (h + 1) * HOUR) for s in SUBSYSTEMS) / 3.6e9
        for h in range(24)
    ]
    p = m.p
    tank = pl.Tank(
        capacity_kwh=p.tank_capacity_wh / 1000,
        # core unit + pipe heater + the tank's own heaters (the load model charges the tank evenly over 8 hours)
        boiler_kw=(p.core_capacity_w + p.pipe_capacity_w + p.tank_capacity_wh / 8)
        / p.heater_efficiency
        / 1000,
        boiler_efficiency=p.heater_efficiency,
        standing_loss_per_h=p.tank_loss / 24,
        initial_kwh=None,
    )
    prices = pl.day_prices(versions, day)
    t = time.perf_counter()
    r = pl.plan(prices, demand, tank, habit)
    plan_ms = (time.perf_counter() - t) * 1000
    log(
        f"plan {day}: demand {r['demand_kwh_th']:,.0f} kWh_th; plan {r['plan']['cost_yuan']:,.0f} yuan "
        f"{r['plan']['co2_kg']:,.0f} kgCO2; flat {r['compare']['flat']}; habit {r['compare']['habit']}"
    )
    best = sel[chosen]["held_out"]
    print(
        json.dumps(
            {
                "fit_s": round(fit_s, 3),
                "alarm_eval_ms": None,
                "plan_ms": round(plan_ms, 1),
                "cv_rmse_pct": best["cv_rmse_pct"],
                "nmbe_pct": best["nmbe_pct"],
                "false_alarms_per_season": None,
                "model": chosen,
                "held_out_cv_rmse_pct": {
                    k: sel[k]["held_out"]["cv_rmse_pct"] for k in ("change_point", "hourly", "hourly_by_hour")
                },
                "plan_cost_yuan": r["plan"]["cost_yuan"],
                "flat_cost_yuan": r["compare"]["flat"].get("cost_yuan"),
                "habit_cost_yuan": r["compare"]["habit"].get("cost_yuan"),
            }
        )
    )


if __name__ == "__main__":
    main()
