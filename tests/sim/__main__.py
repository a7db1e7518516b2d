"""Replay or sweep simulator seeds: ``python -m tests.sim SEED`` (one seed, with its trace on failure) or
``python -m tests.sim FIRST-LAST`` (a range, with timings)."""

from __future__ import annotations

import sys
import time

from tests.sim.world import SimFailure, make_scenario, run_seed


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    lo, _, hi = argv[0].partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    t0 = time.perf_counter()
    for seed in seeds:
        t = time.perf_counter()
        try:
            w = run_seed(seed)
        except SimFailure as e:
            print(e)
            return 1
        if len(seeds) == 1:
            print(make_scenario(seed).describe())
            print("last trace lines:")
            print("\n".join(w.trace))
        print(f"seed {seed}: ok in {time.perf_counter() - t:.2f} s, {dict(w.stats)}", flush=True)
    print(f"{len(seeds)} seeds in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
