"""Each data-quality rule, driven by a small scripted source through ``DeviceAgent.poll_once``.

Time is plain integers (agent ms), so every case is deterministic. No rule ever drops a sample.
"""

from __future__ import annotations

from collector.agent import DeviceAgent
from collector.quality import AlarmSink, QualityConfig, QuantityRules, Severity
from collector.sources import Sample, SourceError
from node.crypto import KeyPair
from node.readings import Flag

from .fakes import BackfillingSource, ScriptedSource

DEV = "88.123.45/101.1.1"
T0 = 1_760_000_000_000
STEP = 10_000  # poll every 10 s
E = "energy.import"


def agent(src: ScriptedSource, **rules: QuantityRules) -> DeviceAgent:
    cfg = QualityConfig(expected_interval_ms=STEP, rules=rules)
    return DeviceAgent(
        DEV, KeyPair.from_seed(b"\x07" * 32), [src], poll_interval_s=10, quality=cfg, alarms=AlarmSink()
    )


def energy(i: int, v: int, power: int | None = None) -> list[Sample]:
    out = [Sample(E, v, "Wh", T0 + i * STEP)]
    if power is not None:
        out.append(Sample("power", power, "W", T0 + i * STEP))
    return out


async def run(dev: DeviceAgent, polls: int) -> list[Sample]:
    out: list[Sample] = []
    for i in range(polls):
        out += await dev.poll_once(T0 + i * STEP)
    return out


def flags_of(samples: list[Sample], quantity: str = E) -> list[int]:
    return [s.flags for s in samples if s.quantity == quantity]


async def test_counter_rollover_at_register_width() -> None:
    wrap = (1 << 16) * 10  # 16-bit register of 0.01 kWh
    src = ScriptedSource(DEV, [energy(0, wrap - 30), energy(1, wrap - 10), energy(2, 15), energy(3, 40)])
    dev = agent(src, **{E: QuantityRules(counter=True, wrap=wrap, max_per_hour=100_000)})
    got = await run(dev, 4)
    assert flags_of(got) == [0, 0, Flag.ROLLOVER, 0]
    assert dev.checker.counts["rollover"] == 1
    [a] = dev.alarms.find("rollover")
    assert a.device == DEV and a.quantity == E and a.severity == Severity.INFO and a.ts_ms == T0 + 2 * STEP


async def test_meter_replacement_then_new_baseline() -> None:
    src = ScriptedSource(DEV, [energy(0, 5_000_000), energy(1, 5_000_100), energy(2, 12), energy(3, 60)])
    dev = agent(src, **{E: QuantityRules(counter=True, replacement_max=10_000)})
    assert flags_of(await run(dev, 4)) == [0, 0, Flag.METER_REPLACED, 0]
    assert dev.alarms.find("meter_replaced")[0].severity == Severity.WARNING


async def test_negative_delta_glitch_and_confirmed_drop() -> None:
    # 1,000,500 is a one-off glitch (next reading continues the old level); 900,000 is a real step down.
    vals = [1_000_000, 1_000_100, 990_500, 1_000_200, 900_000, 900_050]
    src = ScriptedSource(DEV, [energy(i, v) for i, v in enumerate(vals)])
    dev = agent(src, **{E: QuantityRules(counter=True)})
    assert flags_of(await run(dev, 6)) == [0, 0, Flag.NEGATIVE_DELTA, 0, Flag.NEGATIVE_DELTA, 0]
    assert dev.checker.counts["negative_delta"] == 2


async def test_spike_beyond_rated_power_times_elapsed_and_gauge_beyond_rated() -> None:
    # Rated 36 kW: at most 100 Wh per 10 s. 100_000 Wh in 10 s is impossible; then the old level continues.
    vals = [50_000, 50_090, 150_000, 50_180, 50_270]
    src = ScriptedSource(DEV, [energy(i, v, power=40_000 if i == 3 else 30_000) for i, v in enumerate(vals)])
    dev = agent(
        src,
        **{
            E: QuantityRules(counter=True, max_per_hour=36_000),
            "power": QuantityRules(min_value=0, max_value=36_000),
        },
    )
    got = await run(dev, 5)
    assert flags_of(got) == [0, 0, Flag.SPIKE, 0, 0]
    assert flags_of(got, "power") == [0, 0, 0, Flag.SPIKE, 0]
    assert dev.checker.counts["spike"] == 2
    assert len(got) == 10  # flagged, never dropped


async def test_stale_counter_under_load_and_same_value_for_n_polls() -> None:
    vals = [10_000, 10_050, 10_050, 10_050, 10_100]
    src = ScriptedSource(DEV, [energy(i, v, power=20_000) for i, v in enumerate(vals)])
    dev = agent(src, **{E: QuantityRules(counter=True, power_quantity="power", resolution=1)})
    assert flags_of(await run(dev, 5)) == [0, 0, Flag.STALE, Flag.STALE, 0]
    stale = dev.alarms.find("stale")
    assert [a.severity for a in stale] == [Severity.WARNING, Severity.INFO]  # raised once, then cleared
    # Zero power: a counter that does not move is fine.
    src = ScriptedSource(DEV, [energy(i, 10_000, power=0) for i in range(3)])
    dev = agent(src, **{E: QuantityRules(counter=True, power_quantity="power")})
    assert flags_of(await run(dev, 3)) == [0, 0, 0]
    # A temperature stuck at one value for 3 polls.
    temps = [
        [Sample("temp.supply", v, "mdegC", T0 + i * STEP)]
        for i, v in enumerate([55_000, 55_100, 55_100, 55_100, 55_100])
    ]
    dev = agent(ScriptedSource(DEV, temps), **{"temp.supply": QuantityRules(stale_polls=3)})
    assert flags_of(await run(dev, 5), "temp.supply") == [0, 0, 0, Flag.STALE, Flag.STALE]


