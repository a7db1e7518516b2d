"""``cemp site apply``: a TOML site file recorded, then changed site fields and boundary as new versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from accounting.sitefile import SiteFileError, apply, parse
from cemp import wiring
from node.client import NodeClient
from node.server import Node
from node.store import MemoryStore
from tests.support.testing import TestConsortium

HDR = {"Content-Type": "application/msgpack"}
FILE = """
[site]
id = "hohhot-complex"
name = "Hohhot commercial complex"
floor_area_m2 = 100000
address = "Hohhot, Inner Mongolia"
province = "Inner Mongolia"
grid_region = "North China"
season_start = "10-15"
season_end = "04-15"
utc_offset_hours = 8
building = "88.123.45/200.1"
utility_accounts = ["5127336124"]
hdd18_annual = 4186

[boundary]
effective_from = "2025-10-15T00:00"
main_meter = "88.123.45/101.2.1"
[[boundary.devices]]
handle = "88.123.45/101.2.1"
subsystem = "incoming"
carrier = "electricity"
quantity = "energy.import"
[[boundary.devices]]
handle = "88.123.45/101.1.1"
subsystem = "core-heating"
carrier = "electricity"
quantity = "energy.import"
"""


@pytest_asyncio.fixture
async def node() -> AsyncIterator[tuple[TestConsortium, TestClient]]:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    n = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(n.web_app()))
    await client.start_server()
    try:
        yield c, client
    finally:
        await client.close()


def test_parse() -> None:
    site, b = parse(FILE)
    assert site.utc_offset_min == 480 and site.floor_area_m2 == 100_000
    assert b.effective_from_ms == 1_760_457_600_000  # 2025-10-15 00:00 CST = 2025-10-14T16:00Z
    assert [d.handle for d in b.devices] == ["88.123.45/101.1.1", "88.123.45/101.2.1"]  # sorted
    with pytest.raises(SiteFileError):
        parse(FILE.replace("floor_area_m2 = 100000", 'floor_area_m2 = "big"'))
    with pytest.raises(SiteFileError):
        parse("[site]\nid = 'x'\n")


async def test_apply_creates_then_versions(node: tuple[TestConsortium, TestClient], tmp_path: Path) -> None:
    c, client = node
    for h in ("88.123.45/101.1.1", "88.123.45/101.2.1", "88.123.45/101.1.2"):
        _, raw = c.register_device(h)
        r = await client.post("/v1/txs?wait=commit", data=raw, headers=HDR)
        assert r.status == 200
    f = tmp_path / "site.toml"
    f.write_text(FILE)
    key = c.admins["owner"]
    async with NodeClient(str(client.make_url(""))) as nc:
        assert await apply(nc, key, c.chain, f) == [
            "site hohhot-complex version 1",
            "boundary version 1 (2 devices)",
        ]
        assert await apply(nc, key, c.chain, f) == []  # nothing changed, nothing sent
        f.write_text(FILE.replace("100000", "120000"))
        assert await apply(nc, key, c.chain, f) == ["site hohhot-complex version 2"]
        more = FILE.replace("100000", "120000").replace("2025-10-15T00:00", "2026-01-01T00:00")
        more += '[[boundary.devices]]\nhandle = "88.123.45/101.1.2"\nsubsystem = "pipe-heating"\n'
        more += 'carrier = "electricity"\nquantity = "energy.import"\n'
        f.write_text(more)
        assert await apply(nc, key, c.chain, f) == ["boundary version 2 (3 devices)"]
        got = await nc.get("/v1/sites/hohhot-complex")
        assert got["floor_area_m2"] == 120_000 and [b["version"] for b in got["boundaries"]] == [1, 2]
