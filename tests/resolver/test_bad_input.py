"""Bad input: every refusal is a 4xx JSON body with responseCode, handle and message, and nothing is written."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient

from node.server import Node
from tests.resolver.conftest import basic
from tests.support.testing import TestConsortium

Fixture = tuple[Node, TestClient, TestConsortium]
OK_BODY = {"values": [{"index": 1, "type": "URL", "data": "https://example.org"}]}


async def _state(client: TestClient) -> tuple[int, str]:
    st = await (await client.get("/v1/status")).json()
    return st["height"], st["app_hash"]


@pytest.mark.parametrize(
    ("path", "status", "rc"),
    [
        ("/api/handles/88.123.45", 400, 102),  # no suffix
        ("/api/handles/88.123.45/", 400, 102),
        ("/api/handles/88.123.45/a%ZZ", 400, 102),  # invalid percent-escape
        ("/api/handles/88.123.45/a%C3%28", 400, 102),  # invalid UTF-8
        ("/api/handles/88.123.45/%E4%B8%AD%E6%96%87", 400, 102),  # unicode suffix
        ("/api/handles/88.123.45/a%00b", 400, 102),  # NUL
        ("/api/handles/88.123.45/a%0Ab", 400, 102),  # newline
        ("/api/handles/88.123.45/../admin", 400, 102),  # path tricks
        ("/api/handles/88.123.45/%2e%2e/admin", 400, 102),
        ("/api/handles/88.123.45/a/./b", 400, 102),
        ("/api/handles/88.123.45//admin", 400, 102),
        ("/api/handles/abc/x", 400, 102),  # prefix not dotted digits
        ("/api/handles/99.1/x", 400, 301),  # prefix homed nowhere in this consortium
        ("/api/handles/88.123.450/x", 400, 301),
        ("/api/handles/88.123.45/" + "x" * 300, 400, 102),
        ("/api/handles/88.123.45/admin?index=abc", 400, 4),
        ("/api/handles/88.123.45/admin?index=0", 400, 4),
        ("/api/handles/88.123.45/admin?publicOnly=maybe", 400, 4),
        ("/api/handles/88.123.45/admin?type=%ZZ", 400, 4),
    ],
)
async def test_bad_resolution_requests(resolver_node: Fixture, path: str, status: int, rc: int) -> None:
    _, client, _ = resolver_node
    got, body = await raw_request(client, "GET", path)
    assert got == status, body
    assert body["responseCode"] == rc and isinstance(body["handle"], str) and body["message"]


async def raw_request(client: TestClient, method: str, path: str) -> tuple[int, dict[str, object]]:
    """Send the request line exactly as given (HTTP clients normalise '/./' and '..' away)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


