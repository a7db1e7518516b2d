"""Benchmark of the energy models and the anomaly detectors (issue 11), on the demo's own load model
(``collector.loadmodel``, seed 1).

1. Two heating seasons of hourly electricity per subsystem and of the hourly mean outdoor temperature, integrated
   exactly from the load model's one-minute cells: 2024/25 (the "last season") and 2025/26 ("this season").
2. Model accuracy (``cv_rmse_pct``, ``nmbe_pct``): the change-point model and the two hourly variants fitted on
   three weeks in four of this season and scored on the held-out fourth (``energy.models.select``), for the site
   total; ASHRAE G14 CV(RMSE) and NMBE in percent (p = 0 held out).
3. ``fit_s``: the models fitted and selected for 100 device series of last season (the five subsystems' series, each
   device a seeded scale and ±3 % noise of one of them), with each device's residual baseline for the alarms. The
   devices share one ``models.Frame`` (a site's devices share the hours). Median of ``--repeat`` runs.
4. ``false_alarms_per_season``: every device's last-season model and baseline run over this whole season with no
   fault injected (``detect.check_model``): findings per device-season (all are false alarms by construction).
   Out of sample: the model never saw this season's weather or noise.
5. ``alarm_eval_ms``: one hour of new readings (a Wh counter read every minute) for all 100 devices, judged
   together by ``energy.fleet`` (array operations over all devices; the exact per-device detector only where they
   show something): counter plausibility, gaps, silence, the new hour's consumption against the model over a
   14-day window, and de-duplication against the episodes already raised. Median over 12 successive hours; device 0 gets a +60 %
   fault from the third hour, which must be raised once.
6. ``plan_ms``: the day-ahead plan for 2026-01-15 with the load model's heat demand of that day, the plant's tank
   (24 MWh_th) and heaters, against flat charging and the load model's own habit. Median of ``--repeat`` runs.

Times are wall-clock medians (the keys the issue names); ``*_cpu`` beside them is this process's CPU time, which
a machine shared with other jobs inflates less. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from accounting import tariffs as tf  # noqa: E402
from collector.loadmodel import SUBSYSTEMS, HeatingSiteModel, local_ms  # noqa: E402
from energy import detect as dt  # noqa: E402
from energy import metrics, models  # noqa: E402
from energy import plan as pl  # noqa: E402
from energy.fleet import Fleet, Member  # noqa: E402

HOUR = 3_600_000
OFFSET_MIN = 480
DEVICES = 100
WINDOW_H = 14 * 24


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Season:
    def __init__(self, m: HeatingSiteModel, first: date, days: int, versions: list[tf.TariffVersion]) -> None:
        t0 = local_ms(first.year, first.month, first.day)
        self.times: list[datetime] = []
        self.hour_ms: list[int] = []
        temps: list[float] = []
        kwh: dict[str, list[float]] = {s: [] for s in SUBSYSTEMS}
        for h in range(days * 24):
            a = t0 + h * HOUR
            self.hour_ms.append(a)
            self.times.append(datetime(first.year, first.month, first.day) + timedelta(hours=h))
            temps.append(sum(m.state(a + k * 600_000).outdoor_mdegc for k in range(6)) / 6000)
            for s in SUBSYSTEMS:
                kwh[s].append(m.energy_wms(s, a, a + HOUR) / 3.6e9)
        self.temps = np.array(temps)
        self.kwh = {s: np.array(v) for s, v in kwh.items()}
        self.bands = []
        for tm in self.times:
            v = tf.version_on(versions, tm.date())
            assert v is not None
            self.bands.append(models.band_of_prices(v.prices[tm.month])[tm.hour])
        self.frame = models.Frame.of(self.times, self.bands)


def devices(s: Season, seed: int) -> list[np.ndarray]:
    """100 device series: device i follows subsystem i mod 5, scaled by a seeded factor, with ±3 % noise."""
    rng = random.Random(7)  # the same scales in both seasons: the same devices
    noise = np.random.default_rng(seed)
    out = []
    for i in range(DEVICES):
        k = rng.uniform(0.5, 2.0)
        base = s.kwh[SUBSYSTEMS[i % len(SUBSYSTEMS)]]
        out.append(np.maximum(0.0, base * k * (1 + noise.normal(0, 0.03, base.size))))
    return out


class Fitted:
    def __init__(
        self, model: models.ChangePoint3PH | models.HourlyModel, baseline: dt.Baseline, name: str
    ) -> None:
        self.model, self.baseline, self.name = model, baseline, name


def fit_all(s: Season, series: list[np.ndarray]) -> list[Fitted | None]:
    """Model selection and the held-out residual baseline of every device."""
    fr = s.frame
    ho = fr.held_out
    hm = np.array(s.hour_ms, dtype=np.int64)[ho] + OFFSET_MIN * 60_000
    lh, ld = (hm // HOUR) % 24, hm // dt.DAY_MS
    out: list[Fitted | None] = []
    for y in series:
        try:
            sel = models.select(s.times, s.temps, y, s.bands, fr)
        except ValueError:
            out.append(None)
            continue
        m = sel["_models"][sel["chosen"]]
        pred = models.predict_on(
            m, fr.held_cal, models.effective_temps(m, fr.calendar, s.temps)[ho], effective=True
        )
        out.append(Fitted(m, dt.Baseline.from_residuals(lh, y[ho], pred, ld), sel["chosen"]))
    return out


def points(device: str, s: Season, y: np.ndarray, lo: int = 0, hi: int | None = None) -> list[dt.HourPoint]:
    hi = len(s.hour_ms) if hi is None else hi
    return [dt.HourPoint(s.hour_ms[i], float(y[i]), (f"{device}#h{i}",)) for i in range(lo, hi)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3, help="timing runs of fit and plan (median reported)")
    args = ap.parse_args(argv)
    versions = tf.load()
    m = HeatingSiteModel(seed=1)
    t = time.perf_counter()
    last = Season(m, date(2024, 10, 15), 182, versions)
    this = Season(m, date(2025, 10, 15), 183, versions)
    log(
        f"two seasons ({len(last.times)} + {len(this.times)} hours) from the load model in {time.perf_counter() - t:.1f} s"
    )

    # -- model accuracy, site total, this season's held-out weeks
    total = sum(this.kwh[s] for s in SUBSYSTEMS)
    sel = models.select(this.times, this.temps, total, this.bands, this.frame)
    chosen = sel["chosen"]
    for name in models.VARIANTS:
        r = sel[name]
        log(
            f"site total, {name}: balance {r['balance_c']} °C; fit CV(RMSE) {r['fit']['cv_rmse_pct']} % "
            f"NMBE {r['fit']['nmbe_pct']} % (p={r['fit']['p']}); held out CV(RMSE) {r['held_out']['cv_rmse_pct']} % "
            f"NMBE {r['held_out']['nmbe_pct']} % (n={r['held_out']['n']})"
        )
    log(f"chosen on held-out data: {chosen}")

    # -- fit 100 devices on last season
    series_last = devices(last, seed=11)
    series_this = devices(this, seed=12)
    fit_runs = []
    fitted: list[Fitted | None] = []
    fit_cpu = []
    for _ in range(max(1, args.repeat)):
        t = time.perf_counter()
        c = time.process_time()
        fitted = fit_all(last, series_last)
        fit_runs.append(time.perf_counter() - t)
        fit_cpu.append(time.process_time() - c)
    fit_s = statistics.median(fit_runs)
    ok = [f for f in fitted if f is not None]
    log(
        f"{DEVICES} device-seasons: {len(ok)} fitted ({dict(Counter(f.name for f in ok))}); "
        f"runs {', '.join(f'{x:.2f}' for x in fit_runs)} s; median {fit_s:.2f} s "
        f"(CPU {', '.join(f'{x:.2f}' for x in fit_cpu)} s)"
    )

    # -- false alarms over this season, out of sample
    kinds: Counter[str] = Counter()
    by_sub: Counter[str] = Counter()
    next_cv = []
    per_device = []
    for i, f in enumerate(fitted):
        if f is None:
            continue
        y = series_this[i]
        exp = models.predict_on(f.model, this.frame.calendar, this.temps)
        if y.mean() > 0:
            next_cv.append(metrics.cv_rmse(y, exp))
        fs = dt.check_model(f"dev{i}", points(f"dev{i}", this, y), exp, f.baseline, offset_min=OFFSET_MIN)
        kinds.update(x.kind.value for x in fs)
        by_sub[SUBSYSTEMS[i % len(SUBSYSTEMS)]] += len(fs)
        per_device.append(len(fs))
        if fs and sum(1 for c in per_device if c) <= 3:
            log(f"false alarm example: {fs[0].message}")
    false_alarms = sum(per_device) / max(len(per_device), 1)
    log(
        f"false alarms over this season (no fault): {sum(per_device)} on {len(per_device)} devices = "
        f"{false_alarms:.2f} per device-season; by kind {dict(kinds)}; devices with none "
        f"{sum(1 for c in per_device if c == 0)}; next-season CV(RMSE) median {statistics.median(next_cv):.1f} %"
    )

    # -- one hour of new readings for all devices, evaluated 12 times
    alarm_ms, alarm_cpu, raised = alarm_eval(this, series_this, fitted)
    log(f"alarm evaluation per hour for {DEVICES} devices: {', '.join(f'{x:.1f}' for x in alarm_ms)} ms")
    log(f"  the same, CPU time of this process: {', '.join(f'{x:.1f}' for x in alarm_cpu)} ms")
    for x in raised:
        log(f"raised: {x.kind.value} {x.message}")

    # -- the day-ahead plan
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
    plan_runs = []
    for _ in range(max(1, args.repeat)):
        t = time.perf_counter()
        r = pl.plan(prices, demand, tank, habit)
        plan_runs.append((time.perf_counter() - t) * 1000)
    plan_ms = statistics.median(plan_runs)
    log(
        f"plan {day}: demand {r['demand_kwh_th']:,.0f} kWh_th; plan {r['plan']['cost_yuan']:,.0f} yuan "
        f"{r['plan']['co2_kg']:,.0f} kgCO2; flat {r['compare']['flat'].get('cost_yuan')} yuan; habit "
        f"{r['compare']['habit'].get('cost_yuan')} yuan; runs {', '.join(f'{x:.1f}' for x in plan_runs)} ms"
    )
    best = sel[chosen]["held_out"]
    print(
        json.dumps(
            {
                "fit_s": round(fit_s, 3),
                "alarm_eval_ms": round(statistics.median(alarm_ms), 2),
                "alarm_eval_cpu_ms": round(statistics.median(alarm_cpu), 2),
                "fit_cpu_s": round(statistics.median(fit_cpu), 3),
                "plan_ms": round(plan_ms, 1),
                "cv_rmse_pct": best["cv_rmse_pct"],
                "nmbe_pct": best["nmbe_pct"],
                "false_alarms_per_season": round(false_alarms, 3),
                "false_alarms_by_kind": dict(kinds),
                "false_alarms_per_season_by_subsystem": {
                    k: round(
                        v / max(1, sum(1 for j, f in enumerate(fitted) if f and SUBSYSTEMS[j % 5] == k)), 2
                    )
                    for k, v in sorted(by_sub.items())
                },
                "devices_fitted": len(ok),
                "next_season_cv_rmse_pct_median": round(statistics.median(next_cv), 2),
                "model": chosen,
                "held_out_cv_rmse_pct": {k: sel[k]["held_out"]["cv_rmse_pct"] for k in models.VARIANTS},
                "fault_raised": [x.kind.value for x in raised],
                "plan_cost_yuan": r["plan"]["cost_yuan"],
                "flat_cost_yuan": r["compare"]["flat"].get("cost_yuan"),
                "habit_cost_yuan": r["compare"]["habit"].get("cost_yuan"),
                "repeat": args.repeat,
            }
        )
    )


def alarm_eval(
    s: Season, series: list[np.ndarray], fitted: list[Fitted | None]
) -> tuple[list[float], list[float], list[dt.Finding]]:
    """Evaluate 12 successive hours from 2026-01-15 10:00; device 0 consumes 60 % more from the third hour.

    The fleet evaluator (``energy.fleet``) keeps the state between hours, as a watcher would: every device's
    14-day window of hourly consumption with the model's expectation on one hourly grid, its last counter
    reading, and the identities of the episodes already raised; each hour's readings of all devices are judged
    together (counters, gaps, silence, the model's band and steps), the exact per-device detector only where the
    arrays show something."""
    start = s.times.index(datetime(2026, 1, 15, 10))
    rng = np.random.default_rng(3)
    rated = [float(y.max()) * 1000 * 2 for y in series]  # W: twice the season's largest hourly mean
    lo = start - WINDOW_H
    lastr: list[dt.Obs] = []
    cal_w = _cal_slice(s, lo, start)
    # the models' input temperatures over the season: a day-ahead model's night hours use the coming day's mean,
    # which at evaluation time is that day's forecast (here: what was then measured)
    eff = [models.effective_temps(f.model, s.frame.calendar, s.temps) if f else s.temps for f in fitted]
    fleet = Fleet(
        [Member(f"dev{i}", 60_000, rated[i], f.baseline if f else None) for i, f in enumerate(fitted)],
        WINDOW_H,
        offset_min=OFFSET_MIN,
    )
    for i, y in enumerate(series):
        f = fitted[i]
        fleet.seed(
            i,
            dt.HourSeries.of(points(f"dev{i}", s, y, lo, start)),
            models.predict_on(f.model, cal_w, eff[i][lo:start], effective=True) if f else np.zeros(WINDOW_H),
        )
        lastr.append(dt.Obs(s.hour_ms[start] - 60_000, 10_000, 5_000_000_000 + i))
    raised: list[dt.Finding] = []
    times_ms: list[float] = []
    cpu_ms: list[float] = []
    for h in range(start, start + 12):
        # the new hour's readings (made outside the timing): a Wh counter read every minute
        new: list[dt.Readings] = []
        for i, y in enumerate(series):
            kwh = float(y[h]) * (1.6 if i == 0 and h >= start + 2 else 1.0)
            prev = lastr[i]
            steps = np.round(kwh * 1000 / 60 * (1 + rng.normal(0, 0.01, 60))).astype(np.int64)
            new.append(
                dt.Readings(
                    f"dev{i}",
                    np.array([prev.ts_ms, *(s.hour_ms[h] + k * 60_000 for k in range(60))], dtype=np.int64),
                    np.arange(prev.seq, prev.seq + 61, dtype=np.int64),
                    np.concatenate([[prev.value], prev.value + np.cumsum(steps)]),
                    np.zeros(61, dtype=np.int64),
                )
            )
            lastr[i] = new[-1].obs(60)
        cal_h = _cal_slice(s, h, h + 1)
        now = s.hour_ms[h] + HOUR

        def expect(i: int, hour_ms: np.ndarray, h: int = h, cal_h: models.Calendar = cal_h) -> np.ndarray:
            f = fitted[i]
            assert f is not None and hour_ms.tolist() == [s.hour_ms[h]]  # the new readings cover hour h
            return models.predict_on(f.model, cal_h, eff[i][h : h + 1], effective=True)

        t = time.perf_counter()
        c = time.process_time()
        raised += fleet.step(new, now, expect)
        times_ms.append((time.perf_counter() - t) * 1000)
        cpu_ms.append((time.process_time() - c) * 1000)
    return times_ms, cpu_ms, raised


def _cal_slice(s: Season, lo: int, hi: int) -> models.Calendar:
    mask = np.zeros(len(s.times), dtype=bool)
    mask[lo:hi] = True
    return s.frame.calendar.take(mask)


if __name__ == "__main__":
    main()
