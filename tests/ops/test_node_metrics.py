"""``node.metrics.NodeMetrics``: leader changes, the latency histogram's bookkeeping and its bound."""

from __future__ import annotations

import pytest

from node import metrics
from node.crypto import sha256
from node.metrics import NodeMetrics


def value(m: NodeMetrics, name: str) -> float:
    v = m.registry.get_sample_value(name)
    assert v is not None, name
    return v


def test_leader_changes_count_changes_not_observations() -> None:
    m = NodeMetrics()
    for leader in ["a", "a", "a", None, "b", "b", "a"]:
        m.leader_seen(leader)
    assert value(m, "cemp_leader_changes_total") == 3  # a -> None -> b -> a; the first sighting is no change


def test_latency_is_observed_once_per_admitted_tx_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    m = NodeMetrics()
    raws = [b"tx%d" % i for i in range(5)]
    m.admitted([sha256(r) for r in raws[:3]])
    m.committed(raws)  # two of them were admitted elsewhere: not observed
    m.committed(raws)  # a block is applied once; a second report observes nothing
    assert value(m, "cemp_commit_latency_seconds_count") == 3
    assert value(m, "cemp_txs_accepted_total") == 3
    m.admitted([sha256(b"evicted")])
    m.forget(lambda h: False)
    m.committed([b"evicted"])
    assert value(m, "cemp_commit_latency_seconds_count") == 3
    monkeypatch.setattr(metrics, "MAX_TRACKED", 2)
    m.admitted([sha256(b"x%d" % i) for i in range(4)])
    assert value(m, "cemp_commit_latency_untracked_total") == 2
