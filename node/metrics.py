"""A node's Prometheus metrics: what is counted as it happens, and what is read from the node when scraped.

Counted as it happens: blocks and txs applied, submit-to-commit latency of the txs this node admitted (the
admission time is remembered for at most ``MAX_TRACKED`` txs; older ones are dropped and counted), leader
changes. Read at scrape time (nothing is done per request): height, term, role, leader presence, mempool size,
admissions refused by reason, Raft apply lag, the leader's view of each peer's lag, the data directory's size and
the free space of its disk.

Names start with ``cemp_``; ``docker/prometheus/alerts.yml`` and ``docker/grafana/cemp.json`` query only names
that exist here or in a route provider's collector (``tests/ops/test_docker_files.py`` checks it on running processes).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from node.crypto import sha256

MAX_TRACKED = 200_000
"""Admission times kept for the latency histogram (about 8 MB at most)."""

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def dir_bytes(path: Path) -> int:
    """Bytes of regular files under ``path`` (LevelDB's tables and logs are flat; no symlinks followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue  # a table compacted away between listing and stat
    return total


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.height = prom.Gauge("cemp_height", "Last applied block height", registry=r)
        self.blocks = prom.Counter("cemp_blocks_total", "Blocks applied", registry=r)
        self.txs = prom.Counter("cemp_txs_total", "Txs applied, by outcome", ["outcome"], registry=r)
        self.mempool = prom.Gauge("cemp_mempool_txs", "Txs waiting in the mempool", registry=r)
        self.commit_latency = prom.Histogram(
            "cemp_commit_latency_seconds",
            "Submit-to-commit time of the txs this node admitted (admission to applied block)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.leader_changes = prom.Counter(
            "cemp_leader_changes_total",
            "Times this node saw the leader change (to a node or to none)",
            registry=r,
        )
        self.accepted = prom.Counter("cemp_txs_accepted_total", "Txs admitted to the mempool", registry=r)
        self.untracked = prom.Counter(
            "cemp_commit_latency_untracked_total",
            "Admitted txs left out of the latency histogram (more than MAX_TRACKED pending)",
            registry=r,
        )
        self._admitted: dict[bytes, float] = {}
        self._leader: object = ()

    def admitted(self, tx_hashes: list[bytes]) -> None:
        now = time.monotonic()
        self.accepted.inc(len(tx_hashes))
        for h in tx_hashes:
            if len(self._admitted) >= MAX_TRACKED:
                self.untracked.inc()
                continue
            self._admitted[h] = now

    def committed(self, raw_txs: Sequence[bytes]) -> None:
        """A block with these encoded txs was applied (their hashes are only computed if any are tracked)."""
        if not self._admitted:
            return
        now = time.monotonic()
        for raw in raw_txs:
            t = self._admitted.pop(sha256(raw), None)
            if t is not None:
                self.commit_latency.observe(now - t)

    def forget(self, keep: Callable[[bytes], bool]) -> None:
        """Drop admission times of txs no longer pending anywhere (evicted from the mempool, refused)."""
        for h in [h for h in self._admitted if not keep(h)]:
            del self._admitted[h]

    def leader_seen(self, leader: str | None) -> None:
        if self._leader != () and leader != self._leader:
            self.leader_changes.inc()
        self._leader = leader


class ScrapeCollector(Collector):
    """Values read from the node when Prometheus scrapes (``status`` is the API's ``/v1/status`` body)."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        refused: Callable[[], dict[str, int]],
        data_dir: Path | None,
    ) -> None:
        self.status = status
        self.refused = refused
        self.data_dir = data_dir

    def collect(self) -> Iterator[Any]:
        st = self.status()
        yield GaugeMetricFamily(
            "cemp_term", "Raft term (0 on a one-node chain)", value=int(st.get("term") or 0)
        )
        yield GaugeMetricFamily(
            "cemp_has_leader", "1 if this node knows a leader", value=1 if st.get("leader") else 0
        )
        role = GaugeMetricFamily("cemp_role", "1 for this node's Raft role", labels=["role"])
        role.add_metric([str(st.get("role", "leader"))], 1)
        yield role
        commit, applied = st.get("raft_commit"), st.get("raft_applied")
        yield GaugeMetricFamily(
            "cemp_raft_apply_lag_entries",
            "Committed Raft entries this node has not applied yet",
            value=max(0, int(commit) - int(applied)) if commit is not None and applied is not None else 0,
        )
        lag = GaugeMetricFamily(
            "cemp_peer_lag_entries",
            "On the leader: Raft entries each peer is behind the leader's log",
            labels=["peer"],
        )
        last = st.get("raft_last_index")
        for peer, match in dict(st.get("peer_match") or {}).items():
            lag.add_metric([str(peer)], max(0, int(last or 0) - int(match)))
        yield lag
        reach = GaugeMetricFamily(
            "cemp_peer_reachable", "1 if the last send to the peer worked", labels=["peer"]
        )
        reachable = st.get("peers_reachable")
        if isinstance(reachable, dict):
            for peer, ok in reachable.items():
                reach.add_metric([str(peer)], 1 if ok else 0)
        yield reach
        refused = CounterMetricFamily(
            "cemp_txs_refused", "Txs refused at admission, by error code", labels=["reason"]
        )
        for code, n in sorted(self.refused().items()):
            refused.add_metric([code], n)
        yield refused
        if self.data_dir is not None and self.data_dir.exists():
            yield GaugeMetricFamily(
                "cemp_data_dir_bytes", "Bytes in the node's data directory", value=dir_bytes(self.data_dir)
            )
            du = shutil.disk_usage(self.data_dir)
            yield GaugeMetricFamily(
                "cemp_disk_free_bytes", "Free bytes on the data directory's file system", value=du.free
            )
            yield GaugeMetricFamily(
                "cemp_disk_size_bytes", "Size of the data directory's file system", value=du.total
            )
