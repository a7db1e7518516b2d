"""Boiler baselines: the coal and gas a fossil boiler would burn for the same delivered heat, and its CO2.

All arithmetic is exact (``Fraction``); figures are rounded for display only. Delivered heat comes from one of:
metered heat (a heat meter), electricity × the electric boiler's efficiency, or a design-load assumption
(area × W/m² × hours × days, what the case study used).

    fuel energy = heat / boiler efficiency
    CO2 = fuel energy × fuel factor (tCO2/TJ, defaults from the factor library: bituminous coal 89.2738 =
          26.18 tC/TJ × 93 % × 44/12; natural gas 55.539 = 15.3 tC/TJ × 99 % × 44/12)
    fuel mass = fuel energy / NCV (coal 23.204 GJ/t; gas 38.931 MJ/Nm³); standard coal = fuel energy / 29.3076

Electric side: electricity = heat / electric efficiency (0.98 for resistance boilers, or a heat pump's COP), CO2 =
electricity × grid factor (0 when the power is green or the case's "zero-carbon electric" view).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

WH_PER_GJ = Fraction(10**9, 3600)
GJ_PER_TCE = Fraction("29.3076")
COAL_EF = Fraction("89.2738")  # tCO2/TJ, CN bituminous default
GAS_EF = Fraction("55.539")  # tCO2/TJ, CN natural gas default
COAL_NCV = Fraction("23.204")  # GJ/t
GAS_NCV = Fraction("38.931")  # MJ/Nm3
ELECTRIC_EFF = Fraction("0.98")


@dataclass(frozen=True, slots=True)
class BoilerParams:
    coal_efficiency: Fraction = Fraction("0.78")
    gas_efficiency: Fraction = Fraction("0.85")
    coal_factor_tco2_per_tj: Fraction = COAL_EF
    gas_factor_tco2_per_tj: Fraction = GAS_EF
    coal_ncv_gj_per_t: Fraction = COAL_NCV
    gas_ncv_mj_per_nm3: Fraction = GAS_NCV
    electric_efficiency: Fraction = ELECTRIC_EFF
    """Heat out per electricity in for the electric plant (resistance boilers 0.98; a heat pump's COP)."""
    grid_factor_tco2_per_mwh: Fraction = Fraction(0)
    """Factor for the electric side; 0 = green power or the case's zero-carbon view."""

    def check(self) -> None:
        for name in ("coal_efficiency", "gas_efficiency", "electric_efficiency"):
            v = getattr(self, name)
            if not 0 < v <= 10:
                raise ValueError(f"{name} must be above 0 (and at most 10 for a heat pump's COP), got {v}")
        for name in ("coal_factor_tco2_per_tj", "gas_factor_tco2_per_tj", "grid_factor_tco2_per_mwh"):
            if not 0 <= getattr(self, name) <= 1000:
                raise ValueError(f"{name} must be between 0 and 1000")
        for name in ("coal_ncv_gj_per_t", "gas_ncv_mj_per_nm3"):
            if not 0 < getattr(self, name) <= 1000:
                raise ValueError(f"{name} must be above 0")


def design_heat_gj(area_m2: Fraction, load_w_per_m2: Fraction, hours: Fraction, days: Fraction) -> Fraction:
    """Delivered heat under the design-load assumption: area × load × hours per day × days (Wh -> GJ)."""
    return area_m2 * load_w_per_m2 * hours * days / WH_PER_GJ


@dataclass(frozen=True, slots=True)
class Baseline:
    heat_gj: Fraction
    coal_fuel_gj: Fraction
    coal_t: Fraction
    coal_tce: Fraction
    coal_tco2: Fraction
    gas_fuel_gj: Fraction
    gas_nm3: Fraction
    gas_tco2: Fraction
    electricity_mwh: Fraction
    electric_tco2: Fraction

    @property
    def avoided_vs_coal_tco2(self) -> Fraction:
        return self.coal_tco2 - self.electric_tco2

    @property
    def avoided_vs_gas_tco2(self) -> Fraction:
        return self.gas_tco2 - self.electric_tco2


def baseline(heat_gj: Fraction, p: BoilerParams, electricity_mwh: Fraction | None = None) -> Baseline:
    """Coal and gas boiler baselines for ``heat_gj``; the electric side from ``electricity_mwh`` when metered,
    else heat / electric efficiency."""
    p.check()
    coal_fuel = heat_gj / p.coal_efficiency
    gas_fuel = heat_gj / p.gas_efficiency
    elec = (
        electricity_mwh if electricity_mwh is not None else heat_gj / p.electric_efficiency / Fraction("3.6")
    )
    return Baseline(
        heat_gj=heat_gj,
        coal_fuel_gj=coal_fuel,
        coal_t=coal_fuel / p.coal_ncv_gj_per_t,
        coal_tce=coal_fuel / GJ_PER_TCE,
        coal_tco2=coal_fuel * p.coal_factor_tco2_per_tj / 1000,
        gas_fuel_gj=gas_fuel,
        gas_nm3=gas_fuel * 1000 / p.gas_ncv_mj_per_nm3,
        gas_tco2=gas_fuel * p.gas_factor_tco2_per_tj / 1000,
        electricity_mwh=elec,
        electric_tco2=elec * p.grid_factor_tco2_per_mwh,
    )


def rnd(x: Fraction, places: int) -> float:
    """Display rounding (half-even) of an exact value."""
    q = Decimal(1).scaleb(-places)
    d = (Decimal(x.numerator) / Decimal(x.denominator)).quantize(q, rounding=ROUND_HALF_EVEN)
    return float(d)


def frac_str(x: Fraction) -> str:
    """Exact decimal text of a terminating fraction (0.78), else the fraction itself (1/3)."""
    d = x.denominator
    for f in (2, 5):
        while d % f == 0:
            d //= f
    if d != 1:
        return str(x)
    s = f"{Decimal(x.numerator) / Decimal(x.denominator):f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def baseline_json(b: Baseline, p: BoilerParams) -> dict[str, Any]:
    return {
        "heat_gj": rnd(b.heat_gj, 1),
        "heat_mwh": rnd(b.heat_gj / Fraction("3.6"), 1),
        "coal_fuel_gj": rnd(b.coal_fuel_gj, 1),
        "coal_t": rnd(b.coal_t, 1),
        "coal_tce": rnd(b.coal_tce, 1),
        "coal_tco2": rnd(b.coal_tco2, 1),
        "gas_fuel_gj": rnd(b.gas_fuel_gj, 1),
        "gas_nm3": rnd(b.gas_nm3, 0),
        "gas_tco2": rnd(b.gas_tco2, 1),
        "electricity_mwh": rnd(b.electricity_mwh, 1),
        "electric_tco2": rnd(b.electric_tco2, 1),
        "avoided_vs_coal_tco2": rnd(b.avoided_vs_coal_tco2, 1),
        "avoided_vs_gas_tco2": rnd(b.avoided_vs_gas_tco2, 1),
        "parameters": {k: frac_str(v) for k, v in asdict(p).items()},
    }


# --- cemp baseline -------------------------------------------------------------------------------------------


def _frac(s: str) -> Fraction:
    try:
        v = Fraction(s)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{s} is negative")
    return v


def add_parser(sub: Any) -> None:
    bp = sub.add_parser(
        "baseline",
        help="coal- and gas-boiler baselines for the heat a building needs (design-load assumption)",
        description="Delivered heat = area x load x hours x days; each boiler burns heat / efficiency of fuel. "
        "Prints the heat and each baseline's fuel and CO2 (exact arithmetic, rounded for display).",
    )
    bp.add_argument("--area", type=_frac, required=True, help="heated floor area, m2")
    bp.add_argument("--load", type=_frac, required=True, help="heating load, W/m2 (the case: 50)")
    bp.add_argument("--hours", type=_frac, default=Fraction(24), help="hours per day at that load (24)")
    bp.add_argument("--days", type=_frac, required=True, help="heating days (Hohhot: 183)")
    bp.add_argument(
        "--coal-efficiency", type=_frac, default=Fraction("0.78"), help="coal boiler efficiency (0.78)"
    )
    bp.add_argument(
        "--gas-efficiency", type=_frac, default=Fraction("0.85"), help="gas boiler efficiency (0.85)"
    )
    bp.add_argument("--coal-factor", type=_frac, default=COAL_EF, help="coal CO2 factor, tCO2/TJ (89.2738)")
    bp.add_argument("--gas-factor", type=_frac, default=GAS_EF, help="gas CO2 factor, tCO2/TJ (55.539)")
    bp.add_argument(
        "--grid-factor",
        type=_frac,
        default=Fraction(0),
        help="grid factor for the electric side, tCO2/MWh (0)",
    )
    bp.add_argument(
        "--electric-efficiency",
        type=_frac,
        default=ELECTRIC_EFF,
        help="electric boiler efficiency or COP (0.98)",
    )
    bp.add_argument("--json", action="store_true", help="print one JSON object")
    bp.set_defaults(func=cmd_baseline)


def cmd_baseline(args: argparse.Namespace) -> int:
    p = BoilerParams(
        coal_efficiency=args.coal_efficiency,
        gas_efficiency=args.gas_efficiency,
        coal_factor_tco2_per_tj=args.coal_factor,
        gas_factor_tco2_per_tj=args.gas_factor,
        electric_efficiency=args.electric_efficiency,
        grid_factor_tco2_per_mwh=args.grid_factor,
    )
    try:
        heat = design_heat_gj(args.area, args.load, args.hours, args.days)
        b = baseline(heat, p)
    except ValueError as e:
        print(f"cemp baseline: {e}", file=sys.stderr)
        return 2
    out = baseline_json(b, p)
    out["inputs"] = {
        "area_m2": str(args.area),
        "load_w_per_m2": str(args.load),
        "hours": str(args.hours),
        "days": str(args.days),
    }
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"delivered heat   {out['heat_gj']:>14,.1f} GJ  ({out['heat_mwh']:,.1f} MWh)")
    print(
        f"coal boiler      {out['coal_tco2']:>14,.1f} tCO2  (η {float(p.coal_efficiency):.0%}: {out['coal_fuel_gj']:,.0f} GJ "
        f"fuel = {out['coal_t']:,.0f} t bituminous = {out['coal_tce']:,.0f} tce)"
    )
    print(
        f"gas boiler       {out['gas_tco2']:>14,.1f} tCO2  (η {float(p.gas_efficiency):.0%}: {out['gas_fuel_gj']:,.0f} GJ "
        f"fuel = {out['gas_nm3']:,.0f} Nm3)"
    )
    print(
        f"electric heating {out['electric_tco2']:>14,.1f} tCO2  ({out['electricity_mwh']:,.1f} MWh at "
        f"{frac_str(p.grid_factor_tco2_per_mwh)} tCO2/MWh)"
    )
    print(f"avoided vs coal  {out['avoided_vs_coal_tco2']:>14,.1f} tCO2")
    print(f"avoided vs gas   {out['avoided_vs_gas_tco2']:>14,.1f} tCO2")
    return 0
