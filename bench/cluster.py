"""Cluster benchmark: three real node processes on loopback, fsync on, every node verifying every tx; the last
line printed is one JSON object.

What is counted is what committed, nothing planned:
- ``readings_per_s``: 60-reading batches pushed as fast as the cluster takes them; the rate is the txs found in
  the blocks of a follower that were committed during the phase (times 60), over the phase's time.
- The offered-rate curve of single-reading txs (``curve``): each step offers a rate for ``--step-s`` seconds,
  open loop, spread over the three nodes (a device always talks to the same node); per step: offered,
  committed, refused, timed out, p50/p99 submit-to-commit latency over every offered tx (one that did not commit
  counts as infinitely slow). The committed count is checked against the txs in the follower's blocks.
  ``tx_per_s`` is the committed rate at the highest offered rate with every tx committed and p99 < 500 ms
  (``sustained_offered_per_s``).
- ``idle_p50_ms``: a lone tx on an idle cluster.
- ``failover_s``: kill -9 of the leader -> first commit of a new tx on a survivor, median over ``--failovers``
  rounds, with ``failover_max_s``, every round, and rounds that hit the 30 s limit (``failover_timeouts``).
- PySyncObj (``pysyncobj``): the same curve on three PySyncObj replica processes with the journal on disk and
  flushed before every send, the same client and HTTP hop (bench/pysyncobj_peer.py says what else differs).

Data directories live under ``--dir`` (default ``bench-data/cluster`` in the checkout); their filesystem type is
in the JSON (``fs_type``) and a memory filesystem is refused (fsync would cost nothing there).

Usage: python bench/cluster.py [--quick] [--rates 200,400,...] [--step-s S] [--failovers N] [--no-pysyncobj]
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
import socket
import subprocess
import time
from typing import Any

import aiohttp
import msgpack
from common import ROOT, log, median, register_devices, sign_streams, throughput
from offered import (
    MEMORY_FS,
    PER_NODE_CONNS,
    TICK_S,
    Step,
    cemp_curve,
    chain_txs,
    curve_summary,
    fs_type,
    headline,
    offer,
    settle,
)

from node.client import NodeClient
from tests.cluster.harness import Cluster

FAILOVER_LIMIT_S = 30.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def failover(cl: Cluster, rounds: int) -> list[tuple[float, bool]]:
    """(seconds from kill -9 of the leader to the first commit on a survivor, hit the limit) per round."""
    c = cl.consortium
    devs = await register_devices(c, cl.url(await cl.leader()), 4, prefix="88.123.45/301")
    out: list[tuple[float, bool]] = []
    seq_base = int(time.time() * 1000) - 3_600_000
    for r in range(rounds):
        leader = await cl.leader()
        others = [n for n in cl.ids if n != leader]
        dev = devs[r % len(devs)]
        raw = dev.batch(c.chain, [(seq_base + r, "power", r, "W")])
        cl.kill(leader)
        t0 = time.perf_counter()
        done = False
        while not done and time.perf_counter() - t0 < FAILOVER_LIMIT_S:
            for nid in others:
                try:
                    async with NodeClient(cl.url(nid), timeout_s=2) as nc:
                        res = await nc.submit(raw, wait=True, timeout_ms=1000)
                    if res.get("status") == "committed":
                        done = True
                        break
                except Exception:  # a survivor without a leader yet; try again
                    await asyncio.sleep(0.01)
        dt = time.perf_counter() - t0
        out.append((dt, not done))
        log(f"failover {r + 1}/{rounds}: {dt:.3f} s{'' if done else ' (no commit: limit reached)'}")
        await cl.start(leader)
        await asyncio.sleep(1.0)
    return out


async def pysyncobj_curve(base: Path, rates: list[float], seconds: float) -> dict[str, Any]:
    raft = [_port() for _ in range(3)]
    http = [_port() for _ in range(3)]
    script = str(ROOT / "bench" / "pysyncobj_peer.py")
    procs = []
    for i in range(3):
        others = [str(p) for j, p in enumerate(raft) if j != i]
        procs.append(
            subprocess.Popen(
                [sys.executable, script, str(raft[i]), str(http[i]), str(base / f"pso-{i}"), *others],
                stderr=open(base / f"pso-{i}.log", "wb"),  # noqa: SIM115
            )
        )
    urls = [f"http://127.0.0.1:{p}" for p in http]
    steps: list[Step] = []
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=40),
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=PER_NODE_CONNS),
        ) as s:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with s.get(f"{urls[0]}/status") as r:
                        st = await r.json()
                    if st["ready"] and st["leader"] != "None":
                        break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("PySyncObj replicas did not elect a leader in 30 s")
                await asyncio.sleep(0.1)

            async def send(node: int, ops: list[bytes]) -> list[str]:
                async with s.post(f"{urls[node]}/ops", data=msgpack.packb(ops, use_bin_type=True)) as r:
                    return list((await r.json())["results"])

            payload = b"x" * 200
            for rate in rates:
                per_tick = max(1, round(rate * TICK_S))
                ops = [
                    [[payload] * len(range(n, per_tick, 3)) for n in range(3)]
                    for _ in range(int(seconds / TICK_S))
                ]
                step = await offer(send, ops, rate, seconds, grace_s=10)
                log(f"pysyncobj {json.dumps(step.json())}")
                steps.append(step)
                if step.committed < 0.5 * step.offered or step.pct(0.5) > 2000:
                    log("pysyncobj: far past saturation; no higher rates")
                    break
                await asyncio.sleep(2.0)
            flushes = []
            for u in urls:
                async with s.get(f"{u}/status") as r:
                    flushes.append((await r.json())["flushes"])
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return {
        **curve_summary(steps),
        "journal_flushes": flushes,
        "fs_type": fs_type(base),
        "per_op": "200-byte opaque payload, pickled, unsigned; journal (file-backed mmap) msync'ed before every "
        "send; applying = a counter increment; client -> HTTP POST /ops on any replica (a follower forwards "
        "to the leader) -> commit -> answer",
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    rates = (
        [float(x) for x in args.rates.split(",")]
        if args.rates
        else ([200, 800, 1600] if quick else [200, 400, 800, 1200, 1600, 2400, 3200])
    )
    seconds = args.step_s or (3.0 if quick else 8.0)
    base = Path(args.dir).resolve()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    fs = fs_type(base)
    if fs in MEMORY_FS and not args.allow_memory_fs:
        raise SystemExit(f"{base} is on {fs}: fsync costs nothing there; pass --dir on a real disk")
    out: dict[str, Any] = {"fs_type": fs, "data_dir": str(base), "cpu_count": os.cpu_count()}
    out["load_avg_1m_start"] = round(os.getloadavg()[0], 2)
    cl = await Cluster.create(
        base / "cemp", 3, proxies=False, block_max_txs=4000, block_interval_ms=20, max_batch_readings=1000
    )
    await cl.start_all()
    try:
        leader = await cl.leader()
        url = cl.url(leader)
        follower = next(n for n in cl.ids if n != leader)
        n_dev = 256 if quick else 512
        devs = await register_devices(cl.consortium, url, n_dev)
        # The idle phase's device sends only there (txs refused during the curve leave the others' nonces ahead).
        lone = (await register_devices(cl.consortium, url, 1, prefix="88.123.45/302"))[0]
        c = cl.consortium
        now = int(time.time() * 1000) - 86_400_000

        per_dev = 2 if quick else 6
        streams = sign_streams(c, devs, per_dev, 60, now, 8)
        await settle([cl.url(n) for n in cl.ids])
        h0, _ = await chain_txs(cl.url(follower), 1 << 62)
        dt, bad = await throughput([url], streams, 50)
        await settle([cl.url(n) for n in cl.ids])
        await asyncio.sleep(1.0)
        _, on_chain = await chain_txs(cl.url(follower), h0)
        out["readings_per_s"] = round(on_chain * 60 / dt)
        out["readings_phase"] = {"txs_sent": n_dev * per_dev, "txs_in_blocks": on_chain, "not_committed": bad}
        log(f"readings/s {out['readings_per_s']} ({on_chain} txs of 60 in blocks, {bad} not committed)")

        urls = [cl.url(n) for n in cl.ids]
        steps = await cemp_curve(c, urls, cl.url(follower), devs, rates, seconds, now + 20_000_000)
        out.update(headline(steps))
        out["per_op"] = (
            "one signed single-reading readings tx (Ed25519 checked at admission on the node it is sent to and "
            "on every node when the block applies; nonce, schema, LevelDB batch with sync=True per block; Raft "
            "log fsync'ed before send); client -> HTTP POST /v1/txs/batch?wait=commit on any node (a follower "
            "forwards to the leader) -> commit -> answer"
        )

        await asyncio.sleep(1.0)
        idle = []
        async with NodeClient(url) as nc:
            d = lone
            for i in range(30):
                raw = d.batch(c.chain, [(now + 80_000_000 + i, "power", i, "W")])
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                r = await nc.submit(raw, wait=True)
                idle.append((time.perf_counter() - t) * 1000)
                assert r["result"]["ok"], r
        out["idle_p50_ms"] = round(median(idle), 2)
        log(f"idle lone tx p50 {out['idle_p50_ms']} ms")

        ft = await failover(cl, args.failovers)
        times = [t for t, _ in ft]
        out["failover_s"] = round(median(times), 3)
        out["failover_max_s"] = round(max(times), 3)
        out["failover_rounds_s"] = [round(t, 3) for t in times]
        out["failover_timeouts"] = sum(1 for _, timed_out in ft if timed_out)
    finally:
        await cl.stop()
    if not args.no_pysyncobj:
        log("PySyncObj side by side")
        pso = await pysyncobj_curve(base, rates, seconds)
        out["pysyncobj"] = pso
        out["pysyncobj_ops_per_s"] = pso["sustained_committed_per_s"]
        if pso["sustained_committed_per_s"]:
            out["ratio_tx_vs_pysyncobj"] = round(out["tx_per_s"] / pso["sustained_committed_per_s"], 3)
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rates", default="", help="offered rates, tx/s, comma-separated")
    ap.add_argument("--step-s", type=float, default=0.0, help="seconds per offered rate (default 8; quick 3)")
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--no-pysyncobj", action="store_true")
    ap.add_argument(
        "--dir", default=str(ROOT / "bench-data" / "cluster"), help="data directories (real disk)"
    )
    ap.add_argument("--allow-memory-fs", action="store_true", help="run on tmpfs anyway (flagged in fs_type)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
