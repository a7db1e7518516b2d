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

from node.genesis import write_genesis
from node.server import Node
from resolver.proof import ProofError, verify_proof
from tests.resolver.conftest import basic, submit
from tests.support.testing import TestConsortium

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
