"""Randomized cluster simulation: Raft's safety properties over many seeded fault schedules, then liveness.

``CEMP_RAFT_SEEDS`` sets how many seeds run (default 1000; e.g. 20000 for a long run). A failure names its
seed, the scenario and its nemesis schedule; ``tests.consensus.sim.replay(seed)`` reproduces it exactly.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests.consensus.sim import make_scenario, replay, run_seed

SEEDS = int(os.environ.get("CEMP_RAFT_SEEDS", "1000"))
CHUNK = 50
CHUNKS = [range(lo, min(lo + CHUNK, SEEDS)) for lo in range(0, SEEDS, CHUNK)]


@pytest.mark.parametrize("seeds", CHUNKS, ids=[f"seeds{c.start}-{c.stop - 1}" for c in CHUNKS])
def test_cluster_safety_and_liveness(seeds: range) -> None:
    for seed in seeds:
        run_seed(seed)  # raises SimFailure (with seed, schedule and trace) on any violation


def test_the_schedules_exercise_what_they_claim() -> None:
    """Over a fixed sample of seeds, every kind of fault and protocol path actually happens (so a passing
    run means something): snapshots, transfers, every membership change, removed leaders, check-quorum
    step-downs, log truncations, restarts with the application behind the stored snapshot, both cluster
    sizes, pre-vote on and off."""
    stats: Counter[str] = Counter()
    sizes: Counter[tuple[int, bool]] = Counter()
    for seed in range(150):
        sim = run_seed(seed)
        stats.update(sim.stats)
        sizes[(sim.sc.size, sim.sc.pre_vote)] += 1
    for key in [
        "InstallSnapshot",
        "snapshot installed",
        "TimeoutNow",
        "applied ADD_LEARNER",
        "applied ADD_VOTER",
        "applied PROMOTE_LEARNER",
        "applied REMOVE_NODE",
        "removed leader stepped down",
        "check-quorum step-down",
        "leader saw higher term",
        "persisted log truncated",
        "restart behind snapshot",
    ]:
        assert stats[key] > 0, f"no seed exercised {key!r}: {dict(stats)}"
    assert stats["elections won"] > 150
    assert {(3, True), (3, False), (5, True), (5, False)} <= set(sizes)


def test_replay_is_exact() -> None:
    a, b = replay(17), replay(17)
    assert list(a.trace) == list(b.trace)
    assert a.stats == b.stats and a.applied == b.applied
    assert make_scenario(17) == make_scenario(17)
    assert make_scenario(17) != make_scenario(18)
