"""``cemp plan --site S --date D [--json]``: the day-ahead charging plan of a site's storage tank, from a node;
``cemp hdd --csv FILE [--base 18] [--json]``: heating degree-days of a daily weather CSV (``date,mean_temp_c``).

The node forecasts the day's heat demand from the site's last 7 days on chain and solves the least-cost plan under
the time-of-use tariff; the command prints the hourly plan and its cost and CO2 against charging flat and against
the site's habitual shape (see ``energy.api``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

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
