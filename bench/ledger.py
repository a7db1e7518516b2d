"""Ledger benchmark: one real node process on loopback, fsync on; the last line printed is one JSON object.

Phases (all in one invocation, so ratios are against a baseline measured on the same machine and moment):
1. bare Ed25519 ``verify`` loop (baseline, one core);
2. readings committed per second in 60-reading signed batches;
3. single-reading txs committed per second;
4. submit->commit latency at half the single-tx peak rate (open loop, a batch every 20 ms);
5. latency of a lone tx on an idle node;
6. ``cemp verify`` throughput over the whole data directory, and bytes on disk per stored reading.

Txs are signed before the clock starts so the load generator spends its CPU on HTTP only.
Usage: python bench/ledger.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.client import NodeClient  # noqa: E402
from node.crypto import KeyPair, verify  # noqa: E402
from node.store import LevelDBStore  # noqa: E402
from node.testing import TestConsortium, TestDevice, free_port, start_node_process  # noqa: E402
from node.types import DOMAIN_TX  # noqa: E402
from node.verify import verify_data_dir  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def verify_baseline(seconds: float = 2.0) -> float:
    k = KeyPair.generate()
    msg = b"x" * 180
    sig = k.sign(DOMAIN_TX, msg)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(500):
            verify(k.public, DOMAIN_TX, msg, sig)
        n += 500
    return n / (time.perf_counter() - t0)


async def post_batch(session: aiohttp.ClientSession, url: str, raws: list[bytes], wait: bool) -> list[dict]:
    params = {"wait": "commit", "timeout_ms": "120000"} if wait else {}
    async with session.post(
        f"{url}/v1/txs/batch",
        data=msgpack.packb(raws, use_bin_type=True),
        params=params,
        headers={"Content-Type": "application/msgpack"},
    ) as r:
        body = await r.json()
        if r.status != 200:
            raise RuntimeError(f"batch refused: {body}")
        return body["results"]


async def throughput(url: str, per_conn: list[list[bytes]], chunk: int) -> tuple[float, int]:
    """Each connection sends its txs in order, ``chunk`` per request; the last request waits for commit."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        t0 = time.perf_counter()

        async def run(txs: list[bytes]) -> int:
            bad = 0
            for i in range(0, len(txs), chunk):
                part = txs[i : i + chunk]
                last = i + chunk >= len(txs)
                res = await post_batch(s, url, part, wait=last)
                rej = [x for x in res if x["status"] not in ("pending", "committed")]
                if rej and not bad:
                    log(f"first refusal: {rej[0]}")
                bad += len(rej)
                if last:
                    bad += sum(1 for x in res if x["status"] != "committed")
            return bad

        bads = await asyncio.gather(*(run(t) for t in per_conn))
        # Every connection waited for its last chunk; earlier chunks commit before later ones (FIFO mempool).
        dt = time.perf_counter() - t0
    if sum(bads):
        log(f"warning: {sum(bads)} txs not accepted/committed")
    return dt, sum(bads)


