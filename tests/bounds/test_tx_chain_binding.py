"""A tx signature covers the genesis hash: a tx signed for one chain is refused by another chain that happens
to use the same chain id (issue 8: it was accepted)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from cemp import wiring
from node import codec
from node.chain import Ledger, genesis_hash, tx_signature_ok
from node.errors import CempError, Code
from node.server import Node
from node.store import MemoryStore
from node.types import Tx
from tests.support.testing import TestConsortium

HDR = {"Content-Type": "application/msgpack"}


async def test_tx_for_a_twin_chain_is_refused(
    consortium: TestConsortium, node_client: tuple[Node, TestClient]
) -> None:
    _, client = node_client
    twin = TestConsortium.create(n_nodes=1, chain_id=consortium.chain_id)
    twin.admins["owner"] = consortium.admins["owner"]  # the same org key signs on both chains
    assert twin.chain_id == consortium.chain_id and twin.chain != consortium.chain
    _, reg = twin.register_device("88.123.45/101.1.9")
    r = await client.post("/v1/txs?wait=commit", data=reg, headers=HDR)
    assert r.status == 401 and (await r.json())["code"] == "bad_signature"
    # the same registration signed for this chain goes through
    _, ok = consortium.register_device("88.123.45/101.1.9")
    r = await client.post("/v1/txs?wait=commit", data=ok, headers=HDR)
    assert r.status == 200 and (await r.json())["result"]["ok"]
    tx = codec.decode(Tx, ok)
    assert tx_signature_ok(genesis_hash(consortium.genesis), tx, ok)
    assert not tx_signature_ok(genesis_hash(twin.genesis), tx, ok)


def test_ledger_refuses_the_signature_of_a_twin_chain(consortium: TestConsortium) -> None:
    twin = TestConsortium.create(n_nodes=1, chain_id=consortium.chain_id)
    twin.admins = consortium.admins
    _, reg = twin.register_device("88.123.45/101.1.9")
    led = Ledger(MemoryStore(), consortium.genesis, wiring.kinds())
    d = led.decode_tx(reg)
    with pytest.raises(CempError) as e:
        led.check_signature(d)
    assert e.value.code == Code.BAD_SIGNATURE
