"""The whole simulated site: every device polled through its real source, consistent with the load model."""

from __future__ import annotations

from collector.loadmodel import ManualClock, local_ms
from collector.modbus import ModbusSource
from collector.sim import Fault, run_site_sims
from collector.sim.site import main as sim_main
from collector.sources import SourceError

T0 = local_ms(2025, 1, 16, 2, 0)  # a January night: the tank charges


async def test_site_devices_agree_with_the_model_and_count_up() -> None:
    clock = ManualClock(T0)
    async with await run_site_sims(seed=3, clock=clock) as site:
        assert set(site.endpoints) == {
            "core_unit",
            "pipe_heater",
            "storage_tank",
            "pump_room",
            "hx_temps",
            "heat_meter",
            "outdoor",
            "controls",
        }
        sources = site.sources()
        first: dict[str, dict[str, int]] = {}
        for key, src in sources.items():
            first[key] = {s.quantity: s.value for s in await src.poll()}
            ep = site.endpoints[key]
            if ep.protocol == "modbus":
                assert ep.unit_id is not None
                assert first[key] == site.modbus.presented(ep.unit_id)
        state = site.model.state(T0)
        for q, v in state.temps_mdegc.items():
            assert abs(first["hx_temps"][q] - v) <= 50  # the module resolves 0.1 degC
        # the outdoor sensor reads the model's climate (a January night in Hohhot: well below zero)
        assert abs(first["outdoor"]["temp.outdoor"] - site.model.outdoor_c(T0) * 1000) <= 50
        assert first["outdoor"]["temp.outdoor"] < -5_000
        for sub in ("core_unit", "storage_tank", "pump_room", "controls"):
            assert abs(first[sub]["power"] - state.power_w[sub]) <= max(2, state.power_w[sub] // 10_000), sub
        assert first["storage_tank"]["power"] > 1_000_000  # night charging on the valley tariff
        clock.advance(3_600_000)
        for key in ("core_unit", "pipe_heater", "storage_tank", "pump_room", "controls"):
            later = {s.quantity: s.value for s in await sources[key].poll()}
            assert later["energy.import"] >= first[key]["energy.import"], key
        # the heat meter: heat delivered = the model's heat demand, integrated (kWh register resolution)
        heat0 = first["heat_meter"]
        assert abs(heat0["heat.power"] - state.heat_demand_w) <= 1 and heat0["heat.power"] > 1_000_000
        assert abs(heat0["temp.supply"] - state.temps_mdegc["temp.secondary_supply"]) <= 10
        dt_k = (heat0["temp.supply"] - heat0["temp.return"]) / 1000
        assert abs(heat0["flow"] * 4.186 * dt_k / 3.6 - heat0["heat.power"]) < heat0["heat.power"] * 0.01
        heat1 = {s.quantity: s.value for s in await sources["heat_meter"].poll()}
        want = sum(site.model.state(T0 + m * 60_000).heat_demand_w for m in range(60)) // 60  # Wh in the hour
        assert abs(heat1["heat.energy"] - heat0["heat.energy"] - want) <= 2_000
        later_tank = {s.quantity: s.value for s in await sources["storage_tank"].poll()}
        assert later_tank["energy.import"] - first["storage_tank"]["energy.import"] > 1_000_000
        for src in sources.values():
            await src.close()


async def test_a_failing_device_does_not_disturb_its_neighbours_on_the_gateway() -> None:
    clock = ManualClock(T0)
    async with await run_site_sims(clock=clock) as site:
        sources = site.sources(timeout=0.3)
        site.modbus.inject(1, Fault.NO_RESPONSE, times=1, delay_s=2.0)
        try:
            await sources["core_unit"].poll()
            raise AssertionError("expected a timeout")
        except SourceError as exc:
            assert "no response" in str(exc)
        assert len(await sources["pump_room"].poll()) == 13  # same shared link, reconnected
        assert len(await sources["core_unit"].poll()) == 9
        for src in sources.values():
            await src.close()
        assert isinstance(sources["core_unit"], ModbusSource)


def test_command_line_serves_and_reports_endpoints(capsys: object) -> None:
    import json

    assert sim_main(["--", "--port", "0", "--duration", "0.05", "--speed", "60"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    info = json.loads(out.strip().splitlines()[-1])
    assert info["devices"]["core_unit"]["profile"] == "schneider_pm5xxx" and info["modbus"][1] > 0


async def test_fleet_spreads_meters_over_endpoints_and_adds_up_to_the_site() -> None:
    from collector.sim.fleet import MeterFleet, bench_sources

    fleet = MeterFleet(12, per_server=5, start_ms=T0, speed=1.0)
    endpoints = await fleet.start()
    try:
        assert len({port for _h, port, _u in endpoints}) == 3 and endpoints[5][2] == 1
        sources = fleet.sources([f"88.9/{i}" for i in range(12)])
        powers = [next(s.value for s in await src.poll() if s.quantity == "power") for src in sources]
        for src in sources:
            await src.close()
    finally:
        await fleet.close()
    total = fleet.model.state(fleet.clock.now_ms()).total_power_w
    assert abs(sum(powers) - total) <= total // 1000 + 12

    deferred, close = bench_sources(["a", "b", "c"], per_server=2)
    assert [s.device for s in deferred] == ["a", "b", "c"]
    assert len(await deferred[2].poll()) == 13
    await close()


async def _energy(site: object, keys: tuple[str, ...]) -> dict[str, int]:
    sources = site.sources()  # type: ignore[attr-defined]
    out = {}
    for key in keys:
        out[key] = next(s.value for s in await sources[key].poll() if s.quantity == "energy.import")
    for src in sources.values():
        await src.close()
    return out


async def test_restarted_simulators_continue_their_counters() -> None:
    """A demo restart used to start every meter from its commissioning value again (9,876,740 -> 9,876,540 Wh)."""
    keys = ("core_unit", "pipe_heater", "storage_tank", "pump_room", "controls")
    async with await run_site_sims(seed=1, clock=ManualClock(T0 + 3_600_000), counters_since_ms=T0) as site:
        before = await _energy(site, keys)
    # Restarted ten minutes later with the same commissioning time: every counter is higher, none starts over.
    async with await run_site_sims(seed=1, clock=ManualClock(T0 + 4_200_000), counters_since_ms=T0) as site:
        after = await _energy(site, keys)
    # (the pipe heater's register counts in coarse steps through its CT ratio: it may not move in ten minutes)
    assert all(after[k] >= before[k] for k in keys) and after["core_unit"] > before["core_unit"], (
        before,
        after,
    )
    # Without the commissioning time (the old behaviour) the counters start over: what the fix is about.
    async with await run_site_sims(seed=1, clock=ManualClock(T0 + 4_200_000)) as site:
        fresh = await _energy(site, keys)
    assert fresh["core_unit"] < before["core_unit"] and fresh["controls"] < before["controls"]


def test_restarted_control_api_continues_its_counters() -> None:
    from collector.sim.control_api import ControlApiSim

    t = [1_760_000_000.0]
    first = ControlApiSim(clock=lambda: t[0])
    t[0] += 3600
    before = (first.pump_room()["energy_wh"], first.electrical()["energy_wh"])
    t[0] += 600
    again = ControlApiSim(clock=lambda: t[0], counters_since=1_760_000_000.0)
    after = (again.pump_room()["energy_wh"], again.electrical()["energy_wh"])
    assert after[0] > before[0] and after[1] > before[1]
