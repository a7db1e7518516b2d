"""Storage benchmark: what LevelDB's checksums and the bloom filter cost and save; the last line is one JSON object.

Two databases with the node's options (snappy, 16 KiB blocks), one without and one with the bloom filter
(``node.store.BLOOM_BITS_PER_KEY``), each filled with the same keys: tx-index-like entries (``t`` + 32-byte hash,
a 20-byte value) and reading-like entries, then compacted into tables. LevelDB's block cache is held small (1 MiB)
so that reads go to the table files (through the OS page cache), which is where checksums and filters act.

Measured, each as operations per second on one core:
- ``get_present_*``: random gets of present tx keys, ``verify_checksums`` off and on;
- ``get_absent_*``: gets of absent tx hashes (what admission does for every new tx), without and with the filter;
- ``scan_*``: a full iteration with checksums off and on;
- ``get_hot_*_cache32m``: gets of a hot working set of 2,000 keys with the node's 32 MiB cache (a block's CRC is
  checked when LevelDB loads it from the file, not on a cache hit).

Usage: python bench/storage.py [--keys N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import plyvel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.store import BLOOM_BITS_PER_KEY


def open_db(path: Path, bloom: bool, cache: int = 1 << 20) -> plyvel.DB:
    opts: dict[str, object] = {}
    if bloom:
        opts["bloom_filter_bits"] = BLOOM_BITS_PER_KEY
    return plyvel.DB(
        str(path),
        create_if_missing=True,
        paranoid_checks=True,
        compression="snappy",
        write_buffer_size=4 << 20,
        block_size=16 << 10,
        lru_cache_size=cache,
        **opts,
    )


def fill(db: plyvel.DB, keys: list[bytes], rng: random.Random) -> None:
    for i in range(0, len(keys), 5000):
        with db.write_batch() as wb:
            for k in keys[i : i + 5000]:
                wb.put(k, rng.randbytes(20))
                wb.put(b"r" + k[1:13], rng.randbytes(40))
    db.compact_range()


def rate(n: int, fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return round(n / (time.perf_counter() - t), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=200_000, help="tx keys per database (default 200,000)")
    ap.add_argument("--quick", action="store_true", help="20,000 keys")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.keys
    rng = random.Random(9)
    keys = [b"t" + rng.randbytes(32) for _ in range(n)]
    present = rng.sample(keys, min(n, 50_000))
    absent = [b"t" + rng.randbytes(32) for _ in range(len(present))]
    base = Path(tempfile.mkdtemp(prefix="cemp-bench-storage-"))
    out: dict[str, object] = {
        "keys": n,
        "ops_per_measure": len(present),
        "bloom_bits_per_key": BLOOM_BITS_PER_KEY,
    }
    try:
        for bloom in (False, True):
            db = open_db(base / f"bloom{int(bloom)}", bloom)
            fill(db, keys, random.Random(1))
            tag = "bloom" if bloom else "nobloom"
            for _ in range(2):  # warm the OS page cache, keep the second measure
                for vc in (False, True):
                    r = rate(
                        len(present), lambda vc=vc, db=db: [db.get(k, verify_checksums=vc) for k in present]
                    )
                    out[f"get_present_{'checksums' if vc else 'nochecks'}_{tag}_per_s"] = r
                r = rate(len(absent), lambda db=db: [db.get(k, verify_checksums=True) for k in absent])
                out[f"get_absent_{tag}_per_s"] = r
            if bloom:
                for vc in (False, True):
                    total = 2 * n
                    out[f"scan_{'checksums' if vc else 'nochecks'}_keys_per_s"] = rate(
                        total,
                        lambda vc=vc, db=db: sum(
                            1 for _ in db.iterator(verify_checksums=vc, fill_cache=False)
                        ),
                    )
            db.close()
            if bloom:
                # The node's own cache (32 MiB): blocks are CRC-checked once, when LevelDB loads them.
                # A hot working set (2,000 keys, a few MiB of blocks) that the cache holds once warm.
                db = open_db(base / f"bloom{int(bloom)}", bloom, cache=32 << 20)
                hot = present[:2000] * 25
                for _ in range(2):
                    for vc in (False, True):
                        r = rate(
                            len(hot),
                            lambda vc=vc, db=db, hot=hot: [db.get(k, verify_checksums=vc) for k in hot],
                        )
                        out[f"get_hot_{'checksums' if vc else 'nochecks'}_cache32m_per_s"] = r
                db.close()
        sizes = {p.name: sum(f.stat().st_size for f in p.iterdir()) for p in base.iterdir()}
        out["db_bytes_nobloom"], out["db_bytes_bloom"] = sizes["bloom0"], sizes["bloom1"]
        out["checksum_get_cost_pct"] = round(
            100 * (1 - out["get_present_checksums_bloom_per_s"] / out["get_present_nochecks_bloom_per_s"]),  # type: ignore[operator]
            1,
        )
        out["absent_get_speedup"] = round(
            out["get_absent_bloom_per_s"] / out["get_absent_nobloom_per_s"],  # type: ignore[operator]
            2,
        )
        out["cpu_count"] = os.cpu_count()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
