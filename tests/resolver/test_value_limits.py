"""Bounded JSON in handle values: integers within 64 bits and nesting within MAX_JSON_DEPTH, checked at the REST
door, at admission and again on apply; a stored value that predates the limits never makes a page answer 500."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from node import codec, schema
from node.errors import Code
from node.server import Node
from node.types import Handle, ShortStr, Text
from resolver import idis
from resolver.kinds import ORG_AUTHORITY, HandlePut
from resolver.values import (
    MAX_JSON_DEPTH,
    HandleError,
    HandleRecord,
    HandleValue,
    StoredValue,
    load_json,
    norm,
)
from tests.resolver.chain import Chain
from tests.resolver.conftest import basic
from tests.support.testing import TestConsortium

Fixture = tuple[Node, TestClient, TestConsortium]
BROWSER = "text/html,application/xhtml+xml;q=0.9"
HUGE = '{"period": "2025-11", "co2e_g": 1' + "0" * 400 + "}"


def carbon(text: str, index: int = 2100) -> HandleValue:
    v = idis.string_value(index, idis.CARBON, "x")
    return HandleValue(v.index, v.type, v.format, text.encode(), v.ttl, 0, v.permissions, ())  # type: ignore[arg-type]


def site(text: str, index: int = 1) -> HandleValue:
    return HandleValue(index, Text("HS_SITE"), ShortStr("site"), text.encode(), 86400, 0, 0b1110, ())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('{"a": 9223372036854775807}', True),
        ('{"a": -9223372036854775808}', True),
        ('{"a": 9223372036854775808}', False),
        ('{"a": 1' + "0" * 400 + "}", False),
        ('{"a": NaN}', False),
        ('{"a": 1.5}', False),
        ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, True),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), False),
        ("[" * 5000 + "]" * 5000, False),
        ('["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', True),  # brackets inside strings do not count
    ],
)
def test_load_json_bounds(text: str, ok: bool) -> None:
    if ok:
        load_json(text, "x")
    else:
        with pytest.raises(HandleError) as e:
            load_json(text, "x")
        assert e.value.rc == 202


async def test_rest_refuses_a_carbon_value_of_10_to_the_400(resolver_node: Fixture) -> None:
    node, client, _ = resolver_node
    await client.put(
        "/api/handles/88.123.45/b1",
        json={"values": [{"index": 1, "type": "URL", "data": "x"}]},
        headers=basic(),
    )
    h0 = node.ledger.height
    r = await client.put(
        "/api/handles/88.123.45/b1?index=2100",
        json={"index": 2100, "type": "CEMP.CARBON", "data": HUGE},
        headers=basic(),
    )
    body = await r.json()
    assert r.status == 400 and body["responseCode"] == 202 and "64 bits" in body["message"], body
    assert node.ledger.height == h0
    r = await client.get("/api/handles/88.123.45/b1", headers={"Accept": BROWSER})
    assert r.status == 200


async def test_deeply_nested_bodies_are_400_not_500(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    for depth in (100, 970, 100_000):
        r = await client.put(
            "/api/handles/88.123.45/deep", data=("[" * depth + "]" * depth).encode(), headers=basic()
        )
        body = await r.json()
        assert r.status == 400 and body["responseCode"] == 4 and "nested" in body["message"], (depth, body)
    nested_site: object = 1
    for _ in range(40):
        nested_site = {"a": nested_site}
    r = await client.put(
        "/api/handles/88.123.45/deep",
        json={"values": [{"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": nested_site}}]},
        headers=basic(),
    )
    assert r.status == 400


def test_a_direct_tx_is_refused_at_apply_on_every_node() -> None:
    """A tx that never went through the REST door (signed by the org key) meets the same limits when applied."""
    ch = Chain(n_nodes=3, followers=2)
    puts = [
        HandlePut(Handle("88.123.45/b2"), ShortStr("replace"), (carbon(HUGE),), ORG_AUTHORITY),
        HandlePut(Handle("88.123.45/b3"), ShortStr("replace"), (site("[" * 40 + "]" * 40),), ORG_AUTHORITY),
        HandlePut(
            Handle("88.123.45/b4"), ShortStr("replace"), (site("[" * 5000 + "]" * 5000),), ORG_AUTHORITY
        ),
        HandlePut(
            Handle("88.123.45/b5"),
            ShortStr("replace"),
            (carbon('{"period": "p", "co2e_g": 5}'),),
            ORG_AUTHORITY,
        ),
    ]
    res = ch.block(*(ch.admin("owner", "handle.put", p) for p in puts))
    assert [r.code for r in res] == [Code.INVALID_PAYLOAD] * 3 + [0], res
    assert "64 bits" in res[0].reason and "nested" in res[1].reason and "nested" in res[2].reason
    for f in ch.followers:
        assert f.results(ch.led.height) == ch.led.results(ch.led.height)


async def test_the_page_never_500s_on_a_stored_value(resolver_node: Fixture) -> None:
    """Values stored before today's limits (written straight into the store here) render as text."""
    node, client, _ = resolver_node
    await client.put(
        "/api/handles/88.123.45/old",
        json={"values": [{"index": 1, "type": "URL", "data": "x"}]},
        headers=basic(),
    )
    key = schema.handle_record(norm("88.123.45/old"))
    rec = codec.decode(HandleRecord, node.ledger.store.get(key))
    legacy = (
        carbon(HUGE),
        carbon('{"period": "p", "co2e_g": ' + "[" * 3000 + "]" * 3000 + "}", 2101),
        site("[" * 3000 + "]" * 3000, 3),
    )
    stored = tuple(
        StoredValue(v, rec.values[0].timestamp_ms, rec.values[0].set_height, rec.values[0].set_tx)
        for v in legacy
    )
    bad = HandleRecord(
        rec.handle, rec.values + stored, rec.created_height, rec.version, rec.last_tx, rec.last_height, 0
    )
    node.ledger.store.write({key: codec.encode(bad)}, sync=False)
    for lang in ("en", "zh"):
        r = await client.get(f"/api/handles/88.123.45/old?lang={lang}", headers={"Accept": BROWSER})
        assert r.status == 200, await r.text()
    r = await client.get("/api/handles/88.123.45/old?pretty=true&index=1&index=2100&index=2101")
    assert r.status == 200 and len((await r.json())["values"]) == 3
    json.dumps(await (await client.get("/api/handles/88.123.45/old?type=HS_SITE")).json())
