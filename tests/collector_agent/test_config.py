"""``cemp collect`` configuration: the documented example parses, env overrides apply, and a TOML-built agent
carries control-API (HTTP) and Alink (MQTT) readings onto a real node."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import aiomqtt
import pytest
from amqtt.broker import Broker

import collector.config as config
from collector.cli import add_parser
from collector.config import Builder, CollectConfigError, build_site, load
from collector.mqttsource import POST_TOPIC
from collector.sim.control_api import ControlApiSim
from node.crypto import KeyPair, write_key_file
from tests.support.testing import free_port
from tests.support.wait import wait_until

from .conftest import NodeProc
from .test_mqttsource import broker_config, post


def documented_example() -> str:
    doc = config.__doc__ or ""
    start = doc.index("    [agent]")
    end = doc.index("Other source types")
    return textwrap.dedent(doc[start:end])


def test_documented_example_parses_with_env_overrides(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    write_key_file(tmp_path / "keys" / "101.1.1.key", KeyPair.generate())
    cfg_path = tmp_path / "collect.toml"
    cfg_path.write_text(documented_example())
    env = {
        "CEMP_COLLECT_NODES": "http://10.0.0.1:7001, http://10.0.0.2:7001",
        "CEMP_COLLECT_FLUSH_INTERVAL_S": "0.5",
        "CEMP_COLLECT_BATCH_MAX_READINGS": "200",
        "CEMP_CONTROL_TOKEN": "t0ken",
    }
    cfg = load(cfg_path, env)
    s = cfg.settings
    assert s.nodes == ("http://10.0.0.1:7001", "http://10.0.0.2:7001")
    assert s.flush_interval_s == 0.5 and s.batch_max_readings == 200 and s.retry_max_s == 30.0
    assert cfg.data_dir == tmp_path / "collector-data"
    dev = Builder(cfg, env).device(cfg.devices[0], config.AlarmSink())
    q = dev.checker.config
    e = q.rules["energy.import"]
    assert e.counter and e.wrap == (1 << 32) * 10 and e.power_quantity == "power"
    assert q.rules["temp.supply"].stale_polls == 60 and q.rules["temp.supply"].max_value == 150_000
    heat = q.rules["energy.heat"]  # no table of its own: a Wh field is a counter, limited by rated power
    assert heat.counter and heat.max_per_hour == 400_000
    assert q.expected_interval_ms == 10_000
    src = dev.sources[0]
    assert src._headers["Authorization"] == "Bearer t0ken"  # type: ignore[attr-defined]


def test_bad_configs_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(
        '[agent]\nnodez = ["x"]\n[[devices]]\nhandle="a"\nkey_file="k"\n[devices.source]\ntype="http"\n'
    )
    with pytest.raises(CollectConfigError, match="unknown"):
        load(p)
    p.write_text("[agent]\n")
    with pytest.raises(CollectConfigError, match="no \\[\\[devices\\]\\]"):
        load(p)
    p.write_text('[[devices]]\nhandle="a"\nkey_file="k"\n[devices.source]\ntype="http"\n')
    with pytest.raises(CollectConfigError, match="a"):
        build_site(p, {})


def test_cli_registers_collect_and_sim() -> None:
    import argparse

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["collect", "--config", "x.toml"])
    assert a.cmd == "collect" and a.config == "x.toml"
    a = p.parse_args(["sim", "control-api", "--port", "0"])
    assert a.sim_cmd == "control-api" and a.port == 0


@pytest.mark.slow
async def test_toml_built_agent_carries_http_and_mqtt_readings_to_the_chain(
    node: NodeProc, tmp_path: Path
) -> None:
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    keys = tmp_path / "keys"
    handles = ["88.123.45/104.1.1", "88.123.45/105.1.1", "88.123.45/106.1.1"]
    await node.register(*handles, key_dir=keys)
    sim = ControlApiSim("tok")
    await sim.start()
    mqtt_port = free_port()
    broker = Broker(broker_config(mqtt_port))
    await broker.start()
    k = {h: keys / (h.replace("/", "_") + ".key") for h in handles}
    cfg = tmp_path / "collect.toml"
    cfg.write_text(
        f"""
[agent]
data_dir = "agent"
nodes = ["{node.url}"]
flush_interval_s = 0.05
drain_on_stop_s = 5
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
[[devices]]
handle = "{handles[0]}"
key_file = "{k[handles[0]]}"
poll_interval_s = 0.1
rated_power_w = 2000000
[devices.source]
type = "http"
url = "{sim.url("/api/v1/pump-room")}"
auth_token_env = "TOKEN"
ts_path = "ts"
fields = [
  {{ path = "energy_wh", quantity = "energy.heat", unit = "Wh" }},
  {{ path = "power_w", quantity = "power", unit = "W" }},
  {{ path = "supply_temp_c", quantity = "temp.supply", unit = "mdegC", scale = 1000 }},
]
[devices.quality.quantities."energy.heat"]
counter = true
[[devices]]
handle = "{handles[1]}"
key_file = "{k[handles[1]]}"
poll_interval_s = 0.1
[devices.source]
type = "http"
url = "{sim.url("/api/v1/electrical")}"
auth_token = "tok"
fields = [{{ path = "feeders.core_heating_wh", quantity = "energy.import", unit = "Wh" }}]
[[devices]]
handle = "{handles[2]}"
key_file = "{k[handles[2]]}"
poll_interval_s = 0.1
expected_interval_s = 0.2
[devices.source]
type = "mqtt"
product_key = "pkTank"
device_name = "tank-1"
properties = [{{ identifier = "TankTemp", quantity = "temp.tank", unit = "mdegC", scale = 1000 }}]
"""
    )
    site = build_site(cfg, {"TOKEN": "tok"})
    stop = asyncio.Event()
    task = asyncio.create_task(site.run(stop))
    try:
        tank_src = site.devices[handles[2]].sources[0]
        await tank_src.hub.wait_subscribed(20)  # type: ignore[attr-defined]  # on the device's first poll
        async with aiomqtt.Client("127.0.0.1", mqtt_port) as dev:
            for i in range(5):
                await dev.publish(
                    POST_TOPIC.format(pk="pkTank", dn="tank-1"), post(str(i), {"TankTemp": 80.5 + i}), qos=1
                )
                await asyncio.sleep(0.1)  # pacing, not synchronisation: one post per poll interval

        async def on_chain() -> bool:
            tank, pump = await node.readings(handles[2]), await node.readings(handles[0])
            return len(tank) >= 5 and len(pump) >= 9

        await wait_until(on_chain, 30, "5 tank and 9 pump-room readings on chain")
    finally:
        stop.set()
        await task
        await sim.stop()
        await broker.shutdown()
    pump = await node.readings(handles[0])
    qs = {r["quantity"] for r in pump}
    assert qs == {"energy.heat", "power", "temp.supply"} and len(pump) >= 9
    assert [r["seq"] for r in pump] == list(range(1, len(pump) + 1))
    elec = await node.readings(handles[1])
    assert elec and {r["unit"] for r in elec} == {"Wh"}
    tank = await node.readings(handles[2])
    assert [r["value"] for r in tank] == [80_500, 81_500, 82_500, 83_500, 84_500]
    assert site.outbox.stats().entries == 0
    site.outbox.close()
