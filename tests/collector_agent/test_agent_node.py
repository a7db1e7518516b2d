"""The agent against REAL node processes: outage under load, failover, resync, dead letters.

Every check reads the chain back (``GET /v1/devices/{handle}/readings``): each reading arrives exactly once
and in order per device, i.e. sequence numbers 1..N with no hole and no repeat, values in source order.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from collector.agent import AgentSettings, DeviceAgent, SiteAgent
from collector.outbox import Outbox
from collector.quality import QualityConfig, QuantityRules
from collector.sources import Sample
from node.client import NodeClient
from node.crypto import KeyPair
from node.readings import Flag
from node.types import DeviceRegistration, Handle, PublicKey, ShortStr
from tests.support.testing import free_port
from tests.support.wait import wait_until

from .conftest import NodeProc
from .fakes import CounterSource

pytestmark = pytest.mark.slow

FAST = dict(
    flush_interval_s=0.05,
    backlog_flush_interval_s=0.2,  # during the outage, sign every 0.2 s: the outbox must hold it all
    progress_every_s=0.5,
    retry_base_s=0.05,
    retry_max_s=0.5,
    commit_timeout_s=5,
)


def site(node_urls: list[str], devices: list[DeviceAgent], outbox: Path, **kw: object) -> SiteAgent:
    settings = AgentSettings(nodes=tuple(node_urls), **{**FAST, **kw})  # type: ignore[arg-type]
    return SiteAgent(devices, Outbox(outbox), settings)


def device_agents(node: NodeProc, interval: float = 0.02) -> list[DeviceAgent]:
    return [
        DeviceAgent(
            h,
            d.key,
            [CounterSource(h, start=1000 * i)],
            poll_interval_s=interval,
            quality=QualityConfig(int(interval * 1000), rules={"energy.import": QuantityRules(counter=True)}),
        )
        for i, (h, d) in enumerate(node.devices.items())
    ]


async def assert_exactly_once_in_order(node: NodeProc, agent: SiteAgent) -> int:
    total = 0
    for h in agent.devices:
        rows = await node.readings(h)
        c = agent.outbox.counters(h)
        assert c is not None
        seqs = [r["seq"] for r in rows]
        assert seqs == list(range(1, c.last_seq + 1)), f"{h}: sequence holes or repeats"
        energy = [r["value"] for r in rows if r["quantity"] == "energy.import"]
        assert energy == sorted(energy) and len(set(energy)) == len(energy), f"{h}: doubled or reordered"
        total += len(rows)
    return total


async def wait_drained(agent: SiteAgent, timeout: float = 30) -> None:
    await wait_until(lambda: agent.outbox.stats().entries == 0, timeout, "the outbox to drain", interval=0.05)


async def test_node_outage_under_load_delivers_every_reading_once_in_order(
    node: NodeProc, tmp_path: Path
) -> None:
    await node.register(*(f"88.123.45/101.1.{i}" for i in range(1, 5)))
    agent = site([node.url], device_agents(node), tmp_path / "agent" / "outbox.sqlite")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await wait_until(lambda: agent.stats.committed_readings > 0, 30, "the first committed readings")
    await asyncio.to_thread(node.stop)  # SIGTERM: the node goes away under load
    # Readings pile up durably while no node answers.
    await wait_until(
        lambda: agent.outbox.stats().entries > 10 and agent.outbox.stats().readings > 100,
        30,
        "more than 10 txs and 100 readings held in the outbox",
    )
    held = agent.outbox.stats()
    assert agent.stats.submit_errors > 0
    t = time.monotonic()
    await asyncio.to_thread(node.start)
    await wait_drained(agent)
    drain_s = time.monotonic() - t
    stop.set()
    await task
    n = await assert_exactly_once_in_order(node, agent)
    assert n == agent.stats.signed_readings == agent.stats.committed_readings
    assert agent.outbox.dead_letters() == []
    print(
        json.dumps(
            {
                "outage_readings_held": held.readings,
                "outage_bytes_per_reading": round(held.bytes_per_reading, 1),
                "drain_s_incl_node_start": round(drain_s, 2),
                "readings": n,
            }
        )
    )
    agent.outbox.close()


async def test_failover_when_the_first_node_is_down(node: NodeProc, tmp_path: Path) -> None:
    await node.register("88.123.45/102.1.1", "88.123.45/102.1.2")
    down = f"http://127.0.0.1:{free_port()}"
    agent = site([down, node.url], device_agents(node, 0.05), tmp_path / "outbox.sqlite")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await wait_until(
        lambda: agent.stats.failovers >= 1 and agent.stats.committed_readings > 0,
        30,
        "a failover to the live node and committed readings",
    )
    stop.set()
    await task
    assert agent.outbox.stats().entries == 0
    await assert_exactly_once_in_order(node, agent)
    agent.outbox.close()


async def test_resync_from_the_chain_and_restart_from_the_outbox(node: NodeProc, tmp_path: Path) -> None:
    [dev] = await node.register("88.123.45/103.1.1")
    # The device sent readings before this agent existed (another gateway): nonce 2, seq 20 on chain.
    now = int(time.time() * 1000)
    async with NodeClient(node.url) as cl:
        for b in range(2):
            raw = dev.batch(
                node.consortium.chain, [(now + b * 10 + k, "energy.import", k, "Wh") for k in range(10)]
            )
            assert (await cl.submit(raw, wait=True))["result"]["ok"]
    agent = site([node.url], device_agents(node), tmp_path / "outbox.sqlite")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    def resynced_and_sent() -> bool:
        c = agent.outbox.counters(dev.handle)
        return c is not None and c.synced and c.last_nonce > 2 and c.last_seq > 20

    await wait_until(resynced_and_sent, 30, "the agent to resync and sign past nonce 2 / seq 20")
    stop.set()
    await task
    c = agent.outbox.counters(dev.handle)
    assert c is not None and c.last_nonce > 2 and c.last_seq > 20 and c.synced
    rows = await node.readings(dev.handle)
    assert [r["seq"] for r in rows] == list(range(1, c.last_seq + 1))
    agent.outbox.close()
    await asyncio.sleep(0.2)  # not synchronisation: the agent stays down for ten poll intervals (the gap)
    # A second agent on the same outbox continues from the stored counters.
    agent2 = site([node.url], device_agents(node), tmp_path / "outbox.sqlite")
    stop = asyncio.Event()
    task = asyncio.create_task(agent2.run(stop))

    def continued() -> bool:
        c2 = agent2.outbox.counters(dev.handle)
        return c2 is not None and c2.last_seq > c.last_seq and agent2.stats.committed_readings > 0

    await wait_until(continued, 30, "the second agent to sign and commit after the stored counters")
    stop.set()
    await task
    rows = await node.readings(dev.handle)
    c2 = agent2.outbox.counters(dev.handle)
    assert c2 is not None and c2.last_seq > c.last_seq
    assert [r["seq"] for r in rows] == list(range(1, c2.last_seq + 1))
    # The restart shows up as a gap on the first reading after it.
    first_after = next(r for r in rows if r["seq"] == c.last_seq + 1)
    assert first_after["flags"] & Flag.GAP_BEFORE
    agent2.outbox.close()


async def test_refused_tx_goes_to_dead_letters_and_later_txs_are_resigned(
    node: NodeProc, tmp_path: Path
) -> None:
    [dev] = await node.register("88.123.45/107.1.1")
    da = DeviceAgent(dev.handle, dev.key, [])
    agent = site([node.url], [da], tmp_path / "outbox.sqlite", batch_max_readings=2)
    await agent.open()
    await agent.resync(dev.handle)
    agent.chain_id = node.consortium.chain_id
    agent.genesis_hash = node.consortium.chain.genesis_hash.hex()
    now = int(time.time() * 1000)
    # Bypass the quality layer (which would restamp it) to sign a reading the chain must refuse:
    # 20 minutes in the future. It is tx nonce 2 of 3.
    da.buffer = [
        Sample("energy.import", 1, "Wh", now),
        Sample("energy.import", 2, "Wh", now + 1),
        Sample("energy.import", 3, "Wh", now + 1_200_000),
        Sample("energy.import", 4, "Wh", now + 3),
        Sample("energy.import", 5, "Wh", now + 4),
        Sample("energy.import", 6, "Wh", now + 5),
    ]
    assert await agent.flush() == 6
    assert await agent.drain(10)
    [dead] = agent.outbox.dead_letters()
    assert dead.code == "bad_timestamp" and (dead.seq_first, dead.seq_last) == (3, 4) and not dead.committed
    rows = await node.readings(dev.handle)
    assert [(r["seq"], r["value"]) for r in rows] == [(1, 1), (2, 2), (5, 5), (6, 6)]
    async with NodeClient(node.url) as cl:
        assert await cl.nonce(dev.key.public) == 2  # the refused nonce was reused by the re-signed tx
    assert agent.stats.dead_txs == 1 and agent.stats.rebased_txs == 1
    assert [a.rule for a in agent.alarms.alarms] == ["dead_letter"]
    assert (tmp_path / "deadletter.jsonl").read_text().count("bad_timestamp") == 1
    await agent.close()
    agent.outbox.close()


async def test_readings_of_an_unregistered_device_wait_until_it_is_registered(
    node: NodeProc, tmp_path: Path
) -> None:
    handle = "88.123.45/109.1.1"
    key = KeyPair.generate()
    da = DeviceAgent(handle, key, [CounterSource(handle)], poll_interval_s=0.05)
    agent = site([node.url], [da], tmp_path / "outbox.sqlite")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await wait_until(
        lambda: (
            agent.outbox.stats().entries > 0 and any(a.rule == "unknown_device" for a in agent.alarms.alarms)
        ),
        30,
        "held txs and an unknown_device alarm",
    )
    assert agent.stats.committed_readings == 0
    assert [a.rule for a in agent.alarms.alarms if a.rule == "unknown_device"] == ["unknown_device"]  # once
    # The owner registers the device with the key the agent signs with.
    reg = node.consortium.admin_tx(
        "owner",
        "device.register",
        DeviceRegistration(
            Handle(handle), PublicKey(key.public), ShortStr("meter.energy"), ShortStr("core-heating")
        ),
    )
    async with NodeClient(node.url) as cl:
        assert (await cl.submit(reg, wait=True))["result"]["ok"]
    await wait_drained(agent, 10)
    stop.set()
    await task
    rows = await node.readings(handle)
    c = agent.outbox.counters(handle)
    assert c is not None and [r["seq"] for r in rows] == list(range(1, c.last_seq + 1))
    assert agent.outbox.dead_letters() == []
    agent.outbox.close()


async def test_a_counter_that_went_back_across_an_agent_restart_is_flagged_as_such(
    node: NodeProc, tmp_path: Path
) -> None:
    """The demo's main meter restarted from an older value (9,876,740 -> 9,876,540 Wh): not just a gap."""
    [dev] = await node.register("88.123.45/110.1.1")
    rules = {"energy.import": QuantityRules(counter=True)}
    source = CounterSource(dev.handle, start=9_876_733)
    da = DeviceAgent(
        dev.handle, dev.key, [source], poll_interval_s=1, quality=QualityConfig(1000, rules=rules)
    )
    agent = site([node.url], [da], tmp_path / "outbox.sqlite")
    await agent.open()
    await agent.resync(dev.handle)
    agent.chain_id = node.consortium.chain_id
    agent.genesis_hash = node.consortium.chain.genesis_hash.hex()
    now = int(time.time() * 1000)
    await da.poll_once(now)  # 9,876,740 Wh
    assert await agent.flush() == 2 and await agent.drain(10)
    await agent.close()
    agent.outbox.close()
    # A new agent process on the same outbox; the meter now reads 200 Wh less.
    source2 = CounterSource(dev.handle, start=9_876_533)
    da2 = DeviceAgent(
        dev.handle, dev.key, [source2], poll_interval_s=1, quality=QualityConfig(1000, rules=rules)
    )
    agent2 = site([node.url], [da2], tmp_path / "outbox.sqlite")
    await agent2.open()
    [energy, _power] = await da2.poll_once(now + 60_000)
    assert energy.value == 9_876_540
    assert energy.flags & Flag.NEGATIVE_DELTA, "a counter that went backwards must say so"
    assert energy.flags & Flag.GAP_BEFORE  # and the restart's gap is still shown
    [alarm] = [a for a in da2.alarms.alarms if a.rule == "negative_delta"]
    assert "fell by 200 Wh since the last value signed before the agent restarted" in alarm.message
    await agent2.close()
    agent2.outbox.close()
