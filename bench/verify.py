"""``cemp verify`` on a chain of small blocks: blocks per second, full and incremental; the last line is one JSON object.

The chain is built through the real apply path on a three-node genesis (each block carries the two other nodes'
commit votes on its parent, as in a real cluster), ``--txs`` single-reading txs per block, in a LevelDB store of
its own. Then ``verify_data_dir`` runs over it with ``--workers`` processes (default 2: both cores), from genesis,
and a second time after ``--more`` blocks were added, resuming from the first run's checkpoint.

A second chain holds batched readings (``--batch-blocks`` blocks of ``--batch-txs`` txs of 60 readings, as the
collector sends them) for the per-core figure: ``verify_batched_tx_per_cpu_s`` is txs over the CPU seconds of the
main process and its workers together (one core-second each), ``verify_batched_tx_per_s`` the wall rate.

``bare_ed25519_verify_per_cpu_s`` is a bare signature-check loop in the same run (the ceiling of any
signature-checked rate per core).

Every figure comes with the 1-minute load average around it: on a shared machine the wall rates are bounded by
what the other processes leave; ``verify_blocks_per_cpu_s`` (blocks over main + worker CPU seconds) and
``verify_blocks_per_main_cpu_s`` (the serial replay alone) are not.

Usage: python bench/verify.py [--blocks N] [--txs K] [--more M] [--workers W] [--runs R] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time

from common import verify_baseline

from cemp import wiring
from node.chain import Ledger, header_hash
from node.store import LevelDBStore
from node.verify import verify_data_dir
from node.watermark import Watermark, path_beside
from tests.support.testing import GENESIS_TIME_MS, TestConsortium, TestDevice


def build(
    led: Ledger, c: TestConsortium, devs: list[TestDevice], blocks: int, txs: int, t: int, readings: int = 1
) -> int:
    ids = [str(n.node_id) for n in c.genesis.nodes]
    for _ in range(blocks):
        raws = []
        for k in range(txs):
            d = devs[k % len(devs)]
            t += 1000
            vals = [(t - readings + 1 + r, "energy.import", (t + r) // 10, "Wh") for r in range(readings)]
            raws.append(d.batch(c.chain, vals))
        last_commit = ()
        if led.height:
            last_commit = tuple(led.vote(led.last_hash, n, c.node_keys[n]) for n in ids[:2])
        staged = led.execute(tuple(raws), time_ms=t, proposer=ids[0], term=1, last_commit=last_commit)
        bad = [r for r in staged.results if r.code != 0]
        if bad:
            raise SystemExit(f"a bench tx was refused: {bad[0].reason}")
        block = led.sign_block(staged, c.node_keys[ids[0]])
        led.commit(
            block, staged, tuple(led.vote(header_hash(block.header), n, c.node_keys[n]) for n in ids[:2])
        )
    return t


def new_chain(base: Path, n_dev: int = 8) -> tuple[TestConsortium, Path, Ledger, list[TestDevice], int]:
    c = TestConsortium.create(n_nodes=3)
    path = base / "data" / "ledger"
    store = LevelDBStore(path)
    led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(path)))
    devs, regs = [], []
    for i in range(n_dev):
        d, reg = c.register_device(f"88.123.45/101.9.{i}")
        devs.append(d)
        regs.append(reg)
    t = GENESIS_TIME_MS + 86_400_000
    nid = str(c.genesis.nodes[0].node_id)
    staged = led.execute(tuple(regs), time_ms=t + 1, proposer=nid, term=1, last_commit=())
    block = led.sign_block(staged, c.node_keys[nid])
    led.commit(block, staged)
    return c, path, led, devs, t + 2


def close(led: Ledger) -> None:
    led.store.close()
    led.watermark.close()  # type: ignore[union-attr]


def timed_verify(data: Path, workers: int) -> dict[str, float]:
    """One full ``cemp verify`` run: wall and CPU seconds (main process, and its worker processes)."""
    load0 = os.getloadavg()[0]
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = time.process_time()
    rep = verify_data_dir(data, wiring.kinds(), workers=workers, incremental=False)
    main_cpu = time.process_time() - cpu0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert rep.ok, rep.problem
    kids_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    return {
        "blocks": rep.blocks,
        "txs": rep.txs,
        "wall_s": rep.seconds,
        "main_cpu_s": main_cpu,
        "worker_cpu_s": kids_cpu,
        "load_avg_1m": round((load0 + os.getloadavg()[0]) / 2, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=4000)
    ap.add_argument("--txs", type=int, default=4, help="single-reading txs per block (default 4)")
    ap.add_argument("--more", type=int, default=400, help="blocks added before the incremental run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="full verify runs per chain; medians (default 3)")
    ap.add_argument("--batch-blocks", type=int, default=100, help="blocks of the batched-readings chain")
    ap.add_argument("--batch-txs", type=int, default=50, help="60-reading txs per block of that chain")
    ap.add_argument("--quick", action="store_true", help="800 blocks, 30 batched blocks, one run")
    args = ap.parse_args()
    n = 800 if args.quick else args.blocks
    runs = 1 if args.quick else args.runs
    base = Path(tempfile.mkdtemp(prefix="cemp-bench-verify-"))
    out: dict[str, object] = {"blocks": n, "txs_per_block": args.txs, "workers": args.workers, "runs": runs}
    out["cpu_count"] = os.cpu_count()
    out["bare_ed25519_verify_per_cpu_s"] = round(verify_baseline(1.0, clock=time.process_time))
    try:
        # Small blocks.
        c, path, led, devs, t = new_chain(base / "small")
        t0 = time.perf_counter()
        t = build(led, c, devs, n - 1, args.txs, t)
        out["build_s"] = round(time.perf_counter() - t0, 2)
        close(led)
        data = base / "small" / "data"
        got = [timed_verify(data, args.workers) for _ in range(runs)]
        med = lambda k: statistics.median(g[k] for g in got)  # noqa: E731
        blocks = got[0]["blocks"]
        out["verify_s"] = round(med("wall_s"), 3)
        out["verify_blocks_per_s"] = round(blocks / med("wall_s"))
        out["verify_blocks_per_s_runs"] = [round(blocks / g["wall_s"]) for g in got]
        out["verify_tx_per_s"] = round(got[0]["txs"] / med("wall_s"))
        out["verify_main_cpu_s"] = round(med("main_cpu_s"), 3)
        out["verify_blocks_per_main_cpu_s"] = round(blocks / med("main_cpu_s"))
        out["verify_blocks_per_cpu_s"] = round(
            blocks / statistics.median(g["main_cpu_s"] + g["worker_cpu_s"] for g in got)
        )
        out["load_avg_1m"] = [g["load_avg_1m"] for g in got]
        # An incremental run from nothing replays everything and writes the checkpoint; then ``--more`` blocks.
        rep = verify_data_dir(data, wiring.kinds(), workers=args.workers, incremental=True)
        assert rep.ok, rep.problem
        store = LevelDBStore(path, create=False)
        led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(path)))
        build(led, c, devs, args.more, args.txs, t + 1)
        close(led)
        rep = verify_data_dir(data, wiring.kinds(), workers=args.workers, incremental=True)
        assert rep.ok, rep.problem
        out["incremental_blocks"] = rep.blocks
        out["incremental_from"] = rep.resumed_from
        out["incremental_verify_s"] = round(rep.seconds, 3)

        # Batched readings: 60 per tx.
        nb = 30 if args.quick else args.batch_blocks
        c, path, led, devs, t = new_chain(base / "batched", n_dev=64)
        build(led, c, devs, nb, args.batch_txs, t, readings=60)
        close(led)
        got = [timed_verify(base / "batched" / "data", args.workers) for _ in range(runs)]
        txs = got[0]["txs"]
        out["batched"] = {"blocks": nb, "txs_per_block": args.batch_txs, "readings_per_tx": 60}
        out["verify_batched_tx_per_s"] = round(txs / statistics.median(g["wall_s"] for g in got))
        out["verify_batched_tx_per_cpu_s"] = round(
            txs / statistics.median(g["main_cpu_s"] + g["worker_cpu_s"] for g in got)
        )
        out["verify_batched_tx_per_s_per_core"] = round(out["verify_batched_tx_per_s"] / max(1, args.workers))
        out["verify_batched_load_avg_1m"] = [g["load_avg_1m"] for g in got]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
