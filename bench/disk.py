"""Disk cost of the chain per reading, measured on a real demo consortium; the last line is one JSON object.

Runs ``cemp demo`` (three node processes, the plant simulators and the collector agent, which signs each device's
readings as it polls them every 5 s) for ``--duration`` seconds, then reads owner-1's data directory:
- counts the readings stored (keys of the ``r`` namespace), blocks and txs;
- compacts the LevelDB store fully (what it tends to over months: write-ahead log folded into snappy-compressed
  tables) and measures the directory (ledger + high-water mark) before and after;
- reports bytes per reading (everything the node keeps — blocks, tx index, results, certificates, hourly
  aggregates, Raft log — divided by the readings) and projects it over 5 years at the demo's reading rate and at
  1,000 meters read as often as the demo's devices.

The collector signs one tx per device per flush, so per-tx costs stay per reading at 1,000 meters; only the
per-block share shrinks as blocks grow.

A new demo chain starts with five weeks of commissioned history (the load model every 15 minutes, in big signed
batches: cheaper per reading than live polling, and not the live rate), plus the people, site and grant set-up.
So the demo runs twice on one directory: ``--warmup`` seconds on a new chain (history and set-up), measured
(compacted) afterwards, then ``--duration`` seconds resumed; the live figures are the differences between the two
measurements (bytes added / readings added, readings added / seconds). The totals are reported too.

Usage: python bench/disk.py [--duration S] [--warmup S] [--dir D] [--port P]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import plyvel

YEAR_S = 365.25 * 86400


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def run_demo(base: Path, port: int, seconds: float, fresh: bool) -> bool:
    cmd = [sys.executable, "-m", "cemp.cli", "demo", "--dir", str(base), "--port", str(port)]
    out = subprocess.run(
        [*cmd, *(["--fresh"] if fresh else []), "--duration", str(seconds)], capture_output=True, text=True
    )
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)
    return out.returncode == 0


def measure(data: Path) -> dict[str, int]:
    """Readings, devices, blocks and txs in owner-1's store, and its size before and after a full compaction."""
    before = dir_bytes(data)
    db = plyvel.DB(str(data / "ledger"))
    try:
        readings = sum(1 for _ in db.iterator(prefix=b"r", include_value=False))
        devices = len({k[1:5] for k in db.iterator(prefix=b"r", include_value=False)})
        height = int.from_bytes(db.get(b"Mheight") or b"\0", "big")
        txs = sum(1 for _ in db.iterator(prefix=b"t", include_value=False))
        db.compact_range()
    finally:
        db.close()
    return {
        "readings": readings,
        "devices": devices,
        "blocks": height,
        "txs": txs,
        "bytes_before_compaction": before,
        "bytes": dir_bytes(data),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=300, help="seconds of live running that are measured")
    ap.add_argument("--warmup", type=float, default=60, help="seconds on a new chain first (history, set-up)")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--port", type=int, default=17401)
    a = ap.parse_args()
    base = Path(a.dir or tempfile.mkdtemp(prefix="cemp-disk-"))
    data = base / "data" / "owner-1"
    t0 = time.monotonic()
    if not run_demo(base, a.port, a.warmup, fresh=True):
        return 1
    m0 = measure(data)
    t1 = time.monotonic()
    if not run_demo(base, a.port, a.duration, fresh=False):
        return 1
    wall = time.monotonic() - t1
    m1 = measure(data)
    live_readings = m1["readings"] - m0["readings"]
    live_bytes = m1["bytes"] - m0["bytes"]
    per_reading = live_bytes / live_readings
    rate = live_readings / a.duration  # readings per second at the demo's live pace
    per_device_rate = rate / m1["devices"]
    doc = {
        "bench": "disk",
        "warmup_s": a.warmup,
        "duration_s": a.duration,
        "wall_s": round(wall, 1),
        "after_warmup": m0,
        "after_run": m1,
        "devices_with_readings": m1["devices"],
        "live_readings": live_readings,
        "live_txs": m1["txs"] - m0["txs"],
        "live_blocks": m1["blocks"] - m0["blocks"],
        "live_bytes_compacted": live_bytes,
        "bytes_per_reading": round(per_reading, 1),
        "bytes_per_tx": round(live_bytes / max(1, m1["txs"] - m0["txs"]), 1),
        "demo_readings_per_s": round(rate, 3),
        "history_bytes_per_reading": round(m0["bytes"] / max(1, m0["readings"]), 1),
        "five_years_demo_gb": round(per_reading * rate * 5 * YEAR_S / 1e9, 2),
        "five_years_1000_meters_gb": round(per_reading * per_device_rate * 1000 * 5 * YEAR_S / 1e9, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "total_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
