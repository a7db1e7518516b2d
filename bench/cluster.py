"""Cluster benchmark: three real node processes on loopback, fsync on, every node verifying every tx.
The last line printed is one JSON object.

Phases: readings/s in 60-reading batches; single-reading txs/s; submit->commit latency at half the single-tx
peak (open loop); a lone tx on an idle cluster; failover (kill -9 of the leader -> first commit by the new
leader, median of N); and, in the same run, PySyncObj replicating 200-byte payloads across three local
processes (no fsync, no signatures) for scale.

Usage: python bench/cluster.py [--quick] [--failovers N] [--no-pysyncobj]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, log, median, open_loop_latency, pct, register_devices, sign_streams, throughput

from node.client import NodeClient
from tests.cluster.harness import Cluster


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pysyncobj_ops(n: int, limit_s: float) -> dict:
    ports = [_port() for _ in range(3)]
    script = str(ROOT / "bench" / "pysyncobj_peer.py")
    peers = [
        subprocess.Popen(
            [sys.executable, script, str(ports[i]), *[str(p) for j, p in enumerate(ports) if j != i]]
        )
        for i in (1, 2)
    ]
    try:
        out = subprocess.run(
            [
                sys.executable,
                script,
                str(ports[0]),
                str(ports[1]),
                str(ports[2]),
                "--client",
                str(n),
                str(limit_s),
            ],
            capture_output=True,
            text=True,
            timeout=limit_s + 60,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for p in peers:
            p.kill()
            p.wait()


async def failover(cl: Cluster, rounds: int) -> list[float]:
    c = cl.consortium
    devs = await register_devices(c, cl.url(await cl.leader()), 4, prefix="88.123.45/301")
    times = []
    seq_base = int(time.time() * 1000) - 3_600_000
    for r in range(rounds):
        leader = await cl.leader()
        others = [n for n in cl.ids if n != leader]
        dev = devs[r % len(devs)]
        cl.kill(leader)
        t0 = time.perf_counter()
        # Keep submitting the same signed tx to the survivors until one reports it committed.
        raw = dev.batch(c.chain, [(seq_base + r, "power", r, "W")])
        done = False
        while not done and time.perf_counter() - t0 < 30:
            for nid in others:
                try:
                    async with NodeClient(cl.url(nid), timeout_s=2) as nc:
                        res = await nc.submit(raw, wait=True, timeout_ms=1000)
                    if res.get("status") == "committed":
                        done = True
                        break
                except Exception:
                    await asyncio.sleep(0.01)
        times.append(time.perf_counter() - t0)
        log(f"failover {r + 1}/{rounds}: {times[-1]:.3f} s")
        await cl.start(leader)
        await asyncio.sleep(1.0)
    return times


async def main_async(args: argparse.Namespace) -> dict:
    quick = args.quick
    out: dict = {}
    base = Path(tempfile.mkdtemp(prefix="cemp-cluster-bench-"))
    cl = await Cluster.create(
        base, 3, proxies=False, block_max_txs=4000, block_interval_ms=20, max_batch_readings=1000
    )
    await cl.start_all()
    try:
        leader = await cl.leader()
        url = cl.url(leader)
        n_dev = 64 if quick else 256
        devs = await register_devices(cl.consortium, url, n_dev)
        c = cl.consortium
        now = int(time.time() * 1000) - 86_400_000

        per_dev = 4 if quick else 10
        streams = sign_streams(c, devs, per_dev, 60, now, 8)
        dt, bad = await throughput([url], streams, 50)
        out["readings_per_s"] = round(n_dev * per_dev * 60 / dt)
        log(f"readings/s {out['readings_per_s']} (refused {bad})")

        per_dev1 = 30 if quick else 100
        streams = sign_streams(c, devs, per_dev1, 1, now + 10_000_000, 8)
        dt, bad = await throughput([url], streams, 250)
        out["tx_per_s"] = round(n_dev * per_dev1 / dt)
        log(f"single-reading tx/s {out['tx_per_s']} (refused {bad})")

        rate = out["tx_per_s"] / 2
        lat = await open_loop_latency(c, devs, url, rate, 3.0 if quick else 8.0, now + 20_000_000)
        out["p50_ms"] = round(median(lat), 2)
        out["p99_ms"] = round(pct(lat, 0.99), 2)
        out["latency_rate_tx_per_s"] = round(rate)
        log(f"latency at {rate:.0f} tx/s: p50 {out['p50_ms']} p99 {out['p99_ms']} ms")

        await asyncio.sleep(0.5)
        idle = []
        async with NodeClient(url) as nc:
            d = devs[0]
            for i in range(30):
                raw = d.batch(c.chain, [(now + 30_000_000 + i, "power", i, "W")])
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                r = await nc.submit(raw, wait=True)
                idle.append((time.perf_counter() - t) * 1000)
                assert r["result"]["ok"], r
        out["idle_p50_ms"] = round(median(idle), 2)
        log(f"idle lone tx p50 {out['idle_p50_ms']} ms")

        ft = await failover(cl, args.failovers)
        out["failover_median_s"] = round(median(ft), 3)
        out["failover_max_s"] = round(max(ft), 3)
    finally:
        await cl.stop()
    if not args.no_pysyncobj:
        log("PySyncObj side by side")
        pso = pysyncobj_ops(40_000 if quick else 100_000, 20)
        out["pysyncobj_ops_per_s"] = pso["ops_per_s"]
        out["ratio_tx_vs_pysyncobj"] = round(out["tx_per_s"] / pso["ops_per_s"], 3)
        out["ratio_readings_vs_pysyncobj"] = round(out["readings_per_s"] / pso["ops_per_s"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--no-pysyncobj", action="store_true")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
