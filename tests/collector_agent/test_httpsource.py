"""HTTP control-system source against the control-API simulator: values, auth, and faults → SourceError."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from collector.httpsource import FieldMap, HttpSource, to_int
from collector.sim.control_api import ControlApiSim
from collector.sources import SourceError
from tests.support.testing import free_port

PUMP = [
    FieldMap("energy_wh", "energy.heat", "Wh"),
    FieldMap("flow_m3h", "flow", "L/h", scale=1000),
    FieldMap("supply_temp_c", "temp.supply", "mdegC", scale=1000),
    FieldMap("return_temp_c", "temp.return", "mdegC", scale=1000),
]
DEV = "88.123.45/104.1.1"


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[ControlApiSim]:
    s = ControlApiSim("s3cret")
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def test_decimal_conversion_is_exact() -> None:
    assert to_int(55.2, 1000) == 55200  # float 55.2 * 1000 would be 55199.99...
    assert to_int("0.0005", 1000) == 0 and to_int("0.0015", 1000) == 2  # half-even
    assert to_int(True, 1) is None and to_int(float("nan"), 1) is None and to_int(None, 1) is None


async def test_pump_room_and_electrical_fields_become_integer_samples(sim: ControlApiSim) -> None:
    src = HttpSource(DEV, sim.url("/api/v1/pump-room"), PUMP, auth_token="s3cret", ts_path="ts")
    elec = HttpSource(
        "88.123.45/105.1.1",
        sim.url("/api/v1/electrical"),
        [
            FieldMap("energy_wh", "energy.import", "Wh"),
            FieldMap("feeders.core_heating_wh", "energy.core", "Wh"),
        ],
        auth_token="s3cret",
    )
    try:
        first = {s.quantity: s for s in await src.poll()}
        doc = sim.pump_room()
        assert set(first) == {"energy.heat", "flow", "temp.supply", "temp.return"}
        assert all(isinstance(s.value, int) for s in first.values())
        assert first["temp.supply"].unit == "mdegC" and 40_000 < first["temp.supply"].value < 60_000
        assert first["temp.supply"].value - first["temp.return"].value == 10_000
        assert abs(first["energy.heat"].ts_ms - doc["ts"]) < 1000
        second = {s.quantity: s for s in await src.poll()}
        assert second["energy.heat"].value >= first["energy.heat"].value
        e = {s.quantity: s.value for s in await elec.poll()}
        assert e["energy.import"] > 98_000_000 and e["energy.core"] >= 50_000_000
    finally:
        await src.close()
        await elec.close()


async def test_auth_failure_is_a_source_error(sim: ControlApiSim) -> None:
    for token in ("wrong", None):
        src = HttpSource(DEV, sim.url(), PUMP, auth_token=token)
        with pytest.raises(SourceError, match="authentication refused"):
            await src.poll()
        await src.close()
    assert sim.refused == 2


async def test_faults_500_slow_and_bad_json_then_recovery(sim: ControlApiSim) -> None:
    src = HttpSource(DEV, sim.url(), PUMP, auth_token="s3cret", timeout_s=0.3)
    try:
        sim.faults.fail = 1
        with pytest.raises(SourceError, match="HTTP 500"):
            await src.poll()
        sim.faults.slow, sim.faults.slow_s = 1, 1.0
        with pytest.raises(SourceError, match="no answer within"):
            await src.poll()
        # Faults can also be injected over HTTP, as an operator would in a demo.
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                sim.url("/_sim/faults"), json={"bad_json": 1}, headers={"Authorization": "Bearer s3cret"}
            ) as r,
        ):
            assert r.status == 200
        with pytest.raises(SourceError, match="not JSON"):
            await src.poll()
        assert len(await src.poll()) == 4
        assert src.failures == 3 and src.polls == 4
    finally:
        await src.close()


async def test_unreachable_and_missing_fields(sim: ControlApiSim) -> None:
    dead = HttpSource(DEV, f"http://127.0.0.1:{free_port()}/api", PUMP, timeout_s=0.5)
    with pytest.raises(SourceError):
        await dead.poll()
    await dead.close()
    src = HttpSource(DEV, sim.url(), [FieldMap("nope", "x", "W")], auth_token="s3cret")
    with pytest.raises(SourceError, match="none of the fields"):
        await src.poll()
    await src.close()
    partial = HttpSource(DEV, sim.url(), [*PUMP[:1], FieldMap("nope", "x", "W")], auth_token="s3cret")
    assert [s.quantity for s in await partial.poll()] == ["energy.heat"]
    await partial.close()
