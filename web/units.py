"""On-chain integer quantities -> the units people read.

The chain stores integers in base units (``Wh``, ``W``, ``mV``, ``mA``, ``mdegC``, ``mHz``, ``g``, ``fen``,
``L/h``); a person reads kWh, kW, V, A, °C, Hz, kg or t, yuan and m³/h. ``display_unit`` names the unit a value is
shown in and the divisor that gets it there; the page always keeps the on-chain integer and its unit one click
away, so nothing is lost by the conversion.

Counters (energy) are summed over time as differences; gauges (power, voltage, temperature) as means.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class DisplayUnit:
    unit: str
    """Unit shown to people, e.g. ``kWh``."""
    divisor: int
    """On-chain integer / divisor = shown value."""
    decimals: int
    """Fraction digits worth showing (the on-chain resolution, capped at 3)."""


# base unit -> shown unit. The divisor never loses information the base unit had: 1 Wh = 0.001 kWh (3 digits).
UNITS: dict[str, DisplayUnit] = {
    "Wh": DisplayUnit("kWh", 1000, 3),
    "kWh": DisplayUnit("kWh", 1, 0),
    "varh": DisplayUnit("kvarh", 1000, 3),
    "W": DisplayUnit("kW", 1000, 3),
    "var": DisplayUnit("kvar", 1000, 3),
    "VA": DisplayUnit("kVA", 1000, 3),
    "mV": DisplayUnit("V", 1000, 1),
    "mA": DisplayUnit("A", 1000, 2),
    "mdegC": DisplayUnit("°C", 1000, 1),
    "mHz": DisplayUnit("Hz", 1000, 2),
    "g": DisplayUnit("kg", 1000, 1),
    "fen": DisplayUnit("¥", 100, 2),
    "L/h": DisplayUnit("m³/h", 1000, 2),
    "Pa": DisplayUnit("kPa", 1000, 1),
    "ppm": DisplayUnit("ppm", 1, 0),
}
COUNTER_UNITS = frozenset({"Wh", "kWh", "varh"})


def display_unit(unit: str) -> DisplayUnit:
    return UNITS.get(unit, DisplayUnit(unit, 1, 0))


def is_counter(quantity: str, unit: str) -> bool:
    """Cumulative registers (energy): charts show the use per interval, not the register itself."""
    return unit in COUNTER_UNITS or quantity.startswith("energy")


def to_display(value: int, unit: str) -> tuple[Decimal, DisplayUnit]:
    """Exact conversion (Decimal, no float rounding) of an on-chain integer to its shown unit."""
    du = display_unit(unit)
    if unit == "g" and abs(value) >= 10_000_000:  # 10 t and more read better in tonnes
        du = DisplayUnit("t", 1_000_000, 3)
    return Decimal(value) / du.divisor if du.divisor != 1 else Decimal(value), du


def scale(value: float, unit: str) -> float:
    """Float conversion for chart points (already downsampled; only drawn, never summed again)."""
    return value / display_unit(unit).divisor