async def test_missed_polls_flag_gap_before_on_the_next_reading() -> None:
    script: list[list[Sample] | Exception] = [
        energy(0, 100),
        SourceError("timeout"),
        SourceError("timeout"),
        energy(3, 400),
        energy(4, 500),
    ]
    dev = agent(ScriptedSource(DEV, script), **{E: QuantityRules(counter=True)})
    got = await run(dev, 5)
    assert flags_of(got) == [0, Flag.GAP_BEFORE, 0]
    assert dev.stats.poll_errors == 2 and dev.checker.counts["source_error"] == 2
    rules = [(a.rule, a.severity) for a in dev.alarms.alarms]
    assert rules == [
        ("source_error", Severity.WARNING),  # once per outage, not per poll
        ("source_error", Severity.INFO),
        ("gap", Severity.INFO),
    ]


async def test_gap_after_agent_restart_from_the_seeded_time() -> None:
    dev = agent(ScriptedSource(DEV, [energy(30, 100)]))
    dev.checker.seed(T0)  # newest reading signed before the restart
    got = await dev.poll_once(T0 + 30 * STEP)
    assert flags_of(got) == [Flag.GAP_BEFORE]


async def test_clock_drift_and_far_future_time_is_restamped() -> None:
    script: list[list[Sample] | Exception] = [
        [Sample(E, 100, "Wh", T0)],
        [Sample(E, 110, "Wh", T0 + STEP + 45_000)],  # device clock 45 s fast
        [Sample(E, 120, "Wh", T0 + 2 * STEP + 600_000)],  # 10 min fast: the chain would refuse it
        [Sample(E, 130, "Wh", T0 + 3 * STEP)],
    ]
    dev = agent(ScriptedSource(DEV, script))
    got = await run(dev, 4)
    assert flags_of(got) == [0, Flag.CLOCK_DRIFT, Flag.CLOCK_DRIFT, 0]
    assert got[1].ts_ms == T0 + STEP + 45_000  # kept as the device said
    assert got[2].ts_ms == T0 + 2 * STEP  # restamped with the agent's time
    assert [a.severity for a in dev.alarms.find("clock_drift")] == [Severity.WARNING, Severity.INFO]
    assert dev.checker.counts["clock_drift"] == 2


async def test_backfill_fills_a_gap_with_estimated_stored_values() -> None:
    src = BackfillingSource(DEV, [energy(0, 100), SourceError("down"), SourceError("down"), energy(3, 400)])
    src.stored = [Sample(E, 200, "Wh", T0 + STEP), Sample(E, 300, "Wh", T0 + 2 * STEP)]
    dev = agent(src, **{E: QuantityRules(counter=True)})
    got = await run(dev, 4)
    assert [(s.value, s.flags) for s in got] == [
        (100, 0),
        (200, Flag.ESTIMATED),
        (300, Flag.ESTIMATED),
        (400, 0),  # the gap is filled, so the live reading is not GAP_BEFORE
    ]
    assert src.backfill_calls == [(T0, T0 + 3 * STEP)]
    assert dev.stats.backfilled == 2 and dev.alarms.find("backfill")


async def test_invalid_samples_are_alarmed_not_signed() -> None:
    src = ScriptedSource(DEV, [[Sample("Energy Import", 1, "Wh", T0), Sample(E, 1, "Wh", T0)]])
    dev = agent(src)
    got = await dev.poll_once(T0)
    assert [s.quantity for s in got] == [E]
    assert dev.alarms.find("invalid_sample")[0].severity == Severity.CRITICAL


async def test_alarm_callback_sees_every_alarm() -> None:
    seen: list[str] = []
    sink = AlarmSink(lambda a: seen.append(a.rule))
    cfg = QualityConfig(expected_interval_ms=STEP, rules={E: QuantityRules(counter=True)})
    src = ScriptedSource(DEV, [energy(0, 100), energy(1, 50)])
    dev = DeviceAgent(DEV, KeyPair.from_seed(b"\x07" * 32), [src], quality=cfg, alarms=sink)
    await run(dev, 2)
    assert seen == ["negative_delta"] and sink.counts["negative_delta"] == 1


async def test_open_alarms_open_on_start_and_close_on_clear() -> None:
    """``AlarmSink.open`` (the collector's ``cemp_collector_open_alarms``) follows lasting conditions."""
    vals = [10_000, 10_050, 10_050, 10_050]
    dev = agent(
        ScriptedSource(DEV, [energy(i, v, power=20_000) for i, v in enumerate(vals)]),
        **{E: QuantityRules(counter=True, power_quantity="power", resolution=1)},
    )
    await run(dev, 4)
    assert set(dev.alarms.open) == {(DEV, "stale", E)}
    dev = agent(
        ScriptedSource(DEV, [energy(0, 100), SourceError("timeout"), energy(2, 300)]),
        **{E: QuantityRules(counter=True)},
    )
    await run(dev, 2)
    assert set(dev.alarms.open) == {(DEV, "source_error", "*")}
    await dev.poll_once(T0 + 2 * STEP)
    assert dev.alarms.open == {}  # answering again closes it; the gap alarm is an event, never open
