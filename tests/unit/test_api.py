"""Node API over aiohttp's test server: submission, reads, proofs, and every kind of bad input."""

from __future__ import annotations

import msgpack
import pytest
from aiohttp.test_utils import TestClient

from node import codec, merkle
from node.crypto import KeyPair
from node.types import DOMAIN_TX, Blob, ReadingBatch, Tx, UnsignedTx
from tests.support.testing import TestConsortium, TestDevice

HDR = {"Content-Type": "application/msgpack"}


async def submit(client: TestClient, raw: bytes, wait: bool = True) -> tuple[int, dict]:
    r = await client.post("/v1/txs" + ("?wait=commit" if wait else ""), data=raw, headers=HDR)
    return r.status, await r.json()


async def registered(c: TestConsortium, client: TestClient, handle: str = "88.123.45/101.1.1") -> TestDevice:
    dev, reg = c.register_device(handle)
    st, body = await submit(client, reg)
    assert st == 200 and body["result"]["ok"], body
    return dev


async def test_submit_wait_commit_and_read_back(consortium: TestConsortium, node_client, now_ms: int) -> None:
    node, client = node_client
    dev = await registered(consortium, client)
    raw = dev.batch(
        consortium.chain, [(now_ms - 1000 * i, "energy.import", 5000 + i, "Wh") for i in range(3, 0, -1)]
    )
    st, body = await submit(client, raw)
    assert st == 200 and body["status"] == "committed" and body["result"]["ok"]
    # idempotent resubmission returns the same committed outcome
    st2, body2 = await submit(client, raw)
    assert st2 == 200 and body2["height"] == body["height"]
    r = await client.get(f"/v1/txs/{body['tx']}")
    tx = await r.json()
    assert tx["kind"] == "readings" and len(tx["payload"]["readings"]) == 3
    pr = tx["proof"]
    assert merkle.verify_inclusion(
        bytes.fromhex(tx["raw"]),
        pr["leaf_index"],
        pr["tree_size"],
        [bytes.fromhex(p) for p in pr["path"]],
        bytes.fromhex(pr["header"]["tx_root"]),
    )
    assert pr["commit"], "a committed block carries this node's commit vote"
    r = await client.get("/v1/devices/88.123.45/101.1.1/readings", params={"from": now_ms - 10_000})
    rows = (await r.json())["readings"]
    assert [x["value"] for x in rows] == [5003, 5002, 5001]
    r = await client.get(
        "/v1/devices/88.123.45/101.1.1/hourly",
        params={"quantity": "energy.import", "from": now_ms - 7_200_000},
    )
    hours = (await r.json())["hours"]
    assert sum(h["count"] for h in hours) == 3
    r = await client.get("/v1/status")
    stt = await r.json()
    assert {"node_id", "height", "term", "leader"} <= stt.keys() and stt["height"] == node.ledger.height
    r = await client.get(f"/v1/blocks/{body['height']}")
    blk = await r.json()
    assert blk["txs"][0]["hash"] == body["tx"]
    r = await client.get(f"/v1/blocks/{blk['header']['hash']}")
    assert (await r.json())["header"]["height"] == body["height"]
    r = await client.get("/v1/blocks?limit=2")
    assert len((await r.json())["blocks"]) == 2
    r = await client.get("/openapi.json")
    assert "/v1/txs" in (await r.json())["paths"]
    r = await client.get("/metrics")
    assert "cemp_height" in await r.text()


async def test_pipelined_nonces_in_one_batch(consortium: TestConsortium, node_client, now_ms: int) -> None:
    _, client = node_client
    dev = await registered(consortium, client)
    raws = [dev.batch(consortium.chain, [(now_ms + i, "power", i, "W")]) for i in range(20)]
    r = await client.post("/v1/txs/batch?wait=commit", data=msgpack.packb(raws), headers=HDR)
    res = (await r.json())["results"]
    assert all(x["status"] == "committed" and x["result"]["ok"] for x in res), res


