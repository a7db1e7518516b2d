"""Accounting benchmark: the season inventory from committed data, against pandas and DuckDB on the same readings.

Builds (once; kept in ``--data``, default ``bench-data/accounting``) a one-node LevelDB ledger through the real
apply path (``Ledger.execute`` / ``sign_block`` / ``commit``, the node's own code, in-process without the network):
the regulator's factor sets, a site (100,000 m², season 10-15..04-15) with a boundary of 7 devices (a main meter,
five sub-meters and a heat meter), and the 2025/26 heating season of 1-minute counter readings from each device
(7 x 183 days x 1,440 = 1,844,640 readings), each tx a batch of 1,000 readings signed by the device's own Ed25519
key, 20 txs per block. A second ledger holds 100 sites with one hourly-read main meter each (100 x 4,392 readings).

Measured, in this order, on the committed state: ``inventory_s`` (``inventory.compute`` + ``finish`` of the season,
median of ``--n`` runs); the readings of the season exported to Parquet (``accounting.export``), then ``pandas_s`` and
``duckdb_s``: each reads that Parquet file and computes the same totals (per device: the use per hour as the last
counter value of the hour minus the previous hour's last, summed; site CO2 = main meter x the location factor),
median of ``--n``; the totals are checked equal to the inventory's. ``sites100_inventory_s``: the season inventory
of each of the 100 sites. ``pdf_s``: report model + PDF of the season (Chinese).

Last line: one JSON object with ``readings``, ``inventory_s``, ``pandas_s``, ``duckdb_s``,
``sites100_inventory_s``, ``pdf_s`` (medians), the ratios ``pandas_over_inventory`` and ``duckdb_over_inventory``
of this same run, and every run's time in ``times_s``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import random
import statistics
import time
from datetime import date
from typing import Any

from common import ROOT, log

from accounting import export as exportm
from accounting import inventory as invm
from accounting import kpi as kpim
from accounting import render
from accounting.factors import shipped_sets
from accounting.model import BoundaryDevice, BoundaryPayload, SitePayload
from accounting.params import head_of
from accounting.periods import day_start_ms
from accounting.report import build
from cemp import wiring
from node.chain import Ledger, header_hash
from node.crypto import KeyPair
from node.store import LevelDBStore
from node.types import Handle, ShortStr, Text, TimestampMs
from tests.support.testing import TestConsortium

HOUR_MS = 3_600_000
PERIOD = "2025/26-season"
SEASON_FIRST = date(2025, 10, 15)
SEASON_DAYS = 183
DEVICES = (
    ("88.123.45/101.2.1", "incoming", "electricity", 260_000),
    ("88.123.45/101.1.1", "core-heating", "electricity", 120_000),
    ("88.123.45/101.1.2", "pipe-heating", "electricity", 60_000),
    ("88.123.45/101.1.3", "storage-tank", "electricity", 40_000),
    ("88.123.45/101.3.1", "pump-room", "electricity", 15_000),
    ("88.123.45/101.4.1", "electrical-system", "electricity", 8_000),
    ("88.123.45/102.2.1", "plate-heat-exchanger", "heat", 230_000),
)
MAIN = DEVICES[0][0]


def site_payload(site_id: str, building: str) -> SitePayload:
    return SitePayload(
        ShortStr(site_id), 1, Text(f"Bench site {site_id}"), 100_000, Text("Hohhot, Inner Mongolia"),
        ShortStr("Inner Mongolia"), ShortStr("North China"), ShortStr("10-15"), ShortStr("04-15"), 480,
        Handle(building), (), 4186,
    )  # fmt: skip


class Builder:
    def __init__(self, path: Path, block_txs: int = 20) -> None:
        self.c = TestConsortium.create(n_nodes=1, block_max_txs=block_txs)
        path.mkdir(parents=True)
        self.store = LevelDBStore(path / "ledger")
        self.led = Ledger(self.store, self.c.genesis, wiring.kinds())
        self.key: KeyPair = self.c.node_keys["owner-1"]
        self.block_t = int(time.time() * 1000) - 3_600_000
        self.block_txs = block_txs

    def commit(self, raws: list[bytes]) -> None:
        led = self.led
        for i in range(0, len(raws), self.block_txs):
            part = tuple(raws[i : i + self.block_txs])
            for raw in part:  # signed here a moment ago: skip re-verifying on apply
                led.mark_verified(led.decode_tx(raw).hash)
            self.block_t += 1
            staged = led.execute(part, time_ms=self.block_t, proposer="owner-1", term=0, last_commit=())
            bad = [r for r in staged.results if r.code != 0]
            if bad:
                raise RuntimeError(f"bench tx refused: {bad[0].reason}")
            block = led.sign_block(staged, self.key)
            vote = led.vote(header_hash(block.header), "owner-1", self.key)
            led.commit(block, staged, (vote,))

    def setup(self) -> None:
        self.commit([self.c.admin_tx("regulator", "factors", s) for s in shipped_sets()])


def build_season(path: Path) -> dict[str, Any]:
    b = Builder(path)
    b.setup()
    t0 = time.perf_counter()
    start = day_start_ms(SEASON_FIRST, 480)
    b.commit([b.c.admin_tx("owner", "site", site_payload("bench", "88.123.45/bench.site"))])
    devs = []
    for h, sub, _carrier, _w in DEVICES:
        d, raw = b.c.register_device(h, subsystem=sub)
        devs.append(d)
        b.commit([raw])
    bdevs = tuple(
        BoundaryDevice(Handle(h), ShortStr(s), ShortStr(c), ShortStr("energy.import"))
        for h, s, c, _ in sorted(DEVICES)
    )
    bp = BoundaryPayload(ShortStr("bench"), 1, TimestampMs(start - HOUR_MS), bdevs, Handle(MAIN), Text(""))
    b.commit([b.c.admin_tx("owner", "boundary", bp)])
    rng = random.Random(7)
    minutes = SEASON_DAYS * 1440
    n = 0
    pending: list[bytes] = []
    counters = [1_000_000 for _ in DEVICES]
    last_log = time.perf_counter()
    for m0 in range(0, minutes, 1000):
        for i, (_h, _s, _c, watts) in enumerate(DEVICES):
            vals = []
            v = counters[i]
            for m in range(m0, min(m0 + 1000, minutes)):
                v += watts // 60 + rng.randrange(watts // 120 + 1)  # Wh per minute
                vals.append((start + m * 60_000 + 30_000, "energy.import", v, "Wh"))
            counters[i] = v
            n += len(vals)
            pending.append(devs[i].batch(b.c.chain, vals))
        if len(pending) >= 140:
            b.commit(pending)
            pending = []
        if time.perf_counter() - last_log > 15:
            log(f"  {n:,} readings committed, height {b.led.height}, {time.perf_counter() - t0:.0f} s")
            last_log = time.perf_counter()
    b.commit(pending)
    info = {"readings": n, "height": b.led.height, "build_s": round(time.perf_counter() - t0, 1)}
    (path / "built.json").write_text(json.dumps(info))
    b.store.close()
    return info


def build_sites(path: Path, sites: int) -> dict[str, Any]:
    b = Builder(path, block_txs=50)
    b.setup()
    t0 = time.perf_counter()
    start = day_start_ms(SEASON_FIRST, 480)
    hours = SEASON_DAYS * 24
    raws = []
    devs = []
    for s in range(sites):
        sid = f"site-{s:03d}"
        raws.append(b.c.admin_tx("owner", "site", site_payload(sid, f"88.123.45/bench.{sid}")))
        h = f"88.123.45/401.{s // 100}.{s % 100}"
        d, raw = b.c.register_device(h, subsystem="incoming")
        devs.append(d)
        raws.append(raw)
    b.commit(raws)
    bounds = []
    for s in range(sites):
        h = f"88.123.45/401.{s // 100}.{s % 100}"
        bd = (
            BoundaryDevice(
                Handle(h), ShortStr("incoming"), ShortStr("electricity"), ShortStr("energy.import")
            ),
        )
        bp = BoundaryPayload(
            ShortStr(f"site-{s:03d}"), 1, TimestampMs(start - HOUR_MS), bd, Handle(h), Text("")
        )
        bounds.append(b.c.admin_tx("owner", "boundary", bp))
    b.commit(bounds)
    rng = random.Random(11)
    pending = []
    n = 0
    for s, d in enumerate(devs):
        v = 1_000_000
        vals = []
        for hh in range(hours):
            v += 200_000 + rng.randrange(100_000) + s
            vals.append((start + hh * HOUR_MS + 1_800_000, "energy.import", v, "Wh"))
        for i in range(0, len(vals), 1000):
            pending.append(d.batch(b.c.chain, vals[i : i + 1000]))
        n += len(vals)
        if len(pending) >= 100:
            b.commit(pending)
            pending = []
    b.commit(pending)
    info = {"sites": sites, "readings": n, "build_s": round(time.perf_counter() - t0, 1)}
    (path / "built.json").write_text(json.dumps(info))
    b.store.close()
    return info


TIMES: dict[str, list[float]] = {}


def median_of(name: str, fn: Any, n: int) -> tuple[float, Any]:
    """Median wall time of ``n`` runs of ``fn`` (every run's time is kept in ``TIMES[name]``) and its last result."""
    out, ts = None, []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    TIMES[name] = [round(x, 4) for x in ts]
    return statistics.median(ts), out


def pandas_totals(path: Path, factor_e6: int) -> dict[str, int]:
    import pandas as pd

    df = pd.read_parquet(path, columns=["device", "ts", "value"])
    df["device"] = df["device"].astype(str)
    df = df.sort_values(["device", "ts"], kind="stable")
    df["hour"] = df["ts"].dt.floor("h")
    g = df.groupby(["device", "hour"], sort=True)["value"]
    hourly = pd.DataFrame({"first": g.first(), "last": g.last()}).reset_index()
    prev = hourly.groupby("device")["last"].shift(1)
    use = (hourly["last"] - prev.fillna(hourly["first"])).clip(lower=0)
    per = use.groupby(hourly["device"]).sum()
    out = {str(k): int(v) for k, v in per.items()}
    out["co2_location_ug"] = out[MAIN] * factor_e6
    return out


def duckdb_totals(path: Path, factor_e6: int) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    con.execute("PRAGMA threads=2")
    rows = con.execute(
        f"""
        with h as (
          select device::varchar as device, date_trunc('hour', ts) as hour,
                 arg_min(value, ts) as first, arg_max(value, ts) as last
          from read_parquet('{path}') group by 1, 2),
        u as (
          select device, greatest(last - coalesce(lag(last) over (partition by device order by hour), first), 0) as use
          from h)
        select device, sum(use)::bigint from u group by device order by device
        """
    ).fetchall()
    out = {str(d): int(v) for d, v in rows}
    out["co2_location_ug"] = out[MAIN] * factor_e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "accounting"))
    ap.add_argument("--sites", type=int, default=100)
    ap.add_argument(
        "--n", type=int, default=5, help="repetitions; each figure is the median (100 sites: n - 2)"
    )
    args = ap.parse_args()
    data = Path(args.data)
    season_dir, sites_dir = data / "season", data / f"sites{args.sites}"
    if not (season_dir / "built.json").exists():
        log(f"building the season ledger under {season_dir} (once)")
        if season_dir.exists():
            raise SystemExit(f"{season_dir} exists without built.json (an interrupted build): delete it")
        log(json.dumps(build_season(season_dir)))
    if not (sites_dir / "built.json").exists():
        log(f"building the {args.sites}-site ledger under {sites_dir} (once)")
        if sites_dir.exists():
            raise SystemExit(f"{sites_dir} exists without built.json (an interrupted build): delete it")
        log(json.dumps(build_sites(sites_dir, args.sites)))
    built = json.loads((season_dir / "built.json").read_text())

    store = LevelDBStore(season_dir / "ledger", create=False)
    snap = store.snapshot()
    head = head_of(snap)
    inventory_s, inv = median_of(
        "inventory", lambda: invm.finish(invm.compute(snap, head, "bench", PERIOD)), args.n
    )
    log(f"season inventory: {inventory_s:.3f} s, {inv['data_quality']['readings']:,} readings")
    factor_e6 = next(f for f in inv["factors"] if f.get("set"))["location"]["value_e6"]

    import pyarrow.parquet as pq

    pq_path = data / "season-readings.parquet"
    t = time.perf_counter()
    a, b = inv["period"]["start_ms"], inv["period"]["stop_ms"]
    pq.write_table(exportm.readings_table(snap, "bench", a, b), pq_path, compression="zstd")
    export_s = time.perf_counter() - t
    log(f"exported readings to {pq_path} in {export_s:.1f} s ({pq_path.stat().st_size:,} bytes)")
    want = {d["handle"]: d["energy_wh"] for d in inv["devices"]}
    want["co2_location_ug"] = inv["site_total"]["co2_location_ug"]
    pandas_s, got_p = median_of("pandas", lambda: pandas_totals(pq_path, factor_e6), args.n)
    duckdb_s, got_d = median_of("duckdb", lambda: duckdb_totals(pq_path, factor_e6), args.n)
    for name, got in (("pandas", got_p), ("duckdb", got_d)):
        if got != want:
            raise SystemExit(f"{name} totals differ from the inventory: {got} vs {want}")
    log(f"pandas {pandas_s:.3f} s, duckdb {duckdb_s:.3f} s (totals equal the inventory's)")

    def pdf() -> bytes:
        raw = invm.compute(snap, head, "bench", PERIOD, txs=True)
        fin = invm.finish(raw)
        kp = kpim.compute_kpis({**raw, "digest": fin["digest"]})
        kp.pop("_baseline")
        return render.render(build(fin, kp), "pdf", "zh")

    render.render_pdf  # noqa: B018  (the font is registered on first use; measured as part of the first run)
    pdf_s, pdf_bytes = median_of("pdf", pdf, args.n)
    (data / "season-report-zh.pdf").write_bytes(pdf_bytes)
    log(f"season report PDF (inventory + KPIs + model + render): {pdf_s:.3f} s, {len(pdf_bytes):,} bytes")
    snap.release()
    store.close()

    store2 = LevelDBStore(sites_dir / "ledger", create=False)
    snap2 = store2.snapshot()
    head2 = head_of(snap2)

    def all_sites() -> int:
        tot = 0
        for s in range(args.sites):
            tot += invm.finish(invm.compute(snap2, head2, f"site-{s:03d}", PERIOD))["site_total"]["energy_wh"]
        return tot

    sites_s, _ = median_of("sites100", all_sites, max(1, args.n - 2))
    log(f"{args.sites} site inventories: {sites_s:.3f} s")
    snap2.release()
    store2.close()
    print(
        json.dumps(
            {
                "readings": built["readings"],
                "inventory_s": round(inventory_s, 3),
                "pandas_s": round(pandas_s, 3),
                "duckdb_s": round(duckdb_s, 3),
                "sites100_inventory_s": round(sites_s, 3),
                "pdf_s": round(pdf_s, 3),
                "pandas_over_inventory": round(pandas_s / inventory_s, 1),
                "duckdb_over_inventory": round(duckdb_s / inventory_s, 1),
                "runs": args.n,
                "times_s": TIMES,
                "export_readings_s": round(export_s, 1),
                "load1": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
