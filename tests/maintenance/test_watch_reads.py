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


async def test_watcher_raises_the_collectors_quality_findings_once() -> None:
    """Collector quality flags on chain readings (a spike, a source error), a gap and a counter going back become
    alarms on chain, each once: the next tick raises nothing, and a new run of a flag whose alarm is still open
    is refused by the chain (one open alarm per device, rule and quantity) and not retried."""
    from node.readings import Flag

    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        txs: list[str] = []

        async def commit(raw: bytes) -> None:
            r = await client.post("/v1/txs", data=raw, params={"wait": "commit"})
            body = await r.json()
            assert r.status == 200 and body["result"]["ok"], body
            txs.append(body["hash"] if "hash" in body else body["tx"])

        dev, raw = c.register_device(MINE, org="equipment")
        await commit(raw)
        t = int(time.time() * 1000) - 3_600_000
        v = 1000

        async def send(n: int, flags: int = 0, step: int = 10, gap_ms: int = 0) -> str:
            nonlocal t, v
            t += gap_ms
            vals = []
            for _ in range(n):
                t += 1000
                v += step
                vals.append((t, "energy", v, "Wh"))
            await commit(dev.batch(c.chain, vals, flags=flags))
            return txs[-1]

        nc = NodeClient(str(client.make_url("")).rstrip("/"), session=client.session)
        w = Watcher(
            nc, c.admins["equipment"], c.chain, [Watched(MINE, 1000, "energy")], Rules(gap_min_ms=60_000), 0
        )
        await send(5)
        spike = [await send(1, Flag.SPIKE), await send(1, Flag.SPIKE)]
        await send(2)
        source_error = await send(1, Flag.SOURCE_ERROR, step=0)
        await send(2, gap_ms=5 * 60_000)  # a 5-minute hole
        await send(1, step=-500)  # the counter goes back, unflagged
        await send(2)
        await w.follow()
        raised = await w.raise_new(t + 1000)
        alarms = {a["rule"]: a for a in (await nc.get("/v1/alarms", limit=50))["alarms"]}
        assert {r.done.number for r in raised} == {a["number"] for a in alarms.values()}
        assert set(alarms) == {"spike", "source_error", "gap", "negative_delta"}, alarms
        for rule in ("spike", "source_error"):
            a = await nc.get(f"/v1/alarms/{alarms[rule]['number']}")
            assert a["source"] == "collector.quality" and a["quantity"] == "energy", a
        a = await nc.get(f"/v1/alarms/{alarms['spike']['number']}")
        assert a["evidence"] == spike and "2 readings of energy flagged SPIKE" in a["observed"], a
        assert (await nc.get(f"/v1/alarms/{alarms['source_error']['number']}"))["evidence"] == [source_error]
        assert "no readings for 5 min" in (await nc.get(f"/v1/alarms/{alarms['gap']['number']}"))["message"]
        # the next tick: nothing new
        await send(2)
        await w.follow()
        assert await w.raise_new(t + 1000) == []
        # a new spike run while the spike alarm is open: the chain keeps one open alarm per slot
        await send(1, Flag.SPIKE)
        await w.follow()
        assert await w.raise_new(t + 1000) == []
        assert await w.raise_new(t + 1000) == []  # and it is not retried
        assert len((await nc.get("/v1/alarms", limit=50))["alarms"]) == 4
    finally:
        await client.close()
