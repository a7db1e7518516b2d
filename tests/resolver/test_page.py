"""The resolution page for people: language, QR code, values, history, device readings, escaping."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient

from node.server import Node
from tests.resolver.conftest import basic, submit
from tests.support.testing import TestConsortium

Fixture = tuple[Node, TestClient, TestConsortium]
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_device_page_in_chinese_and_english(resolver_node: Fixture) -> None:
    _, client, c = resolver_node
    dev, raw = c.register_device("88.123.45/101.1.1")
    await submit(client, raw)
    now = int(time.time() * 1000)
    await submit(
        client, dev.batch(c.chain_id, [(now, "energy.import", 123456, "Wh"), (now, "power", 4500, "W")])
    )
    carbon = {
        "index": 2100,
        "type": "CEMP.CARBON",
        "data": '{"period": "2025-11", "co2e_g": 81230000, "energy_wh": 145000000}',
    }
    r = await client.put("/api/handles/88.123.45/101.1.1?index=2100", json=carbon, headers=basic())
    assert r.status == 200, await r.text()
    r = await client.get(
        "/api/handles/88.123.45/101.1.1", headers={"Accept": BROWSER, "Accept-Language": "zh-CN,zh;q=0.9"}
    )
    html = await r.text()
    assert r.status == 200 and r.content_type == "text/html"
    assert (
        '<html lang="zh-CN">' in html and "最新读数" in html and "碳排放摘要" in html and "81.230 t" in html
    )
    assert 'name="viewport"' in html
    assert "built-in method" not in html and "<h2>标识值</h2>" in html
    assert "123456 Wh" in html and "设备注册" in html and "meter.energy" in html
    r = await client.get("/api/handles/88.123.45/101.1.1?lang=en", headers={"Accept": BROWSER})
    html = await r.text()
    assert "built-in method" not in html and "<h2>Values</h2>" in html
    assert "Latest readings" in html and "History of changes" in html and "owner (owner, 88.123.45)" in html


async def test_qr_encodes_the_handle_url(resolver_node: Fixture) -> None:
    pytest.importorskip("segno")
    _, client, _ = resolver_node
    html = await (await client.get("/api/handles/88.123.45/admin", headers={"Accept": BROWSER})).text()
    assert f'title="http://{client.host}:{client.port}/api/handles/88.123.45/admin"' in html
    assert 'class="segno"' in html


async def test_json_clients_still_get_json(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    r = await client.get("/api/handles/88.123.45/admin", headers={"Accept": "application/json, text/html"})
    assert r.content_type == "application/json"
    r = await client.get("/api/handles/88.123.45/admin?format=json", headers={"Accept": BROWSER})
    assert r.content_type == "application/json"


async def test_missing_handle_page_is_404_and_values_are_escaped(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    r = await client.get("/api/handles/88.123.45/none", headers={"Accept": BROWSER})
    assert r.status == 404 and "<html" in await r.text()
    body = {"values": [{"index": 1, "type": "NOTE", "data": "<script>alert(1)</script>"}]}
    assert (await client.put("/api/handles/88.123.45/xss", json=body, headers=basic())).status == 200
    html = await (await client.get("/api/handles/88.123.45/xss?lang=en", headers={"Accept": BROWSER})).text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
