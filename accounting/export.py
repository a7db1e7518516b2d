"""Open data for analysts: a site's readings, hourly aggregates and inventory of a period as Parquet tables.

Three tables, each a plain Parquet file that DuckDB and pandas read directly:

- ``readings``: device handle, subsystem, carrier, quantity, ts (UTC timestamp, ms), seq, value, unit, flags — every
  committed reading of the boundary's devices inside the period (boundary in force at the reading's hour);
- ``hourly``: device handle, quantity, hour (UTC timestamp), count, first/last value and time, min, max, flagged,
  and ``use_wh`` (the activity data the inventory counts for that hour: last value minus the previous last value);
- ``inventory``: one row per device and one per breakdown bucket of the inventory, with energy, CO2 location- and
  market-based in micrograms (exact integers) and the factor/merkle references as text.

Cost is bounded by the period (at most a year or a season) and the boundary's device count; readings are read
with one range scan per device and written in record batches.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import msgpack

from accounting.inventory import Head, Snapshot, compute, finish
from accounting.periods import HOUR_MS
from accounting.sites import boundaries
from node import schema
from node.devices import load_device
from node.errors import CempError, Code

TABLES = ("readings", "hourly", "inventory")
MAX_READINGS = 4_000_000
"""Readings one export may hold (a season of 1-minute readings from 15 devices); beyond, ask for shorter periods."""


def _devices(snap: Snapshot, site_id: str, start_ms: int, stop_ms: int) -> list[tuple[Any, int, int, Any]]:
    """(boundary device, devnum, from_ms, to_ms) for every device of every boundary segment in the period."""
    from accounting.inventory import segments

    out = []
    for a, b, rec in segments(boundaries(snap, site_id), start_ms, stop_ms):
        for d in rec.payload.devices:
            dev = load_device(snap, d.handle)  # type: ignore[arg-type]
            if dev is not None:
                out.append((d, dev.devnum, a, b))
    return out


def readings_table(snap: Snapshot, site_id: str, start_ms: int, stop_ms: int) -> Any:
    import pyarrow as pa

    cols: dict[str, list[Any]] = {
        k: [] for k in ("device", "subsystem", "carrier", "quantity", "ts", "seq", "value", "unit", "flags")
    }
    unpack = msgpack.unpackb
    for d, devnum, a, b in _devices(snap, site_id, start_ms, stop_ms):
        lo, hi = schema.reading_range(devnum, a, b)
        ts_l, seq_l, q_l, v_l, u_l, f_l = [], [], [], [], [], []
        for k, raw in snap.iterate(lo, hi):
            if len(ts_l) + len(cols["ts"]) >= MAX_READINGS:
                raise CempError(
                    Code.BAD_REQUEST,
                    f"more than {MAX_READINGS:,} readings in this period: export months or quarters instead",
                )
            q, v, u, f = unpack(raw, raw=False, use_list=False)
            ts_l.append(int.from_bytes(k[5:13], "big"))
            seq_l.append(int.from_bytes(k[13:21], "big"))
            q_l.append(q)
            v_l.append(v)
            u_l.append(u)
            f_l.append(f)
        n = len(ts_l)
        cols["device"] += [d.handle] * n
        cols["subsystem"] += [d.subsystem] * n
        cols["carrier"] += [d.carrier] * n
        cols["quantity"] += q_l
        cols["ts"] += ts_l
        cols["seq"] += seq_l
        cols["value"] += v_l
        cols["unit"] += u_l
        cols["flags"] += f_l
    return pa.table(
        {
            "device": pa.array(cols["device"], pa.string()).dictionary_encode(),
            "subsystem": pa.array(cols["subsystem"], pa.string()).dictionary_encode(),
            "carrier": pa.array(cols["carrier"], pa.string()).dictionary_encode(),
            "quantity": pa.array(cols["quantity"], pa.string()).dictionary_encode(),
            "ts": pa.array(cols["ts"], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "seq": pa.array(cols["seq"], pa.int64()),
            "value": pa.array(cols["value"], pa.int64()),
            "unit": pa.array(cols["unit"], pa.string()).dictionary_encode(),
            "flags": pa.array(cols["flags"], pa.int64()),
        }
    )


def hourly_table(snap: Snapshot, site_id: str, start_ms: int, stop_ms: int) -> Any:
    import pyarrow as pa

    names = (
        "device",
        "quantity",
        "hour",
        "count",
        "first_ts",
        "first_value",
        "last_ts",
        "last_value",
        "minimum",
        "maximum",
        "flagged",
        "use_wh",
    )
    cols: dict[str, list[Any]] = {k: [] for k in names}
    for d, devnum, a, b in _devices(snap, site_id, start_ms, stop_ms):
        h0, h1 = a // HOUR_MS, b // HOUR_MS
        prev = None
        lo0, _ = schema.hourly_range(devnum, d.quantity, 0, h0)
        for _, raw in snap.iterate(
            lo0, schema.hourly_range(devnum, d.quantity, h0, h0)[0], reverse=True, limit=1
        ):
            prev = msgpack.unpackb(raw, use_list=False)[7]
        lo, hi = schema.hourly_range(devnum, d.quantity, h0, h1)
        for k, raw in snap.iterate(lo, hi):
            count, _total, mn, mx, fts, fv, lts, lv, flagged = msgpack.unpackb(raw, use_list=False)
            use = lv - (fv if prev is None else prev)
            prev = lv
            for name, v in zip(
                names,
                (
                    d.handle,
                    d.quantity,
                    int.from_bytes(k[-8:], "big") * HOUR_MS,
                    count,
                    fts,
                    fv,
                    lts,
                    lv,
                    mn,
                    mx,
                    flagged,
                    max(use, 0),
                ),
                strict=True,
            ):
                cols[name].append(v)
    ts = pa.timestamp("ms", tz="UTC")
    return pa.table(
        {
            "device": pa.array(cols["device"], pa.string()),
            "quantity": pa.array(cols["quantity"], pa.string()),
            "hour": pa.array(cols["hour"], pa.int64()).cast(ts),
            "count": pa.array(cols["count"], pa.int64()),
            "first_ts": pa.array(cols["first_ts"], pa.int64()).cast(ts),
            "first_value": pa.array(cols["first_value"], pa.int64()),
            "last_ts": pa.array(cols["last_ts"], pa.int64()).cast(ts),
            "last_value": pa.array(cols["last_value"], pa.int64()),
            "minimum": pa.array(cols["minimum"], pa.int64()),
            "maximum": pa.array(cols["maximum"], pa.int64()),
            "flagged": pa.array(cols["flagged"], pa.int64()),
            "use_wh": pa.array(cols["use_wh"], pa.int64()),
        }
    )


def inventory_table(inv: dict[str, Any]) -> Any:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for d in inv["devices"]:
        rows.append(
            {
                "row": "device",
                "key": d["handle"],
                "subsystem": d["subsystem"],
                "carrier": d["carrier"],
                "energy_wh": d["energy_wh"],
                "co2_location_ug": d["co2_location_ug"],
                "co2_market_ug": None,
                "aggregates": d["aggregates"],
                "reference": d["aggregates_root"],
            }
        )
    for r in inv["breakdown"]:
        rows.append(
            {
                "row": "breakdown",
                "key": r["label"],
                "subsystem": None,
                "carrier": "electricity",
                "energy_wh": r["energy_wh"],
                "co2_location_ug": r["co2_location_ug"],
                "co2_market_ug": r["co2_market_ug"],
                "aggregates": None,
                "reference": None,
            }
        )
    tot = inv["site_total"]
    rows.append(
        {
            "row": "site",
            "key": inv["site"]["site_id"],
            "subsystem": None,
            "carrier": "electricity",
            "energy_wh": tot["energy_wh"],
            "co2_location_ug": tot["co2_location_ug"],
            "co2_market_ug": tot["co2_market_ug"],
            "aggregates": None,
            "reference": inv["digest"],
        }
    )
    schema_ = pa.schema(
        [
            ("row", pa.string()),
            ("key", pa.string()),
            ("subsystem", pa.string()),
            ("carrier", pa.string()),
            ("energy_wh", pa.int64()),
            ("co2_location_ug", pa.int64()),
            ("co2_market_ug", pa.int64()),
            ("aggregates", pa.int64()),
            ("reference", pa.string()),
        ]
    )
    meta = {
        b"cemp.period": inv["period"]["label"].encode(),
        b"cemp.as_of_height": str(inv["as_of"]["height"]).encode(),
        b"cemp.inventory_sha256": inv["digest"].encode(),
    }
    return pa.Table.from_pylist(rows, schema=schema_.with_metadata(meta))


def table_bytes(
    snap: Snapshot,
    head: Head,
    site_id: str,
    period: str,
    table: str,
    check_device: Callable[[str, str], None] | None = None,
) -> bytes:
    """One table of the export as Parquet bytes (zstd). ``check_device(handle, org)`` raises for a device whose
    readings the caller may not read (``access``): a readings or hourly table holding one is refused whole, naming
    it, rather than handed out with rows silently missing."""
    import pyarrow.parquet as pq

    if table not in TABLES:
        raise CempError(Code.BAD_REQUEST, f"table {table!r}: use readings, hourly or inventory")
    inv = finish(compute(snap, head, site_id, period))
    a, b = inv["period"]["start_ms"], inv["period"]["stop_ms"]
    if check_device is not None and table in ("readings", "hourly"):
        for d, _, _, _ in _devices(snap, site_id, a, b):
            dev = load_device(snap, d.handle)  # type: ignore[arg-type]
            if dev is not None:
                check_device(dev.handle, dev.org)
    if table == "readings":
        t = readings_table(snap, site_id, a, b)
    elif table == "hourly":
        t = hourly_table(snap, site_id, a, b)
    else:
        t = inventory_table(inv)
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="zstd")
    return buf.getvalue()
