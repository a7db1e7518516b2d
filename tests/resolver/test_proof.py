"""Proofs: ``?proof=true`` plus ``verify-proof`` with only the genesis; tampering is caught."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cemp import wiring
from node.chain import Ledger, header_hash, sign_tx
from node.crypto import KeyPair
from node.genesis import write_genesis
from node.keyrotation import DOMAIN_KEY_POSSESSION, NodeKeyRotation, claim_message
from node.server import Node
from node.state import StateView
from node.store import MemoryStore
from node.types import Height, PublicKey, ShortStr
from resolver.handles import load_record
from resolver.proof import ProofError, build, verify_proof
from resolver.values import value_to_json
from tests.resolver.conftest import basic, submit
from tests.support.testing import GENESIS_TIME_MS, TestConsortium

Fixture = tuple[Node, TestClient, TestConsortium]


async def _proven(client: TestClient, handle: str) -> dict[str, Any]:
    r = await client.get(f"/api/handles/{handle}?proof=true")
    assert r.status == 200
    return await r.json()  # type: ignore[no-any-return]


async def test_values_from_two_txs_are_proven(resolver_node: Fixture) -> None:
    _, client, c = resolver_node
    h = "88.123.45/proved"
    body = {
        "values": [
            {"index": 1, "type": "URL", "data": "https://a.example"},
            {"index": 2, "type": "NOTE", "data": "n"},
        ]
    }
    assert (await client.put(f"/api/handles/{h}", json=body, headers=basic())).status == 200
    one = {"index": 1, "type": "URL", "data": "https://b.example"}
    assert (await client.put(f"/api/handles/{h}?index=1", json=one, headers=basic())).status == 200
    doc = await _proven(client, h)
    out = verify_proof(doc, c.genesis)
    assert out["ok"] and out["values"] == [1, 2, 100] and out["txs"] == 2


async def test_device_register_values_are_proven(resolver_node: Fixture) -> None:
    _, client, c = resolver_node
    _, raw = c.register_device("88.123.45/101.1.1")
    await submit(client, raw)
    doc = await _proven(client, "88.123.45/101.1.1")
    assert verify_proof(doc, c.genesis)["values"] == [100, 300, 1000, 1001, 2000, 2002, 2005, 2006]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["values"][0]["data"].__setitem__("value", "https://evil.example"),
        lambda d: d["values"][0].__setitem__("timestamp", "2020-01-01T00:00:00Z"),
        lambda d: d["proof"]["txs"][0].__setitem__("path", ["00" * 32]),
        lambda d: d["proof"]["txs"][0].__setitem__("commit", []),
        lambda d: d["proof"]["txs"][0].__setitem__("header_signature", "00" * 64),
        lambda d: d["proof"]["txs"][0].__setitem__("result", "920e00"),  # claims "invalid"
        lambda d: d.__setitem__("handle", "88.123.45/other"),
        lambda d: d["proof"].__setitem__("values", []),
    ],
)
async def test_tampering_is_caught(resolver_node: Fixture, tamper: Any) -> None:
    _, client, c = resolver_node
    body = {"values": [{"index": 1, "type": "URL", "data": "https://a.example"}]}
    await client.put("/api/handles/88.123.45/t", json=body, headers=basic())
    doc = await _proven(client, "88.123.45/t")
    bad = copy.deepcopy(doc)
    tamper(bad)
    with pytest.raises(ProofError):
        verify_proof(bad, c.genesis)


async def test_wrong_genesis_fails(resolver_node: Fixture) -> None:
    _, client, _ = resolver_node
    doc = await _proven(client, "88.123.45/admin")
    with pytest.raises(ProofError):
        verify_proof(doc, TestConsortium.create().genesis)  # same chain id, other keys


async def test_verify_proof_command(resolver_node: Fixture, tmp_path: Path) -> None:
    _, client, c = resolver_node
    doc = await _proven(client, "88.123.45/admin")
    write_genesis(c.genesis, tmp_path / "genesis.cemp")
    (tmp_path / "p.json").write_text(json.dumps(doc))
    cmd = [sys.executable, "-m", "resolver.cli", "verify-proof", "--genesis", str(tmp_path / "genesis.cemp")]
    ok = subprocess.run([*cmd, str(tmp_path / "p.json")], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["ok"] is True
    doc["values"][0]["ttl"] = 1
    bad = subprocess.run([*cmd, "-"], input=json.dumps(doc), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False


def test_a_block_after_a_node_key_rotation_is_proven_from_the_genesis_alone() -> None:
    """owner-1's key rotates at block 3 (its tx in block 1); a device registered in block 4, signed and voted on
    with the new key, verifies offline with the genesis plus the proof's key change; without it, it does not."""
    c = TestConsortium.create(3)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    nid = "owner-1"
    new = KeyPair.generate()
    keys = dict(c.node_keys)

    def produce(raws: list[bytes]) -> None:
        height = led.height + 1
        if height >= 3:
            keys[nid] = new
        staged = led.execute(
            tuple(raws),
            time_ms=GENESIS_TIME_MS + 3_600_000 + 1000 * height,
            proposer=nid,
            term=0,
            last_commit=led.cert(led.height) if led.height else (),
        )
        block = led.sign_block(staged, keys[nid])
        bh = header_hash(block.header)
        led.commit(block, staged, tuple(led.vote(bh, n, k) for n, k in sorted(keys.items())))

    pos = new.sign(DOMAIN_KEY_POSSESSION, claim_message(c.chain.genesis_hash, nid, new.public, 3))
    rot = NodeKeyRotation(ShortStr(nid), PublicKey(new.public), Height(3), pos)
    produce([sign_tx(c.node_keys[nid], c.chain, "node.key_rotate", 1, rot)[0]])
    produce([])
    produce([])
    _, reg = c.register_device("88.123.45/101.5.1")
    produce([reg])
    assert led.results(1)[0].code == 0 and led.results(4)[0].code == 0
    rec = load_record(StateView(led.store), "88.123.45/101.5.1")
    assert rec is not None
    values = list(rec.values)
    doc = {
        "handle": rec.handle,
        "values": [value_to_json(sv) for sv in values],
        "proof": build(led, rec, values),
    }
    out = verify_proof(json.loads(json.dumps(doc)), c.genesis)
    assert out["ok"] and out["blocks"] == [4] and out["key_changes"] == 1, out
    stripped = copy.deepcopy(doc)
    stripped["proof"]["key_changes"] = []
    with pytest.raises(ProofError, match="key of that height"):
        verify_proof(stripped, c.genesis)
    forged = copy.deepcopy(doc)  # a key change whose certificate is dropped does not count
    forged["proof"]["key_changes"][0]["commit"] = []
    with pytest.raises(ProofError, match="commit votes"):
        verify_proof(forged, c.genesis)
