"""Catch-up asks the nodes a membership change added, not only the genesis nodes.

A node that applied the block adding ``owner-2`` must fetch later blocks from ``owner-2`` when it is the one that
has them (here the genesis peer is down): before, the driver built its fetcher's addresses from genesis once, and
a node added later was never asked.
"""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from cemp import wiring
from node.chain import Ledger, header_hash
from node.crypto import KeyPair
from node.membership import DOMAIN_MEMBERSHIP, Approval, MembershipChange, MembershipTx, approval_message
from node.server import Node
from node.store import MemoryStore
from node.types import Block, PublicKey, ShortStr
from tests.support.testing import GENESIS_TIME_MS, TestConsortium, free_port


def membership_tx(c: TestConsortium, op: str, nid: str, pub: bytes, address: str) -> bytes:
    ch = MembershipChange(
        ShortStr(c.chain_id),
        ShortStr(op),
        ShortStr(nid),
        ShortStr("owner"),
        PublicKey(pub),
        ShortStr(address),
    )
    approvals = tuple(
        Approval(ShortStr(o), c.admins[o].sign(DOMAIN_MEMBERSHIP, approval_message(ch)))
        for o in ("owner", "equipment")
    )
    return c.admin_tx("owner", "membership", MembershipTx(ch, approvals))


def produce(led: Ledger, keys: dict[str, KeyPair], raws: list[bytes], t: int) -> Block:
    """A block by owner-1 with a commit vote from every node in ``keys`` (the members once it applies)."""
    staged = led.execute(
        tuple(raws),
        time_ms=t,
        proposer="owner-1",
        term=0,
        last_commit=led.cert(led.height) if led.height else (),
    )
    block = led.sign_block(staged, keys["owner-1"])
    h = header_hash(block.header)
    led.commit(block, staged, tuple(led.vote(h, n, k) for n, k in sorted(keys.items())))
    return block


async def test_catch_up_fetches_from_a_node_added_by_membership() -> None:
    c = TestConsortium.create(n_nodes=2, ports=[free_port(), free_port()])  # equipment-1: nothing listens
    keys = {"owner-1": c.node_keys["owner-1"], "owner-2": KeyPair.generate()}
    port = free_port()
    # owner-2's chain: the block that adds it (at this port), then two more
    served = Node(
        c.genesis, MemoryStore(), "owner-2", keys["owner-2"], kinds=wiring.kinds(), routes=wiring.ROUTES
    )
    led = served.ledger
    blocks = [
        produce(
            led,
            keys,
            [membership_tx(c, "add", "owner-2", keys["owner-2"].public, f"127.0.0.1:{port}")],
            GENESIS_TIME_MS + 1000,
        )
    ]
    dev, reg = c.register_device("88.123.45/m1")
    blocks.append(produce(led, keys, [reg], GENESIS_TIME_MS + 2000))
    blocks.append(
        produce(
            led,
            keys,
            [dev.batch(c.chain, [(GENESIS_TIME_MS + 2500, "energy.import", 5, "Wh")])],
            GENESIS_TIME_MS + 3000,
        )
    )
    assert led.height == 3 and "owner-2" in led.active

    # owner-1 restored from an old copy: it holds block 1 (the addition) and nothing after
    node = Node(
        c.genesis, MemoryStore(), "owner-1", keys["owner-1"], kinds=wiring.kinds(), routes=wiring.ROUTES
    )
    drv = node.driver
    assert drv.fetcher.peers() == ["equipment-1"]
    await drv.offload(node.ledger.apply_block, blocks[0], (), {})
    drv._caught_up_block(blocks[0])  # what catch-up does after each block it applied
    assert drv.fetcher.peers() == ["equipment-1", "owner-2"]
    assert drv.api_addresses["owner-2"] == f"127.0.0.1:{port}"

    server = TestServer(served.web_app(), host="127.0.0.1", port=port)
    await server.start_server()
    await drv.fetcher.start()
    try:
        assert await drv.catchup.fetch_next() and await drv.catchup.fetch_next()
        assert node.ledger.height == 3 and node.ledger.last_hash == led.last_hash
        assert not await drv.catchup.fetch_next()  # nothing more to have
    finally:
        await drv.fetcher.close()
        await server.close()
        node.close()
        served.close()
