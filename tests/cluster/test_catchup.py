"""A node that was down while the others compacted their Raft logs catches up from a snapshot: it fetches and
re-verifies every block it missed from its peers, then follows the log. Its chain ends byte-identical."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from node.client import NodeClient
from tests.cluster.harness import Cluster

pytestmark = pytest.mark.slow


async def test_lagging_node_catches_up_after_compaction(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, proxies=False, compact_every=10)
    await cl.start_all()
    try:
        leader = await cl.leader()
        c = cl.consortium
        lagger = next(n for n in cl.ids if n != leader)
        dev, reg = c.register_device("88.123.45/101.1.1")
        async with NodeClient(cl.url(leader)) as nc:
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            cl.kill(lagger)
            now = int(time.time() * 1000)
            for i in range(60):  # 60 blocks: the log is compacted well past where the lagger stopped
                assert (await nc.submit(dev.batch(c.chain_id, [(now + i, "power", i, "W")]), wait=True))[
                    "result"
                ]["ok"]
            st = await nc.status()
            assert st["raft_last_index"] > 60
        await cl.start(lagger)
        async with NodeClient(cl.url(lagger)) as lc, NodeClient(cl.url(leader)) as nc:
            end = time.monotonic() + 30
            while time.monotonic() < end:
                if (await lc.status())["height"] >= (await nc.status())["height"]:
                    break
                await asyncio.sleep(0.2)
            a, b = await lc.status(), await nc.status()
            assert a["snapshots_restored"] >= 1, "the lagger should have needed a snapshot"
            assert (a["height"], a["last_block_hash"], a["app_hash"]) == (
                b["height"],
                b["last_block_hash"],
                b["app_hash"],
            )
            rows = (await lc.get(f"/v1/devices/{dev.handle}/readings", limit=1000))["readings"]
            assert len(rows) == 60
            # and it takes part again
            assert (await lc.submit(dev.batch(c.chain_id, [(now + 1000, "power", 1, "W")]), wait=True))[
                "result"
            ]["ok"]
    finally:
        await cl.stop()
