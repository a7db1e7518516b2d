"""Blocks of several MiB travel between real nodes: Raft entries and peer frames are not capped like tx payloads,
and a follower that holds forwarded txs passes megabytes of them on to the leader."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import msgpack
import pytest

from node.client import NodeClient
from tests.cluster.harness import Cluster
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow


async def _height(cl: Cluster, nid: str, height: int) -> bool:
    try:
        return int((await cl.status(nid))["height"]) >= height
    except (OSError, aiohttp.ClientError, TimeoutError):
        return False  # a node busy applying megabytes may answer late: ask again


async def _same_head(cl: Cluster) -> bool:
    try:
        return len({(await cl.status(n))["last_block_hash"] for n in cl.ids}) == 1
    except (OSError, aiohttp.ClientError, TimeoutError):
        return False


async def test_multi_megabyte_blocks_replicate(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, proxies=False, block_interval_ms=200, block_max_txs=4000)
    await cl.start_all()
    try:
        leader = await cl.leader()
        follower = next(n for n in cl.ids if n != leader)
        c = cl.consortium
        devs, regs = [], []
        for i in range(40):
            d, reg = c.register_device(f"88.123.45/201.0.{i}")
            devs.append(d)
            regs.append(reg)
        async with NodeClient(cl.url(leader)) as nc:
            assert all(r["result"]["ok"] for r in await nc.submit_batch(regs, wait=True))
        now = int(time.time() * 1000) - 3_600_000
        raws = [
            d.batch(c.chain, [(now + j * 100 + k, "energy.import", k, "Wh") for k in range(60)])
            for j in range(30)
            for d in devs
        ]
        assert sum(len(r) for r in raws) > 2 << 20
        # Sent to a follower: it forwards ~2 MiB of txs to the leader, which cuts MiB-sized blocks.
        # Applying 72,000 readings on three nodes takes ~30 s on an idle 2-core machine and took over 300 s at load
        # 20 with one core kept busy: the commit wait is a deadline (the API's longest), not an expectation.
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=630)) as s,
            s.post(
                f"{cl.url(follower)}/v1/txs/batch?wait=commit&timeout_ms=600000",
                data=msgpack.packb(raws),
                headers={"Content-Type": "application/msgpack"},
            ) as r,
        ):
            res = (await r.json())["results"]
        missing = [x for x in res if x["status"] != "committed"]
        if missing:
            statuses = {}
            for n in cl.ids:
                try:
                    statuses[n] = await cl.status(n)
                except (OSError, aiohttp.ClientError, TimeoutError) as e:
                    statuses[n] = {"unreachable": repr(e)}
            raise AssertionError(
                f"{len(missing)} of {len(res)} txs not committed, e.g. {missing[:2]}; {statuses}"
            )
        assert all(x["result"]["ok"] for x in res)
        heights = sorted({x["height"] for x in res})
        # Every node reaches the last of those heights (a node asked too early answers 404, not a block).
        for n in cl.ids:
            await wait_until(
                lambda n=n: _height(cl, n, heights[-1]), 60, f"{n} to apply block {heights[-1]}", interval=0.1
            )
        sizes = []
        async with aiohttp.ClientSession() as s:
            for h in heights:
                async with s.get(f"{cl.url(leader)}/v1/blocks/{h}", params={"format": "msgpack"}) as r:
                    body = await r.read()
                    assert r.status == 200, f"block {h} from {leader}: HTTP {r.status} {body[:200]!r}"
                    sizes.append(len(body))
        assert max(sizes) > 1 << 20, f"blocks stayed small: {sizes}"
        await wait_until(
            lambda: _same_head(cl), 30, "every node to report the same last block hash", interval=0.1
        )
    finally:
        await cl.stop()
