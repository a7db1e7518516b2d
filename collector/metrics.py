"""The collector agent's own ``/metrics`` (Prometheus), served by ``cemp collect --metrics-port``.

Why the agent serves its own metrics instead of pushing them to a node: a node accepts writes only as signed
txs, and an unauthenticated push endpoint would let anyone on the network fake an org's outbox figures; the core
(``node/``) also knows nothing about collectors (layering rule). The agent usually runs at the plant next to the
devices, so Prometheus scrapes it there (``docker/prometheus/prometheus.yml``, job ``cemp-collector``).

Everything is read at scrape time from the running ``SiteAgent`` (nothing is done per reading).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import prometheus_client as prom
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.agent import SiteAgent
from collector.quality import AlarmSink


class SiteCollector(Collector):
    def __init__(self, site: SiteAgent) -> None:
        self.site = site

    def _sinks(self) -> list[AlarmSink]:
        sinks = {id(d.alarms): d.alarms for d in self.site.devices.values()}
        sinks[id(self.site.alarms)] = self.site.alarms
        return list(sinks.values())

    def collect(self) -> Iterator[Any]:
        site = self.site
        st = site.outbox.stats()
        yield GaugeMetricFamily(
            "cemp_collector_outbox_txs", "Signed txs in the outbox, not yet committed", value=st.entries
        )
        yield GaugeMetricFamily(
            "cemp_collector_outbox_readings", "Readings in the outbox's txs", value=st.readings
        )
        yield GaugeMetricFamily(
            "cemp_collector_outbox_file_bytes", "Size of the outbox database on disk", value=st.file_bytes
        )
        yield GaugeMetricFamily(
            "cemp_collector_dead_letters", "Txs moved to the dead letters (refused for good)", value=st.dead
        )
        s = site.stats
        for name, help_, v in (
            ("signed_readings", "Readings signed into the outbox", s.signed_readings),
            ("committed_readings", "Readings a node reported committed", s.committed_readings),
            (
                "submit_errors",
                "Submission rounds that failed (node unreachable or refusing for now)",
                s.submit_errors,
            ),
            ("poll_errors", "Device polls that failed", s.poll_errors),
        ):
            yield CounterMetricFamily(f"cemp_collector_{name}", help_, value=v)
        open_ = GaugeMetricFamily(
            "cemp_collector_open_alarms",
            "Quality conditions that started and have not cleared",
            labels=["rule"],
        )
        total = CounterMetricFamily("cemp_collector_alarms", "Alarms raised, by rule", labels=["rule"])
        opened: dict[str, int] = {}
        counts: dict[str, int] = {}
        for sink in self._sinks():
            for _dev, rule, _q in sink.open:
                opened[rule] = opened.get(rule, 0) + 1
            for rule, n in sink.counts.items():
                counts[rule] = counts.get(rule, 0) + n
        for rule in ("stale", "clock_drift", "source_error"):
            open_.add_metric([rule], opened.get(rule, 0))
        for rule, n in sorted(counts.items()):
            total.add_metric([rule], n)
        yield open_
        yield total


def metrics_app(site: SiteAgent) -> web.Application:
    registry = prom.CollectorRegistry()
    registry.register(SiteCollector(site))

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=prom.generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
