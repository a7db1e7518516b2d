"""From the simulated plant to the inventory: the Modbus core-unit meter and the heat meter are polled through their
real sources (register maps and all), the samples go on chain signed by each device, and the inventory's energy,
heat and CO2 equal the load model's exact integrals."""

from __future__ import annotations

from accounting.inventory import compute, finish
from collector.loadmodel import CELL_MS, ManualClock, local_ms
from collector.sim import run_site_sims
from tests.accounting.chain import SITE, Chain, boundary_payload, site_payload

T0 = local_ms(2026, 1, 15, 0, 0)  # a January midnight in Hohhot (CST)
HOURS = 6
CORE, HEAT = "88.123.45/101.1.1", "88.123.45/102.2.1"


async def test_polled_meters_give_the_model_energy_exactly() -> None:
    ch = Chain()
    ch.factors((2023,))
    ch.ok(ch.admin("owner", "site", site_payload()))
    core, heat = ch.device(CORE), ch.device(HEAT, kind="meter.heat")
    ch.ok(
        ch.admin(
            "owner",
            "boundary",
            boundary_payload(
                1,
                T0,
                [
                    (CORE, "core-heating", "electricity", "energy.import"),
                    (HEAT, "heat-exchanger", "heat", "heat.energy"),
                ],
            ),
        )
    )
    clock = ManualClock(T0)
    async with await run_site_sims(seed=1, clock=clock) as site:
        sources = site.sources()
        batches: dict[str, list[tuple[int, str, int, str]]] = {"core_unit": [], "heat_meter": []}
        for step in range(HOURS * 12 + 1):  # every 5 minutes, from T0 to T0 + 6 h
            if step:
                clock.advance(300_000)
            for key, want in (("core_unit", "energy.import"), ("heat_meter", "heat.energy")):
                for s in await sources[key].poll():
                    if s.quantity == want:
                        batches[key].append((s.ts_ms, s.quantity, s.value, s.unit))
        for src in sources.values():
            await src.close()
        model = site.model
    ch.ok(core.batch(ch.c.chain, batches["core_unit"]), heat.batch(ch.c.chain, batches["heat_meter"]))
    t_end = T0 + HOURS * 3_600_000
    inv = finish(compute(ch.store, ch.head(), SITE, "2026-01-15", "hour"))
    devs = {d["handle"]: d for d in inv["devices"]}
    core_wh = model.energy_wms("core_unit", T0, t_end) // 3_600_000
    assert devs[CORE]["energy_wh"] == core_wh  # the PM5xxx's INT64 Wh register: exact
    assert devs[CORE]["co2_location_ug"] == core_wh * 647_900
    heat_wms = sum(model.state(t).heat_demand_w * CELL_MS for t in range(T0, t_end, CELL_MS))
    assert abs(devs[HEAT]["energy_wh"] - heat_wms // 3_600_000) <= 1_000  # the heat meter counts whole kWh
    assert inv["site_total"]["heat_wh"] == devs[HEAT]["energy_wh"]
    assert devs[CORE]["gap_hours"] == 24 - (HOURS + 1)  # hours 0-6 hold readings; the rest was never polled
    # the last poll (06:00:00) opens hour 6; the six hours before hold the rest
    assert [b["label"] for b in inv["breakdown"]][: HOURS + 1] == [
        f"2026-01-15T{h:02d}" for h in range(HOURS + 1)
    ]
