"""Fixtures for the web UI: an in-process node (resolver bootstrapped) holding two devices with readings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from aiohttp.test_utils import TestClient

from node.server import Node
from tests.resolver.conftest import resolver_node, submit
from tests.support.testing import TestConsortium, TestDevice

__all__ = ["WebFixture", "resolver_node", "web_node"]

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
METER = "88.123.45/101.1.1"
SENSOR = "88.123.45/102.1.1"
T0 = 1_764_547_200_000  # 2025-12-01 00:00 UTC = 08:00 in Shanghai


@dataclass
class WebFixture:
    node: Node
    client: TestClient
    consortium: TestConsortium
    meter: TestDevice
    sensor: TestDevice
    tx_hashes: list[str]


@pytest_asyncio.fixture
async def web_node(
    resolver_node: tuple[Node, TestClient, TestConsortium],
) -> AsyncIterator[WebFixture]:
    """Meter: energy.import (Wh counter), power (W), voltage.l1 (mV) every minute for 3 hours from T0;
    sensor: temp.supply (mdegC) with one reading flagged as a spike."""
    node, client, c = resolver_node
    meter, raw = c.register_device(METER)
    await submit(client, raw)
    sensor, raw = c.register_device(SENSOR, kind="sensor.temperature", subsystem="heat-exchanger")
    await submit(client, raw)
    hashes = []
    energy = 1_234_573_355
    for batch in range(6):  # 6 batches of 30 minutes
        vals = []
        for m in range(30):
            ts = T0 + (batch * 30 + m) * 60_000
            energy += 2000 + (m % 5) * 100
            vals += [(ts, "energy.import", energy, "Wh"), (ts, "power", 120_000 + m * 10, "W")]
            vals += [(ts, "voltage.l1", 219_413 + m, "mV")]
        body = await submit(client, meter.batch(c.chain, vals))
        hashes.append(str(body["tx"]))
    temps = [(T0 + i * 60_000, "temp.supply", 45_000 + i * 10, "mdegC") for i in range(10)]
    await submit(client, sensor.batch(c.chain, temps))
    await submit(
        client, sensor.batch(c.chain, [(T0 + 11 * 60_000, "temp.supply", 99_000, "mdegC")], flags=16)
    )
    yield WebFixture(node, client, c, meter, sensor, hashes)
