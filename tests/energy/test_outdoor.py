"""The outdoor temperature sensor as a device of the site: readings from the simulated Hohhot climate, signed by the
sensor's key, found through the site's boundary, hourly and daily means and HDD read back from the chain, and the
route's 4xx answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from collector.loadmodel import HeatingSiteModel, local_ms
from collector.sim.feeds import OutdoorTempFeed
from energy import weather
from energy.outdoor import outdoor_device, site_weather
from node.server import Node
from node.store import MemoryStore
from tests.accounting.chain import SITE, Chain, boundary_payload, site_payload
from tests.support.testing import TestConsortium

SENSOR = "88.123.45/107.1.1"
METER = "88.123.45/101.1.1"


def test_outdoor_sensor_readings_give_hourly_and_daily_means() -> None:
    c = Chain()
    sensor = c.device(SENSOR, kind="sensor.temperature")
    c.device(METER)
    t0 = local_ms(2026, 1, 14)
    c.ok(c.admin("owner", "site", site_payload()))
    devices = [(METER, "core-heating", "electricity", "energy.import"), (SENSOR, "weather", "none", "")]
    c.ok(c.admin("owner", "boundary", boundary_payload(1, t0, devices)))
    assert outdoor_device(c.store, SITE) == SENSOR
    feed = OutdoorTempFeed(HeatingSiteModel(seed=1))
    vals = [
        (ts, "temp.outdoor", feed.values(ts)["temp.outdoor"], "mdegC")
        for ts in range(t0, t0 + 2 * 86_400_000, 900_000)
    ]
    for i in range(0, len(vals), 100):
        c.ok(sensor.batch(c.c.chain, vals[i : i + 100]))
    w = site_weather(c.store, SITE, date(2026, 1, 14), date(2026, 1, 15), 18.0)
    assert (
        w["device"] == SENSOR
        and len(w["hours"]) == 48
        and [d["date"] for d in w["days"]] == ["2026-01-14", "2026-01-15"]
    )
    # Hourly means of the signed readings are the mean of the hour's four readings (0.1 K register resolution).
    first_hour = [v for ts, _, v, _ in vals[:4]]
    assert w["hours"][0] == ["2026-01-14T00:00", pytest.approx(sum(first_hour) / 4000, abs=0.01)]
    assert w["hours"][0][1] < -5  # a January night in Hohhot
    want = weather.hdd(sum(v for _, _, v, _ in vals[:96]) / 96 / 1000)
    assert w["days"][0]["hdd"] == pytest.approx(want, abs=0.05) and w["days"][0]["hdd"] > 20


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient]:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    cl = TestClient(TestServer(node.web_app()))
    await cl.start_server()
    try:
        yield cl
    finally:
        await cl.close()


async def test_weather_route_refuses_bad_input(client: TestClient) -> None:
    for q, status in (
        ({"from": "2026-01-01", "to": "2026-01-02"}, 404),  # no such site
        ({"from": "yesterday", "to": "2026-01-02"}, 400),
        ({"from": "2026-01-03", "to": "2026-01-02"}, 400),
        ({"from": "2024-01-01", "to": "2026-01-02"}, 400),
        ({"from": "2026-01-01", "to": "2026-01-02", "base": "hot"}, 400),
    ):
        r = await client.get(f"/v1/sites/{SITE}/weather", params=q)
        assert r.status == status and "message" in await r.json(), q
    r = await client.get("/v1/sites/NO!/weather", params={"from": "2026-01-01", "to": "2026-01-02"})
    assert r.status in (400, 404)
    r = await client.get("/openapi.json")
    assert "/v1/sites/{site_id}/weather" in (await r.json())["paths"]


async def test_the_demo_fits_the_season_model_on_the_sensor_and_meter_readings_on_chain() -> None:
    """The demo's season line: site electricity per hour (from the meters' hourly aggregates) against the outdoor
    sensor's hourly means, both read back from a node, fitted through the model route."""
    from cemp.demo import SITE_ID, hohhot_site, season_model_line
    from collector.loadmodel import EnergyCounter
    from node.client import NodeClient

    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    server = TestServer(node.web_app())
    cl = TestClient(server)
    await cl.start_server()
    try:
        async with NodeClient(str(server.make_url("")).rstrip("/"), timeout_s=120) as nc:

            async def ok(raw: bytes) -> None:
                assert (await nc.submit(raw, wait=True))["result"]["ok"]

            meter, raw = c.register_device(METER)
            await ok(raw)
            sensor, raw = c.register_device(SENSOR, kind="sensor.temperature", subsystem="weather")
            await ok(raw)
            t0 = local_ms(2025, 12, 1)
            t1 = t0 + 35 * 86_400_000
            site, b = hohhot_site(t0)
            from accounting.model import BoundaryDevice, BoundaryPayload
            from node.types import Handle, ShortStr, Text

            devs = (
                BoundaryDevice(
                    Handle(METER),
                    ShortStr("core-heating"),
                    ShortStr("electricity"),
                    ShortStr("energy.import"),
                ),
                BoundaryDevice(Handle(SENSOR), ShortStr("weather"), ShortStr("none"), ShortStr("")),
            )
            await ok(c.admin_tx("owner", "site", site))
            await ok(
                c.admin_tx(
                    "owner",
                    "boundary",
                    BoundaryPayload(b.site_id, 1, b.effective_from_ms, devs, None, Text("")),
                )
            )
            model = HeatingSiteModel(seed=1)
            counter, feed = EnergyCounter(model, "core_unit", t0, 0), OutdoorTempFeed(model)
            for day in range(35):
                hours = range(t0 + day * 86_400_000, t0 + (day + 1) * 86_400_000, 3_600_000)
                e = [(ts, "energy.import", counter.at(ts), "Wh") for ts in hours]
                tv = [
                    (ts + 1800_000, "temp.outdoor", feed.values(ts + 1800_000)["temp.outdoor"], "mdegC")
                    for ts in hours
                ]
                await ok(meter.batch(c.chain, e))
                await ok(sensor.batch(c.chain, tv))
            line = await season_model_line(nc, t0, t1)
    finally:
        await cl.close()
    print(line)
    assert line.startswith("season model on chain data:"), line
    assert f"outdoor sensor {SENSOR}" in line and "held-out CV(RMSE)" in line
    n = int(line.split(":", 1)[1].split("hours", 1)[0].replace(",", "").strip())
    assert 35 * 24 - 40 <= n <= 35 * 24, line  # every hour but the first (its delta needs the hour before)
    assert SITE_ID == "hohhot-complex"
