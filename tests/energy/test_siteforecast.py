"""A site's forecast from its measured hours on chain: the hours read back (two meters summed against the outdoor
sensor, an hour left out when a meter misses it), the route's figures against the load model that made the
readings, and its 4xx answers."""

from __future__ import annotations

from datetime import datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from collector.loadmodel import EnergyCounter, HeatingSiteModel, local_ms
from collector.sim.feeds import OutdoorTempFeed
from energy.sitehistory import season_habit, site_hours
from node.server import Node
from tests.accounting.chain import SITE, Chain, boundary_payload, site_payload

SENSOR = "88.123.45/107.1.1"
CORE = "88.123.45/101.1.1"
TANK = "88.123.45/101.1.3"
HOUR = 3_600_000
DAYS = 35


def _site(days: int, skip_tank_hour: int | None = None) -> tuple[Chain, int]:
    """A site whose core unit and storage tank meters and outdoor sensor read the load model every 15 min."""
    c = Chain()
    sensor = c.device(SENSOR, kind="sensor.temperature")
    meters = {CORE: c.device(CORE), TANK: c.device(TANK)}
    t0 = local_ms(2025, 12, 1)
    c.ok(c.admin("owner", "site", site_payload()))
    devs = [
        (CORE, "core-heating", "electricity", "energy.import"),
        (TANK, "storage-tank", "electricity", "energy.import"),
        (SENSOR, "weather", "none", ""),
    ]
    c.ok(c.admin("owner", "boundary", boundary_payload(1, t0, devs)))
    model = HeatingSiteModel(seed=1)
    counters = {
        CORE: EnergyCounter(model, "core_unit", t0, 1000),
        TANK: EnergyCounter(model, "storage_tank", t0, 5),
    }
    feed = OutdoorTempFeed(model)
    for day in range(days):
        steps = range(t0 + day * 86_400_000, t0 + (day + 1) * 86_400_000, 900_000)
        for h, dev in meters.items():
            vals = [
                (ts, "energy.import", counters[h].at(ts), "Wh")
                for ts in steps
                if not (
                    h == TANK and skip_tank_hour is not None and ts // HOUR == t0 // HOUR + skip_tank_hour
                )
            ]
            c.ok(dev.batch(c.c.chain, vals))
        c.ok(
            sensor.batch(
                c.c.chain, [(ts, "temp.outdoor", feed.values(ts)["temp.outdoor"], "mdegC") for ts in steps]
            )
        )
    return c, t0


