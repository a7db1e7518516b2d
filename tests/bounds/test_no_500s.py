"""Inputs that answered 500 without a login (issue 8) now get a 4xx JSON answer, and deep JSON too."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from node.server import Node

PATHS = [
    "/v1/blocks/%C2%B2",
    "/v1/blocks/" + "9" * 5000,
    "/v1/blocks/" + "1" * 25,
    "/v1/blocks?before=%C2%B2",
    "/v1/blocks?limit=" + "9" * 5000,
    "/v1/documents?limit=%C2%B2",
    "/v1/documents?before=%C2%B2-1",
    "/v1/documents?before=99999999999999999999999-0",
    "/v1/documents?before=1-99999999999",
    "/v1/documents?before=-1-0",
    "/v1/documents/" + "ab" * 3000,
    "/v1/documents/" + "00" * 32 + "?version=%C2%B2",
    "/v1/txs/" + "0" * 5000,
    "/v1/nonces/%C2%B2",
    "/v1/devices?limit=%C2%B2",
    "/v1/devices/88.123.45/1/readings?from=%C2%B2",
    "/v1/devices/88.123.45/1/hourly?to=" + "9" * 5000,
]


@pytest.mark.parametrize("path", PATHS)
async def test_hostile_reads_are_4xx_json(node_client: tuple[Node, TestClient], path: str) -> None:
    _, client = node_client
    r = await client.get(path)
    assert 400 <= r.status < 500, (path[:80], r.status, await r.text())
    body = await r.json()
    assert body["code"] and body["message"]


async def test_deeply_nested_json_is_4xx(node_client: tuple[Node, TestClient]) -> None:
    _, client = node_client
    deep = "[" * 970 + "]" * 970
    r = await client.put("/api/handles/88.123.45/x", data=deep, headers={"Content-Type": "application/json"})
    assert 400 <= r.status < 500, await r.text()
