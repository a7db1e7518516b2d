"""Authentication and authorisation at the REST door: Basic vs HS_SECKEY, Ed25519 challenge-response, sessions,
the plain-HTTP rule, and which key signs the resulting tx."""

from __future__ import annotations

import base64
import os
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from node.api import MAX_BODY, errors_middleware
from node.crypto import KeyPair
from node.server import Node
from node.store import MemoryStore
from resolver.api import Resolver, ResolverConfig
from resolver.bootstrap import bootstrap_puts
from resolver.credentials import sign_challenge
from tests.resolver.conftest import ADMIN, ADMIN_SECRET, basic, submit
from tests.support.inproc import memory_node
from tests.support.testing import TestConsortium

Fixture = tuple[Node, TestClient, TestConsortium]
BODY = {"values": [{"index": 1, "type": "URL", "data": "https://example.org"}]}


async def _height(client: TestClient) -> int:
    return int((await (await client.get("/v1/status")).json())["height"])


async def test_no_credentials_is_401_with_a_challenge(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    h0 = await _height(client)
    r = await client.put("/api/handles/88.123.45/x", json=BODY)
    body = await r.json()
    assert r.status == 401 and body["responseCode"] == 402 and body["handle"] == "88.123.45/x"
    assert r.headers["WWW-Authenticate"].startswith('Handle sessionId="')
    assert (await client.delete("/api/handles/88.123.45/admin")).status == 401
    assert await _height(client) == h0


@pytest.mark.parametrize(
    "headers",
    [
        basic(ADMIN, b"wrong"),
        basic("300:88.123.45/nobody", ADMIN_SECRET),
        basic("100:88.123.45/admin", ADMIN_SECRET),  # index 100 is HS_ADMIN, not a key
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"300%ZZ88.123.45/admin:x").decode()},
        {"Authorization": "Bearer abc"},
        {"Authorization": 'Handle clientCert="true"'},
        {"Authorization": 'Handle sessionId="nope", id="301:88.123.45/admin", signature="AA=="'},
    ],
)
async def test_wrong_credentials_are_403_and_write_nothing(
    resolver_node: Fixture, headers: dict[str, str]
) -> None:
    _, client, _ = resolver_node
    h0 = await _height(client)
    r = await client.put("/api/handles/88.123.45/x", json=BODY, headers=headers)
    body = await r.json()
    assert r.status == 403, body
    assert (
        body["responseCode"] in (400, 401, 403, 404) and body["handle"] == "88.123.45/x" and body["message"]
    )
    assert await _height(client) == h0
    assert (await client.get("/api/handles/88.123.45/x")).status == 404


