"""Heating KPIs of a site and period, from its inventory: W/m² (average and peak against the 50 W/m² design
reference), kWh/m², HDD-normalised intensity, cost per m² from time-of-use tariffs against coal and gas heating
costs, boiler baselines and avoided emissions, and the unmetered remainder.

Delivered heat is the heat meters' sum when the boundary has heat meters; otherwise the site's electricity × the
electric boiler efficiency (0.98), and the result says which. Heating degree days are the site's normal
``hdd18_annual`` spread over the year by a normal temperature curve (``hdd_share``), a model, not a measurement:
it normalises intensity between periods and sites, and the docs say so.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from accounting import tariffs as tf
from accounting.baseline import BoilerParams, baseline, baseline_json, rnd
from accounting.periods import DAY_MS, HOUR_MS

REFERENCE_W_PER_M2 = 50
ANNUAL_MEAN_C = 6.5
ANNUAL_AMPLITUDE_C = 17.5
COLDEST_DAY = 14  # 15 January, 0-based day of year


def _normal_hdd_day(day_of_year: int) -> float:
    t = ANNUAL_MEAN_C - ANNUAL_AMPLITUDE_C * math.cos(2 * math.pi * (day_of_year - COLDEST_DAY) / 365)
    return max(0.0, 18.0 - t)


_YEAR_SUM = sum(_normal_hdd_day(i) for i in range(365))


def hdd(hdd18_annual: int, first: date, last: date) -> Fraction:
    """Normal HDD18 of the local days [first, last]: the annual total spread by a normal temperature curve
    (Hohhot-like: mean 6.5 °C, amplitude 17.5 K, coldest on 15 January)."""
    total = 0.0
    d = first
    while d <= last:
        total += _normal_hdd_day(min(d.timetuple().tm_yday - 1, 364))
        d += timedelta(days=1)
    return Fraction(round(hdd18_annual * total / _YEAR_SUM * 1000), 1000)


def tou_cost(
    site_hourly_wh: dict[int, int], utc_offset_min: int, versions: list[tf.TariffVersion]
) -> dict[str, Any]:
    """Exact energy cost of hourly use (nano-yuan), and which tariff versions priced which hours."""
    off = utc_offset_min * 60_000
    cost_nyuan = 0
    used: dict[str, int] = {}
    unpriced = 0
    for hour, wh in site_hourly_wh.items():
        t = hour * HOUR_MS + off
        d = date(1970, 1, 1) + timedelta(days=t // DAY_MS)
        v = tf.version_on(versions, d)
        if v is None:
            unpriced += 1
            continue
        price = v.prices[d.month][(t // HOUR_MS) % 24]
        cost_nyuan += wh * price
        used[v.id] = used.get(v.id, 0) + 1
    return {
        "cost_nyuan": cost_nyuan,
        "hours_by_version": dict(sorted(used.items())),
        "unpriced_hours": unpriced,
    }


def compute_kpis(
    inv: dict[str, Any], params: BoilerParams | None = None, versions: list[tf.TariffVersion] | None = None
) -> dict[str, Any]:
    """KPIs from an inventory as ``accounting.inventory.compute`` returns it (with its hourly series)."""
    params = params or BoilerParams()
    versions = versions if versions is not None else tf.load()
    site = inv["site"]
    area = int(site["floor_area_m2"])
    per = inv["period"]
    now = inv["as_of"]["time_ms"]
    elapsed_h = max(0, (min(now, per["stop_ms"]) - per["start_ms"]) // HOUR_MS)
    hourly: dict[int, int] = inv["_site_hourly_wh"]
    heat_hourly: dict[int, int] = inv["_heat_hourly_wh"]
    tot = inv["site_total"]
    elec_wh = int(tot["energy_wh"])
    metered_heat = bool(heat_hourly)
    heat_wh = Fraction(sum(heat_hourly.values())) if metered_heat else elec_wh * params.electric_efficiency
    heat_gj = heat_wh * 3600 / 10**9
    b = baseline(heat_gj, params, electricity_mwh=Fraction(elec_wh, 10**6))
    loc_t = Fraction(int(tot["co2_location_ug"]), 10**12)
    mkt_t = Fraction(int(tot["co2_market_ug"]), 10**12)
    first = date.fromisoformat(per["first_day"])
    last = min(date.fromisoformat(per["last_day"]), first + timedelta(days=max(0, per["elapsed_days"] - 1)))
    degree_days = hdd(int(site["hdd18_annual"]), first, last) if per["elapsed_days"] else Fraction(0)

    def per_m2(x: Fraction) -> Fraction:
        return x / area

    peak_hour, peak_wh = max(hourly.items(), key=lambda kv: (kv[1], -kv[0]), default=(None, 0))
    heat_peak = max(heat_hourly.values(), default=0)
    cost = tou_cost(hourly, int(site["utc_offset_min"]), versions)
    cost_yuan = Fraction(cost["cost_nyuan"], 10**9)
    v = tf.version_on(versions, last) or (versions[-1] if versions else None)
    fuel: dict[str, Any] = {}
    if v is not None:
        coal_cost = b.coal_fuel_gj / Fraction(v.coal_ncv_gj_per_t) * Fraction(v.coal_yuan_per_t)
        gas_cost = b.gas_fuel_gj * 1000 / Fraction(v.gas_ncv_mj_per_nm3) * Fraction(v.gas_yuan_per_nm3)
        fuel = {
            "tariff": v.to_json(),
            "coal_yuan": rnd(coal_cost, 0),
            "coal_yuan_per_m2": rnd(per_m2(coal_cost), 2),
            "gas_yuan": rnd(gas_cost, 0),
            "gas_yuan_per_m2": rnd(per_m2(gas_cost), 2),
        }
    kwh_m2 = per_m2(Fraction(elec_wh, 1000))
    kg_loc_m2 = per_m2(loc_t * 1000)
    kg_mkt_m2 = per_m2(mkt_t * 1000)
    avg_w = per_m2(Fraction(elec_wh, elapsed_h)) if elapsed_h else Fraction(0)
    heat_avg_w = per_m2(heat_wh / elapsed_h) if elapsed_h else Fraction(0)
    out: dict[str, Any] = {
        "site_id": site["site_id"],
        "period": per["label"],
        "floor_area_m2": area,
        "elapsed_hours": elapsed_h,
        "electricity_kwh": rnd(Fraction(elec_wh, 1000), 1),
        "electricity_kwh_per_m2": rnd(kwh_m2, 3),
        "heat_source": "heat meters"
        if metered_heat
        else f"electricity x {params.electric_efficiency} (no heat meter)",
        "heat_gj": rnd(heat_gj, 2),
        "heat_kwh_per_m2": rnd(per_m2(heat_wh / 1000), 3),
        "power": {
            "reference_w_per_m2": REFERENCE_W_PER_M2,
            "electric_avg_w_per_m2": rnd(avg_w, 2),
            "electric_peak_w_per_m2": rnd(per_m2(Fraction(peak_wh)), 2),
            "electric_peak_hour_ms": None if peak_hour is None else peak_hour * HOUR_MS,
            "heat_avg_w_per_m2": rnd(heat_avg_w, 2),
            "heat_peak_w_per_m2": rnd(per_m2(Fraction(heat_peak)), 2) if metered_heat else None,
            "avg_vs_reference_percent": rnd(heat_avg_w * 100 / REFERENCE_W_PER_M2, 1),
        },
        "hdd18": rnd(degree_days, 1),
        "hdd_note": "normal degree days of the site's climate spread over the year by a temperature curve (a model)",
        "intensity": {
            "kgco2_per_m2_location": rnd(kg_loc_m2, 3),
            "kgco2_per_m2_market": rnd(kg_mkt_m2, 3),
            "kgco2_per_m2_1000hdd_location": rnd(kg_loc_m2 * 1000 / degree_days, 3) if degree_days else None,
            "kgco2_per_m2_1000hdd_market": rnd(kg_mkt_m2 * 1000 / degree_days, 3) if degree_days else None,
            "kwh_per_m2_1000hdd": rnd(kwh_m2 * 1000 / degree_days, 3) if degree_days else None,
        },
        "cost": {
            "electricity_yuan": rnd(cost_yuan, 2),
            "electricity_yuan_per_m2": rnd(per_m2(cost_yuan), 3),
            "average_yuan_per_kwh": rnd(cost_yuan * 1000 / elec_wh, 4) if elec_wh else None,
            "tariff_hours_by_version": cost["hours_by_version"],
            "unpriced_hours": cost["unpriced_hours"],
            **fuel,
        },
        "baseline": baseline_json(b, params),
        "avoided_tco2": {
            "vs_coal_location": rnd(b.coal_tco2 - loc_t, 3),
            "vs_gas_location": rnd(b.gas_tco2 - loc_t, 3),
            "vs_coal_market": rnd(b.coal_tco2 - mkt_t, 3),
            "vs_gas_market": rnd(b.gas_tco2 - mkt_t, 3),
        },
        "co2_location_t": tot["co2_location_t"],
        "co2_market_t": tot["co2_market_t"],
        "unmetered_remainder": inv["unmetered_remainder"],
        "inventory_digest": inv.get("digest"),
        "_baseline": b,
    }
    return out


def public(kpis: dict[str, Any]) -> dict[str, Any]:
    """KPIs without the exact internal values (for JSON)."""
    return {k: v for k, v in kpis.items() if not k.startswith("_")}


def decimal_str(x: Fraction, places: int) -> str:
    return str(Decimal(rnd(x, places)))
