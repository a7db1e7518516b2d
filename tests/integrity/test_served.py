"""A node never serves what it cannot vouch for: blocks read from disk are checked before they are served, and a
read that hits damaged storage answers one clear 503 JSON error (logged once), never a 500 or a traceback.

Finding reproduced: a readings route answered 500 on a store with a damaged table block."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from node import codec, integrity, schema
from node.chain import Ledger
from node.crypto import sha256
from node.server import Node
from node.store import LevelDBStore, StorageError
from node.types import Block
from node.watermark import Watermark, path_beside
from tests.integrity.leveldb_files import first_block
from tests.support.testing import GENESIS_TIME_MS, TestConsortium
from tests.unit.test_ledger import produce

T0 = GENESIS_TIME_MS + 86_400_000
HANDLE = "88.123.45/101.1.1"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TestConsortium]:
    """A one-node chain of 21 blocks, 1,200 readings, flushed into a table file by a reopen."""
    d = tmp_path_factory.mktemp("chain") / "ledger"
    c = TestConsortium.create()
    store = LevelDBStore(d)
    led = Ledger(store, c.genesis, wiring.kinds(), Watermark(path_beside(d)))
    dev, reg = c.register_device(HANDLE)
    produce(led, c, [reg], T0)
    t = T0
    for _ in range(20):
        rows = [(t + k * 1000, "energy.import", k, "Wh") for k in range(60)]
        t += 600_000
        produce(led, c, [dev.batch(c.chain, rows)], t)
    store.close()
    LevelDBStore(d, create=False).close()  # reopening writes the log into a table
    assert list(d.glob("*.ldb"))
    return d, c


def open_node(ledger: Path, c: TestConsortium) -> Node:
    nid = c.genesis.nodes[0].node_id
    store = LevelDBStore(ledger, create=False)
    try:
        return Node(
            c.genesis,
            store,
            nid,
            c.node_keys[nid],
            kinds=wiring.kinds(),
            routes=wiring.ROUTES,
            watermark=Watermark(path_beside(ledger)),
        )
    except BaseException:
        store.close()
        raise


async def client_for(node: Node) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        node.close()


def copy_chain(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest / "ledger")
    shutil.copy(path_beside(src), path_beside(dest / "ledger"))
    return dest / "ledger"


async def test_tampered_old_block_is_not_served(
    chain: tuple[Path, TestConsortium],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, c = chain
    ledger = copy_chain(src, tmp_path)
    store = LevelDBStore(ledger, create=False)
    raw = store.get(schema.block(2))
    assert raw is not None
    tx_hash = sha256(codec.decode(Block, raw).txs[0])
    bad = bytearray(raw)
    bad[-7] ^= 0x04
    store.write({schema.block(2): bytes(bad)}, sync=True)
    store.close()
    # With the default head window the node refuses to start at all.
    with pytest.raises(StorageError, match="reading block 2"):
        open_node(ledger, c)
    # A block below a (here tiny) head window is checked when it is read, before it is served.
    monkeypatch.setattr(integrity, "HEAD_WINDOW", 3)
    node = open_node(ledger, c)
    caplog.set_level(logging.ERROR, logger="node.api")
    async for client in client_for(node):
        for path in (
            "/v1/blocks/2",
            "/v1/blocks/2?format=msgpack",
            f"/v1/txs/{tx_hash.hex()}",
            "/v1/blocks/2",
        ):
            r = await client.get(path)
            assert r.status == 503, path
            body = await r.json()
            assert body["code"] == "storage_corrupted" and "block 2" in body["message"], body
        assert (await client.get("/v1/blocks/5")).status == 200
    logged = [r for r in caplog.records if "storage corrupted" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]


def table_blocks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every block of a table file, found trailer by trailer."""
    out = []
    off = 0
    while off < len(data) - 48:
        size, _ = first_block(data[off:])
        out.append((off, size))
        off += size + 5
    return out


async def test_damaged_table_block_gives_json_errors_never_500(
    chain: tuple[Path, TestConsortium], tmp_path: Path
) -> None:
    src, c = chain
    (table,) = src.glob("*.ldb")
    blocks = table_blocks(table.read_bytes())
    assert len(blocks) >= 4
    outcomes: dict[str, int] = {"refused to start": 0, "readings 503": 0}
    for i, (off, size) in enumerate(blocks):
        ledger = copy_chain(src, tmp_path / str(i))
        t = ledger / table.name
        data = bytearray(t.read_bytes())
        data[off + size // 2] ^= 0x01
        t.write_bytes(bytes(data))
        try:
            node = open_node(ledger, c)
        except StorageError as e:
            assert str(e).startswith("storage corrupted:") and str(ledger) in str(e), str(e)
            outcomes["refused to start"] += 1
            continue
        async for client in client_for(node):
            for path in (
                f"/v1/devices/{HANDLE}/readings?limit=10000",
                f"/v1/devices/{HANDLE}/hourly?quantity=energy.import",
                f"/v1/devices/{HANDLE}",
                "/v1/devices",
                "/v1/blocks",
                "/v1/blocks/3",
                "/v1/status",
            ):
                r = await client.get(path)
                assert r.status in (200, 503), (path, r.status, await r.text())
                body = await r.json()
                if r.status == 503:
                    assert body["code"] == "storage_corrupted" and "Corruption" in body["message"], body
                    if "/readings" in path:
                        outcomes["readings 503"] += 1
    assert outcomes["readings 503"] >= 1, outcomes
    assert outcomes["refused to start"] >= 1, outcomes
