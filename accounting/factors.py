"""The factor library: versioned sets of official emission factors, shipped as data and recorded on chain.

Shipped data (``accounting/data``): ``grid_factors_cn.csv`` (MEE/NBS consumption-side grid factors by data year:
national, regional, provincial, "excluding market-traded non-fossil" and fossil-only, with their announcements)
and ``fuel_factors_cn.csv`` (coal, gas and purchased-heat defaults with their tables). ``shipped_sets`` builds one
set per grid data year, ``cn-mee-<year>``, holding that year's grid factors and every fuel/heat default.

On chain a set is a ``factors`` tx signed by the admin key of the ``regulator``-role org. Rules: one set id per
data year; version 1 creates it, each later version is exactly one more and keeps the data year; factors are
ascending by key, values integers in millionths (``value_e6``), units and sources named.

Selection (``select_set``): a period's hours of local year Y use the set for data year Y or, if none is recorded,
the latest earlier one; every inventory says which set (id, version, tx) and which factor key it used.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any

from accounting.model import Factor, FactorSetPayload, FactorSetRecord
from accounting.sites import Iterable, Reader
from node import codec, schema
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Env, Writer, acting_org
from node.types import PublicKey, ShortStr, Text, Tx

KEY_RE = re.compile(r"[a-z][a-z0-9-]*(\.[a-z0-9-]+)*")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
MAX_FACTORS = 256
E6 = 1_000_000

GRID_NATIONAL = "grid.national"
GRID_RESIDUAL = "grid.excl-traded-non-fossil"
GRID_FOSSIL = "grid.fossil-only"
GRID_UNIT = "tCO2/MWh"


def slug(name: str) -> str:
    """``Inner Mongolia`` -> ``inner-mongolia`` (factor keys)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def grid_key(scope: str, region: str) -> str:
    if region == "excl_traded_non_fossil":
        return GRID_RESIDUAL
    if region == "fossil_only":
        return GRID_FOSSIL
    if scope == "national":
        return GRID_NATIONAL
    part = {"regional": "region", "provincial": "province"}[scope]
    return f"grid.{part}.{slug(region)}"


def to_e6(value: str) -> int:
    d = Decimal(value) * E6
    if d != d.to_integral_value():
        raise ValueError(f"{value} has more than six decimals")
    return int(d)


def e6_str(value_e6: int) -> str:
    """Exact decimal text of a millionths value, trailing zeros dropped: 647900 -> '0.6479'."""
    s = f"{Decimal(value_e6) / E6:f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("accounting").joinpath("data", name).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def shipped_sets() -> list[FactorSetPayload]:
    """One factor set per grid data year in the shipped CSV, oldest first (version 1 each)."""
    fuel = [
        Factor(ShortStr(r["key"]), to_e6(r["value"]), ShortStr(r["unit"]), int(r["year"]), Text(r["source"]))
        for r in _rows("fuel_factors_cn.csv")
    ]
    by_year: dict[int, list[dict[str, str]]] = {}
    for r in _rows("grid_factors_cn.csv"):
        by_year.setdefault(int(r["data_year"]), []).append(r)
    out = []
    for year in sorted(by_year):
        rows = by_year[year]
        docs = {r["announcement"] for r in rows}
        pubs = {r["published"] for r in rows}
        if len(docs) != 1 or len(pubs) != 1:
            raise ValueError(f"grid factors of {year} name several announcements or dates")
        grid = [
            Factor(
                ShortStr(grid_key(r["scope"], r["region"])),
                to_e6(r["factor_tco2_per_mwh"]),
                ShortStr(GRID_UNIT),
                year,
                Text(f"{r['announcement']} ({r['published']}): {r['scope']} {r['region']}"),
            )
            for r in rows
        ]
        factors = tuple(sorted(grid + fuel, key=lambda f: f.key))
        out.append(
            FactorSetPayload(
                ShortStr(f"cn-mee-{year}"), 1, year, ShortStr(pubs.pop()), Text(docs.pop()), factors
            )
        )
    return out


def load_set(view: Reader, set_id: str, version: int | None = None) -> FactorSetRecord | None:
    raw = view.get(
        schema.factor_set(set_id) if version is None else schema.factor_set_version(set_id, version)
    )
    return None if raw is None else codec.decode(FactorSetRecord, raw)


def select_set(view: Iterable, year: int) -> FactorSetRecord | None:
    """The set for data year ``year``, else the latest earlier one; None if no set is that old."""
    lo = schema.FACTOR_YEAR_PREFIX
    hi = schema.factor_year(min(year, 0xFFFE) + 1) if year >= 0 else lo
    for _, set_id in view.iterate(lo, hi, reverse=True, limit=1):
        return load_set(view, set_id.decode())
    return None


def list_sets(view: Iterable) -> list[FactorSetRecord]:
    lo = schema.FACTOR_YEAR_PREFIX
    out = []
    for _, set_id in view.iterate(lo, lo + b"\xff\xff\xff"):
        rec = load_set(view, set_id.decode())
        if rec is not None:
            out.append(rec)
    return out


def factor(rec: FactorSetRecord, key: str) -> Factor | None:
    for f in rec.payload.factors:
        if f.key == key:
            return f
    return None


@dataclass(frozen=True, slots=True)
class GridChoice:
    """The location-based grid factor a site uses from a set, and why."""

    factor: Factor
    basis: str
    """``province``, ``region`` or ``national``: the most local factor the set holds for the site."""