async def test_basic_user_is_percent_decoded(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    assert quote(ADMIN) == "300%3A88.123.45/admin"
    r = await client.put("/api/handles/88.123.45/x", json=BODY, headers=basic())
    assert r.status == 200
    raw = ("300:88.123.45/admin:" + ADMIN_SECRET.decode()).encode()  # un-encoded user works too
    r = await client.put(
        "/api/handles/88.123.45/y",
        json=BODY,
        headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
    )
    assert r.status == 200


async def test_insufficient_rights_is_403_rc_401(resolver_node: Fixture) -> None:
    _, client, c = resolver_node
    # A handle whose only admin is someone else: the prefix admin may not touch it.
    from resolver import idis
    from resolver.kinds import ORG_AUTHORITY, HandlePut

    p = HandlePut(
        "88.123.45/foreign", "replace", (idis.admin_value(100, "88.123.45/other", 300, 0xFFF),), ORG_AUTHORITY
    )  # type: ignore[arg-type]
    await submit(client, c.admin_tx("owner", "handle.put", p))
    r = await client.put("/api/handles/88.123.45/foreign?index=1", json=BODY, headers=basic())
    body = await r.json()
    assert r.status == 403 and body["responseCode"] == 401 and "lacks the right" in body["message"]
    # and under another org's prefix there is no prefix handle granting anything
    r = await client.put("/api/handles/88.123.46/x", json=BODY, headers=basic())
    assert r.status == 403 and (await r.json())["responseCode"] == 401


async def test_the_write_is_a_tx_signed_by_the_node_for_the_identity(resolver_node: Fixture) -> None:
    _node, client, c = resolver_node
    r = await client.put("/api/handles/88.123.45/signed", json=BODY, headers=basic())
    assert r.status == 200
    blocks = (await (await client.get("/v1/blocks?limit=1")).json())["blocks"]
    b = await (await client.get(f"/v1/blocks/{blocks[0]['height']}")).json()
    tx = await (await client.get(f"/v1/txs/{b['txs'][0]['hash']}")).json()
    assert tx["kind"] == "handle.put" and tx["sender"] == c.node_keys["owner-1"].public.hex()
    assert tx["payload"]["authority"] == {"method": "seckey", "identity": ADMIN}
    assert tx["payload"]["mode"] == "replace"


async def _pubkey_node(c: TestConsortium, key: KeyPair, **cfg: bool) -> tuple[Node, TestClient]:
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    if cfg:
        node.resolver = Resolver(node, ResolverConfig(**cfg))  # type: ignore[attr-defined]
    for p in bootstrap_puts("88.123.45", c.admins["owner"].public, ADMIN_SECRET, key.public):
        await submit(client, c.admin_tx("owner", "handle.put", p))
    return node, client


async def test_challenge_response_with_ed25519(consortium: TestConsortium) -> None:
    key = KeyPair.generate()
    _, client = await _pubkey_node(consortium, key)
    try:
        r = await client.put("/api/handles/88.123.45/cr", json=BODY)
        assert r.status == 401
        www = r.headers["WWW-Authenticate"]
        sid = www.split('sessionId="')[1].split('"')[0]
        nonce = base64.b64decode(www.split('nonce="')[1].split('"')[0])
        cnonce = os.urandom(16)
        sig = sign_challenge(key, nonce, cnonce)
        auth = (
            f'Handle sessionId="{sid}", id="301%3A88.123.45/admin", type="HS_PUBKEY", '
            f'cnonce="{base64.b64encode(cnonce).decode()}", alg="Ed25519", signature="{base64.b64encode(sig).decode()}"'
        )
        r = await client.put("/api/handles/88.123.45/cr", json=BODY, headers={"Authorization": auth})
        assert r.status == 200, await r.text()
        # the session is now authenticated: sessionId alone is enough
        r = await client.put(
            "/api/handles/88.123.45/cr2", json=BODY, headers={"Authorization": f'Handle sessionId="{sid}"'}
        )
        assert r.status == 200
        bad = sign_challenge(KeyPair.generate(), nonce, cnonce)
        r = await client.put(
            "/api/handles/88.123.45/cr3",
            json=BODY,
            headers={
                "Authorization": auth.replace(base64.b64encode(sig).decode(), base64.b64encode(bad).decode())
            },
        )
        assert r.status == 403
    finally:
        await client.close()


async def test_sessions_api(consortium: TestConsortium) -> None:
    key = KeyPair.generate()
    _, client = await _pubkey_node(consortium, key)
    try:
        r = await client.post("/api/sessions")
        s = await r.json()
        assert r.status == 201 and s["authenticated"] is False
        hdr = {"Authorization": f'Handle sessionId="{s["sessionId"]}"'}
        assert (await (await client.get("/api/sessions/this", headers=hdr)).json())["authenticated"] is False
        cnonce = os.urandom(16)
        sig = sign_challenge(key, base64.b64decode(s["nonce"]), cnonce)
        put_hdr = {
            "Authorization": f'Handle sessionId="{s["sessionId"]}", id="301:88.123.45/admin", type="HS_PUBKEY", '
            f'cnonce="{base64.b64encode(cnonce).decode()}", signature="{base64.b64encode(sig).decode()}"'
        }
        r = await client.put("/api/sessions/this", headers=put_hdr)
        body = await r.json()
        assert r.status == 200 and body["authenticated"] is True and body["id"] == "301:88.123.45/admin"
        r = await client.put("/api/handles/88.123.45/via-session", json=BODY, headers=hdr)
        assert r.status == 200
        assert (await client.delete("/api/sessions/this", headers=hdr)).status == 204
        r = await client.put("/api/handles/88.123.45/after-logout", json=BODY, headers=hdr)
        assert r.status == 401
    finally:
        await client.close()


async def test_plain_http_from_a_remote_address_refuses_credentials(consortium: TestConsortium) -> None:
    nid = consortium.genesis.nodes[0].node_id
    for allow, expected in ((False, 403), (True, 200)):
        node = memory_node(consortium, nid)
        # A resolver that treats this loopback test client as a remote one.
        r = Resolver(node, ResolverConfig(loopback_is_local=False, allow_plain_http_credentials=allow))
        client = TestClient(TestServer(_app_with(node, r)))
        await client.start_server()
        try:
            for p in bootstrap_puts("88.123.45", consortium.admins["owner"].public, ADMIN_SECRET):
                await submit(client, consortium.admin_tx("owner", "handle.put", p))
            resp = await client.put("/api/handles/88.123.45/remote", json=BODY, headers=basic())
            body = await resp.json()
            assert resp.status == expected, body
            if expected == 403:
                assert "plain HTTP" in body["message"] and body["handle"] == "88.123.45/remote"
            assert (
                await client.get("/api/handles/88.123.45/admin")
            ).status == 200  # reading needs no credentials
        finally:
            await client.close()
        consortium.admin_nonce.clear()


def _app_with(node: Node, r: Resolver) -> web.Application:
    """The node's app with ``r`` in place of the plugin-built resolver."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app.add_routes(r.routes())
    app.add_routes(node.api.routes())
    app.cleanup_ctx.append(node._background)
    return app


async def test_changing_the_secret_through_rest(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    chosen = {"index": 300, "type": "HS_SECKEY", "data": "a secret I chose"}
    r = await client.put("/api/handles/88.123.45/admin?index=300", json=chosen, headers=basic())
    body = await r.json()
    assert r.status == 400 and body["responseCode"] == 202 and "generated by the node" in body["message"]
    new = {"index": 300, "type": "HS_SECKEY", "data": ""}
    r = await client.put("/api/handles/88.123.45/admin?index=300", json=new, headers=basic())
    body = await r.json()
    assert r.status == 200, body
    assert r.headers["Cache-Control"] == "no-store"
    [issued] = body["secrets"]
    secret = issued["secret"].encode()
    assert issued["index"] == 300 and len(base64.urlsafe_b64decode(secret)) * 8 >= 128
    # Only the salted hash is on chain: the secret is in no block.
    blocks = (await (await client.get("/v1/blocks?limit=1")).json())["blocks"]
    raw = await (await client.get(f"/v1/blocks/{blocks[0]['height']}?format=msgpack")).read()
    assert secret not in raw
    assert (await client.put("/api/handles/88.123.45/z", json=BODY, headers=basic())).status == 403
    r = await client.put("/api/handles/88.123.45/z", json=BODY, headers=basic(ADMIN, secret))
    assert r.status == 200
