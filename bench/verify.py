"""``cemp verify`` on a chain of small blocks: blocks per second, full and incremental; the last line is one JSON object.

The chain is built through the real apply path on a three-node genesis (each block carries the two other nodes'
commit votes on its parent, as in a real cluster), ``--txs`` single-reading txs per block, in a LevelDB store of
its own. Then ``verify_data_dir`` runs over it with ``--workers`` processes (default 2: both cores), from genesis,
and a second time after ``--more`` blocks were added, resuming from the first run's checkpoint.

Usage: python bench/verify.py [--blocks N] [--txs K] [--more M] [--workers W] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import os
import shutil
import tempfile
import time

from cemp import wiring
from node.chain import Ledger, header_hash
from node.store import LevelDBStore
from node.verify import verify_data_dir
from node.watermark import Watermark, path_beside
from tests.support.testing import GENESIS_TIME_MS, TestConsortium, TestDevice


def build(led: Ledger, c: TestConsortium, devs: list[TestDevice], blocks: int, txs: int, t: int) -> int:
    ids = [str(n.node_id) for n in c.genesis.nodes]
    for _ in range(blocks):
        raws = []
        for k in range(txs):
            d = devs[k % len(devs)]
            t += 1000
            raws.append(d.batch(c.chain, [(t, "energy.import", t // 1000, "Wh")]))
        last_commit = ()
        if led.height:
            last_commit = tuple(led.vote(led.last_hash, n, c.node_keys[n]) for n in ids[:2])
        staged = led.execute(tuple(raws), time_ms=t, proposer=ids[0], term=1, last_commit=last_commit)
        block = led.sign_block(staged, c.node_keys[ids[0]])
        led.commit(
            block, staged, tuple(led.vote(header_hash(block.header), n, c.node_keys[n]) for n in ids[:2])
        )
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=4000)
    ap.add_argument("--txs", type=int, default=4, help="single-reading txs per block (default 4)")
    ap.add_argument("--more", type=int, default=400, help="blocks added before the incremental run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="800 blocks")
    args = ap.parse_args()
    n = 800 if args.quick else args.blocks
    base = Path(tempfile.mkdtemp(prefix="cemp-bench-verify-"))
    out: dict[str, object] = {"blocks": n, "txs_per_block": args.txs, "workers": args.workers}
    try:
        c = TestConsortium.create(n_nodes=3)
        path = base / "data" / "ledger"
        store = LevelDBStore(path)
        led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(path)))
        devs = []
        regs = []
        for i in range(8):
            d, reg = c.register_device(f"88.123.45/101.9.{i}")
            devs.append(d)
            regs.append(reg)
        t = build(led, c, devs, 0, 0, GENESIS_TIME_MS + 86_400_000)
        nid = str(c.genesis.nodes[0].node_id)
        staged = led.execute(tuple(regs), time_ms=t + 1, proposer=nid, term=1, last_commit=())
        block = led.sign_block(staged, c.node_keys[nid])
        led.commit(block, staged)
        t0 = time.perf_counter()
        t = build(led, c, devs, n - 1, args.txs, t + 2)
        out["build_s"] = round(time.perf_counter() - t0, 2)
        store.close()
        led.watermark.close()  # type: ignore[union-attr]
        cpu0 = time.process_time()
        rep = verify_data_dir(base / "data", wiring.kinds(), workers=args.workers, incremental=False)
        main_cpu = time.process_time() - cpu0
        assert rep.ok, rep.problem
        # Wall time on a shared machine depends on the load; the main process's CPU time bounds the replay.
        out["verify_main_cpu_s"] = round(main_cpu, 3)
        out["verify_blocks_per_main_cpu_s"] = round(rep.blocks / main_cpu)
        out["load_avg_1m"] = os.getloadavg()[0]
        out["verify_s"] = round(rep.seconds, 3)
        out["verify_blocks_per_s"] = round(rep.blocks / rep.seconds)
        out["verify_tx_per_s"] = round(rep.txs / rep.seconds)
        # An incremental run from nothing replays everything and writes the checkpoint.
        rep = verify_data_dir(base / "data", wiring.kinds(), workers=args.workers, incremental=True)
        assert rep.ok, rep.problem
        store = LevelDBStore(path, create=False)
        led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(path)))
        build(led, c, devs, args.more, args.txs, t + 1)
        store.close()
        led.watermark.close()  # type: ignore[union-attr]
        rep = verify_data_dir(base / "data", wiring.kinds(), workers=args.workers, incremental=True)
        assert rep.ok, rep.problem
        out["incremental_blocks"] = rep.blocks
        out["incremental_from"] = rep.resumed_from
        out["incremental_verify_s"] = round(rep.seconds, 3)
        out["cpu_count"] = os.cpu_count()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