def _resign(key: KeyPair, gh: bytes, tx: Tx, **changes: object) -> bytes:
    """Re-sign ``tx`` with some fields changed: a correctly signed tx that is wrong in one respect."""
    f = {"chain_id": tx.chain_id, "kind": tx.kind, "nonce": tx.nonce, "payload": tx.payload, **changes}
    u = UnsignedTx(f["chain_id"], f["kind"], key.public, f["nonce"], Blob(f["payload"]))  # type: ignore[arg-type]
    sig = key.sign(DOMAIN_TX, gh + codec.encode(u))
    return codec.encode(Tx(u.chain_id, u.kind, u.sender, u.nonce, u.payload, sig))


BAD_CASES = [
    "malformed",
    "non_canonical",
    "wrong_chain",
    "bad_signature",
    "replayed_nonce",
    "skipped_nonce",
    "unknown_device",
    "sequence_backwards",
    "oversize_tx",
    "oversize_batch",
    "wrong_types",
    "absurd_timestamp",
    "future_timestamp",
    "unknown_kind",
    "wrong_device_key",
    "empty_body",
    "foreign_prefix",
]


@pytest.mark.parametrize("case", BAD_CASES)
async def test_bad_input_is_refused_and_changes_nothing(
    case: str, consortium: TestConsortium, node_client, now_ms: int
) -> None:
    node, client = node_client
    c = consortium
    dev = await registered(c, client)
    ok = dev.batch(c.chain, [(now_ms, "power", 1, "W")])
    st, _ = await submit(client, ok)
    assert st == 200
    height, app = node.ledger.height, node.ledger.app_hash
    good = dev.batch(c.chain, [(now_ms + 1, "power", 2, "W")])  # valid next tx, never sent
    expected = {
        "malformed": ("malformed", 400),
        "non_canonical": ("non_canonical", 400),
        "wrong_chain": ("wrong_chain", 400),
        "bad_signature": ("bad_signature", 401),
        "replayed_nonce": ("nonce_replayed", 409),
        "skipped_nonce": ("nonce_gap", 409),
        "unknown_device": ("unknown_device", 404),
        "sequence_backwards": ("sequence_backwards", 409),
        "oversize_tx": ("too_large", 413),
        "oversize_batch": ("too_large", 413),
        "wrong_types": ("bad_type", 400),
        "absurd_timestamp": ("bad_timestamp", 422),
        "future_timestamp": ("bad_timestamp", 422),
        "unknown_kind": ("unknown_kind", 400),
        "wrong_device_key": ("wrong_device_key", 403),
        "empty_body": ("malformed", 400),
        "foreign_prefix": ("not_authorized", 403),
    }[case]
    tx = codec.decode(Tx, good)
    if case == "malformed":
        raw = b"\xc1\x00garbage"
    elif case == "non_canonical":
        raw = b"\xdc\x00\x06" + good[1:]  # array16 header for a 6-element array
    elif case == "wrong_chain":
        raw = _resign(dev.key, c.chain.genesis_hash, tx, chain_id="another-chain")
    elif case == "bad_signature":
        raw = good[:-1] + bytes([good[-1] ^ 0x01])
    elif case == "replayed_nonce":
        raw = _resign(dev.key, c.chain.genesis_hash, tx, nonce=1)
    elif case == "skipped_nonce":
        raw = _resign(dev.key, c.chain.genesis_hash, tx, nonce=tx.nonce + 5)
    elif case == "unknown_device":
        stranger = TestDevice("88.123.45/nope", KeyPair.generate())
        raw = stranger.batch(c.chain, [(now_ms, "power", 1, "W")])
    elif case == "sequence_backwards":
        dev.seq = 0
        dev.nonce -= 1
        raw = dev.batch(c.chain, [(now_ms, "power", 1, "W")])
    elif case == "oversize_tx":
        raw = _resign(
            dev.key, c.chain.genesis_hash, tx, payload=b"\x00" * (c.genesis.params.max_tx_bytes + 1)
        )
    elif case == "oversize_batch":
        dev.nonce -= 1
        dev.seq -= 1
        n = c.genesis.params.max_batch_readings + 1
        raw = dev.batch(c.chain, [(now_ms, "power", 1, "W")] * n)
    elif case == "wrong_types":
        raw = msgpack.packb([c.chain_id, "readings", dev.key.public, "one", b"", b"\x00" * 64])
    elif case == "absurd_timestamp":
        dev.nonce -= 1
        dev.seq -= 1
        raw = dev.batch(c.chain, [(1000, "power", 1, "W")])
    elif case == "future_timestamp":
        dev.nonce -= 1
        dev.seq -= 1
        raw = dev.batch(c.chain, [(now_ms + 86_400_000, "power", 1, "W")])
    elif case == "unknown_kind":
        raw = _resign(dev.key, c.chain.genesis_hash, tx, kind="mint.coins")
    elif case == "wrong_device_key":
        imposter = TestDevice(dev.handle, KeyPair.generate(), seq=dev.seq)
        raw = imposter.batch(c.chain, [(now_ms, "power", 1, "W")])
    elif case == "empty_body":
        raw = b""
    elif case == "foreign_prefix":
        _, raw = c.register_device("88.999.1/x")
    st, body = await submit(client, raw)
    assert (body.get("code"), st) == expected, body
    assert isinstance(body.get("message"), str) and len(body["message"]) > 10
    # Nothing written: no new block, same state, empty mempool.
    assert (node.ledger.height, node.ledger.app_hash, len(node.mempool)) == (height, app, 0)
    # And the device can still go on with its valid next tx.
    if case not in (
        "sequence_backwards",
        "oversize_batch",
        "absurd_timestamp",
        "future_timestamp",
        "oversize_tx",
    ):
        st, body = await submit(client, good)
        assert st == 200 and body["result"]["ok"], body


