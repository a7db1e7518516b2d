"""A device's readings as chart series, downsampled on the server.

A season of 1-minute data is ~130,000 readings per quantity; a page ships at most ``MAX_POINTS`` points per
series. Ranges up to ``RAW_SPAN_MS`` are read from the raw readings (bounded scan of ``RAW_SCAN_MAX`` rows);
longer ranges from the hourly aggregates the apply path keeps (``schema.hourly``), grouped into buckets of
whole hours. Each point carries mean, min and max, so a spike survives downsampling.

Counters (energy registers) are charted as use per bucket (the difference of the register), gauges as means.
Values here are floats in the shown unit (``web.units``); they are drawn, never summed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from node import codec, schema
from node.readings import decode_reading_value
from node.store import Store
from node.types import DeviceRecord, HourlyAggregate
from web import units

HOUR_MS = 3_600_000
MAX_POINTS = 800
RAW_SPAN_MS = 6 * HOUR_MS
RAW_SCAN_MAX = 200_000
LATEST_SCAN = 400
MAX_MARKS = 50
"""Flagged readings (raw) or hours with flagged readings (hourly) listed under the chart."""


@dataclass(frozen=True, slots=True)
class Latest:
    quantity: str
    ts_ms: int
    value: int
    unit: str
    flags: int
    seq: int


def latest(store: Store, dev: DeviceRecord) -> list[Latest]:
    """Newest reading of each quantity among the device's last ``LATEST_SCAN`` readings."""
    lo, hi = schema.reading_range(dev.devnum, 0, 1 << 63)
    seen: dict[str, Latest] = {}
    for k, v in store.iterate(lo, hi, reverse=True, limit=LATEST_SCAN):
        _, ts, seq = schema.parse_reading_key(k)
        q, val, unit, flags = decode_reading_value(v)
        if q not in seen:
            seen[q] = Latest(q, ts, val, unit, flags, seq)
    return sorted(seen.values(), key=lambda x: x.quantity)


