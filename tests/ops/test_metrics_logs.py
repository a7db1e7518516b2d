"""``/metrics`` moves with the work a node does; every request carries an id, echoed and logged; JSON logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from node import logs
from node.config import ConfigError, load_config
from node.server import Node
from tests.support.testing import TestConsortium


async def scrape(client: TestClient) -> dict[str, float]:
    """Every sample as ``name{label=value,...}`` -> value (families without samples as ``name`` -> nan)."""
    r = await client.get("/metrics")
    assert r.status == 200
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(await r.text()):
        out.setdefault(fam.name, float("nan"))
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def test_metrics_move_with_submissions(
    node_client: tuple[Node, TestClient], consortium: TestConsortium, now_ms: int
) -> None:
    node, client = node_client
    before = await scrape(client)
    assert before["cemp_commit_latency_seconds_count"] == 0
    dev, reg = consortium.register_device("88.123.45/101.1.9")
    r = await client.post("/v1/txs?wait=commit", data=reg)
    assert r.status == 200, await r.text()
    for i in range(3):
        raw = dev.batch(consortium.chain, [(now_ms + i, "energy.import", 100 + i, "Wh")])
        assert (await client.post("/v1/txs?wait=commit", data=raw)).status == 200
    bad = dev.batch(consortium.chain, [(now_ms + 9, "energy.import", 1, "Wh")])
    dev.nonce -= 2  # replay an old nonce: refused at admission
    stale = dev.batch(consortium.chain, [(now_ms + 10, "energy.import", 2, "Wh")])
    assert bad  # the skipped-over tx is never sent
    r = await client.post("/v1/txs", data=stale)
    assert r.status >= 400
    code = (await r.json())["code"]
    r = await client.post("/v1/txs", data=b"\x91\x01")
    assert r.status >= 400
    m = await scrape(client)
    assert m["cemp_commit_latency_seconds_count"] == 4
    assert m["cemp_txs_accepted_total"] == 4
    assert m["cemp_height"] >= 4 and m["cemp_height"] == node.ledger.height
    assert m[f"cemp_txs_refused_total{{reason={code.lower()}}}"] == 1
    assert sum(v for k, v in m.items() if k.startswith("cemp_txs_refused_total{")) == 2
    assert m["cemp_has_leader"] == 1 and m["cemp_term"] >= 1  # one node is a one-voter Raft cluster
    assert m["cemp_mempool_txs"] == 0
    r = await client.get("/api/handles/88.123.45/101.1.9")
    assert r.status == 200
    r = await client.get("/api/handles/88.123.45/nope")
    m2 = await scrape(client)
    assert m2["cemp_resolver_requests_total{rc=1}"] >= 1
    assert m2["cemp_resolver_requests_total{rc=100}"] == 1


async def test_request_id_echoed_and_logged(
    node_client: tuple[Node, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    _node, client = node_client
    with caplog.at_level(logging.INFO, logger="cemp.access"):
        r = await client.get("/v1/blocks/999", headers={"X-Request-Id": "abc-123"})
        assert r.status == 404 and r.headers["X-Request-Id"] == "abc-123"
        r = await client.get("/v1/consortium")
        rid = r.headers["X-Request-Id"]
        assert len(rid) == 16 and rid != "abc-123"
        # a header that is not a plain token is replaced, never echoed
        r = await client.get("/v1/consortium", headers={"X-Request-Id": "a b\tc" * 20})
        assert r.headers["X-Request-Id"] != "a b\tc" * 20
    recs = [x for x in caplog.records if x.name == "cemp.access"]
    assert any(getattr(x, "path", "") == "/v1/blocks/999" and getattr(x, "status", 0) == 404 for x in recs)
    line = json.loads(logs.JsonFormatter().format(recs[0]))
    assert line["request_id"] == "abc-123" and line["status"] == 404 and line["level"] == "info"


def test_json_log_format_from_config_and_env(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text('node_id = "a"\ndata_dir = "d"\nkey_file = "k"\ngenesis = "g"\n[log]\nformat = "json"\n')
    assert load_config(cfg, env={}).log_format == "json"
    assert load_config(cfg, env={"CEMP_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(ConfigError, match="log format"):
        load_config(cfg, env={"CEMP_LOG_FORMAT": "xml"})
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %d", (7,), None)
    token = logs.request_id.set("r1")
    try:
        doc = json.loads(logs.JsonFormatter().format(rec))
    finally:
        logs.request_id.reset(token)
    assert doc["msg"] == "boom 7" and doc["level"] == "error" and doc["request_id"] == "r1"
