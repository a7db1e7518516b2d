"""Inventories: E = AD × EF per device, subsystem and site, from committed hourly aggregates.

Arithmetic is exact integers: activity data in Wh, grid factors in millionths of tCO2/MWh (= millionths of a gram
per Wh), so ``Wh × value_e6`` is CO2 in micrograms with no rounding anywhere; tonnes with three decimals are
produced for display only (``fmt_t``). The result is one JSON-serialisable dict (``Inventory.to_json``) whose
canonical bytes (``canonical``) are the same on every node that holds the same committed state, and whose
``digest`` is their SHA-256.

Activity data of a meter in an hour = its counter's last value in that hour minus its last value before it (the
use between two readings lands in the hour of the later reading). An hour without readings is a gap (its use
lands in the next hour with data, so totals stay whole); a counter that goes backwards (replacement, rollover)
counts nothing for that hour and is reported. Readings carrying quality flags are counted, and those marked
ESTIMATED are counted from the raw readings of the flagged hours.

Priority of the site's activity data (the case's order): the meters (the main meter if the boundary has one, else
the sum of the electricity sub-meters) when they cover at least ``METER_COVERAGE_PERMILLE`` of the elapsed hours;
else the supplier's statements (``electricity_bill`` and ``settlement_row`` documents) when they cover every day
of the period; else the purchase ledger (``purchase_ledger_row``); else the meters as they are, flagged. The
reconciliation says what each source holds, how far each differs from the meters, which one was used and why.

Scope 2 is reported both ways: location-based with the most local grid factor of the set in force (province,
else region, else national), and market-based, where green-power certificates and contracts (documents assigned to
the site) cover consumption at zero and the rest takes the residual-mix proxy ``grid.excl-traded-non-fossil``.
Document energy is spread over its days (integer Wh per day, the remainder on the first days) and counted in the
period by day; green energy beyond a bucket's consumption is reported as unused, never carried over.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Protocol

import msgpack

from accounting import factors as fx
from accounting.model import (
    CARRIER_ELECTRICITY,
    CARRIER_HEAT,
    BoundaryDevice,
    BoundaryRecord,
    FactorSetRecord,
    SiteRecord,
)
from accounting.periods import DAY_MS, HOUR_MS, Period, default_grain, grain_label, parse_period
from accounting.sites import boundaries, boundary_json, load_site, mmdd, site_json
from node import codec, merkle, schema
from node.devices import load_device
from node.documents import DocumentRecord, field_values
from node.errors import CempError, Code
from node.readings import Flag, decode_reading_value
from node.store import prefix_stop
from node.types import HourlyAggregate

METER_COVERAGE_PERMILLE = 950
MAX_ESTIMATE_SCAN_HOURS = 5000
"""Flagged hours whose raw readings are scanned for the ESTIMATED bit; beyond this the count is left open."""
MAX_DOCS = 20_000
MAX_LISTED_TXS = 20_000
"""Readings tx hashes an inventory with ``txs`` lists (1.3 MB of hex); beyond it only the counts and roots."""
MAX_DEVICE_TXS = 200_000
"""Tx marks one ``device_txs`` answer reads (a season of 1-minute readings in 1,000-reading txs is ~4,600)."""
MAX_DEVICE_HOURS = 2_000_000
"""Cost bound of one inventory: boundary devices × hours (a season of 7 devices is 30,744; a year of 228 fits)."""
SETTLEMENT_TYPES = ("electricity_bill", "settlement_row")
LEDGER_TYPES = ("purchase_ledger_row",)
GREEN_TYPES = ("green_certificate", "green_contract")
SCHEMA = "cemp.inventory/1"


class Snapshot(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Head:
    """The committed state an inventory was computed from."""

    height: int
    block_hash: bytes
    app_hash: bytes
    time_ms: int


def fmt_t(ug: int, places: int = 3) -> str:
    """Micrograms -> tonnes as text, rounded half-even to ``places`` (display only)."""
    q = Decimal(1).scaleb(-places)
    return str((Decimal(ug) / Decimal(10**12)).quantize(q, rounding=ROUND_HALF_EVEN))


def fmt_dec(value: Decimal | int, places: int) -> str:
    q = Decimal(1).scaleb(-places)
    return str(Decimal(value).quantize(q, rounding=ROUND_HALF_EVEN))


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class Series:
    """One device's use per hour within one boundary segment."""

    wh: dict[int, int] = field(default_factory=dict)
    readings: int = 0
    aggregates: int = 0
    flagged: int = 0
    estimated: int | None = 0
    negative_hours: int = 0
    gap_hours: int = 0
    expected_hours: int = 0
    leaves: list[bytes] = field(default_factory=list)
    """Merkle leaves over the aggregates read: one per UTC day, the concatenation of that day's stored aggregates
    (canonical ``HourlyAggregate`` msgpack, which carries its first and last reading times) in hour order."""