def _bucket(
    points: list[tuple[int, float, float, float]], max_points: int, step_ms: int
) -> tuple[list[tuple[int, float, float, float]], int]:
    """Group consecutive points so at most ``max_points`` remain: (t of first, mean, min, max)."""
    if len(points) <= max_points:
        return points, step_ms
    k = -(-len(points) // max_points)
    out = []
    for i in range(0, len(points), k):
        grp = points[i : i + k]
        out.append(
            (
                grp[0][0],
                sum(p[1] for p in grp) / len(grp),
                min(p[2] for p in grp),
                max(p[3] for p in grp),
            )
        )
    return out, step_ms * k


def series(
    store: Store,
    dev: DeviceRecord,
    quantity: str,
    unit: str,
    from_ms: int,
    to_ms: int,
    max_points: int = MAX_POINTS,
) -> dict[str, Any]:
    counter = units.is_counter(quantity, unit)
    du = units.display_unit(unit)
    div = float(du.divisor)
    flagged = 0
    marks: list[dict[str, int]] = []
    truncated = False
    pts: list[tuple[int, float, float, float]] = []
    if to_ms - from_ms > RAW_SPAN_MS and to_ms - from_ms <= 8 * 86_400_000:
        # few hours hold data (a new device, a short demo): draw those hours from the raw readings instead
        h0, h1 = max(0, from_ms) // HOUR_MS, max(0, to_ms) // HOUR_MS + 1
        lo, hi = schema.hourly_range(dev.devnum, quantity, h0, h1)
        few = [schema.parse_hourly_key(k)[2] for k, _ in store.iterate(lo, hi, limit=7)]
        if 0 < len(few) <= 6 and to_ms - few[0] * HOUR_MS <= RAW_SPAN_MS + HOUR_MS:
            from_ms = few[0] * HOUR_MS
    if to_ms - from_ms <= RAW_SPAN_MS + HOUR_MS:
        lo, hi = schema.reading_range(dev.devnum, max(0, from_ms), max(0, to_ms))
        prev: int | None = None
        n = 0
        raw_pts: list[tuple[int, float, float, float]] = []
        for k, v in store.iterate(lo, hi, limit=RAW_SCAN_MAX):
            n += 1
            q, val, _u, flags = decode_reading_value(v)
            if q != quantity:
                continue
            ts = schema.parse_reading_key(k)[1]
            if flags:
                flagged += 1
                if len(marks) < MAX_MARKS:
                    marks.append({"ts_ms": ts, "value": val, "flags": flags})
            if counter:
                if prev is not None:
                    d = (val - prev) / div
                    raw_pts.append((ts, d, d, d))
                prev = val
            else:
                x = val / div
                raw_pts.append((ts, x, x, x))
        truncated = n >= RAW_SCAN_MAX
        step = 60_000
        if len(raw_pts) > 1:
            step = max(1, (raw_pts[-1][0] - raw_pts[0][0]) // (len(raw_pts) - 1))
        if counter and len(raw_pts) > max_points:
            # use adds up: a bucket's use is the sum of its steps, not their mean
            per = -(-len(raw_pts) // max_points)
            pts = []
            for i in range(0, len(raw_pts), per):
                g = raw_pts[i : i + per]
                s = sum(p[1] for p in g)
                pts.append((g[0][0], s, s, s))
            step *= per
        else:
            pts, step = _bucket(raw_pts, max_points, step)
        resolution = "raw"
    else:
        h0, h1 = max(0, from_ms) // HOUR_MS, max(0, to_ms) // HOUR_MS + 1
        lo, hi = schema.hourly_range(dev.devnum, quantity, h0, h1)
        # Aggregates are read field by field from their msgpack array (the order of ``HourlyAggregate``):
        # this loop runs over every hour of a season, and the codec's canonical re-check is for untrusted
        # input, not for committed state read back.
        hours: list[tuple[int, tuple[int, ...]]] = []
        for k, v in store.iterate(lo, hi):
            hours.append((int.from_bytes(k[-8:], "big"), msgpack.unpackb(v)))
        prev_last: int | None = None
        if counter and hours:
            # the hour before the range closes the first hour's use
            plo, _ = schema.hourly_range(dev.devnum, quantity, 0, h0)
            for _, v in store.iterate(plo, lo, reverse=True, limit=1):
                prev_last = codec.decode(HourlyAggregate, v).last_value
        hourly: list[tuple[int, float, float, float]] = []
        for hour, (count, total, lo_v, hi_v, _fts, first_v, _lts, last_v, n_flagged) in hours:
            flagged += n_flagged
            if n_flagged and len(marks) < MAX_MARKS:
                marks.append({"ts_ms": hour * HOUR_MS, "hour_count": n_flagged})
            if counter:
                base = prev_last if prev_last is not None else first_v
                d = (last_v - base) / div
                hourly.append((hour * HOUR_MS, d, d, d))
                prev_last = last_v
            else:
                hourly.append((hour * HOUR_MS, total / count / div, lo_v / div, hi_v / div))
        if counter and len(hourly) > max_points:
            per = -(-len(hourly) // max_points)
            pts = []
            for i in range(0, len(hourly), per):
                g = hourly[i : i + per]
                s = sum(p[1] for p in g)
                pts.append((g[0][0], s, s, s))
            step = HOUR_MS * per
        else:
            pts, step = _bucket(hourly, max_points, HOUR_MS)
        resolution = "hourly"
    nd = du.decimals + (1 if counter else 0)
    return {
        "quantity": quantity,
        "unit": du.unit + ("/" + _step_name(step) if counter else ""),
        "base_unit": unit,
        "counter": counter,
        "resolution": resolution,
        "step_ms": step,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "flagged": flagged,
        "truncated": truncated,
        "marks": marks,
        "t": [p[0] // 1000 for p in pts],
        "mean": [round(p[1], nd) for p in pts],
        "min": [round(p[2], nd) for p in pts],
        "max": [round(p[3], nd) for p in pts],
    }


def _step_name(step_ms: int) -> str:
    if step_ms % HOUR_MS == 0:
        h = step_ms // HOUR_MS
        return "h" if h == 1 else f"{h} h"
    m = max(1, round(step_ms / 60_000))
    return "min" if m == 1 else f"{m} min"


def summary(s: dict[str, Any]) -> dict[str, float | None]:
    """Range summary for the page without JS: total use (counters) or mean/min/max (gauges)."""
    if not s["t"]:
        return {"total": None, "mean": None, "min": None, "max": None}
    if s["counter"]:
        return {"total": round(sum(s["mean"]), 3), "mean": None, "min": None, "max": None}
    return {
        "total": None,
        "mean": round(sum(s["mean"]) / len(s["mean"]), 3),
        "min": min(s["min"]),
        "max": max(s["max"]),
    }
