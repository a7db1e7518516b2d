"""``cemp plan --site S --date D [--json]``: the day-ahead charging plan of a site's storage tank, from a node;
``cemp hdd --csv FILE [--base 18] [--json]``: heating degree-days of a daily weather CSV (``date,mean_temp_c``);
``cemp forecast --history FILE --now T [--weather FILE] [--json]``: energy, cost and emissions for the rest of the
day, month and heating season from an hourly history CSV (``time,temp_c,kwh``), computed locally
(``energy.forecast``; the node serves the same as ``POST /v1/energy/forecast``).

The node forecasts the day's heat demand from the site's last 7 days on chain and solves the least-cost plan under
the time-of-use tariff; the command prints the hourly plan and its cost and CO2 against charging flat and against
the site's habitual shape (see ``energy.api``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import math
import sys
from datetime import date, datetime
from typing import Any

from accounting import tariffs as tf
from energy import forecast as fc
from energy import weather
from node.client import NodeClient
from node.errors import CempError

_TANK_ARGS = (
    ("capacity_kwh", "tank capacity, kWh_th (node default 20000)"),
    ("boiler_kw", "electric boiler limit, kW_e (node default 7000)"),
    ("initial_kwh", "heat in the tank at 00:00, kWh_th (default: a steady-state day)"),
    ("standing_loss_per_h", "fraction of stored heat lost per hour (default 0.005)"),
)


def render(r: dict[str, Any]) -> str:
    p = r["plan"]
    lines = [
        f"{r.get('site_id', '')} {r['date']}: heat demand {r['demand_kwh_th']:,.0f} kWh_th "
        f"({r.get('demand_source', 'given')})",
        f"tariff {r['tariff']['id'] if r.get('tariff') else '?'}; tank {r['tank']['capacity_kwh']:,.0f} kWh_th, "
        f"boiler {r['tank']['boiler_kw']:,.0f} kW_e",
        "hour  price  power_kW  charge_kWh  discharge_kWh  stored_kWh",
    ]
    for h in p["hours"]:
        lines.append(
            f"{h['hour']:>4}  {h['price_yuan_per_kwh']:.3f}  {h['power_kw']:>8,.0f}  {h['charge_kwh']:>10,.0f}  "
            f"{h['discharge_kwh']:>13,.0f}  {h['stored_kwh_end']:>10,.0f}"
        )
    lines.append(
        f"plan:  {p['electricity_kwh']:,.0f} kWh_e  {p['cost_yuan']:,.2f} yuan  {p['co2_kg']:,.0f} kgCO2"
    )
    for name, c in r["compare"].items():
        if "infeasible" in c:
            lines.append(f"{name}: {c['infeasible']}")
        else:
            lines.append(
                f"{name}: {c['electricity_kwh']:,.0f} kWh_e  {c['cost_yuan']:,.2f} yuan  {c['co2_kg']:,.0f} kgCO2"
                f"  (the plan saves {c['saving_yuan']:,.2f} yuan, {c['saving_co2_kg']:,.0f} kgCO2)"
            )
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    params = {k: getattr(args, k) for k, _ in _TANK_ARGS if getattr(args, k) is not None}

    async def run() -> dict[str, Any]:
        async with NodeClient(args.nodes) as c:
            return await c.get(f"/v1/sites/{args.site}/energy/plan", date=args.date, **params)

    try:
        r = asyncio.run(run())
    except CempError as e:
        print(f"cemp plan: {e.message}", file=sys.stderr)
        return 1
    print(json.dumps(r, ensure_ascii=False) if args.json else render(r))
    return 0


def cmd_hdd(args: argparse.Namespace) -> int:
    try:
        with open(args.csv, encoding="utf-8") as f:
            text = f.read(weather.MAX_CSV_BYTES + 1)
        rows = weather.read_daily_csv(text)
    except OSError as e:
        print(f"cemp hdd: cannot read {args.csv}: {e.strerror}", file=sys.stderr)
        return 1
    except weather.WeatherCSVError as e:
        print(f"cemp hdd: {args.csv}: {e}", file=sys.stderr)
        return 1
    days = {r.day.isoformat(): round(weather.hdd(r.mean_c, args.base), 2) for r in rows}
    total = round(sum(days.values()), 2)
    if args.json:
        print(json.dumps({"base_c": args.base, "days": days, "total": total}))
        return 0
    for d, v in days.items():
        print(f"{d}  {v:7.2f}")
    print(f"HDD{args.base:g} over {len(days)} days ({rows[0].day} .. {rows[-1].day}): {total:,.2f} °C·d")
    return 0


MAX_HISTORY_BYTES = 2_000_000


def read_history_csv(text: str) -> list[tuple[datetime, float, float]]:
    """``time,temp_c,kwh`` rows (local ISO times); a bad row raises ``ValueError`` naming its line."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
    if not rows or [h.strip().lower() for h in rows[0]] != ["time", "temp_c", "kwh"]:
        raise ValueError("line 1: header must be 'time,temp_c,kwh'")
    if len(rows) - 1 > 24 * 400:
        raise ValueError(f"more than {24 * 400} hours; give at most a season and a bit")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        try:
            if len(r) != 3:
                raise ValueError
            t = datetime.fromisoformat(r[0].strip()).replace(tzinfo=None)
            c, e = float(r[1]), float(r[2])
        except ValueError:
            raise ValueError(f"line {i}: expected local time, °C, kWh; got {','.join(r)[:80]!r}") from None
        if not (
            math.isfinite(c)
            and weather.T_MIN_C <= c <= weather.T_MAX_C
            and math.isfinite(e)
            and 0 <= e <= 1e9
        ):
            raise ValueError(f"line {i}: temperature or kWh out of range")
        out.append((t, c, e))
    return out