def grid_factor(rec: FactorSetRecord, province: str, region: str) -> GridChoice | None:
    for basis, key in (
        ("province", f"grid.province.{slug(province)}"),
        ("region", f"grid.region.{slug(region)}"),
        ("national", GRID_NATIONAL),
    ):
        f = factor(rec, key)
        if f is not None:
            return GridChoice(f, basis)
    return None


def factor_json(f: Factor) -> dict[str, Any]:
    return {
        "key": f.key,
        "value": e6_str(f.value_e6),
        "value_e6": f.value_e6,
        "unit": f.unit,
        "year": f.year,
        "source": f.source,
    }


def set_json(rec: FactorSetRecord, with_factors: bool = True) -> dict[str, Any]:
    p = rec.payload
    out: dict[str, Any] = {
        "set_id": p.set_id,
        "version": p.version,
        "data_year": p.data_year,
        "published": p.published,
        "document": p.document,
        "tx": rec.tx_hash.hex(),
        "height": rec.height,
    }
    if with_factors:
        out["factors"] = [factor_json(f) for f in p.factors]
    return out


def _bad(msg: str) -> CempError:
    return CempError(Code.INVALID_PAYLOAD, msg)


class FactorsKind:
    name = "factors"
    payload_type = FactorSetPayload

    def check(self, view: StateView, env: Env, tx: Tx, p: FactorSetPayload) -> None:
        org = acting_org(env, tx)
        if org is None or org.role != "regulator":
            raise CempError(
                Code.NOT_AUTHORIZED, "factor sets are recorded by the regulator org's admin key only"
            )
        if not KEY_RE.fullmatch(p.set_id) or len(p.set_id) > 64:
            raise _bad(f"set_id {p.set_id!r}: lower-case letters, digits, - and dots, e.g. cn-mee-2023")
        if not 1990 <= p.data_year <= 2100:
            raise _bad(f"data_year {p.data_year} is outside 1990-2100")
        if not DATE_RE.fullmatch(p.published):
            raise _bad(f"published {p.published!r} must be a date YYYY-MM-DD")
        try:
            date.fromisoformat(p.published)
        except ValueError:
            raise _bad(f"published {p.published!r} is not a calendar date") from None
        if not p.document.strip() or _CONTROL_RE.search(p.document):
            raise _bad("document must name the announcement, without control characters")
        if not p.factors:
            raise _bad("a factor set needs at least one factor")
        if len(p.factors) > MAX_FACTORS:
            raise CempError(Code.TOO_LARGE, f"at most {MAX_FACTORS} factors per set")
        prev = ""
        for f in p.factors:
            if not KEY_RE.fullmatch(f.key):
                raise _bad(f"factor key {f.key!r}: lower-case dotted name like grid.province.inner-mongolia")
            if f.key <= prev:
                raise _bad(f"factor keys must be unique and ascending ({f.key!r} after {prev!r})")
            prev = f.key
            if not 0 <= f.value_e6 <= 10**15:
                raise _bad(f"factor {f.key}: value_e6 must be between 0 and 10^15")
            if (
                not f.unit
                or _CONTROL_RE.search(f.unit)
                or not f.source.strip()
                or _CONTROL_RE.search(f.source)
            ):
                raise _bad(f"factor {f.key}: unit and source must be named")
            if not 1900 <= f.year <= 2100:
                raise _bad(f"factor {f.key}: year {f.year} is outside 1900-2100")
        head = load_set(view, p.set_id)
        if head is None:
            if p.version != 1:
                raise CempError(
                    Code.NOT_FOUND, f"factor set {p.set_id} does not exist; create it with version 1"
                )
            other = view.get(schema.factor_year(p.data_year))
            if other is not None:
                raise CempError(
                    Code.ALREADY_EXISTS,
                    f"data year {p.data_year} already has the set {other.decode()}; publish a new version of it",
                )
        else:
            if p.version != head.payload.version + 1:
                raise CempError(
                    Code.ALREADY_EXISTS,
                    f"factor set {p.set_id} is at version {head.payload.version}; the next is "
                    f"{head.payload.version + 1}",
                )
            if p.data_year != head.payload.data_year:
                raise _bad(
                    f"factor set {p.set_id} describes {head.payload.data_year}; a version keeps its year"
                )

    def _writes(self, env: Env, tx: Tx, p: FactorSetPayload) -> dict[bytes, bytes]:
        rec = codec.encode(FactorSetRecord(p, env.tx_hash, env.height, PublicKey(tx.sender)))
        return {
            schema.factor_set(p.set_id): rec,
            schema.factor_set_version(p.set_id, p.version): rec,
            schema.factor_year(p.data_year): p.set_id.encode(),
        }

    def apply(self, state: Writer, env: Env, tx: Tx, p: FactorSetPayload) -> None:
        self.check(state, env, tx, p)  # type: ignore[arg-type]
        for k, v in self._writes(env, tx, p).items():
            state.put(k, v)

    def admit(self, view: StateView, env: Env, tx: Tx, p: FactorSetPayload) -> dict[bytes, bytes]:
        self.check(view, env, tx, p)
        return self._writes(env, tx, p)

    def describe(self, p: FactorSetPayload) -> dict[str, Any]:
        return {
            "set_id": p.set_id,
            "version": p.version,
            "data_year": p.data_year,
            "published": p.published,
            "document": p.document,
            "factors": [factor_json(f) for f in p.factors],
        }


FACTORS_KIND = FactorsKind()
