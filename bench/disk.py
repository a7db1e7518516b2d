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

Usage: python bench/disk.py [--duration S] [--dir D] [--port P]
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--port", type=int, default=17401)
    a = ap.parse_args()
    base = Path(a.dir or tempfile.mkdtemp(prefix="cemp-disk-"))
    t0 = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cemp.cli",
            "demo",
            "--dir",
            str(base),
            "--port",
            str(a.port),
            "--fresh",
            "--duration",
            str(a.duration),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)
        return 1
    data = base / "data" / "owner-1"
    ledger = data / "ledger"
    before = dir_bytes(data)
    db = plyvel.DB(str(ledger))
    try:
        readings = sum(1 for _ in db.iterator(prefix=b"r", include_value=False))
        devices = len({k[1:5] for k in db.iterator(prefix=b"r", include_value=False)})
        height = int.from_bytes(db.get(b"Mheight") or b"\0", "big")
        txs = sum(1 for _ in db.iterator(prefix=b"t", include_value=False))
        db.compact_range()
    finally:
        db.close()
    after = dir_bytes(data)
    per_reading = after / readings
    rate = readings / a.duration  # readings per second at the demo's pace (the demo runs a.duration seconds)
    per_device_rate = rate / devices
    doc = {
        "bench": "disk",
        "duration_s": a.duration,
        "wall_s": round(wall, 1),
        "readings": readings,
        "devices_with_readings": devices,
        "blocks": height,
        "txs": txs,
        "data_dir_bytes_before_compaction": before,
        "data_dir_bytes_compacted": after,
        "bytes_per_reading": round(per_reading, 1),
        "bytes_per_tx": round(after / txs, 1),
        "demo_readings_per_s": round(rate, 3),
        "five_years_demo_gb": round(per_reading * rate * 5 * YEAR_S / 1e9, 2),
        "five_years_1000_meters_gb": round(per_reading * per_device_rate * 1000 * 5 * YEAR_S / 1e9, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