def sign_streams(
    c: TestConsortium, devs: list[TestDevice], per_dev: int, readings: int, t0: int, conns: int
) -> list[list[bytes]]:
    streams: list[list[bytes]] = [[] for _ in range(conns)]
    for i, d in enumerate(devs):
        for j in range(per_dev):
            base = t0 + j * readings * 10
            raw = d.batch(
                c.chain_id,
                [(base + k * 10, "energy.import", j * readings + k, "Wh") for k in range(readings)],
            )
            streams[i % conns].append(raw)
    return streams


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
        devs: list[TestDevice] = []
        async with NodeClient(url) as cl:
            regs = []
            for i in range(n_dev):
                d, reg = c.register_device(f"88.123.45/201.{i // 100}.{i % 100}")
                devs.append(d)
                regs.append(reg)
            res = await cl.submit_batch(regs, wait=True)
            assert all(r["status"] == "committed" and r["result"]["ok"] for r in res), res[:2]
        now = int(time.time() * 1000) - 86_400_000  # all offsets below stay in the past

        # --- 60-reading batches -------------------------------------------------------------
        per_dev = 4 if quick else 12
        conns = 8
        log(f"signing {n_dev * per_dev} batches of 60 readings")
        streams = sign_streams(c, devs, per_dev, 60, now, conns)
        total_readings = n_dev * per_dev * 60
        dt, _ = await throughput(url, streams, 50)
        out["readings_per_s"] = round(total_readings / dt)
        log(f"readings/s {out['readings_per_s']} ({total_readings} in {dt:.2f} s)")

        # --- single-reading txs -------------------------------------------------------------
        per_dev1 = 40 if quick else 120
        log(f"signing {n_dev * per_dev1} single-reading txs")
        streams = sign_streams(c, devs, per_dev1, 1, now + 10_000_000, conns)
        total_tx = n_dev * per_dev1
        dt, _ = await throughput(url, streams, 250)
        out["tx_per_s"] = round(total_tx / dt)
        out["tx_per_s_vs_verify"] = round(out["tx_per_s"] / base, 3)
        log(f"single-reading tx/s {out['tx_per_s']} ({total_tx} in {dt:.2f} s)")

        # --- latency at half the peak rate (open loop) --------------------------------------
        rate = out["tx_per_s"] / 2
        tick = 0.02
        per_tick = max(1, round(rate * tick))
        dur = 3.0 if quick else 8.0
        n_ticks = int(dur / tick)
        log(f"latency at {rate:.0f} tx/s for {dur:.0f} s ({per_tick} txs per 20 ms)")
        # device-major order: each tick takes the next tx of many devices
        pool = list(devs)
        txs_by_tick: list[list[bytes]] = []
        k = 0
        for _ in range(n_ticks):
            batch = []
            for _ in range(per_tick):
                d = pool[k % len(pool)]
                k += 1
                batch.append(d.batch(c.chain_id, [(now + 20_000_000 + k, "power", k, "W")]))
            txs_by_tick.append(batch)
        lat: list[float] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            t_start = time.perf_counter() + 0.05
            inflight = []

            async def send(at: float, batch: list[bytes]) -> None:
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                res = await post_batch(s, url, batch, wait=True)
                done = time.perf_counter()
                lat.extend((done - at) * 1000 for r in res if r["status"] == "committed")

            # One device's consecutive txs are in different ticks; send ticks in order but do not wait.
            for i, batch in enumerate(txs_by_tick):
                inflight.append(asyncio.create_task(send(t_start + i * tick, batch)))
                await asyncio.sleep(0)
            await asyncio.gather(*inflight)
        lat.sort()
        out["p50_ms"] = round(statistics.median(lat), 2)
        out["p99_ms"] = round(lat[int(len(lat) * 0.99) - 1], 2)
        out["latency_rate_tx_per_s"] = round(rate)

        # --- idle lone tx -------------------------------------------------------------------
        await asyncio.sleep(0.5)
        idle: list[float] = []
        async with NodeClient(url) as cl:
            d = devs[0]
            for i in range(30 if quick else 60):
                raw = d.batch(c.chain_id, [(now + 30_000_000 + i, "power", i, "W")])
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                r = await cl.submit(raw, wait=True)
                idle.append((time.perf_counter() - t) * 1000)
                assert r["result"]["ok"], r
        out["idle_p50_ms"] = round(statistics.median(idle), 2)
        log(f"idle lone tx p50 {out['idle_p50_ms']} ms")
        async with NodeClient(url) as cl:
            st = await cl.status()
            devinfo = await cl.get("/v1/devices", limit=1000)
        stored_readings = sum(d["readings"] for d in devinfo["devices"])
    finally:
        proc.terminate()
        proc.wait(30)

    # --- verify and disk usage ------------------------------------------------------------------
    data = work / "data" / nid
    log("cemp verify over the data directory")
    rep = verify_data_dir(data, workers=2)
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
    out = asyncio.run(main_async(args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
