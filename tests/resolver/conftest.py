"""Fixtures for the resolver: an in-process node whose owner prefix is bootstrapped for REST clients.

``resolver_node`` gives (node, client, consortium) after the owner org's admin key has created
``0.NA/88.123.45`` and the identity ``300:88.123.45/admin`` with the secret ``ADMIN_SECRET``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest_asyncio
from aiohttp.test_utils import TestClient

from node.server import Node
from resolver.bootstrap import bootstrap_puts
from tests.support.inproc import memory_node, served
from tests.support.testing import TestConsortium

ADMIN = "300:88.123.45/admin"
ADMIN_SECRET = b"Kq3vT0bW9xYzR2mN5pL8sD1fG4hJ7cE6"  # as new_secret() makes them: 32 characters, 192 bits
OWNER = "88.123.45"


def basic(user: str = ADMIN, secret: bytes = ADMIN_SECRET) -> dict[str, str]:
    """pyhandle's Basic header: base64(quote(user) + ':' + secret)."""
    raw = quote(user).encode() + b":" + secret
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def submit(client: TestClient, raw: bytes) -> dict[str, object]:
    r = await client.post("/v1/txs?wait=commit", data=raw, headers={"Content-Type": "application/msgpack"})
    body = await r.json()
    assert r.status == 200, body
    return body  # type: ignore[no-any-return]


@pytest_asyncio.fixture
async def resolver_node(consortium: TestConsortium) -> AsyncIterator[tuple[Node, TestClient, TestConsortium]]:
    node = memory_node(consortium)
    async with served(node.web_app()) as client:
        for p in bootstrap_puts(OWNER, consortium.admins["owner"].public, ADMIN_SECRET):
            res = await submit(client, consortium.admin_tx("owner", "handle.put", p))
            assert res["result"]["ok"], res  # type: ignore[index]
        yield node, client, consortium
