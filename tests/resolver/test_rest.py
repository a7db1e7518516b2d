"""The Handle.Net v9 REST surface: resolution filters, PUT/DELETE semantics, listing, caching, demo devices."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from cemp.demo import DEVICES
from node.server import Node
from tests.resolver.conftest import ADMIN, basic, submit
from tests.support.testing import TestConsortium
from tests.support.wait import wait_until

H = "88.123.45/rest-1"
RECORD = {
    "values": [
        {"index": 1, "type": "URL", "data": "https://example.org/one"},
        {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "ops@example.org"}},
        {"index": 3, "type": "HS_SITE.PREFIX", "data": {"format": "base64", "value": "AAEC"}},
        {"index": 4, "type": "NOTE", "data": "secret note", "permissions": "1100"},
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "0.NA/88.123.45", "index": "200", "permissions": "011111110011"},
            },
        },
    ]
}

Fixture = tuple[Node, TestClient, TestConsortium]


async def _create(client: TestClient, handle: str = H, body: dict[str, object] = RECORD) -> None:
    r = await client.put(f"/api/handles/{handle}?overwrite=false", json=body, headers=basic())
    assert r.status == 201, await r.text()
    assert await r.json() == {"responseCode": 1, "handle": handle}


async def test_resolve_full_record_with_timestamps(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    r = await client.get(f"/api/handles/{H}")
    body = await r.json()
    assert r.status == 200 and body["responseCode"] == 1 and body["handle"] == H
    assert [v["index"] for v in body["values"]] == [1, 2, 3, 100]  # index 4 is not publicly readable
    for v in body["values"]:
        assert {"index", "type", "data", "ttl", "timestamp"} <= set(v) and set(v["data"]) == {
            "format",
            "value",
        }
    assert body["values"][2]["data"] == {"format": "base64", "value": "AAEC"}
    assert body["values"][3]["data"]["value"] == {
        "handle": "0.NA/88.123.45",
        "index": 200,
        "permissions": "011111110011",
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("index=1", [1]),
        ("index=1&index=100", [1, 100]),
        ("type=URL", [1]),
        ("type=url&type=EMAIL", [1, 2]),
        ("type=HS_SITE", []),
        ("type=HS_SITE.", [3]),
        ("index=2&type=URL", [1, 2]),
    ],
)
async def test_index_and_type_filters(resolver_node: Fixture, query: str, expected: list[int]) -> None:
    _, client, _ = resolver_node
    await _create(client)
    r = await client.get(f"/api/handles/{H}?{query}&auth=true&publicOnly=true")
    body = await r.json()
    assert r.status == 200
    assert body["responseCode"] == (1 if expected else 200)
    assert [v["index"] for v in body["values"]] == expected


async def test_missing_handle_and_exact_echo(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    r = await client.get("/api/handles/88.123.45/nope")
    assert r.status == 404 and await r.json() == {
        "responseCode": 100,
        "handle": "88.123.45/nope",
        "message": "handle 88.123.45/nope not found",
    }
    r = await client.get("/api/handles/88.123.45/REST-1")  # lookups ignore case, the echo does not
    body = await r.json()
    assert r.status == 200 and body["handle"] == "88.123.45/REST-1"


async def test_put_forms_and_overwrite(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    # overwrite=false on an existing handle: 409 rc 101
    r = await client.put(f"/api/handles/{H}?overwrite=false", json=RECORD, headers=basic())
    assert r.status == 409 and (await r.json())["responseCode"] == 101
    # default overwrite=true replaces the whole record; body as a bare list; HS_ADMIN index as an int
    new = [
        {"index": 1, "type": "URL", "data": "https://example.org/two"},
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {"format": "admin", "value": {"handle": "0.NA/88.123.45", "index": 200}},
        },
    ]
    r = await client.put(f"/api/handles/{H}", json=new, headers=basic())
    assert r.status == 200 and (await r.json())["responseCode"] == 1
    body = await (await client.get(f"/api/handles/{H}")).json()
    assert [v["index"] for v in body["values"]] == [1, 100]
    # a single value body with ?index= merges in place
    r = await client.put(
        f"/api/handles/{H}?index=5", json={"index": 5, "type": "NOTE", "data": "x"}, headers=basic()
    )
    assert r.status == 200
    body = await (await client.get(f"/api/handles/{H}")).json()
    assert [v["index"] for v in body["values"]] == [1, 5, 100]


async def test_index_put_semantics(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    one = {"values": [{"index": 1, "type": "URL", "data": "https://example.org/changed"}]}
    # listed indices must match the body
    r = await client.put(f"/api/handles/{H}?index=2", json=one, headers=basic())
    assert r.status == 400 and (await r.json())["responseCode"] == 202
    # add with overwrite=false on a taken index: 409 rc 201
    r = await client.put(f"/api/handles/{H}?index=1&overwrite=false", json=one, headers=basic())
    assert r.status == 409 and (await r.json())["responseCode"] == 201
    r = await client.put(f"/api/handles/{H}?index=various", json=one, headers=basic())
    assert r.status == 200
    r = await client.put(
        f"/api/handles/{H}?index=7&overwrite=false",
        json={"values": [{"index": 7, "type": "X", "data": "y"}]},
        headers=basic(),
    )
    assert r.status == 201
    body = await (await client.get(f"/api/handles/{H}?index=1&index=7")).json()
    assert [v["data"]["value"] for v in body["values"]] == ["https://example.org/changed", "y"]
    # partial put on a missing handle: 404 rc 100
    r = await client.put("/api/handles/88.123.45/missing?index=1", json=one, headers=basic())
    assert r.status == 404 and (await r.json())["responseCode"] == 100


async def test_delete_values_and_handle(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    r = await client.delete(f"/api/handles/{H}?index=2", headers=basic())
    assert r.status == 200 and await r.json() == {"responseCode": 1, "handle": H}
    r = await client.delete(f"/api/handles/{H}?index=2", headers=basic())
    assert r.status == 400 and (await r.json())["responseCode"] == 200
    r = await client.delete(f"/api/handles/{H}", headers=basic())
    assert r.status == 200
    r = await client.delete(f"/api/handles/{H}", headers=basic())
    body = await r.json()
    assert r.status == 404 and body["responseCode"] == 100 and body["handle"] == H
    assert (await client.get(f"/api/handles/{H}")).status == 404
    # a deleted handle can be created again
    await _create(client)


async def test_mint_new_suffix(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    r = await client.put("/api/handles/88.123.45/?mintNewSuffix=true", json=RECORD, headers=basic())
    body = await r.json()
    assert r.status == 200 and body["handle"].startswith("88.123.45/") and len(body["handle"]) > 20
    assert (await client.get(f"/api/handles/{body['handle']}")).status == 200


async def test_cache_is_invalidated_by_a_commit(resolver_node: Fixture) -> None:
    node, client, _ = resolver_node
    await _create(client)
    first = await (await client.get(f"/api/handles/{H}")).json()
    await (await client.get(f"/api/handles/{H}")).read()
    assert node.resolver.hits >= 1  # type: ignore[attr-defined]
    r = await client.put(
        f"/api/handles/{H}?index=1",
        json={"index": 1, "type": "URL", "data": "https://new.example"},
        headers=basic(),
    )
    assert r.status == 200
    second = await (await client.get(f"/api/handles/{H}")).json()
    assert first["values"][0]["data"]["value"] == "https://example.org/one"
    assert second["values"][0]["data"]["value"] == "https://new.example"


async def test_listing_needs_list_rights_and_counts_as_string(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    for i in range(3):
        await _create(client, f"88.123.45/list-{i}")
    r = await client.get("/api/handles?prefix=88.123.45")
    assert r.status == 401 and (await r.json())["responseCode"] == 402
    r = await client.get("/api/handles?prefix=0.NA/88.123.45&page=0&pageSize=2", headers=basic())
    body = await r.json()
    assert r.status == 200 and body["totalCount"] == "4"  # three + 88.123.45/admin
    assert body["handles"] == ["88.123.45/admin", "88.123.45/list-0"] and body["page"] == 0
    body = await (await client.get("/api/handles?prefix=88.123.45&pageSize=0", headers=basic())).json()
    assert body["handles"] == [] and body["totalCount"] == "4"
    r = await client.get("/api/handles?prefix=99.1", headers=basic())
    assert r.status == 400 and (await r.json())["responseCode"] == 301


async def test_prefixes_site_and_jsonp(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    body = await (await client.get("/api/prefixes")).json()
    assert body["responseCode"] == 1 and body["prefixes"] == ["88.123.45", "88.123.46", "88.123.47"]
    r = await client.get("/api/handles/88.123.45/admin?callback=cb")
    text = await r.text()
    assert text.startswith("cb({") and text.endswith("});")


async def test_search_by_url(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    r = await client.get("/hrls/handles?URL=*example.org/one", headers=basic())
    assert r.status == 200 and await r.json() == [H]
    assert (await client.get("/hrls/handles?URL=*")).status == 401


async def test_demo_devices_have_resolvable_handles(resolver_node: Fixture) -> None:
    _, client, c = resolver_node
    for d in DEVICES:
        _, raw = c.register_device(d.handle, d.kind, d.subsystem)
        res = await submit(client, raw)
        assert res["result"]["ok"], res  # type: ignore[index]
    for d in DEVICES:
        body = await (await client.get(f"/api/handles/{d.handle}")).json()
        assert body["responseCode"] == 1, body
        types = {v["type"]: v["data"]["value"] for v in body["values"]}
        assert types["CEMP.TEMPLATE"] == "cemp.device" and types["CEMP.SUBSYSTEM"] == d.subsystem
        assert types["HS_PUBKEY"]["kty"] == "OKP"


async def test_admin_identity_reads_restricted_values(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    await _create(client)
    r = await client.get(f"/api/handles/{H}?publicOnly=false", headers=basic())
    body = await r.json()
    assert r.status == 200 and 4 in [v["index"] for v in body["values"]], body
    r = await client.get("/api/handles/88.123.45/admin?publicOnly=false", headers=basic())
    assert all(
        v["type"] != "HS_SECKEY" for v in (await r.json())["values"]
    )  # never shown, not even to admins
    assert ADMIN.startswith("300:")


async def test_only_the_canonical_spelling_is_cached_and_metrics_show_it(resolver_node: Fixture) -> None:
    node, client, _ = resolver_node
    await _create(client)
    for path in (f"/api/handles/{H}", "/api/handles/88.123.45/REST-1", "/api/handles/88.123.45%2Frest-1"):
        for _ in range(2):
            body = await (await client.get(path)).json()
            assert body["responseCode"] == 1
    assert list(node.resolver.cache) == [f"/api/handles/{H}"]  # type: ignore[attr-defined]
    text = await (await client.get("/metrics")).text()
    assert 'cemp_resolver_resolutions_total{cache="hit"} 1.0' in text
    assert "cemp_resolver_cache_entries 1.0" in text


async def test_rest_write_goes_through_the_nodes_admission_in_arrival_order(resolver_node: Fixture) -> None:
    """A REST write is admitted by ``NodeAPI.admit_one`` like ``POST /v1/txs``: it is counted with every other
    admitted tx, and it waits behind a submitter that arrived first (the arrival-order queue)."""
    node, client, _ = resolver_node
    api = node.api
    before = api.submitted
    await _create(client)
    assert api.submitted == before + 1
    # Hold the admission queue as an earlier request would; the REST write must wait its turn.
    gate = asyncio.Event()

    async def earlier() -> None:
        async with api._in_arrival_order():
            await gate.wait()

    holder = asyncio.create_task(earlier())
    tail = lambda: api._admission_tail  # noqa: E731 - a future: wait_until would await it, so compare instead
    await wait_until(lambda: tail() is not None and not tail().done(), 5, "the earlier request in the queue")
    first = tail()
    put = asyncio.create_task(
        client.put(
            f"/api/handles/{H}?index=5", json={"index": 5, "type": "NOTE", "data": "x"}, headers=basic()
        )
    )
    # The write has signed its tx and joined the queue behind the earlier request ...
    await wait_until(lambda: tail() is not first, 20, "the REST write in the admission queue")
    await asyncio.sleep(0.05)
    # ... and is not admitted while that request holds it.
    assert not put.done() and api.submitted == before + 1
    gate.set()
    r = await put
    await holder
    assert r.status == 200 and api.submitted == before + 2
