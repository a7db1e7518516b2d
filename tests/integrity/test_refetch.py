"""A follower that receives an entry whose block fails validation fetches that block from the peers instead of
stalling.

Finding reproduced: with a leader holding a damaged copy of an entry (one tx byte flipped; the signed header
intact), a fresh follower skipped the entry ("tx_root does not match its txs") and then every later one, stuck
for good. Here three whole nodes run in this process on loopback ports; the leader's in-memory copy of a
committed entry is damaged (what a bad disk read at start, or a memory fault, would leave: a node's own start
check refuses damage it finds on disk) before a fresh third node joins. The follower refuses to acknowledge the
damaged copy, fetches the block by hash from a peer's block store, takes the entry with the good copy, and ends
with the same head as the leader.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from cemp import wiring
from consensus.messages import EntryKind
from consensus.raft import Role
from node import codec
from node.client import NodeClient
from node.server import Node
from node.store import LevelDBStore
from node.types import Block
from node.watermark import Watermark, path_beside
from tests.support.testing import TestConsortium, free_port

pytestmark = pytest.mark.slow


async def wait_for(cond: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_follower_refetches_a_damaged_entry(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(3)]
    c = TestConsortium.create(n_nodes=3, ports=ports, tick_ms=50, election_ticks=10, block_interval_ms=10)
    ids = [str(n.node_id) for n in c.genesis.nodes]
    nodes: dict[str, Node] = {}
    runners: list[web.AppRunner] = []

    async def start(nid: str) -> Node:
        ledger = tmp_path / nid / "ledger"
        node = Node(
            c.genesis,
            LevelDBStore(ledger),
            nid,
            c.node_keys[nid],
            kinds=wiring.kinds(),
            routes=wiring.ROUTES,
            watermark=Watermark(path_beside(ledger)),
        )
        runner = web.AppRunner(node.web_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", ports[ids.index(nid)]).start()
        runners.append(runner)
        nodes[nid] = node
        return node

    try:
        for nid in ids[:2]:
            await start(nid)

        def leader() -> Node | None:
            return next((n for n in nodes.values() if n.driver and n.driver.raft.role == Role.LEADER), None)

        await wait_for(lambda: leader() is not None, 30, "a leader")
        lead = leader()
        assert lead is not None and lead.driver is not None
        dev, reg = c.register_device("88.123.45/101.1.1")
        now = int(time.time() * 1000)
        async with NodeClient(f"http://127.0.0.1:{ports[ids.index(lead.node_id)]}") as nc:
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            for i in range(4):
                rows = [(now + 1000 * i + k, "energy.import", k, "Wh") for k in range(3)]
                assert (await nc.submit(dev.batch(c.chain, rows), wait=True))["result"]["ok"]
        # Damage the leader's copy of the entry that carries block 3: one byte inside its last tx.
        log = lead.driver.raft.log
        entries = log._entries
        k = next(
            i
            for i, e in enumerate(entries)
            if e.kind == EntryKind.NORMAL and codec.decode(Block, e.data).header.height == 3
        )
        bad = bytearray(entries[k].data)
        bad[-9] ^= 0x01
        entries[k] = replace(entries[k], data=bytes(bad))
        # A fresh third node joins and catches up from the leader's log.
        fresh = await start(ids[2])
        assert fresh.driver is not None
        await wait_for(
            lambda: fresh.ledger.height >= lead.ledger.height,
            60,
            f"the fresh node to reach {lead.ledger.height}",
        )
        assert fresh.ledger.last_hash == lead.ledger.last_hash
        assert fresh.driver.refetched_blocks >= 1
        assert fresh.driver.skipped_blocks == 0
        assert fresh.ledger.block(3) == lead.ledger.block(3)
    finally:
        for r in runners:
            await r.cleanup()
        for n in nodes.values():
            n.close()
