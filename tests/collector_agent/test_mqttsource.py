"""Alink property posts over a real MQTT broker (amqtt, in-process on a free loopback port)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiomqtt
import pytest
import pytest_asyncio
from amqtt.broker import Broker

from collector.mqttsource import POST_TOPIC, AlinkHub, PropertyMap
from collector.sources import SourceError
from tests.support.testing import free_port
from tests.support.wait import wait_until

PROPS = [
    PropertyMap("Energy", "energy.import", "Wh", scale=1000),  # kWh on the wire
    PropertyMap("Power", "power", "W"),
    PropertyMap("SupplyTemp", "temp.supply", "mdegC", scale=1000),
]


def broker_config(port: int) -> dict[str, object]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[tuple[Broker, int]]:
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    port = free_port()
    b = Broker(broker_config(port))
    await b.start()
    try:
        yield b, port
    finally:
        await b.shutdown()


def post(msg_id: str, params: dict[str, object]) -> bytes:
    return json.dumps(
        {"id": msg_id, "version": "1.0", "params": params, "method": "thing.event.property.post"}
    ).encode()


async def poll_until(src: object, n: int, timeout: float = 20.0) -> list[object]:
    """Poll ``src`` until it has returned at least ``n`` samples in all; fails after ``timeout`` seconds."""
    got: list[object] = []

    async def enough() -> bool:
        got.extend(await src.poll())  # type: ignore[attr-defined]
        return len(got) >= n

    await wait_until(enough, timeout, f"{n} samples from {src}")
    return got


async def test_alink_posts_become_samples_per_device(broker: tuple[Broker, int]) -> None:
    _, port = broker
    hub = AlinkHub("127.0.0.1", port, reply=True)
    a = hub.source("88.123.45/106.1.1", "pkHeat", "meter-1", PROPS)
    b = hub.source("88.123.45/106.1.2", "pkHeat", "meter-2", PROPS)
    try:
        await hub.wait_subscribed()
        async with aiomqtt.Client("127.0.0.1", port) as dev:
            await dev.subscribe(POST_TOPIC.format(pk="pkHeat", dn="meter-1") + "_reply", qos=1)
            t = 1_760_000_123_456
            await dev.publish(
                POST_TOPIC.format(pk="pkHeat", dn="meter-1"),
                post("1", {"Energy": 12345.678, "Power": {"value": 1500, "time": t}, "Unknown": 3}),
                qos=1,
            )
            await dev.publish(
                POST_TOPIC.format(pk="pkHeat", dn="meter-2"), post("2", {"SupplyTemp": 55.2}), qos=1
            )
            await dev.publish(POST_TOPIC.format(pk="pkOther", dn="x"), post("3", {"Energy": 1}), qos=1)
            await dev.publish(POST_TOPIC.format(pk="pkHeat", dn="meter-1"), b"{not json", qos=1)
            reply = await asyncio.wait_for(anext(aiter(dev.messages)), 3)
            assert json.loads(bytes(reply.payload))["code"] == 200  # type: ignore[arg-type]
        got_a = {s.quantity: s for s in await poll_until(a, 2)}  # type: ignore[attr-defined]
        got_b = await poll_until(b, 1)
        assert got_a["energy.import"].value == 12_345_678 and got_a["energy.import"].unit == "Wh"
        assert got_a["power"].value == 1500 and got_a["power"].ts_ms == t  # device time kept
        assert [(s.quantity, s.value) for s in got_b] == [("temp.supply", 55_200)]  # type: ignore[attr-defined]
        await wait_until(
            lambda: hub.unknown_devices and hub.bad_messages, 20, "the unknown and bad posts counted"
        )
        assert hub.unknown_devices == 1 and hub.bad_messages == 1
        assert await a.poll() == []  # drained
    finally:
        await a.close()
        await b.close()


async def test_broker_outage_is_a_source_error_and_the_hub_reconnects() -> None:
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    port = free_port()
    hub = AlinkHub("127.0.0.1", port, retry_base_s=0.05, retry_max_s=0.1, connect_grace_s=0.1)
    src = hub.source("88.123.45/106.1.1", "pk", "dn", PROPS)
    try:
        assert await src.poll() == []  # within the first connection's grace period
        await wait_until(lambda: not hub.connecting(), 20, "the first connection's grace period to end")
        with pytest.raises(SourceError, match="not connected"):
            await src.poll()  # no broker at all
        b = Broker(broker_config(port))
        await b.start()
        await hub.wait_subscribed(3)
        await b.shutdown()
        await wait_until(lambda: not hub.connected, 20, "the hub to notice the broker went away")
        with pytest.raises(SourceError, match="not connected"):
            await src.poll()  # broker went away
        b = Broker(broker_config(port))
        await b.start()
        await hub.wait_subscribed(3)
        async with aiomqtt.Client("127.0.0.1", port) as dev:
            await dev.publish(POST_TOPIC.format(pk="pk", dn="dn"), post("9", {"Power": 42}), qos=1)
        assert [s.value for s in await poll_until(src, 1)] == [42]  # type: ignore[attr-defined]
        await b.shutdown()
    finally:
        await src.close()