def _unpack_all(values: list[bytes]) -> tuple[Any, ...]:
    """Every committed aggregate array in one C call: a msgpack array32 header in front of the concatenation."""
    return msgpack.unpackb(  # type: ignore[no-any-return]
        b"\xdd" + len(values).to_bytes(4, "big") + b"".join(values), use_list=False
    )


def read_series(
    snap: Snapshot, devnum: int, quantity: str, h0: int, h1: int, now_hour: int, scan_budget: list[int]
) -> Series:
    """Use per hour of a counter in hours [h0, h1) (see the module docstring)."""
    s = Series()
    prev_value: int | None = None
    lo0, _ = schema.hourly_range(devnum, quantity, 0, h0)
    for _, raw in snap.iterate(lo0, schema.hourly_range(devnum, quantity, h0, h0)[0], reverse=True, limit=1):
        prev_value = codec.decode(HourlyAggregate, raw).last_value
    lo, hi = schema.hourly_range(devnum, quantity, h0, h1)
    items = list(snap.iterate(lo, hi))
    if not items:
        s.expected_hours = max(0, min(h1, now_hour + 1) - h0)
        s.gap_hours = s.expected_hours
        return s
    # Committed aggregates were encoded by the apply path (``HourlyAggregate`` in field order); unpacking the
    # arrays directly is several times faster than the checked decoder and reads the same numbers.
    values = [raw for _, raw in items]
    rows = _unpack_all(values)
    wh = s.wh
    flagged_hours: list[int] = []
    leaves = s.leaves
    readings = flagged_total = negative = 0
    day = day_start = -1
    for i, (count, _, _, _, first_ts, first_value, _, last_value, flagged) in enumerate(rows):
        # the apply path files an aggregate under the hour of its readings, so its first reading's hour is its key's
        hour = first_ts // HOUR_MS
        if hour // 24 != day:  # one Merkle leaf per UTC day (see ``Series.leaves``)
            if day_start >= 0:
                leaves.append(b"".join(values[day_start:i]))
            day, day_start = hour // 24, i
        delta = last_value - (first_value if prev_value is None else prev_value)
        prev_value = last_value
        if (
            delta < 0
        ):  # the counter restarted (meter replaced, rolled over): count what it rose within the hour
            negative += 1
            delta = max(0, last_value - first_value)
        wh[hour] = delta
        readings += count
        if flagged:
            flagged_total += flagged
            flagged_hours.append(hour)
    leaves.append(b"".join(values[day_start:]))
    s.readings, s.flagged, s.negative_hours, s.aggregates = readings, flagged_total, negative, len(items)
    s.expected_hours = max(0, min(h1, now_hour + 1) - h0)
    with_data = len(wh) if hour <= now_hour else sum(1 for h in wh if h <= now_hour)
    s.gap_hours = s.expected_hours - with_data
    if len(flagged_hours) > scan_budget[0]:
        s.estimated = None
    else:
        scan_budget[0] -= len(flagged_hours)
        n = 0
        for hour in flagged_hours:
            a, b = schema.reading_range(devnum, hour * HOUR_MS, (hour + 1) * HOUR_MS)
            for _, rv in snap.iterate(a, b):
                q, _, _, flags = decode_reading_value(rv)
                if q == quantity and flags & Flag.ESTIMATED:
                    n += 1
        s.estimated = n
    return s


def segments(
    recs: list[BoundaryRecord], start_ms: int, stop_ms: int
) -> list[tuple[int, int, BoundaryRecord]]:
    """[(from, to, boundary)] covering the part of [start, stop) that has a boundary in force."""
    out = []
    for i, r in enumerate(recs):
        a = r.payload.effective_from_ms
        b = recs[i + 1].payload.effective_from_ms if i + 1 < len(recs) else stop_ms
        lo, hi = max(a, start_ms), min(b, stop_ms)
        if lo < hi:
            out.append((lo, hi, r))
    return out


