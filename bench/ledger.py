"""Ledger benchmark: one real node process on loopback, fsync on; the last line printed is one JSON object.

Phases (one invocation, so ratios are against a baseline measured on the same machine at the same moment):
1. bare Ed25519 ``verify`` loop (baseline, one core);
2. readings committed per second in 60-reading signed batches;
3. single-reading txs committed per second;
4. submit->commit latency at half the single-tx peak rate (open loop, a batch every 20 ms);
5. latency of a lone tx on an idle node;
6. ``cemp verify`` throughput over the whole data directory, and bytes on disk per stored reading.

Txs are signed before the clock starts so the load generator spends its CPU on HTTP only.
Usage: python bench/ledger.py [--quick] [--keep]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import (
    log,
    median,
    open_loop_latency,
    pct,
    register_devices,
    sign_streams,
    throughput,
    verify_baseline,
)

from cemp import wiring
from node.client import NodeClient
from node.store import LevelDBStore
from node.verify import verify_data_dir
from tests.support.testing import TestConsortium, free_port, start_node_process


async def main_async(args: argparse.Namespace) -> dict:
    quick = args.quick
    work = Path(tempfile.mkdtemp(prefix="cemp-bench-", dir=args.dir))
    port = free_port()
    c = TestConsortium.create(ports=[port], block_max_txs=4000, block_interval_ms=20, max_batch_readings=1000)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(work, nid, port)
    url = f"http://127.0.0.1:{port}"
    out: dict = {}
    log("baseline: bare Ed25519 verify loop")
    base = verify_baseline(1.0 if quick else 2.0)
    out["verify_baseline_per_s"] = round(base)
    proc = start_node_process(cfg, work / "node.log", port)
    try:
        n_dev = 64 if quick else 256
        devs = await register_devices(c, url, n_dev)
        now = int(time.time() * 1000) - 86_400_000  # all offsets below stay in the past

        per_dev = 4 if quick else 12
        log(f"signing {n_dev * per_dev} batches of 60 readings")
        streams = sign_streams(c, devs, per_dev, 60, now, 8)
        dt, _ = await throughput([url], streams, 50)
        out["readings_per_s"] = round(n_dev * per_dev * 60 / dt)
        log(f"readings/s {out['readings_per_s']}")

        per_dev1 = 40 if quick else 120
        log(f"signing {n_dev * per_dev1} single-reading txs")
        streams = sign_streams(c, devs, per_dev1, 1, now + 10_000_000, 8)
        dt, _ = await throughput([url], streams, 250)
        out["tx_per_s"] = round(n_dev * per_dev1 / dt)
        out["tx_per_s_vs_verify"] = round(out["tx_per_s"] / base, 3)
        log(f"single-reading tx/s {out['tx_per_s']}")

        rate = out["tx_per_s"] / 2
        log(f"latency at {rate:.0f} tx/s")
        lat = await open_loop_latency(c, devs, url, rate, 3.0 if quick else 8.0, now + 20_000_000)
        out["p50_ms"] = round(median(lat), 2)
        out["p99_ms"] = round(pct(lat, 0.99), 2)
        out["latency_rate_tx_per_s"] = round(rate)

        await asyncio.sleep(0.5)
        idle: list[float] = []
        async with NodeClient(url) as cl:
            d = devs[0]
            for i in range(30 if quick else 60):
                raw = d.batch(c.chain, [(now + 30_000_000 + i, "power", i, "W")])
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                r = await cl.submit(raw, wait=True)
                idle.append((time.perf_counter() - t) * 1000)
                assert r["result"]["ok"], r
            st = await cl.status()
            devinfo = await cl.get("/v1/devices", limit=1000)
        out["idle_p50_ms"] = round(median(idle), 2)
        log(f"idle lone tx p50 {out['idle_p50_ms']} ms")
        stored_readings = sum(d["readings"] for d in devinfo["devices"])
    finally:
        proc.terminate()
        proc.wait(30)

    data = work / "data" / nid
    log("cemp verify over the data directory")
    rep = verify_data_dir(data, wiring.kinds(), workers=2)
    assert rep.ok, rep.problem
    out["verify_tx_per_s"] = round(rep.tx_per_s)
    out["verify_tx_per_s_per_core"] = round(rep.tx_per_s / min(2, os.cpu_count() or 1))
    out["verify_seconds"] = round(rep.seconds, 2)
    store = LevelDBStore(data / "ledger", create=False)
    store.db.compact_range()
    store.close()
    size = sum(f.stat().st_size for f in (data / "ledger").iterdir())
    out["bytes_per_reading"] = round(size / stored_readings, 1)
    out["stored_readings"] = stored_readings
    out["height"] = st["height"]
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (about 30 s)")
    ap.add_argument("--dir", default=None, help="where to put the temporary data directory")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
