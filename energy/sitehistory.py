"""A site's measured hours from the chain, as the forecast needs them: (local hour, outdoor °C, site kWh).

Electricity per hour is the site's main meter, else the sum over its boundary electricity meters (the latest
boundary version), of
each meter's counter delta between consecutive hourly aggregates (``last_value`` of hour h minus that of hour
h-1, as the demo's season model reads them); an hour counts only when every such meter has that delta and none
went back (a rollover or meter replacement leaves the hour out). The temperature is the hourly mean of the
site's outdoor sensor (``energy.outdoor``). Hours without both are left out.

Bounded: it looks back at most ``LOOKBACK_DAYS`` from ``now`` and keeps the latest ``max_hours`` complete hours,
so a season measured a summer ago still trains the model in December (the hours in between have no data).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from accounting.sites import latest_boundary, load_site
from energy.outdoor import OUTDOOR_QUANTITY, hourly_outdoor_c, outdoor_device
from node import codec, schema
from node.devices import load_device
from node.errors import CempError, Code
from node.types import HourlyAggregate

HOUR_MS = 3_600_000
LOOKBACK_DAYS = 400


def _meter_hours(snap: Any, handle: str, quantity: str, start_ms: int, stop_ms: int) -> dict[int, float]:
    """UTC hour (ms) -> kWh of one energy counter: deltas of consecutive hours' last values."""
    dev = load_device(snap, handle)
    if dev is None:
        return {}
    lo, hi = schema.hourly_range(dev.devnum, quantity, start_ms // HOUR_MS - 1, -(-stop_ms // HOUR_MS))
    out: dict[int, float] = {}
    prev: tuple[int, int] | None = None
    for k, v in snap.iterate(lo, hi, limit=LOOKBACK_DAYS * 24 + 48):
        _, _, hour = schema.parse_hourly_key(k)
        a = codec.decode(HourlyAggregate, v)
        if a.count == 0:
            continue
        if prev is not None and hour - prev[0] == 1 and a.last_value >= prev[1]:
            out[hour * HOUR_MS] = (a.last_value - prev[1]) / 1000
        prev = (hour, int(a.last_value))
    return out


def site_hours(snap: Any, site_id: str, now: datetime, max_hours: int) -> dict[str, Any]:
    """The latest ``max_hours`` measured hours before ``now`` (site local time, naive) and what they came from.

    Returns ``{"hours": [(local datetime, °C, kWh)], "meters": [...], "outdoor_sensor": handle, "utc_offset_min"}``;
    404 for an unknown site, 422 when the site lists no outdoor sensor or no electricity meter."""
    site = load_site(snap, site_id)
    if site is None:
        raise CempError(Code.NOT_FOUND, f"no site {site_id!r} on this chain")
    b = latest_boundary(snap, site_id)
    sensor = outdoor_device(snap, site_id)
    if sensor is None or b is None:
        raise CempError(
            Code.INVALID_PAYLOAD,
            f"site {site_id} has no outdoor temperature sensor in its boundary (subsystem 'weather', reading "
            f"{OUTDOOR_QUANTITY}): the model needs the outdoor temperature of each measured hour",
        )
    meters = [
        (str(d.handle), str(d.quantity) or "energy.import")
        for d in b.payload.devices
        if d.carrier == "electricity" and (b.payload.main_meter is None or d.handle == b.payload.main_meter)
    ]
    if not meters:
        raise CempError(
            Code.INVALID_PAYLOAD, f"site {site_id}'s boundary lists no electricity meter: nothing to forecast"
        )
    off = timedelta(minutes=site.payload.utc_offset_min)
    stop_ms = int((now.replace(tzinfo=UTC) - off).timestamp() * 1000) // HOUR_MS * HOUR_MS
    start_ms = stop_ms - LOOKBACK_DAYS * 24 * HOUR_MS
    temps = dict(hourly_outdoor_c(snap, sensor, start_ms, stop_ms))
    per_meter = [_meter_hours(snap, h, q, start_ms, stop_ms) for h, q in meters]
    used = [(h, q) for (h, q), m in zip(meters, per_meter, strict=True) if m]
    series = [m for m in per_meter if m]
    rows: list[tuple[datetime, float, float]] = []
    if series:
        common = set(series[0]).intersection(*series[1:]) & set(temps)
        for hour in sorted(common)[-max_hours:]:
            local = datetime.fromtimestamp(hour / 1000, UTC).replace(tzinfo=None) + off
            rows.append((local, temps[hour], sum(m[hour] for m in series)))
    return {
        "hours": rows,
        "meters": [{"device": h, "quantity": q} for h, q in used],
        "outdoor_sensor": sensor,
        "utc_offset_min": site.payload.utc_offset_min,
    }


MIN_SEASON_HABIT_DAYS = 28


def season_habit(snap: Any, site_id: str, day: date) -> tuple[list[float], str] | None:
    """The site's electricity shape per local hour (mean kWh) over the heating season before the one ``day`` is
    in (Hohhot's 15 Oct - 15 Apr), when the chain holds at least ``MIN_SEASON_HABIT_DAYS`` days of it; None
    otherwise. The meters are the latest boundary's electricity meters, summed as ``site_hours`` sums them."""
    from energy.forecast import season_of

    site = load_site(snap, site_id)
    b = latest_boundary(snap, site_id)
    if site is None or b is None:
        return None
    cur = season_of(datetime(day.year, day.month, day.day))
    start, end = cur.start.replace(year=cur.start.year - 1), cur.end.replace(year=cur.end.year - 1)
    off = timedelta(minutes=site.payload.utc_offset_min)
    t0 = int((start.replace(tzinfo=UTC) - off).timestamp() * 1000)
    t1 = int((end.replace(tzinfo=UTC) - off).timestamp() * 1000)
    meters = [
        (str(d.handle), str(d.quantity) or "energy.import")
        for d in b.payload.devices
        if d.carrier == "electricity" and (b.payload.main_meter is None or d.handle == b.payload.main_meter)
    ]
    series = [m for m in (_meter_hours(snap, h, q, t0, t1) for h, q in meters) if m]
    if not series:
        return None
    common = sorted(set(series[0]).intersection(*series[1:]))
    if len(common) < MIN_SEASON_HABIT_DAYS * 24:
        return None
    hours = np.array(common, dtype=np.int64)
    kwh = np.array([sum(m[h] for m in series) for h in common])
    local = ((hours + site.payload.utc_offset_min * 60_000) // HOUR_MS) % 24
    sums = np.bincount(local, weights=kwh, minlength=24)
    counts = np.bincount(local, minlength=24)
    shape = [float(x) for x in np.divide(sums, np.maximum(counts, 1))]
    label = (
        f"last season's habit: the site's electricity per local hour over the {start:%Y}/{end:%y} heating season "
        f"({len(common):,} metered hours, {start:%Y-%m-%d} to {end - timedelta(days=1):%Y-%m-%d})"
    )
    return shape, label
