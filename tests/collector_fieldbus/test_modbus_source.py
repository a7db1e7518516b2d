"""ModbusSource against real pymodbus servers on loopback (free ports chosen at run time)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction

import pytest
import pytest_asyncio

from collector.loadmodel import ManualClock, local_ms
from collector.modbus import ModbusLink, ModbusSource
from collector.profiles import Profile, load_profile, load_profiles, profile_from_dict, ratio_multiplier
from collector.sim import Fault, ModbusMeterSim, StaticFeed, meter
from collector.sources import SourceError

T0 = local_ms(2025, 1, 15, 8, 0)
RATIOS = {"ct": 600, "pt": 10}


def exact_values(p: Profile, ratios: dict[str, int]) -> dict[str, int]:
    """Base-unit values every register of ``p`` can hold exactly (raw × scale × ratio is an integer)."""
    mults = {k: Fraction(v) for k, v in ratios.items()}
    out = {}
    for i, r in enumerate(p.registers):
        factor = r.scale * ratio_multiplier(r.ratio, mults, default=1)
        raw: Fraction = Fraction(10 + 7 * i)
        if r.is_float and (factor / 2).denominator == 1:
            raw += Fraction(1, 2)  # a fractional device value, still exact in float32
        if r.dtype.startswith("int") and not r.counter and r.unit == "W":
            raw = -raw  # signed registers carry negative power (export)
        v = raw * factor
        assert v.denominator == 1
        out[r.quantity] = int(v)
    return out


@pytest_asyncio.fixture
async def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture
async def sdm(clock: ManualClock) -> AsyncIterator[ModbusMeterSim]:
    sim = ModbusMeterSim([meter(1, "eastron_sdm630"), meter(7, "hx_temp_4ch")], clock=clock)
    async with sim:
        sim.set_values(1, exact_values(sim.meters[1].profile, {}))
        sim.set_values(7, exact_values(sim.meters[7].profile, {}))
        yield sim


@pytest.mark.parametrize("name", sorted(load_profiles()))
async def test_every_profile_reads_back_exactly(name: str, clock: ManualClock) -> None:
    p = load_profile(name)
    values = exact_values(p, RATIOS)
    async with ModbusMeterSim([meter(5, p, StaticFeed(values), **RATIOS)], clock=clock) as sim:
        assert sim.port > 0
        src = ModbusSource(f"88.1/{name}", "127.0.0.1", sim.port, 5, name, timeout=1.0, clock=clock.now_ms)
        try:
            samples = await src.poll()
        finally:
            await src.close()
    got = {s.quantity: s.value for s in samples}
    expected = dict(values)
    for d in p.derived:
        expected[d.quantity] = sum(values[q] for q in d.sum_of)
    assert got == expected
    assert all(type(s.value) is int and s.ts_ms == T0 and s.flags == 0 for s in samples)
    assert {s.quantity: s.unit for s in samples} == {
        **{r.quantity: r.unit for r in p.registers},
        **{d.quantity: d.unit for d in p.derived},
    }
    assert sim.requests == len(p.plan())  # one request per planned block


async def test_word_and_byte_order_variants(clock: ManualClock) -> None:
    regs = [
        {"quantity": "power", "address": 0, "type": "float32", "unit": "W"},
        {"quantity": "energy.import", "address": 2, "type": "uint32", "unit": "Wh", "scale": 10},
        {"quantity": "energy.total", "address": 4, "type": "int64", "unit": "Wh"},
    ]
    values = {"power": 123456, "energy.import": 4_000_000_010, "energy.total": 2**40 + 3}
    for wo in ("big", "little"):
        for bo in ("big", "little"):
            p = profile_from_dict(
                {
                    "name": f"v_{wo}_{bo}",
                    "function_code": 4,
                    "word_order": wo,
                    "byte_order": bo,
                    "registers": regs,
                }
            )
            async with ModbusMeterSim([meter(1, p, StaticFeed(values))], clock=clock) as sim:
                src = ModbusSource("d", "127.0.0.1", sim.port, 1, p, timeout=1.0)
                got = {s.quantity: s.value for s in await src.poll()}
                await src.close()
            assert got == values, (wo, bo)


async def test_wrong_word_order_is_not_read_silently_as_the_value(clock: ManualClock) -> None:
    sim = ModbusMeterSim(
        [meter(1, "eastron_sdm630_cdab", StaticFeed({"energy.import": 12_345_670}))], clock=clock
    )
    async with sim:
        src = ModbusSource("d", "127.0.0.1", sim.port, 1, "eastron_sdm630", timeout=1.0)
        with pytest.raises(SourceError, match=r"garbage values: energy.import @0x0048"):
            await src.poll()  # 12345.67 kWh CDAB read as ABCD is about -5e23 kWh
        await src.close()


async def test_exception_responses_name_the_code_and_keep_the_connection(sdm: ModbusMeterSim) -> None:
    src = ModbusSource("d", "127.0.0.1", sdm.port, 1, "eastron_sdm630", timeout=1.0)
    sdm.inject(1, Fault.EXCEPTION, times=1, exception_code=2)
    with pytest.raises(
        SourceError, match=r"unit 1 FC04 0x0000\+76: exception response 2 \(illegal data address\)"
    ):
        await src.poll()
    sdm.inject(1, Fault.EXCEPTION, times=1, exception_code=6)
    with pytest.raises(SourceError, match="server device busy"):
        await src.poll()
    assert len(await src.poll()) == 13
    assert src.link.connects == 1 and src.failures == 2 and src.polls == 3
    await src.close()


async def test_timeout_then_fresh_connection(sdm: ModbusMeterSim) -> None:
    src = ModbusSource("d", "127.0.0.1", sdm.port, 1, "eastron_sdm630", timeout=0.3)
    assert len(await src.poll()) == 13
    sdm.inject(1, Fault.NO_RESPONSE, times=1, delay_s=3.0)
    with pytest.raises(SourceError, match=r"no response within 0.3 s"):
        await src.poll()
    samples = await src.poll()
    assert {s.quantity: s.value for s in samples} == sdm.presented(1)
    assert src.link.connects == 2
    await src.close()


async def test_garbage_registers_fail_the_poll_with_the_register_named(sdm: ModbusMeterSim) -> None:
    src = ModbusSource("d", "127.0.0.1", sdm.port, 1, "eastron_sdm630", timeout=1.0)
    sdm.inject(1, Fault.GARBAGE, times=1)
    with pytest.raises(
        SourceError, match=r"garbage values: voltage.l1 @0x0000 float32 words 7FC0 0000 -> nan"
    ):
        await src.poll()
    assert len(await src.poll()) == 13
    temps = ModbusSource("t", "127.0.0.1", sdm.port, 7, "hx_temp_4ch", timeout=1.0)
    sdm.inject(7, Fault.GARBAGE, times=1)
    with pytest.raises(
        SourceError, match=r"temp.primary_supply @0x0000 int16 words 7FFF -> 32767 \(3276700 mdegC"
    ):
        await temps.poll()  # probe-open code
    assert [s.value for s in await temps.poll()] == [1000, 1700, 2400, 3100]
    await src.close()
    await temps.close()


async def test_short_response(sdm: ModbusMeterSim) -> None:
    src = ModbusSource("d", "127.0.0.1", sdm.port, 1, "eastron_sdm630", timeout=1.0)
    sdm.inject(1, Fault.SHORT, times=1)
    with pytest.raises(SourceError, match="short response, 75 of 76 registers"):
        await src.poll()
    assert len(await src.poll()) == 13
    await src.close()


async def test_unknown_unit_and_wrong_function_code(sdm: ModbusMeterSim) -> None:
    src = ModbusSource("d", "127.0.0.1", sdm.port, 42, "eastron_sdm630", timeout=1.0)
    with pytest.raises(
        SourceError, match=r"exception response 11 \(gateway target device failed to respond\)"
    ):
        await src.poll()
    fc3 = profile_from_dict(
        {
            "name": "fc3",
            "function_code": 3,
            "registers": [{"quantity": "power", "address": 0x34, "type": "float32", "unit": "W"}],
        }
    )
    wrong = ModbusSource("d", "127.0.0.1", sdm.port, 1, fc3, timeout=1.0)
    with pytest.raises(SourceError, match=r"FC03 .*exception response 1 \(illegal function\)"):
        await wrong.poll()
    await src.close()
    await wrong.close()


async def test_device_down_then_back(clock: ManualClock) -> None:
    sim = ModbusMeterSim([meter(1, "hx_temp_4ch", StaticFeed({"temp.primary_supply": 65_000}))], clock=clock)
    await sim.start()
    port = sim.port
    src = ModbusSource("d", "127.0.0.1", port, 1, "hx_temp_4ch", timeout=0.5)
    assert (await src.poll())[0].value == 65_000
    await sim.stop()
    with pytest.raises(SourceError, match=r"cannot connect|no response"):
        await src.poll()
    again = ModbusMeterSim(
        [meter(1, "hx_temp_4ch", StaticFeed({"temp.primary_supply": 66_000}))], port=port, clock=clock
    )
    async with again:
        assert (await src.poll())[0].value == 66_000
    await src.close()


async def test_counter_rollover_and_meter_replacement(clock: ManualClock) -> None:
    from collector.loadmodel import HeatingSiteModel
    from collector.sim import SubsystemMeterFeed

    model = HeatingSiteModel(seed=5)
    feed = SubsystemMeterFeed(model, "core_unit", T0, 50_000_000)
    async with ModbusMeterSim([meter(2, "acrel_dtsd1352", feed, ct=600, pt=1)], clock=clock) as sim:
        src = ModbusSource("d", "127.0.0.1", sim.port, 2, "acrel_dtsd1352", timeout=1.0, clock=clock.now_ms)

        async def energy() -> int:
            return next(s.value for s in await src.poll() if s.quantity == "energy.import")

        first = await energy()
        clock.advance(3_600_000)
        second = await energy()
        assert 0 < second - first < 3_000_000  # an hour of a ≤ 2.5 MW unit
        wrap = sim.preset_rollover(2, below_wh=600_000)
        assert wrap == 2**32 * 10 * 600
        before = await energy()
        assert wrap - 600_000 - 6_000 <= before < wrap
        clock.advance(3_600_000)
        after = await energy()
        assert 0 <= after < 3_000_000  # wrapped past zero
        sim.replace_meter(2, start_wh=0)
        assert await energy() == 0
        clock.advance(3_600_000)
        assert 0 < await energy() < 3_000_000
        await src.close()


async def test_sources_share_one_gateway_connection(sdm: ModbusMeterSim) -> None:
    link = ModbusLink("127.0.0.1", sdm.port, 1.0)
    a = ModbusSource("a", "127.0.0.1", sdm.port, 1, "eastron_sdm630", link=link)
    b = ModbusSource("b", "127.0.0.1", sdm.port, 7, "hx_temp_4ch", link=link)
    for _ in range(3):
        assert len(await a.poll()) == 13 and len(await b.poll()) == 4
    assert link.connects == 1 and link.users == 2
    with pytest.raises(ValueError, match="link goes to"):
        ModbusSource("c", "127.0.0.2", sdm.port, 1, "eastron_sdm630", link=link)
    await a.close()
    await a.close()  # idempotent
    assert link.connected and link.users == 1
    await b.close()
    assert not link.connected and link.users == 0
