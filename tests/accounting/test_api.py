"""The accounting routes on an in-process node: sites, inventory, KPIs, baselines, ratings, labels, factors, and
4xx answers for bad sites, periods and parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from accounting.factors import shipped_sets
from accounting.periods import day_start_ms
from accounting.rating import payload_of
from cemp import wiring
from node.server import Node
from node.store import MemoryStore
from tests.accounting.chain import BUILDING, HOUR_MS, SITE, boundary_payload, site_payload
from tests.support.testing import TestConsortium

HDR = {"Content-Type": "application/msgpack"}
MAIN = "88.123.45/101.2.1"
T0 = day_start_ms(date(2026, 1, 1), 480)


@pytest_asyncio.fixture
async def acc() -> AsyncIterator[tuple[TestConsortium, TestClient]]:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    app = node.web_app()
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield c, client
    finally:
        await client.close()


async def submit(client: TestClient, raw: bytes) -> dict[str, Any]:
    r = await client.post("/v1/txs?wait=commit", data=raw, headers=HDR)
    body = await r.json()
    assert r.status == 200 and body["result"]["ok"], body
    return body


async def setup_site(c: TestConsortium, client: TestClient) -> Any:
    """Factor sets, the site with a one-meter boundary and 24 hours of its readings; returns the meter."""
    for s in shipped_sets():
        await submit(client, c.admin_tx("regulator", "factors", s))
    await submit(client, c.admin_tx("owner", "site", site_payload(area=1_000)))
    dev, raw = c.register_device(MAIN)
    await submit(client, raw)
    b = boundary_payload(1, T0, [(MAIN, "incoming", "electricity", "energy.import")], main=MAIN)
    await submit(client, c.admin_tx("owner", "boundary", b))
    vals = [(T0 - 1, "energy.import", 1000, "Wh")]
    vals += [(T0 + h * HOUR_MS + 1800_000, "energy.import", 1000 + 10_000 * (h + 1), "Wh") for h in range(24)]
    await submit(client, dev.batch(c.chain, vals))
    return dev


async def test_routes(acc: tuple[TestConsortium, TestClient]) -> None:
    c, client = acc
    await setup_site(c, client)
    r = await client.get("/v1/sites")
    assert [s["site_id"] for s in (await r.json())["sites"]] == [SITE]
    r = await client.get(f"/v1/sites/{SITE}")
    body = await r.json()
    assert body["boundaries"][0]["main_meter"] == MAIN and body["history"][0]["version"] == 1
    r = await client.get(f"/v1/sites/{SITE}/inventory", params={"period": "2026-01-01"})
    inv = await r.json()
    assert r.status == 200, inv
    assert inv["site_total"]["energy_wh"] == 240_000
    assert inv["site_total"]["co2_location_ug"] == 240_000 * 647_900
    assert inv["as_of"]["height"] > 0 and len(inv["digest"]) == 64
    r = await client.get(f"/v1/sites/{SITE}/kpis", params={"period": "2026-01-01"})
    k = await r.json()
    assert r.status == 200, k
    assert k["power"]["electric_avg_w_per_m2"] == 10.0 and k["electricity_kwh_per_m2"] == 0.24
    r = await client.get(
        f"/v1/sites/{SITE}/baseline", params={"period": "2026-01-01", "coal_efficiency": "0.8"}
    )
    b = await r.json()
    assert b["baseline"]["parameters"]["coal_efficiency"] == "0.8"
    r = await client.get("/v1/baseline", params={"area": "100000", "load": "50", "days": "183"})
    d = await r.json()
    assert d["heat_gj"] == 79_056.0 and d["coal_tco2"] == 9048.2 and d["gas_tco2"] == 5165.5
    r = await client.get(f"/v1/sites/{SITE}/rating", params={"period": "2026-01-01"})
    rating = await r.json()
    assert rating["recorded"] is None and rating["computed"]["grade_location"] in range(1, 6)
    r = await client.get(f"/v1/sites/{SITE}/rating/label.svg", params={"period": "2026-01-01"})
    assert r.status == 404
    await submit(client, c.admin_tx("owner", "rating", payload_of(rating["computed"])))
    r = await client.get(f"/v1/sites/{SITE}/rating", params={"period": "2026-01-01"})
    rec = (await r.json())["recorded"]
    assert rec["grade"] == str(rating["computed"]["grade_location"])
    r = await client.get(f"/v1/sites/{SITE}/rating/label.svg", params={"period": "2026-01-01"})
    svg = await r.text()
    assert r.status == 200 and svg.lstrip().startswith("<?xml") and "<svg" in svg
    r = await client.get(f"/v1/sites/{SITE}/rating/label.png", params={"period": "2026-01-01"})
    assert r.status == 200 and (await r.read())[:8] == b"\x89PNG\r\n\x1a\n"
    r = await client.get(f"/api/handles/{BUILDING}")
    h = await r.json()
    assert any(v["type"] == "CEMP.RATING" for v in h["values"]), h
    r = await client.get("/openapi.json")
    paths = (await r.json())["paths"]
    assert "/v1/sites/{site_id}/inventory" in paths and "/v1/txs" in paths and "/v1/baseline" in paths
    r = await client.get("/v1/factors")
    assert [s["data_year"] for s in (await r.json())["sets"]] == [2021, 2022, 2023]
    r = await client.get("/v1/factors/cn-mee-2023")
    fs = await r.json()
    assert any(f["key"] == "grid.province.inner-mongolia" and f["value"] == "0.6479" for f in fs["factors"])


async def test_bad_requests_are_4xx(acc: tuple[TestConsortium, TestClient]) -> None:
    c, client = acc
    await setup_site(c, client)
    cases = [
        (f"/v1/sites/{SITE}/inventory", {"period": "2026-13"}, 400),
        (f"/v1/sites/{SITE}/inventory", {}, 400),
        (f"/v1/sites/{SITE}/inventory", {"period": "2026", "grain": "hour"}, 400),
        (f"/v1/sites/{SITE}/inventory", {"period": "2026", "grain": "week"}, 400),
        (f"/v1/sites/{SITE}/inventory", {"period": "2014"}, 400),
        ("/v1/sites/nope/inventory", {"period": "2026"}, 404),
        ("/v1/sites/BAD ID/inventory", {"period": "2026"}, 400),
        (f"/v1/sites/{SITE}/kpis", {"period": "2026-01", "coal_efficiency": "x"}, 400),
        (f"/v1/sites/{SITE}/kpis", {"period": "2026-01", "gas_efficiency": "7"}, 400),
        (f"/v1/sites/{SITE}/rating", {"period": "2026-01", "benchmark": "oil"}, 400),
        (f"/v1/sites/{SITE}/rating/label.gif", {"period": "2026-01"}, 400),
        ("/v1/baseline", {"area": "100000"}, 400),
        ("/v1/baseline", {"area": "1e999", "load": "50", "days": "183"}, 400),
        ("/v1/factors/NOPE", {}, 400),
        ("/v1/factors/cn-mee-1999", {}, 404),
    ]
    for path, params, status in cases:
        r = await client.get(path, params=params)
        body = await r.json()
        assert r.status == status, (path, params, body)
        assert set(body) == {"code", "message"} and body["message"]
    # a period without data before any factor set: an empty inventory that says no set applies
    r = await client.get(f"/v1/sites/{SITE}/inventory", params={"period": "2019-01"})
    inv = await r.json()
    assert r.status == 200 and inv["site_total"]["energy_wh"] == 0 and inv["factors"][0]["set"] is None


async def test_client_helpers_record_factors_site_and_rating(acc: tuple[TestConsortium, TestClient]) -> None:
    from accounting.client import ensure_site, issue_rating, publish_factor_sets
    from node.client import NodeClient

    c, client = acc
    async with NodeClient(str(client.make_url(""))) as nc:
        assert await publish_factor_sets(nc, c.admins["regulator"], c.chain) == [
            "cn-mee-2021",
            "cn-mee-2022",
            "cn-mee-2023",
        ]
        assert await publish_factor_sets(nc, c.admins["regulator"], c.chain) == []
        dev, raw = c.register_device(MAIN)
        await submit(client, raw)
        b = boundary_payload(1, T0, [(MAIN, "incoming", "electricity", "energy.import")], main=MAIN)
        assert await ensure_site(nc, c.admins["owner"], c.chain, site_payload(area=1_000), b)
        assert not await ensure_site(nc, c.admins["owner"], c.chain, site_payload(area=1_000), b)
        vals = [(T0 - 1, "energy.import", 0, "Wh"), (T0 + 1800_000, "energy.import", 10_000, "Wh")]
        await submit(client, dev.batch(c.chain, vals))
        r = await issue_rating(nc, c.admins["regulator"], c.chain, SITE, "2026-01-01")
        got = await nc.get(f"/v1/sites/{SITE}")
        assert got["ratings"][0]["grade"] == str(r["grade_location"])
