"""The energy routes on an in-process node: the charging plan from given demand and from a site's metered history,
the model fit with held-out errors and a forecast, /openapi.json, and 4xx answers for bad input."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from cemp import cli, wiring
from energy import weather
from node.server import Node
from node.store import MemoryStore
from tests.accounting.chain import SITE
from tests.accounting.test_api import MAIN, T0, setup_site
from tests.support.testing import TestConsortium


@pytest_asyncio.fixture
async def env() -> AsyncIterator[tuple[TestConsortium, TestClient]]:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        yield c, client
    finally:
        await client.close()


async def test_plan_route_hand_case(env: tuple[TestConsortium, TestClient]) -> None:
    _, client = env
    # 2400 kWh_th over the day, lossless tank big enough: everything bought in the 9 valley hours
    q = {"date": "2026-01-15", "demand_kwh_th": "2400", "capacity_kwh": "5000", "boiler_kw": "1000"}
    q |= {
        "boiler_efficiency": "1",
        "charge_efficiency": "1",
        "discharge_efficiency": "1",
        "standing_loss_per_h": "0",
    }
    r = await client.get("/v1/energy/plan", params=q)
    body = await r.json()
    assert r.status == 200, body
    valley = 0.3281 * 0.48 + 0.1279
    assert body["plan"]["cost_yuan"] == pytest.approx(2400 * valley, abs=0.01)
    assert body["plan"]["electricity_kwh"] == pytest.approx(2400, abs=0.01)
    assert body["compare"]["flat"]["cost_yuan"] > body["plan"]["cost_yuan"]
    assert body["tariff"]["id"] == "mengxi-ic-110kv-2024"


async def test_site_plan_from_history(env: tuple[TestConsortium, TestClient]) -> None:
    c, client = env
    await setup_site(c, client)  # 10 kWh each hour of 2026-01-01, no heat meter
    r = await client.get(f"/v1/sites/{SITE}/energy/plan", params={"date": "2026-01-02"})
    body = await r.json()
    assert r.status == 200, body
    assert body["demand_kwh_th"] == pytest.approx(24 * 10 / 7 * 0.98, abs=0.01)
    assert "persistence" in body["demand_source"] and "no heat meter" in body["demand_source"]
    assert body["compare"]["habit"]["cost_yuan"] == pytest.approx(
        body["compare"]["flat"]["cost_yuan"], rel=1e-6
    )
    r = await client.get(f"/v1/sites/{SITE}/energy/plan", params={"date": "2025-06-01"})
    assert r.status == 422
    r = await client.get("/v1/sites/nosuch/energy/plan", params={"date": "2026-01-02"})
    assert r.status == 404


async def test_model_route_fit_and_forecast(env: tuple[TestConsortium, TestClient]) -> None:
    _, client = env
    rng = random.Random(2)
    clim = weather.hohhot_climate(date(2025, 11, 1), 56, seed=2)
    hours = [[t.isoformat(), c, 500 + 30 * max(10 - c, 0) + rng.gauss(0, 40)] for t, c in clim]
    fc = [[t.isoformat(), c] for t, c in weather.hohhot_climate(date(2025, 12, 27), 1, seed=3)]
    r = await client.post("/v1/energy/model", json={"hours": hours, "forecast": fc})
    body = await r.json()
    assert r.status == 200, body
    cp = body["change_point"]
    assert cp["balance_c"] == pytest.approx(10, abs=1.0) and cp["b1"] == pytest.approx(30, rel=0.1)
    assert cp["held_out"]["p"] == 0 and cp["fit"]["p"] == 3
    assert body["forecast"]["model"] == body["chosen"]
    expect = sum(500 + 30 * max(10 - c, 0) for _, c in fc)
    assert body["forecast"]["total_kwh"] == pytest.approx(expect, rel=0.05)
    assert len(body["hdd"]["days"]) == 56


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/v1/energy/plan", {"demand_kwh_th": "10"}, 400, "YYYY-MM-DD"),
        ("/v1/energy/plan", {"date": "2026-01-15"}, 400, "demand"),
        ("/v1/energy/plan", {"date": "2026-01-15", "demand": "1,2"}, 400, "24 comma-separated"),
        ("/v1/energy/plan", {"date": "2026-01-15", "demand_kwh_th": "x"}, 400, "not a number"),
        ("/v1/energy/plan", {"date": "2026-01-15", "demand_kwh_th": "10", "boiler_kw": "-1"}, 400, "between"),
        ("/v1/energy/plan", {"date": "2020-01-15", "demand_kwh_th": "10"}, 400, "no tariff version"),
        (
            "/v1/energy/plan",
            {"date": "2026-01-15", "demand_kwh_th": "1e6", "boiler_kw": "10"},
            422,
            "boiler_kw",
        ),
        ("/v1/sites/Bad!/energy/plan", {"date": "2026-01-15"}, 400, "site id"),
    ],
)
async def test_bad_plan_requests(
    env: tuple[TestConsortium, TestClient], path: str, params: dict, status: int, words: str
) -> None:
    _, client = env
    r = await client.get(path, params=params)
    body = await r.json()
    assert r.status == status, body
    assert words in str(body)


async def test_bad_model_requests_and_openapi(env: tuple[TestConsortium, TestClient]) -> None:
    _, client = env
    for body, words in [
        ({}, "hours"),
        ({"hours": [["2026-01-01T00:00", 1.0]]}, "hours[0] must be"),
        ({"hours": [["yesterday", 1.0, 2.0]]}, "not a local time"),
        ({"hours": [["2026-01-01T00:00", 99.0, 2.0]]}, "°C"),
        ({"hours": [["2026-01-01T00:00", 1.0, 2.0]] * 2}, "once"),
        ({"hours": [[f"2026-01-01T{h:02d}:00", 1.0, 2.0] for h in range(24)]}, "4 weeks"),
    ]:
        r = await client.post("/v1/energy/model", json=body)
        assert r.status == 400, await r.text()
        assert words in str(await r.json())
    r = await client.post("/v1/energy/model", data=b"{not json")
    assert r.status == 400
    r = await client.post("/v1/energy/model", data=b" " * 2_000_001)
    assert r.status == 413
    spec = await (await client.get("/openapi.json")).json()
    for p in ("/v1/energy/plan", "/v1/sites/{site_id}/energy/plan", "/v1/energy/model"):
        assert p in spec["paths"]


async def test_cli_plan(env: tuple[TestConsortium, TestClient], capsys: pytest.CaptureFixture[str]) -> None:
    c, client = env
    await setup_site(c, client)
    base = str(client.make_url("/")).rstrip("/")
    args = ["plan", "--site", SITE, "--date", "2026-01-02", "--nodes", base, "--capacity-kwh", "50"]
    assert await asyncio.to_thread(cli.main, [*args, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["site_id"] == SITE and body["tank"]["capacity_kwh"] == 50
    assert await asyncio.to_thread(cli.main, args) == 0
    out = capsys.readouterr().out
    assert "plan:" in out and "flat:" in out and "habit:" in out and len(out.splitlines()) == 24 + 6
    assert (
        await asyncio.to_thread(
            cli.main, ["plan", "--site", "nosuch", "--date", "2026-01-02", "--nodes", base]
        )
        == 1
    )
    assert "no site 'nosuch'" in capsys.readouterr().err


def _season_rows(seed: int, now: str) -> tuple[list[list[object]], list[list[object]]]:
    rng = random.Random(seed)
    clim = weather.hohhot_climate(date(2025, 11, 1), 80, seed=seed)
    hours = [
        [t.isoformat(), c, 500 + 30 * max(10 - c, 0) + rng.gauss(0, 40)]
        for t, c in clim
        if t.isoformat() < now
    ]
    wx = [[d.isoformat(), m] for d, m in weather.daily_means(clim).items() if d.isoformat() >= now[:10]][:5]
    return hours, wx


async def test_forecast_route(env: tuple[TestConsortium, TestClient]) -> None:
    _, client = env
    hours, wx = _season_rows(4, "2026-01-10T12:00")
    r = await client.post(
        "/v1/energy/forecast", json={"hours": hours, "now": "2026-01-10T12:00", "weather": wx}
    )
    body = await r.json()
    assert r.status == 200, body
    day = body["horizons"]["day"]
    assert day["hours_measured"] == 12 and day["hours_predicted"] == 12
    assert day["weather"]["forecast_hours"] == 12
    assert body["horizons"]["season"]["start"] == "2025-10-15T00:00"
    # the season's hours before the history began (Oct 15 - Nov 1) are filled by the model, and say so
    assert body["horizons"]["season"]["hours_filled"] == 17 * 24
    assert body["model_error"]["hourly_held_out"]["p"] == 0
    for bad, words in [
        ({"hours": hours}, "now must be"),
        ({"hours": hours, "now": "2026-01-10T12:00", "weather": [["2026-01-10", 99]]}, "°C"),
        ({"hours": hours, "now": "2026-01-10T12:00", "weather": [["x", 1]]}, "weather[0]"),
        ({"hours": hours[:100], "now": "2026-01-10T12:00"}, "4 weeks"),
        ({"hours": hours, "now": "2026-01-10T12:00", "grid_factor": -1}, "grid_factor"),
    ]:
        r = await client.post("/v1/energy/forecast", json=bad)
        assert r.status == 400, await r.text()
        assert words in str(await r.json())
    spec = await (await client.get("/openapi.json")).json()
    assert "/v1/energy/forecast" in spec["paths"]


def test_cli_forecast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hours, wx = _season_rows(5, "2026-01-10T12:00")
    h = tmp_path / "h.csv"
    h.write_text("time,temp_c,kwh\n" + "".join(f"{t},{c},{e}\n" for t, c, e in hours))
    w = tmp_path / "w.csv"
    w.write_text("date,mean_temp_c\n" + "".join(f"{d},{m}\n" for d, m in wx))
    assert (
        cli.main(
            ["forecast", "--history", str(h), "--now", "2026-01-10T12:00", "--weather", str(w), "--json"]
        )
        == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert body["horizons"]["day"]["weather"]["forecast_hours"] == 12
    assert cli.main(["forecast", "--history", str(h), "--now", "2026-01-10T12:00"]) == 0
    out = capsys.readouterr().out
    assert "season" in out and "held out" in out
    h.write_text("time,temp_c,kwh\n2026-01-01T00:00,x,1\n")
    assert cli.main(["forecast", "--history", str(h), "--now", "2026-01-10T12:00"]) == 1
    assert "line 2" in capsys.readouterr().err


async def test_health_route_and_device_page_panel(env: tuple[TestConsortium, TestClient]) -> None:
    c, client = env
    await setup_site(c, client)  # the main meter: 24 hourly readings on 2026-01-01
    h = MAIN
    now = T0 + 24 * 3_600_000  # 2026-01-02 00:00 local
    r = await client.get(f"/v1/devices/{h}/health", params={"now": str(now)})
    body = await r.json()
    assert r.status == 200, body
    assert body["device"] == h and 0 <= body["score"] <= 100 and body["height"] > 0
    assert body["signals"]["interval_ms"] == 3_600_000 and body["signals"]["readings"] == 25
    r = await client.get(f"/v1/devices/{h}/health", params={"now": str(now + 86_400_000)})
    late = await r.json()
    assert late["reasons"][0]["code"] == "no_contact" and late["causes"][0]["rule"] == "offline"
    for params, status in [({"window_days": "99"}, 400), ({"now": "x"}, 400)]:
        r = await client.get(f"/v1/devices/{h}/health", params=params)
        assert r.status == status, await r.text()
    r = await client.get("/v1/devices/88.123.45/nosuch/health")
    assert r.status == 404 and "not registered" in (await r.json())["message"]
    page = await (await client.get(f"/device/{h}", params={"lang": "en"})).text()
    assert 'id="health"' in page and "data-score=" in page and f"/v1/devices/{h}/health" in page
    spec = await (await client.get("/openapi.json")).json()
    assert "/v1/devices/{handle}/health" in spec["paths"]
