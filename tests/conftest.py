"""Shared fixtures: a test consortium, an in-process node served by aiohttp's test server, and the reaping of
processes a test started and left running (``tests.support.procs``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from node.crypto import KeyPair
from node.server import Node
from tests.support import procs
from tests.support.inproc import memory_node, served
from tests.support.testing import TestConsortium


@pytest.fixture(autouse=True)
def _reap_processes_the_test_left() -> Iterator[None]:
    """Node, agent and demo processes a test started (through ``tests.support.procs``) and did not stop -- it
    failed before its ``finally``, or has none -- are terminated when the test ends. Processes of module- and
    session-scoped fixtures are started before this fixture, so they are left to their own finalizers."""
    n = procs.mark()
    yield
    procs.reap_since(n)


@pytest.fixture
def consortium() -> TestConsortium:
    return TestConsortium.create(n_nodes=1, block_interval_ms=5)


@pytest.fixture
def now_ms() -> int:
    return int(time.time() * 1000)


@pytest_asyncio.fixture
async def node_client(consortium: TestConsortium) -> AsyncIterator[tuple[Node, TestClient]]:
    node = memory_node(consortium)
    async with served(node.web_app()) as client:
        yield node, client


__all__ = ["KeyPair"]
