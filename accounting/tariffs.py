"""Time-of-use electricity tariffs and fuel prices, versioned by start date (package data ``tariffs_cn.toml``).

Each hour is priced by the version in force on its local date (the latest whose ``start`` is not after it) and
the band of its local hour in the season of its month: a new version never reprices hours before its start.
Prices are integers in micro-yuan per kWh, so ``Wh × uyuan/kWh`` is an exact cost in nano-yuan.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TariffVersion:
    id: str
    start: date
    document: str
    prices: dict[int, tuple[int, ...]]
    """Month -> price in micro-yuan/kWh for each local hour 0..23."""
    coal_yuan_per_t: Decimal
    coal_ncv_gj_per_t: Decimal
    gas_yuan_per_nm3: Decimal
    gas_ncv_mj_per_nm3: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start.isoformat(),
            "document": self.document,
            "coal_yuan_per_t": str(self.coal_yuan_per_t),
            "gas_yuan_per_nm3": str(self.gas_yuan_per_nm3),
        }


def parse(doc: dict[str, Any]) -> list[TariffVersion]:
    out = []
    for t in doc.get("tariff", []):
        f, n = int(t["floating_uyuan_per_kwh"]), int(t["fixed_uyuan_per_kwh"])
        prices: dict[int, tuple[int, ...]] = {}
        for season in t["season"]:
            ratios = [int(r) for r in season["ratios_e3"]]
            if len(ratios) != 24:
                raise ValueError(f"tariff {t['id']} season {season['name']}: 24 hourly ratios needed")
            row = tuple((f * r) // 1000 + n for r in ratios)
            for m in season["months"]:
                prices[int(m)] = row
        if sorted(prices) != list(range(1, 13)):
            raise ValueError(f"tariff {t['id']}: its seasons must cover the 12 months once")
        out.append(
            TariffVersion(
                str(t["id"]),
                date.fromisoformat(str(t["start"])),
                str(t["document"]),
                prices,
                Decimal(str(t["coal_yuan_per_t"])),
                Decimal(str(t["coal_ncv_gj_per_t"])),
                Decimal(str(t["gas_yuan_per_nm3"])),
                Decimal(str(t["gas_ncv_mj_per_nm3"])),
            )
        )
    out.sort(key=lambda v: v.start)
    if len({v.start for v in out}) != len(out):
        raise ValueError("two tariff versions start on the same day")
    return out


def load(path: Path | None = None) -> list[TariffVersion]:
    if path is None:
        text = resources.files("accounting").joinpath("data", "tariffs_cn.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return parse(tomllib.loads(text))


def version_on(versions: list[TariffVersion], d: date) -> TariffVersion | None:
    found = None
    for v in versions:
        if v.start <= d:
            found = v
    return found
