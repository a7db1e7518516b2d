"""The handle resolution page (moved from the resolver to web/): language, QR code, values, history, device
readings in the units people read, escaping, and the Handle API's redirect of browsers to it."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient

from node.server import Node
from tests.resolver.conftest import basic, submit
from tests.support.testing import TestConsortium

Fixture = tuple[Node, TestClient, TestConsortium]
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_device_handle_page_in_chinese_and_english(resolver_node: Fixture) -> None:
    _, client, c = resolver_node
    dev, raw = c.register_device("88.123.45/101.1.1")
    await submit(client, raw)
    now = int(time.time() * 1000)
    values = [
        (now, "energy.import", 1234573355, "Wh"),
        (now, "power", 4500, "W"),
        (now, "voltage.l1", 219413, "mV"),
    ]
    await submit(client, dev.batch(c.chain, values))
    carbon = {
        "index": 2100,
        "type": "CEMP.CARBON",
        "data": '{"period": "2025-11", "co2e_g": 81230000, "energy_wh": 145000000}',
    }
    r = await client.put("/api/handles/88.123.45/101.1.1?index=2100", json=carbon, headers=basic())
    assert r.status == 200, await r.text()
    # A browser resolving the handle through the Handle API is sent to the page.
    r = await client.get(
        "/api/handles/88.123.45/101.1.1", headers={"Accept": BROWSER, "Accept-Language": "zh-CN,zh;q=0.9"}
    )
    html = await r.text()
    assert r.status == 200 and r.content_type == "text/html" and r.url.path == "/handle/88.123.45/101.1.1"
    assert '<html lang="zh-CN">' in html and "最新读数" in html and "碳排放摘要" in html
    assert "81.230" in html and "t</dd>" in html  # 81,230,000 g shown in tonnes
    assert 'name="viewport"' in html and "<h2>标识值</h2>" in html and "设备注册" in html
    # quantities in the units people read, the on-chain integer one click away
    assert "1,234,573.355&nbsp;kWh" in html and "1234573355 Wh" in html
    assert "219.4&nbsp;V" in html and "219413 mV" in html and "4.500&nbsp;kW" in html
    assert 'href="/device/88.123.45/101.1.1"' in html
    r = await client.get("/handle/88.123.45/101.1.1?lang=en")
    html = await r.text()
    assert "built-in method" not in html and "<h2>Values</h2>" in html
    assert "Latest readings" in html and "History of changes" in html and "owner (owner, 88.123.45)" in html


async def test_qr_encodes_the_handle_url(resolver_node: Fixture) -> None:
    pytest.importorskip("segno")
    _, client, _ = resolver_node
    html = await (await client.get("/handle/88.123.45/admin")).text()
    assert f'title="http://{client.host}:{client.port}/api/handles/88.123.45/admin"' in html
    assert 'class="segno"' in html


async def test_json_clients_still_get_json(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    r = await client.get("/api/handles/88.123.45/admin", headers={"Accept": "application/json, text/html"})
    assert r.content_type == "application/json"
    r = await client.get("/api/handles/88.123.45/admin?format=json", headers={"Accept": BROWSER})
    assert r.content_type == "application/json"
    r = await client.get("/api/handles/88.123.45/admin?format=html&lang=en", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/handle/88.123.45/admin?lang=en"


async def test_missing_handle_page_is_404_and_values_are_escaped(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    r = await client.get("/api/handles/88.123.45/none", headers={"Accept": BROWSER})
    assert r.status == 404 and "<html" in await r.text()
    r = await client.get("/handle/not-a-handle")
    assert r.status == 400 and "<html" in await r.text()
    r = await client.get("/handle/99.9/x")
    assert r.status == 404 and "<html" in await r.text()
    body = {"values": [{"index": 1, "type": "NOTE", "data": "<script>alert(1)</script>"}]}
    assert (await client.put("/api/handles/88.123.45/xss", json=body, headers=basic())).status == 200
    html = await (await client.get("/handle/88.123.45/xss?lang=en")).text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
