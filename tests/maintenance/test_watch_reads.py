"""The watcher follows the chain through the read gate: blocks carrying another org's members-only readings are
refused to it whole, so it reads them tx by tx, sees its own devices' readings and skips what it may not read."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient, TestServer

from access.model import DataPolicyPayload
from cemp import wiring
from energy.detect import Rules
from maintenance.watch import Watched, Watcher
from node.chain import sign_tx
from node.client import NodeClient
from node.server import Node
from node.store import MemoryStore
from node.types import ShortStr
from tests.support.testing import TestConsortium

MINE = "88.123.46/201.1.1"  # the equipment firm's meter, watched
THEIRS = "88.123.45/101.1.1"  # the owner's meter, members-only


async def test_watcher_reads_around_members_only_blocks() -> None:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:

        async def commit(raw: bytes) -> None:
            r = await client.post("/v1/txs", data=raw, params={"wait": "commit"})
            assert r.status == 200 and (await r.json())["result"]["ok"], await r.text()

        mine, raw = c.register_device(MINE, org="equipment")
        await commit(raw)
        theirs, raw = c.register_device(THEIRS, org="owner")
        await commit(raw)
        raw, _ = sign_tx(
            c.admins["owner"], c.chain, "data.policy", 2, DataPolicyPayload((ShortStr("readings"),), ())
        )
        await commit(raw)
        now = int(time.time() * 1000)
        for i in range(3):
            await commit(theirs.batch(c.chain, [(now + i * 1000, "energy", 100 + i, "Wh")]))
            await commit(mine.batch(c.chain, [(now + i * 1000, "energy", 500 + i, "Wh")]))
        nc = NodeClient(str(client.make_url("")).rstrip("/"), session=client.session)
        w = Watcher(
            nc,
            c.admins["equipment"],
            c.chain,
            [Watched(MINE, 1000, "energy"), Watched(THEIRS, 1000, "energy")],
            Rules(),
            0,
        )
        head = int((await nc.status())["height"])
        assert await w.follow() == head
        assert w.token is not None  # refused signed out, it signed in with its key
        assert w.last[MINE].value == 502 and len(w.recent[MINE]) == 3
        assert THEIRS not in w.last  # the owner's members-only readings are not the equipment firm's to see
    finally:
        await client.close()
