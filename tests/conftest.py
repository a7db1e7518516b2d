"""Shared fixtures: a test consortium and an in-process node served by aiohttp's test server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from node.crypto import KeyPair
from node.server import Node
from node.store import MemoryStore
from tests.support.testing import TestConsortium


@pytest.fixture
def consortium() -> TestConsortium:
    return TestConsortium.create(n_nodes=1, block_interval_ms=5)


@pytest.fixture
def now_ms() -> int:
    return int(time.time() * 1000)


@pytest_asyncio.fixture
async def node_client(consortium: TestConsortium) -> AsyncIterator[tuple[Node, TestClient]]:
    nid = consortium.genesis.nodes[0].node_id
    node = Node(
        consortium.genesis,
        MemoryStore(),
        nid,
        consortium.node_keys[nid],
        kinds=wiring.kinds(),
        routes=wiring.ROUTES,
    )
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        yield node, client
    finally:
        await client.close()


__all__ = ["KeyPair"]