@dataclass(slots=True)
class DocSource:
    """Documents of one activity-data source, spread over days."""

    by_day: Counter[date] = field(default_factory=Counter)
    docs: list[dict[str, Any]] = field(default_factory=list)
    covered: set[date] = field(default_factory=set)
    needs_review: int = 0


def spread(energy_wh: int, first: date, last: date) -> Iterator[tuple[date, int]]:
    n = (last - first).days + 1
    base, rem = divmod(energy_wh, n)
    for i in range(n):
        yield first + timedelta(days=i), base + (1 if i < rem else 0)


def read_docs(snap: Snapshot, types: tuple[str, ...], match: Any, period: Period) -> DocSource:
    out = DocSource()
    for t in types:
        p = schema.document_type_prefix(t)
        for n, (_, doc_id) in enumerate(snap.iterate(p, prefix_stop(p))):
            if n >= MAX_DOCS:
                break
            raw = snap.get(schema.document(doc_id))
            if raw is None:
                continue
            rec = codec.decode(DocumentRecord, raw)
            vals = field_values(rec.payload.fields)
            if not match(vals):
                continue
            first = date.fromisoformat(str(vals["period_start"]))
            last = date.fromisoformat(str(vals["period_end"]))
            if last < period.first_day or first > period.last_day:
                continue
            if rec.payload.review == "needs_review":
                out.needs_review += 1
                continue
            energy = int(vals["energy_wh"])
            inside = 0
            for d, wh in spread(energy, first, last):
                if period.first_day <= d <= period.last_day:
                    out.by_day[d] += wh
                    out.covered.add(d)
                    inside += wh
            out.docs.append(
                {
                    "doc_type": rec.payload.doc_type,
                    "id": rec.id.hex(),
                    "version": rec.version,
                    "tx": rec.tx_hash.hex(),
                    "height": rec.height,
                    "period_start": str(vals["period_start"]),
                    "period_end": str(vals["period_end"]),
                    "energy_wh": energy,
                    "energy_in_period_wh": inside,
                    "ref": str(
                        vals.get("account") or vals.get("certificate_id") or vals.get("contract_id") or ""
                    ),
                }
            )
    out.docs.sort(key=lambda d: (d["period_start"], d["id"]))
    return out


class _Factors:
    """Factor set per local year, looked up once per year."""

    def __init__(self, snap: Snapshot, site: SiteRecord) -> None:
        self.snap = snap
        self.site = site.payload
        self.by_year: dict[int, FactorSetRecord | None] = {}
        self._loc: dict[int, int | None] = {}

    def set_for(self, year: int) -> FactorSetRecord | None:
        if year not in self.by_year:
            self.by_year[year] = fx.select_set(self.snap, year)
        return self.by_year[year]

    def location_e6(self, year: int) -> int | None:
        if year not in self._loc:
            self._loc[year] = self._location_e6(year)
        return self._loc[year]

    def _location_e6(self, year: int) -> int | None:
        rec = self.set_for(year)
        if rec is None:
            return None
        choice = fx.grid_factor(rec, self.site.province, self.site.grid_region)
        return None if choice is None else choice.factor.value_e6

    def residual_e6(self, year: int) -> int | None:
        rec = self.set_for(year)
        f = None if rec is None else fx.factor(rec, fx.GRID_RESIDUAL)
        return None if f is None else f.value_e6

    def describe(self, year: int) -> dict[str, Any]:
        rec = self.set_for(year)
        if rec is None:
            return {
                "year": year,
                "set": None,
                "note": f"no factor set for {year} or any earlier year is on chain",
            }
        choice = fx.grid_factor(rec, self.site.province, self.site.grid_region)
        residual = fx.factor(rec, fx.GRID_RESIDUAL)
        dy = rec.payload.data_year
        return {
            "year": year,
            "set": fx.set_json(rec, with_factors=False),
            "location": None if choice is None else {**fx.factor_json(choice.factor), "basis": choice.basis},
            "residual": None if residual is None else fx.factor_json(residual),
            "note": (
                f"factors of data year {dy}"
                if dy == year
                else f"no set for data year {year} on chain; the latest earlier set ({dy}) is used"
            ),
        }


def _need_factor(value: int | None, year: int, what: str) -> int:
    if value is None:
        raise CempError(
            Code.NOT_FOUND,
            f"no {what} factor for {year} on chain: the regulator must record a factor set for {year} or earlier",
        )
    return value


