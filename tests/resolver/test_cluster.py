"""REST writes on a three-node cluster: at the leader and at followers (forwarded), seen by every node."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from node.client import NodeClient
from node.crypto import KeyPair
from resolver.bootstrap import bootstrap_puts
from resolver.credentials import sign_challenge
from tests.cluster.harness import Cluster
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
SECRET = b"Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
BODY = {"values": [{"index": 1, "type": "URL", "data": "https://example.org/cluster"}]}


def _basic() -> dict[str, str]:
    return {
        "Authorization": "Basic "
        + base64.b64encode(quote("300:88.123.45/admin").encode() + b":" + SECRET).decode()
    }


async def _found(s: aiohttp.ClientSession, url: str) -> bool:
    async with s.get(url) as r:
        return r.status == 200


async def test_rest_writes_on_every_node(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, proxies=False)
    try:
        await cl.start_all()
        leader = await cl.leader()
        c = cl.consortium
        key = KeyPair.generate()
        async with NodeClient(cl.url(leader)) as nc:
            for p in bootstrap_puts("88.123.45", c.admins["owner"].public, SECRET, key.public):
                res = await nc.submit(c.admin_tx("owner", "handle.put", p), wait=True)
                assert res["result"]["ok"], res
        async with aiohttp.ClientSession() as s:
            # The bootstrap committed at the leader; wait until every node has applied it.
            for nid in cl.ids:
                await wait_until(
                    lambda nid=nid: _found(s, f"{cl.url(nid)}/api/handles/88.123.45/admin"),
                    30,
                    f"{nid} to serve the bootstrapped admin handle",
                    interval=0.1,
                )
            # Basic (secret key): only owner's node may vouch for owner's identity.
            r = await s.put(f"{cl.url('owner-1')}/api/handles/88.123.45/c-owner", json=BODY, headers=_basic())
            assert r.status == 200, await r.text()
            r = await s.put(
                f"{cl.url('equipment-1')}/api/handles/88.123.45/c-eq", json=BODY, headers=_basic()
            )
            assert r.status == 403 and "vouched for only by nodes of owner" in (await r.json())["message"]
            # Ed25519 challenge-response works at any node, leader or follower.
            for nid in cl.ids:
                h = f"88.123.45/c-{nid}"
                r = await s.put(f"{cl.url(nid)}/api/handles/{h}", json=BODY)
                assert r.status == 401
                www = r.headers["WWW-Authenticate"]
                sid = www.split('sessionId="')[1].split('"')[0]
                nonce = base64.b64decode(www.split('nonce="')[1].split('"')[0])
                cnonce = os.urandom(16)
                sig = sign_challenge(key, nonce, cnonce)
                auth = (
                    f'Handle sessionId="{sid}", id="301:88.123.45/admin", type="HS_PUBKEY", '
                    f'cnonce="{base64.b64encode(cnonce).decode()}", signature="{base64.b64encode(sig).decode()}"'
                )
                r = await s.put(f"{cl.url(nid)}/api/handles/{h}", json=BODY, headers={"Authorization": auth})
                assert r.status == 200, (nid, leader, await r.text())
            # Every node serves every write once it has applied the block (followers may lag a little).
            for nid in cl.ids:
                for h in ("c-owner", *(f"c-{n}" for n in cl.ids)):
                    await wait_until(
                        lambda nid=nid, h=h: _found(s, f"{cl.url(nid)}/api/handles/88.123.45/{h}"),
                        30,
                        f"{nid} to serve {h}",
                        interval=0.1,
                    )
    finally:
        await cl.stop()