async def test_bad_queries_are_4xx_json(node_client) -> None:
    _, client = node_client
    for path in [
        "/v1/txs/zz",
        "/v1/txs/" + "00" * 32,
        "/v1/blocks/999",
        "/v1/blocks/nothex",
        "/v1/devices/88.1/none/readings",
        "/v1/blocks?limit=abc",
        "/v1/nowhere",
        "/v1/nonces/12",
    ]:
        r = await client.get(path)
        assert 400 <= r.status < 500, path
        body = await r.json()
        assert body["code"] and body["message"], path
    r = await client.post("/v1/txs/batch", data=b"\x93\x01\x02\x03", headers=HDR)
    assert r.status == 400 and (await r.json())["code"] == "bad_type"


def test_readings_payload_types() -> None:
    # ReadingBatch of a foreign shape is refused by the codec with a path in the message.
    raw = msgpack.packb(["88.1/x", [[1, 2, "q", 1.5, "W", 0]]])
    try:
        codec.decode(ReadingBatch, raw)
    except Exception as e:
        assert "readings[0].value" in str(e)
    else:
        raise AssertionError("float accepted")


async def test_concurrent_batches_are_admitted_in_arrival_order(
    consortium: TestConsortium, node_client, now_ms: int
) -> None:
    """A big batch (nonces 1..400) and a small one right behind it (401..405): the small one's signatures are
    checked first, yet it must not be refused as a nonce gap."""
    import asyncio

    _, client = node_client
    dev = await registered(consortium, client)
    big = [dev.batch(consortium.chain, [(now_ms - 500_000 + i, "power", i, "W")]) for i in range(400)]
    small = [dev.batch(consortium.chain, [(now_ms - 1000 + i, "power", i, "W")]) for i in range(5)]

    async def post(raws: list[bytes]) -> list[dict]:
        r = await client.post("/v1/txs/batch?wait=commit", data=msgpack.packb(raws), headers=HDR)
        return (await r.json())["results"]

    t_big = asyncio.create_task(post(big))
    await asyncio.sleep(0)
    res_small = await post(small)
    res_big = await t_big
    assert all(x["status"] == "committed" and x["result"]["ok"] for x in res_big + res_small), [
        x for x in res_big + res_small if x["status"] != "committed"
    ][:2]