@dataclass(slots=True)
class _Bucket:
    wh: int = 0
    green_wh: int = 0


def compute(
    snap: Snapshot,
    head: Head,
    site_id: str,
    period_label: str,
    grain: str | None = None,
    *,
    txs: bool = False,
) -> dict[str, Any]:
    """The inventory of ``site_id`` for ``period_label`` as one JSON-serialisable dict (see module docstring).

    With ``txs`` it also names the signed readings txs behind every device's aggregates (``provenance``): what a
    report needs and a live dashboard does not, so it is asked for.
    """
    site = load_site(snap, site_id)
    if site is None:
        raise CempError(Code.NOT_FOUND, f"no site {site_id!r} on this chain")
    sp = site.payload
    season = (mmdd(sp.season_start, "season_start"), mmdd(sp.season_end, "season_end"))
    period = parse_period(period_label, sp.utc_offset_min, season)
    grain = grain or default_grain(period.kind)
    if grain not in ("hour", "day", "month", "quarter", "year"):
        raise CempError(Code.BAD_REQUEST, f"grain {grain!r}: use hour, day, month, quarter or year")
    if grain == "hour" and period.hours > 24 * 31:
        raise CempError(Code.BAD_REQUEST, "an hourly breakdown is available for periods up to a month")
    off_ms = sp.utc_offset_min * 60_000
    now_hour = head.time_ms // HOUR_MS
    fac = _Factors(snap, site)

    # (label, year) of every hour of the period, computed once per day: the hot loops index this list.
    p_h0 = period.start_ms // HOUR_MS
    hour_buckets: list[tuple[str, int]] = []
    for day_i in range(period.days):
        day = period.first_day + timedelta(days=day_i)
        if grain == "hour":
            hour_buckets.extend((f"{day.isoformat()}T{h:02d}", day.year) for h in range(24))
        else:
            hour_buckets.extend([(grain_label(day, grain), day.year)] * 24)

    runs = _bucket_runs(hour_buckets, p_h0)

    recs = boundaries(snap, site_id)
    segs = segments(recs, period.start_ms, period.stop_ms)
    device_hours = sum(len(r.payload.devices) * (b - a) // HOUR_MS for a, b, r in segs)
    if device_hours > MAX_DEVICE_HOURS:
        raise CempError(
            Code.BAD_REQUEST,
            f"{period_label} over this boundary is {device_hours:,} device-hours; at most {MAX_DEVICE_HOURS:,} per "
            "request: ask for a shorter period (months or quarters) and add them up",
        )
    scan_budget = [MAX_ESTIMATE_SCAN_HOURS]
    devices: dict[str, dict[str, Any]] = {}
    origins: dict[str, set[bytes]] = {}
    subsystems: dict[str, dict[str, int]] = {}
    buckets: dict[tuple[str, int], _Bucket] = {}
    grain_sub: dict[str, Counter[str]] = {}
    grain_heat: Counter[str] = Counter()
    meter_site_hourly: dict[int, int] = {}
    sub_total = main_total = 0
    heat_hourly: dict[int, int] = {}
    meter_hours_expected = 0
    meter_hours_with_data = 0
    used_boundaries = []
    for a, b, rec in segs:
        bp = rec.payload
        used_boundaries.append(
            {
                **boundary_json(bp),
                "tx": rec.tx_hash.hex(),
                "height": rec.height,
                "applies_from_ms": a,
                "applies_to_ms": b,
            }
        )
        h0, h1 = a // HOUR_MS, b // HOUR_MS
        main = bp.main_meter
        site_meters = [
            d for d in bp.devices if d.carrier == CARRIER_ELECTRICITY and (main is None or d.handle == main)
        ]
        for d in bp.devices:
            if d.carrier not in (CARRIER_ELECTRICITY, CARRIER_HEAT):
                continue
            dev = load_device(snap, d.handle)  # type: ignore[arg-type]
            if dev is None:  # a boundary names registered devices only
                continue
            s = read_series(snap, dev.devnum, d.quantity, h0, h1, now_hour, scan_budget)
            entry = devices.setdefault(d.handle, _device_entry(d, main))
            _merge_series(entry, s)
            if txs:
                origins.setdefault(d.handle, set()).update(readings_txs(snap, dev.devnum, d.quantity, h0, h1))
            if d in site_meters:
                meter_hours_expected += s.expected_hours
                meter_hours_with_data += s.expected_hours - s.gap_hours
            per_bucket = _bucket_sums(s.wh, runs)
            if d.carrier == CARRIER_HEAT:
                _add_into(heat_hourly, s.wh)
                for (label, _), wh in per_bucket.items():
                    grain_heat[label] += wh
                continue
            is_main = d.handle == main
            # E = AD x EF with the factor of each hour's local year: a bucket lies within one year, so the exact
            # sum over hours equals each bucket's Wh times its year's factor.
            co2 = 0
            for (label, year), wh in per_bucket.items():
                co2 += wh * _need_factor(fac.location_e6(year), year, "location-based grid")
                if not is_main:
                    gs = grain_sub.get(label)
                    if gs is None:
                        gs = grain_sub[label] = Counter()
                    gs[d.subsystem] += wh
            if is_main:
                main_total += sum(s.wh.values())
            elif main is not None:  # the remainder: sub-meters over the hours whose boundary has a main meter
                sub_total += sum(s.wh.values())
            if d in site_meters:
                _add_into(meter_site_hourly, s.wh)
            entry["co2_location_ug"] += co2
            if not is_main:
                sub = subsystems.setdefault(d.subsystem, {"energy_wh": 0, "co2_location_ug": 0})
                sub["energy_wh"] += sum(s.wh.values())
                sub["co2_location_ug"] += co2
    meter_total = sum(meter_site_hourly.values())

    # --- activity data by priority ---------------------------------------------------------------------------
    accounts = set(sp.utility_accounts)
    settlement = read_docs(snap, SETTLEMENT_TYPES, lambda v: v.get("account") in accounts, period)
    ledger = read_docs(
        snap, LEDGER_TYPES, lambda v: v.get("account") in accounts or v.get("site") == site_id, period
    )
    green = read_docs(snap, GREEN_TYPES, lambda v: v.get("site") == site_id, period)
    elapsed_days = _elapsed_days(period, head.time_ms, off_ms)
    coverage = meter_hours_with_data * 1000 // meter_hours_expected if meter_hours_expected else 0
    if meter_hours_expected and coverage >= METER_COVERAGE_PERMILLE:
        used, why = (
            "meters",
            f"meters cover {coverage / 10:.1f} % of the elapsed hours (>= {METER_COVERAGE_PERMILLE / 10:.0f} %)",
        )
    elif elapsed_days and len(settlement.covered) >= elapsed_days:
        used, why = (
            "settlement",
            f"meters cover {coverage / 10:.1f} % of the hours; the supplier's statements cover every day",
        )
    elif elapsed_days and len(ledger.covered) >= elapsed_days:
        used, why = (
            "ledger",
            f"meters cover {coverage / 10:.1f} % and statements {len(settlement.covered)} of {elapsed_days} days; the purchase ledger covers every day",
        )
    else:
        used, why = (
            "meters",
            (
                f"no source covers the whole period (meters {coverage / 10:.1f} % of hours, statements "
                f"{len(settlement.covered)} and ledger {len(ledger.covered)} of {elapsed_days} days): meters used as they are"
            ),
        )
    if used == "meters":
        for key, wh in _bucket_sums(meter_site_hourly, runs).items():
            buckets.setdefault(key, _Bucket()).wh += wh
    else:
        src = settlement if used == "settlement" else ledger
        for day, wh in src.by_day.items():
            for key, part in _day_buckets(day, wh, grain):
                buckets.setdefault(key, _Bucket()).wh += part
    for day, wh in green.by_day.items():
        for key, part in _day_buckets(day, wh, grain):
            buckets.setdefault(key, _Bucket()).green_wh += part

    # --- site totals: location- and market-based --------------------------------------------------------------
    breakdown: dict[str, dict[str, Any]] = {}
    years: set[int] = set()
    site_loc = site_mkt = site_wh = green_used = green_unused = 0
    for (label, year), bk in sorted(buckets.items()):
        years.add(year)
        loc_f = _need_factor(fac.location_e6(year), year, "location-based grid")
        covered = min(bk.green_wh, bk.wh)
        mkt_f = (
            _need_factor(fac.residual_e6(year), year, "residual-mix (excl. traded non-fossil)")
            if bk.wh > covered
            else 0
        )
        loc = bk.wh * loc_f
        mkt = (bk.wh - covered) * mkt_f
        row = breakdown.setdefault(
            label,
            {
                "label": label,
                "energy_wh": 0,
                "co2_location_ug": 0,
                "co2_market_ug": 0,
                "green_wh": 0,
                "green_unused_wh": 0,
            },
        )
        row["energy_wh"] += bk.wh
        row["co2_location_ug"] += loc
        row["co2_market_ug"] += mkt
        row["green_wh"] += covered
        row["green_unused_wh"] += bk.green_wh - covered
        site_wh += bk.wh
        site_loc += loc
        site_mkt += mkt
        green_used += covered
        green_unused += bk.green_wh - covered
    for label, row in breakdown.items():
        row["co2_location_t"] = fmt_t(row["co2_location_ug"])
        row["co2_market_t"] = fmt_t(row["co2_market_ug"])
        row["subsystems_wh"] = dict(sorted(grain_sub.get(label, Counter()).items()))
        row["heat_wh"] = grain_heat.get(label, 0)
    years.update(range(period.first_day.year, period.last_day.year + 1))

    has_main = any(r.payload.main_meter is not None for _, _, r in segs)
    dev_list = []
    for handle in sorted(devices):
        e = devices[handle]
        e["aggregates_root"] = merkle_root(e.pop("_leaves")).hex()
        e["co2_location_t"] = fmt_t(e["co2_location_ug"])
        dev_list.append(e)
    inv: dict[str, Any] = {
        "schema": SCHEMA,
        "site": {**site_json(sp), "org": site.org, "tx": site.tx_hash.hex(), "height": site.height},
        "period": {
            "label": period.label,
            "kind": period.kind,
            "first_day": period.first_day.isoformat(),
            "last_day": period.last_day.isoformat(),
            "start_ms": period.start_ms,
            "stop_ms": period.stop_ms,
            "hours": period.hours,
            "elapsed_days": elapsed_days,
            "grain": grain,
        },
        "as_of": {
            "height": head.height,
            "block_hash": head.block_hash.hex(),
            "app_hash": head.app_hash.hex(),
            "time_ms": head.time_ms,
        },
        "boundaries": used_boundaries,
        "factors": [fac.describe(y) for y in sorted(years)],
        "devices": dev_list,
        "subsystems": [
            {"subsystem": k, **v, "co2_location_t": fmt_t(v["co2_location_ug"])}
            for k, v in sorted(subsystems.items())
        ],
        "site_total": {
            "activity_source": used,
            "energy_wh": site_wh,
            "co2_location_ug": site_loc,
            "co2_location_t": fmt_t(site_loc),
            "co2_market_ug": site_mkt,
            "co2_market_t": fmt_t(site_mkt),
            "green_wh": green_used,
            "green_unused_wh": green_unused,
            "heat_wh": sum(heat_hourly.values()),
        },
        "unmetered_remainder": {
            "main_meter_wh": main_total if has_main else None,
            "sub_meters_wh": sub_total,
            "remainder_wh": main_total - sub_total if has_main else None,
            "note": (
                "main meter minus the sum of the electricity sub-meters, over the hours whose boundary has a main meter"
                if has_main
                else "the boundary names no main meter; the site total is the sum of its sub-meters"
            ),
        },
        "breakdown": [breakdown[k] for k in sorted(breakdown)],
        "reconciliation": {
            "used": used,
            "why": why,
            "meters": {
                "energy_wh": meter_total,
                "coverage_permille": coverage,
                "hours_expected": meter_hours_expected,
                "hours_with_data": meter_hours_with_data,
            },
            "settlement": _source_json(settlement, meter_total, elapsed_days),
            "ledger": _source_json(ledger, meter_total, elapsed_days),
        },
        "green_power": {"documents": green.docs, "needs_review": green.needs_review},
        "data_quality": {
            "readings": sum(e["readings"] for e in dev_list),
            "gap_hours": sum(e["gap_hours"] for e in dev_list),
            "flagged_readings": sum(e["flagged_readings"] for e in dev_list),
            "estimated_readings": (
                None
                if any(e["estimated_readings"] is None for e in dev_list)
                else sum(e["estimated_readings"] for e in dev_list)
            ),
            "negative_delta_hours": sum(e["negative_delta_hours"] for e in dev_list),
            "hours_without_boundary": period.hours - sum((b - a) // HOUR_MS for a, b, _ in segs),
        },
        "_site_hourly_wh": meter_site_hourly,
        "_heat_hourly_wh": heat_hourly,
    }
    if txs:
        inv["provenance"] = provenance(dev_list, origins)
    return inv


def readings_txs(snap: Snapshot, devnum: int, quantity: str, h0: int, h1: int) -> set[bytes]:
    """Hashes of the readings txs that hold readings of (device, quantity) in hours [h0, h1) (``schema.hourly_tx``)."""
    lo, hi = schema.hourly_tx_range(devnum, quantity, h0, h1)
    return {key[-32:] for key, _ in snap.iterate(lo, hi)}


def device_txs(snap: Snapshot, site_id: str, period_label: str, handle: str) -> dict[str, Any]:
    """Every readings tx behind one boundary device's aggregates in a period (the list a report may leave out)."""
    site = load_site(snap, site_id)
    if site is None:
        raise CempError(Code.NOT_FOUND, f"no site {site_id!r} on this chain")
    sp = site.payload
    period = parse_period(
        period_label,
        sp.utc_offset_min,
        (mmdd(sp.season_start, "season_start"), mmdd(sp.season_end, "season_end")),
    )
    hashes: set[bytes] = set()
    quantities = set()
    for a, b, rec in segments(boundaries(snap, site_id), period.start_ms, period.stop_ms):
        for d in rec.payload.devices:
            if d.handle != handle:
                continue
            dev = load_device(snap, d.handle)  # type: ignore[arg-type]
            if dev is None:
                continue
            quantities.add(d.quantity)
            lo, hi = schema.hourly_tx_range(dev.devnum, d.quantity, a // HOUR_MS, b // HOUR_MS)
            for n, (key, _) in enumerate(snap.iterate(lo, hi)):
                if n >= MAX_DEVICE_TXS:
                    raise CempError(
                        Code.BAD_REQUEST,
                        f"{handle} has more than {MAX_DEVICE_TXS:,} tx marks in {period_label}: ask for a shorter period",
                    )
                hashes.add(key[-32:])
    if not quantities:
        raise CempError(Code.NOT_FOUND, f"{handle} is not in {site_id}'s boundary during {period_label}")
    hs = sorted(hashes)
    return {
        "site_id": site_id,
        "period": period.label,
        "device": handle,
        "quantities": sorted(quantities),
        "readings_txs": len(hs),
        "readings_txs_root": merkle_root(hs).hex(),
        "tx_hashes": [h.hex() for h in hs],
    }


def txs_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 root over tx hashes in ascending byte order (leaves: the 32-byte hashes)."""
    return merkle_root(sorted(hashes))


def provenance(dev_list: list[dict[str, Any]], origins: dict[str, set[bytes]]) -> dict[str, Any]:
    """Adds each device's ``readings_txs`` (count), ``readings_txs_root`` and, within ``MAX_LISTED_TXS`` in all,
    ``readings_tx_hashes`` (ascending); returns the section over the union of them."""
    every: set[bytes] = set()
    for hs in origins.values():
        every |= hs
    listed = len(every) <= MAX_LISTED_TXS
    for e in dev_list:
        hs = sorted(origins.get(e["handle"], set()))
        e["readings_txs"] = len(hs)
        e["readings_txs_root"] = merkle_root(hs).hex()
        e["readings_tx_hashes"] = [h.hex() for h in hs] if listed else None
    return {
        "readings_txs": len(every),
        "readings_txs_root": txs_root(list(every)).hex(),
        "listed": listed,
        "note": (
            "every readings tx behind the aggregates used, per device; a tx's proof is GET /v1/txs/{hash}"
            if listed
            else f"{len(every):,} txs are more than the {MAX_LISTED_TXS:,} a report lists: list each device's with "
            "GET /v1/sites/{id}/inventory/txs?period=...&device=... (the roots cover them all)"
        ),
        "leaves": "each root is the RFC 6962 Merkle root over the tx hashes (32 bytes each) in ascending order",
    }


def merkle_root(leaves: list[bytes]) -> bytes:
    """``node.merkle.root`` (RFC 6962) with the hashing inlined: the season inventory hashes ~31,000 leaves."""
    if not leaves:
        return merkle.root([])
    sha = hashlib.sha256
    level = [sha(b"\x00" + x).digest() for x in leaves]
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def finish(inv: dict[str, Any]) -> dict[str, Any]:
    """Drop the internal hourly series and add the digest of the canonical bytes."""
    out = {k: v for k, v in inv.items() if not k.startswith("_")}
    out["digest"] = hashlib.sha256(canonical(out)).hexdigest()
    return out


def _bucket_runs(hour_buckets: list[tuple[str, int]], p_h0: int) -> list[tuple[tuple[str, int], int, int]]:
    """The period's breakdown buckets as ``(bucket, first hour, stop hour)`` runs of consecutive hours."""
    runs: list[tuple[tuple[str, int], int, int]] = []
    for i, k in enumerate(hour_buckets):
        if runs and runs[-1][0] == k:
            continue
        if runs:
            runs[-1] = (runs[-1][0], runs[-1][1], p_h0 + i)
        runs.append((k, p_h0 + i, p_h0 + i))
    if runs:
        runs[-1] = (runs[-1][0], runs[-1][1], p_h0 + len(hour_buckets))
    return runs


def _bucket_sums(
    wh: dict[int, int], runs: list[tuple[tuple[str, int], int, int]]
) -> dict[tuple[str, int], int]:
    """Wh per breakdown bucket of an hourly series; a bucket is present when any of its hours has data."""
    hours = list(wh)
    vals = list(wh.values())
    if hours != sorted(hours):
        pairs = sorted(wh.items())
        hours, vals = [h for h, _ in pairs], [v for _, v in pairs]
    out: dict[tuple[str, int], int] = {}
    i = 0
    for key, a, b in runs:  # runs and hours both ascend: bisect each run's slice, sum it in C
        i = bisect_left(hours, a, i)
        j = bisect_left(hours, b, i)
        if j > i:
            out[key] = sum(vals[i:j])
        i = j
    return out


def _add_into(dst: dict[int, int], src: dict[int, int]) -> None:
    """``dst[h] += src[h]`` for every hour of ``src``."""
    if not dst:
        dst.update(src)
        return
    get = dst.get
    for h, v in src.items():
        dst[h] = get(h, 0) + v


def _day_buckets(d: date, wh: int, grain: str) -> Iterator[tuple[tuple[str, int], int]]:
    """A day's document energy in breakdown buckets: one bucket, or 24 local hours (remainder first)."""
    if grain != "hour":
        yield (grain_label(d, grain), d.year), wh
        return
    base, rem = divmod(wh, 24)
    for h in range(24):
        yield (f"{d.isoformat()}T{h:02d}", d.year), base + (1 if h < rem else 0)


def _elapsed_days(period: Period, now_ms: int, off_ms: int) -> int:
    if now_ms <= period.start_ms:
        return 0
    if now_ms >= period.stop_ms:
        return period.days
    return (now_ms - period.start_ms) // DAY_MS + 1


def _device_entry(d: BoundaryDevice, main: str | None) -> dict[str, Any]:
    return {
        "handle": d.handle,
        "subsystem": d.subsystem,
        "carrier": d.carrier,
        "quantity": d.quantity,
        "role": "main" if d.handle == main else "sub",
        "energy_wh": 0,
        "co2_location_ug": 0,
        "readings": 0,
        "aggregates": 0,
        "flagged_readings": 0,
        "estimated_readings": 0,
        "gap_hours": 0,
        "negative_delta_hours": 0,
        "peak_hour_wh": 0,
        "_leaves": [],
    }


def _merge_series(e: dict[str, Any], s: Series) -> None:
    e["energy_wh"] += sum(s.wh.values())
    e["readings"] += s.readings
    e["aggregates"] += s.aggregates
    e["flagged_readings"] += s.flagged
    e["estimated_readings"] = (
        None
        if s.estimated is None or e["estimated_readings"] is None
        else e["estimated_readings"] + s.estimated
    )
    e["gap_hours"] += s.gap_hours
    e["negative_delta_hours"] += s.negative_hours
    e["peak_hour_wh"] = max([e["peak_hour_wh"], *s.wh.values()])
    e["_leaves"].extend(s.leaves)


def _source_json(src: DocSource, meter_wh: int, elapsed_days: int) -> dict[str, Any]:
    total = sum(src.by_day.values())
    diff = total - meter_wh
    return {
        "energy_wh": total,
        "days_covered": len(src.covered),
        "days_elapsed": elapsed_days,
        "difference_vs_meters_wh": diff if src.docs else None,
        "difference_permille": (diff * 1000 // meter_wh if meter_wh else None) if src.docs else None,
        "documents": src.docs,
        "needs_review": src.needs_review,
    }