BAD_BODIES: list[tuple[str, object, int]] = [
    ("not json", b"{values: nope", 4),
    ("empty", b"", 4),
    ("not a list", {"values": "x"}, 202),
    ("empty list", {"values": []}, 202),
    ("no index", {"values": [{"type": "URL", "data": "x"}]}, 202),
    ("bool index", {"values": [{"index": True, "type": "URL", "data": "x"}]}, 202),
    ("index 0", {"values": [{"index": 0, "type": "URL", "data": "x"}]}, 202),
    ("huge index", {"values": [{"index": 2**40, "type": "URL", "data": "x"}]}, 202),
    (
        "duplicate index",
        {"values": [{"index": 1, "type": "URL", "data": "x"}, {"index": 1, "type": "URL", "data": "y"}]},
        202,
    ),
    ("type with space", {"values": [{"index": 1, "type": "MY TYPE", "data": "x"}]}, 202),
    ("unicode type", {"values": [{"index": 1, "type": "类型", "data": "x"}]}, 202),
    ("control chars", {"values": [{"index": 1, "type": "URL", "data": "a\u0001b"}]}, 202),
    ("lone surrogate", b'{"values": [{"index": 1, "type": "URL", "data": "\\ud800"}]}', 202),
    (
        "unknown format",
        {"values": [{"index": 1, "type": "URL", "data": {"format": "pdf", "value": "x"}}]},
        202,
    ),
    (
        "bad base64",
        {"values": [{"index": 1, "type": "X", "data": {"format": "base64", "value": "!!!"}}]},
        202,
    ),
    ("bad hex", {"values": [{"index": 1, "type": "X", "data": {"format": "hex", "value": "zz"}}]}, 202),
    (
        "string format with object",
        {"values": [{"index": 1, "type": "X", "data": {"format": "string", "value": {}}}]},
        202,
    ),
    ("admin as string", {"values": [{"index": 100, "type": "HS_ADMIN", "data": "0.NA/88.123.45"}]}, 202),
    (
        "admin bad perms",
        {
            "values": [
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {"handle": "0.NA/88.123.45", "index": 200, "permissions": "2x"},
                    },
                }
            ]
        },
        202,
    ),
    (
        "admin for other type",
        {
            "values": [
                {
                    "index": 5,
                    "type": "URL",
                    "data": {"format": "admin", "value": {"handle": "0.NA/88.123.45", "index": 200}},
                }
            ]
        },
        202,
    ),
    (
        "vlist empty",
        {"values": [{"index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": []}}]},
        202,
    ),
    (
        "pubkey wrong size",
        {"values": [{"index": 300, "type": "HS_PUBKEY", "data": {"format": "hex", "value": "abcd"}}]},
        202,
    ),
    (
        "pubkey rsa jwk",
        {"values": [{"index": 300, "type": "HS_PUBKEY", "data": {"format": "key", "value": {"kty": "RSA"}}}]},
        202,
    ),
    (
        "site with float",
        {"values": [{"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {"v": 1.5}}}]},
        202,
    ),
    ("bad ttl", {"values": [{"index": 1, "type": "URL", "data": "x", "ttl": "tomorrow"}]}, 202),
    ("negative ttl", {"values": [{"index": 1, "type": "URL", "data": "x", "ttl": -5}]}, 202),
    ("bad permissions", {"values": [{"index": 1, "type": "URL", "data": "x", "permissions": "11111"}]}, 202),
    ("oversize value", {"values": [{"index": 1, "type": "URL", "data": "x" * 20_000}]}, 202),
    (
        "oversize record",
        {"values": [{"index": i, "type": "URL", "data": "x" * 12_000} for i in range(1, 6)]},
        202,
    ),
    ("too many values", {"values": [{"index": i, "type": "URL", "data": "x"} for i in range(1, 300)]}, 202),
    ("oversize body", {"values": [{"index": 1, "type": "URL", "data": "x" * 300_000}]}, 202),
    (
        "handle mismatch",
        {"handle": "88.123.45/other", "values": [{"index": 1, "type": "URL", "data": "x"}]},
        102,
    ),
    ("carbon not json", {"values": [{"index": 2100, "type": "CEMP.CARBON", "data": "lots"}]}, 202),
    (
        "device template",
        {
            "values": [
                {"index": 1000, "type": "CEMP.TEMPLATE", "data": "cemp.device"},
                {"index": 1001, "type": "CEMP.TEMPLATE_VERSION", "data": "1"},
            ]
        },
        202,
    ),
    (
        "seckey object",
        {"values": [{"index": 300, "type": "HS_SECKEY", "data": {"format": "admin", "value": {}}}]},
        202,
    ),
]


@pytest.mark.parametrize(("what", "body", "rc"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_put_bodies_write_nothing(resolver_node: Fixture, what: str, body: object, rc: int) -> None:
    _, client, _ = resolver_node
    before = await _state(client)
    headers = {**basic(), "Content-Type": "application/json"}
    if isinstance(body, bytes):
        r = await client.put("/api/handles/88.123.45/bad", data=body, headers=headers)
    else:
        r = await client.put("/api/handles/88.123.45/bad", json=body, headers=basic())
    out = await r.json()
    assert 400 <= r.status < 500, (what, out)
    assert out["responseCode"] == rc, (what, out)
    assert out["handle"] == "88.123.45/bad" and out["message"]
    assert await _state(client) == before
    assert (await client.get("/api/handles/88.123.45/bad")).status == 404


@pytest.mark.parametrize(
    ("method", "path", "status", "rc"),
    [
        ("PUT", "/api/handles/88.123.45/x?overwrite=perhaps", 400, 4),
        ("PUT", "/api/handles/88.123.45/x?index=-1", 400, 4),
        ("PUT", "/api/handles/88.123.45/x?mintNewSuffix=true", 400, 102),
        ("PUT", "/api/handles/77.1/x", 400, 301),
        ("PUT", "/api/handles/88.123.45/a%ZZ", 400, 102),
        ("DELETE", "/api/handles/88.123.45/x%2F..%2Fadmin", 400, 102),
        ("DELETE", "/api/handles/88.123.45/admin?index=various", 400, 4),
        ("DELETE", "/api/handles/88.123.45/admin?index=999", 400, 200),
        ("DELETE", "/api/handles/88.123.45/nothing-here", 404, 100),
        ("POST", "/api/handles/88.123.45/admin", 501, 5),
        ("PATCH", "/api/handles/88.123.45/admin", 405, 5),
    ],
)
async def test_bad_writes_write_nothing(
    resolver_node: Fixture, method: str, path: str, status: int, rc: int
) -> None:
    _, client, _ = resolver_node
    before = await _state(client)
    r = await client.request(method, path, json=OK_BODY, headers=basic())
    out = await r.json()
    assert r.status == status, out
    assert out["responseCode"] == rc and "handle" in out and out["message"]
    assert await _state(client) == before


async def test_removing_the_last_value_or_hs_admin_without_rights(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    r = await client.put("/api/handles/88.123.45/one", json=OK_BODY, headers=basic())
    assert r.status == 200
    before = await _state(client)
    body = await (await client.get("/api/handles/88.123.45/one")).json()
    assert [v["type"] for v in body["values"]] == ["URL", "HS_ADMIN"]  # added for the creator
    assert body["values"][1]["data"]["value"]["handle"] == "88.123.45/admin"
    r = await client.delete("/api/handles/88.123.45/one?index=1&index=100", headers=basic())
    out = await r.json()
    assert r.status == 400 and out["responseCode"] == 202 and "delete the handle instead" in out["message"]
    assert await _state(client) == before