def render_forecast(r: dict[str, Any]) -> str:
    err = r["model_error"]["hourly_held_out"]
    day = r["model_error"]["daily_held_out"]
    lines = [
        f"forecast at {r['now']} with the {r['model']} model (held out: hourly CV(RMSE) {err['cv_rmse_pct']} %, "
        f"NMBE {err['nmbe_pct']} %" + (f"; daily CV(RMSE) {day['cv_rmse_pct']} %" if day else "") + ")",
        "horizon   energy_kWh   (measured + predicted ± 95 %)        cost_yuan      kgCO2   weather",
    ]
    for name, h in r["horizons"].items():
        lines.append(
            f"{name:<8} {h['energy_kwh']:>12,.0f}   ({h['measured_kwh']:,.0f} + {h['predicted_kwh']:,.0f} ± "
            f"{h['predicted_band_95_kwh']:,.0f})  {h['cost_yuan']:>12,.2f} {h['co2_kg']:>10,.0f}   "
            f"{h['weather']['forecast_hours']} h forecast, {h['weather']['climate_normal_hours']} h normal"
        )
    lines.append(f"emissions: {r['emissions_method']} ({r['grid_kg_per_kwh']} kgCO2/kWh)")
    return "\n".join(lines)


def cmd_forecast(args: argparse.Namespace) -> int:
    try:
        with open(args.history, encoding="utf-8") as f:
            hist = read_history_csv(f.read(MAX_HISTORY_BYTES + 1))
        daily: dict[date, float] = {}
        if args.weather:
            with open(args.weather, encoding="utf-8") as f:
                daily = {w.day: w.mean_c for w in weather.read_daily_csv(f.read(weather.MAX_CSV_BYTES + 1))}
        now = datetime.fromisoformat(args.now).replace(tzinfo=None)
        r = fc.forecast(hist, now, tf.load(), daily, args.grid_factor)
    except OSError as e:
        print(f"cemp forecast: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"cemp forecast: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r, ensure_ascii=False) if args.json else render_forecast(r))
    return 0


def add_commands(sub: Any) -> None:
    hp = sub.add_parser("hdd", help="heating degree-days of a daily weather CSV (date,mean_temp_c)")
    hp.add_argument("--csv", required=True, help="CSV file with the header date,mean_temp_c")
    hp.add_argument("--base", type=float, default=weather.DEFAULT_BASE_C, help="base temperature, °C (18)")
    hp.add_argument("--json", action="store_true")
    hp.set_defaults(func=cmd_hdd)
    pp = sub.add_parser("plan", help="day-ahead charging plan of a site's storage tank under the TOU tariff")
    pp.add_argument("--site", required=True)
    pp.add_argument("--date", required=True, help="the plan's local date, YYYY-MM-DD")
    for name, help_ in _TANK_ARGS:
        pp.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, default=None, help=help_)
    pp.add_argument("--nodes", default="http://127.0.0.1:7001", help="a node's API address")
    pp.add_argument("--json", action="store_true")
    pp.set_defaults(func=cmd_plan)
    fp = sub.add_parser(
        "forecast", help="energy, cost and emissions for the rest of the day, month and heating season"
    )
    fp.add_argument("--history", required=True, help="CSV time,temp_c,kwh of the measured hours (>= 4 weeks)")
    fp.add_argument("--now", required=True, help="local time of the forecast, e.g. 2026-01-15T10:00")
    fp.add_argument("--weather", help="forecast weather: daily CSV date,mean_temp_c (else climate normals)")
    fp.add_argument(
        "--grid-factor",
        type=float,
        default=fc.DEFAULT_GRID_KG_PER_KWH,
        help="kgCO2/kWh (0.6479, Inner Mongolia 2023)",
    )
    fp.add_argument("--json", action="store_true")
    fp.set_defaults(func=cmd_forecast)
