"""Ledger benchmark: one real node process on loopback, fsync on; the last line printed is one JSON object.

Phases (one invocation, so ratios are against a baseline measured on the same machine at the same moment):
1. bare Ed25519 ``verify`` loop (baseline, one core);
2. readings committed per second in 60-reading signed batches (counted from the txs in the node's blocks);
3. the offered-rate curve of single-reading txs (bench/offered.py: open loop, each step offered, committed,
   refused, timed out, p50/p99 over every offered tx); ``tx_per_s`` is the committed rate at the highest offered
   rate with every tx committed and p99 < 500 ms, ``p50_ms``/``p99_ms`` are that step's;
4. (the curve's latencies replace the old half-peak point);
5. latency of a lone tx on an idle node;
6. ``cemp verify`` throughput over the whole data directory, and bytes on disk per stored reading.

Txs are signed before the clock starts so the load generator spends its CPU on HTTP only.
The data directory's filesystem type is in the JSON (``fs_type``); a memory filesystem is refused.
Usage: python bench/ledger.py [--quick] [--keep] [--dir DIR] [--rates 200,400,...]
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

from common import log, median, register_devices, sign_streams, throughput, verify_baseline
from offered import MEMORY_FS, cemp_curve, chain_txs, fs_type, headline

from cemp import wiring
from node.client import NodeClient
from node.store import LevelDBStore
from node.verify import verify_data_dir
from tests.support.testing import TestConsortium, free_port, start_node_process


async def main_async(args: argparse.Namespace) -> dict:
    quick = args.quick
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cemp-bench-", dir=args.dir))
    fs = fs_type(work)
    if fs in MEMORY_FS:
        shutil.rmtree(work, ignore_errors=True)
        raise SystemExit(f"{work} is on {fs}: fsync costs nothing there; pass --dir on a real disk")
    port = free_port()
    c = TestConsortium.create(ports=[port], block_max_txs=4000, block_interval_ms=20, max_batch_readings=1000)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(work, nid, port)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"fs_type": fs, "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    log("baseline: bare Ed25519 verify loop")
    base = verify_baseline(1.0 if quick else 2.0)
    out["verify_baseline_per_s"] = round(base)
    proc = start_node_process(cfg, work / "node.log", port)
    try:
        n_dev = 64 if quick else 256
        devs = await register_devices(c, url, n_dev)
        # The idle phase's device sends only there (txs refused during the curve leave the others' nonces ahead).
        lone = (await register_devices(c, url, 1, prefix="88.123.45/302"))[0]
        now = int(time.time() * 1000) - 86_400_000  # all offsets below stay in the past

        per_dev = 4 if quick else 12
        log(f"signing {n_dev * per_dev} batches of 60 readings")
        streams = sign_streams(c, devs, per_dev, 60, now, 8)
        h0, _ = await chain_txs(url, 1 << 62)
        dt, bad = await throughput([url], streams, 50)
        _, on_chain = await chain_txs(url, h0)
        out["readings_per_s"] = round(on_chain * 60 / dt)
        out["readings_phase"] = {"txs_sent": n_dev * per_dev, "txs_in_blocks": on_chain, "not_committed": bad}
        log(f"readings/s {out['readings_per_s']} ({on_chain} txs of 60 in blocks, {bad} not committed)")

        rates = (
            [float(x) for x in args.rates.split(",")]
            if args.rates
            else ([400, 1600] if quick else [250, 500, 1000, 1500, 2000, 3000, 4000])
        )
        steps = await cemp_curve(c, [url], url, devs, rates, 3.0 if quick else 8.0, now + 20_000_000)
        out.update(headline(steps))
        out["tx_per_s_vs_verify"] = round(out["tx_per_s"] / base, 3)
        log(f"single-reading tx/s sustained {out['tx_per_s']}")

        await asyncio.sleep(0.5)
        idle: list[float] = []
        async with NodeClient(url) as cl:
            d = lone
            for i in range(30 if quick else 60):
                raw = d.batch(c.chain, [(now + 80_000_000 + i, "power", i, "W")])
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
    out["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller run (about 30 s)")
    ap.add_argument("--dir", default=None, help="where to put the temporary data directory (a real disk)")
    ap.add_argument("--rates", default="", help="offered rates, tx/s, comma-separated")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