def test_site_hours_sum_the_meters_against_the_sensor() -> None:
    c, t0 = _site(3, skip_tank_hour=30)
    out = site_hours(c.store, SITE, datetime(2025, 12, 3, 12), 10_000)
    rows = out["hours"]
    assert out["outdoor_sensor"] == SENSOR and {m["device"] for m in out["meters"]} == {CORE, TANK}
    # hours 1 .. 59 (the first has no hour before it; hour 60 on is after now); 30 and 31 lack the tank's delta
    times = [t for t, _, _ in rows]
    assert times[0] == datetime(2025, 12, 1, 1) and times[-1] == datetime(2025, 12, 3, 11)
    assert len(rows) == 59 - 2 and datetime(2025, 12, 2, 6) not in times
    model = HeatingSiteModel(seed=1)
    core, tank = EnergyCounter(model, "core_unit", t0, 0), EnergyCounter(model, "storage_tank", t0, 0)
    for t, temp, kwh in rows[:5]:
        h = int((t - datetime(2025, 12, 1)).total_seconds() // 3600)
        end, start = t0 + (h + 1) * HOUR - 900_000, t0 + h * HOUR - 900_000
        want = (core.at(end) - core.at(start) + tank.at(end) - tank.at(start)) / 1000
        assert kwh == pytest.approx(want, abs=0.002)
        assert -40 < temp < 10
    assert len(site_hours(c.store, SITE, datetime(2025, 12, 3, 12), 10)["hours"]) == 10  # the latest ten


def test_last_seasons_habit_is_the_mean_per_local_hour_of_last_season() -> None:
    from datetime import date

    c, _ = _site(30)
    rows = site_hours(c.store, SITE, datetime(2026, 6, 1), 10_000)["hours"]
    got = season_habit(c.store, SITE, date(2026, 11, 20))  # the 2026/27 season: last season is 2025/26
    assert got is not None
    shape, label = got
    for h in (0, 7, 13, 23):
        vals = [kwh for t, _, kwh in rows if t.hour == h]
        assert shape[h] == pytest.approx(sum(vals) / len(vals), rel=1e-9)
    assert "2025/26 heating season" in label and f"{len(rows):,} metered hours" in label
    assert season_habit(c.store, SITE, date(2026, 1, 5)) is None  # 2024/25: nothing on chain


async def test_site_forecast_route() -> None:
    c, _ = _site(DAYS)
    c.factors()  # the plan's history is read through the inventory, which names its grid factor
    node = Node(c.c.genesis, c.store, c.nid, c.c.node_keys[c.nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        url = f"/v1/sites/{SITE}/energy/forecast"
        now = "2026-01-04T12:00"  # 35 days measured: 1 Dec .. 4 Jan 23:00, forecast from noon of the last day
        r = await client.get(url, params={"now": now})
        body = await r.json()
        assert r.status == 200, body
        assert body["site_id"] == SITE and body["history"]["outdoor_sensor"] == SENSOR
        assert body["history"]["hours"] == 34 * 24 + 12 - 1 and body["history"]["last"] == "2026-01-04T11:00"
        ho = body["model_error"]["hourly_held_out"]
        assert ho["p"] == 0 and ho["n"] > 100 and 0 < ho["cv_rmse_pct"] < 15 and abs(ho["nmbe_pct"]) < 5
        day = body["horizons"]["day"]
        assert day["hours_measured"] == 12 and day["hours_predicted"] == 12
        # the truth: the load model's energy for the afternoon the forecast predicts
        model = HeatingSiteModel(seed=1)
        noon, end = local_ms(2026, 1, 4, 12), local_ms(2026, 1, 5)
        truth = sum((EnergyCounter(model, sub, noon).at(end)) / 1000 for sub in ("core_unit", "storage_tank"))
        assert day["predicted_kwh"] == pytest.approx(truth, rel=0.1), (day, truth)
        assert day["cost_yuan"] > 0 and day["co2_kg"] == pytest.approx(day["energy_kwh"] * 0.6479, rel=1e-3)
        assert body["horizons"]["season"]["end"] == "2026-04-16T00:00"
        for q, status, words in (
            ({"now": "2025-12-20T00:00"}, 422, "4 weeks"),  # 19 days measured
            ({"now": "noon"}, 400, "local time"),
            ({"now": "1999-01-01T00:00"}, 400, "between"),
            ({"now": now, "grid_factor": "x"}, 400, "not a number"),
        ):
            r = await client.get(url, params=q)
            b = await r.json()
            assert r.status == status and words in b["message"], (q, b)
        r = await client.get("/v1/sites/nosuch/energy/forecast", params={"now": now})
        assert r.status == 404
        r = await client.get("/v1/sites/Bad!/energy/forecast")
        assert r.status == 400
        r = await client.get("/openapi.json")
        assert "/v1/sites/{site_id}/energy/forecast" in (await r.json())["paths"]
        # the plan's habit: last season when the chain holds it, else the 7 days before (said which)
        r = await client.get(f"/v1/sites/{SITE}/energy/plan", params={"date": "2026-01-05"})
        body = await r.json()
        assert r.status == 200 and "same 7 days" in body["habit_source"], body
        assert "cost_yuan" in body["compare"]["habit"]
    finally:
        await client.close()
