"""In-process nodes for handler tests: a ``Node`` of a test consortium on a ``MemoryStore``, wired by the
composition root (``cemp.wiring``), and aiohttp's test client around an app with a bounded teardown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from node.server import Node
from node.store import MemoryStore
from tests.support.testing import TestConsortium

CLOSE_S = 60.0
"""How long a test server gets to close (its node's background tasks stop within ``node.server.SHUTDOWN_S``)."""


def memory_node(c: TestConsortium, node_id: str | None = None, **kwargs: Any) -> Node:
    """Node ``node_id`` (default: the first in genesis) of ``c``, on a fresh ``MemoryStore``, with the chain's
    kinds and extra routes from ``cemp.wiring``; ``kwargs`` go to ``Node`` (``routes=``, ``seams=``, ...)."""
    nid = node_id or str(c.genesis.nodes[0].node_id)
    kwargs.setdefault("kinds", wiring.kinds())
    kwargs.setdefault("routes", wiring.ROUTES)
    return Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], **kwargs)


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[TestClient]:
    """A started ``TestClient`` for ``app``; closed on exit, failing with ``TimeoutError`` rather than hanging
    if the close takes longer than ``CLOSE_S``."""
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        async with asyncio.timeout(CLOSE_S):
            await client.close()
