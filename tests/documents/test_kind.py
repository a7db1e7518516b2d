"""The ``document`` kind through an in-process node: who may send, duplicates, confirmation, bad payloads."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient

from node import codec, schema
from node.chain import ChainRef, sign_tx
from node.crypto import KeyPair
from node.documents import DocField, DocumentPayload, document_id, make_fields, payload_id
from node.server import Node
from node.store import prefix_stop
from node.types import DOMAIN_TX, Blob, Hash32, Nonce, ShortStr, SignedInt, Text, Tx, UnsignedTx
from tests.documents.conftest import SCANNER, bill_payload, bill_values, register, sign, submit
from tests.support.testing import TestConsortium


def document_keys(node: Node) -> list[bytes]:
    return [k for k, _ in node.ledger.store.iterate(b"x", prefix_stop(b"x"))]


async def get_doc(client: TestClient, doc_id: bytes, **params: Any) -> tuple[int, dict[str, Any]]:
    r = await client.get(f"/v1/documents/{doc_id.hex()}", params={k: str(v) for k, v in params.items()})
    return r.status, await r.json()


async def test_scanner_submits_a_bill_and_it_reads_back(consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    c = consortium
    dev = await register(c, client)
    p = bill_payload(review="needs_review")
    st, body = await submit(client, sign(dev.key, c.chain, 1, p))
    assert st == 200 and body["result"]["ok"], body
    doc_id = document_id(p.source_sha256, "electricity_bill", 0)
    st, doc = await get_doc(client, doc_id)
    assert st == 200
    assert doc["id"] == doc_id.hex() and doc["version"] == 1 and doc["current_version"] == 1
    assert doc["org"] == "owner" and doc["sender_role"] == "device" and doc["device"] == SCANNER
    assert doc["source_sha256"] == p.source_sha256.hex() and doc["tx"] == body["tx"]
    assert doc["fields"]["energy_wh"] == 7_986_000 and doc["fields"]["account"] == "5127336124"
    assert doc["history"] == [
        {"version": 1, "tx": body["tx"], "height": body["height"], "review": "needs_review"}
    ]
    for query in ({}, {"doc_type": "electricity_bill"}, {"review": "needs_review"}):
        r = await client.get("/v1/documents", params=query)
        assert [d["id"] for d in (await r.json())["documents"]] == [doc_id.hex()], query
    r = await client.get("/v1/documents", params={"doc_type": "settlement_row"})
    assert (await r.json())["documents"] == []
    r = await client.get(f"/v1/txs/{body['tx']}")
    tx = await r.json()
    assert tx["kind"] == "document" and tx["payload"]["fields"]["amount_fen"] == 436_994
    assert tx["payload"]["id"] == doc_id.hex()


async def test_list_is_newest_first_with_a_cursor(consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    ids = []
    for i in range(3):
        p = bill_payload(f"image-{i}".encode())
        st, _ = await submit(client, sign(dev.key, consortium.chain, i + 1, p))
        assert st == 200
        ids.append(payload_id(p).hex())
    r = await client.get("/v1/documents", params={"limit": "2"})
    page = await r.json()
    assert [d["id"] for d in page["documents"]] == ids[::-1][:2] and page["next"]
    r = await client.get("/v1/documents", params={"limit": "2", "before": page["next"]})
    assert [d["id"] for d in (await r.json())["documents"]] == ids[:1]
    for bad in ({"limit": "0"}, {"doc_type": "poem"}, {"review": "maybe"}, {"before": "x"}):
        r = await client.get("/v1/documents", params=bad)
        assert r.status == 400, bad
    r = await client.get("/v1/documents/zz")
    assert r.status == 400
    st, body = await get_doc(client, b"\x01" * 32)
    assert st == 404 and body["code"] == "not_found"


async def test_identical_bytes_are_idempotent_and_a_second_document_is_refused(
    consortium: TestConsortium, doc_node
) -> None:
    node, client = doc_node
    c = consortium
    dev = await register(c, client)
    p = bill_payload()
    raw = sign(dev.key, c.chain, 1, p)
    st, first = await submit(client, raw)
    assert st == 200 and first["result"]["ok"]
    st, again = await submit(client, raw)
    assert st == 200 and again["status"] == "committed" and again["height"] == first["height"]
    before = (node.ledger.height, node.ledger.app_hash)
    # The same document signed again (new nonce) or with other fields: the id is taken.
    for nonce, payload in ((2, p), (2, bill_payload(values=bill_values(energy_wh=1)))):
        st, body = await submit(client, sign(dev.key, c.chain, nonce, payload))
        assert st == 409 and body["code"] == "already_exists", body
        assert payload_id(p).hex() in body["message"]
    # An org admin without 'confirmed' cannot overwrite it either.
    st, body = await submit(client, c.admin_tx("owner", "document", bill_payload(device=None)))
    assert st == 409 and body["code"] == "already_exists"
    assert (node.ledger.height, node.ledger.app_hash) == before


async def test_senders_that_may_not_write_documents(consortium: TestConsortium, doc_node) -> None:
    node, client = doc_node
    c = consortium
    dev = await register(c, client)
    meter = await register(c, client, "88.123.45/101.1.1", kind="meter.energy")
    before = (node.ledger.height, node.ledger.app_hash)
    stranger = KeyPair.generate()
    cases = [
        ("wrong key", sign(stranger, c.chain, 1, bill_payload()), 403, "wrong_device_key"),
        (
            "unregistered scanner",
            sign(stranger, c.chain, 1, bill_payload(device="88.123.45/900.9")),
            404,
            "unknown_device",
        ),
        (
            "not a scanner",
            sign(meter.key, c.chain, 1, bill_payload(device="88.123.45/101.1.1")),
            403,
            "not_authorized",
        ),
        (
            "no device, no admin",
            sign(stranger, c.chain, 1, bill_payload(device=None)),
            403,
            "not_authorized",
        ),
        (
            "device claims a person's review",
            sign(dev.key, c.chain, 1, bill_payload(review="confirmed")),
            403,
            "not_authorized",
        ),
        (
            "device sends a ledger row",
            sign(
                dev.key,
                c.chain,
                1,
                bill_payload(doc_type=ShortStr("settlement_row"), row=2, media_type=Text("text/csv")),
            ),
            403,
            "not_authorized",
        ),
        (
            "another org's admin names the scanner",
            c.admin_tx("equipment", "document", bill_payload(), nonce=1),
            403,
            "not_authorized",
        ),
    ]
    for what, raw, status, code in cases:
        st, body = await submit(client, raw)
        assert (st, body["code"]) == (status, code), (what, body)
    assert (node.ledger.height, node.ledger.app_hash) == before
    assert document_keys(node) == []


async def test_admin_confirmation_supersedes_and_keeps_history(consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    c = consortium
    dev = await register(c, client)
    p1 = bill_payload(review="needs_review", values=bill_values(energy_wh=7_980_000))
    st, v1 = await submit(client, sign(dev.key, c.chain, 1, p1))
    assert st == 200 and v1["result"]["ok"]
    doc_id = payload_id(p1)
    r = await client.get("/v1/documents", params={"review": "needs_review"})
    assert len((await r.json())["documents"]) == 1

    corrected = bill_payload(review="confirmed", supersedes=bytes.fromhex(v1["tx"]))
    # Only the owning org's admin may confirm; a device may not; the version named must be the current one.
    st, body = await submit(client, c.admin_tx("equipment", "document", corrected))
    assert st == 403 and body["code"] == "not_authorized"
    st, body = await submit(client, sign(dev.key, c.chain, 2, corrected))
    assert st == 403 and body["code"] == "not_authorized"
    st, body = await submit(client, c.admin_tx("owner", "document", bill_payload(review="confirmed")))
    assert st == 409 and body["code"] == "already_exists"  # no 'supersedes'
    st, body = await submit(
        client,
        c.admin_tx(
            "owner", "document", dataclasses.replace(corrected, media_type=Text("image/jpeg")), nonce=2
        ),
    )
    assert st == 422 and "media_type" in body["message"]

    # (the owner admin's nonce 1 registered the scanner; refused txs used none)
    st, v2 = await submit(client, c.admin_tx("owner", "document", corrected, nonce=2))
    assert st == 200 and v2["result"]["ok"], v2
    st, doc = await get_doc(client, doc_id)
    assert doc["version"] == 2 and doc["review"] == "confirmed" and doc["sender_role"] == "admin"
    assert doc["fields"]["energy_wh"] == 7_986_000 and doc["supersedes"] == v1["tx"]
    assert [(h["version"], h["tx"], h["review"]) for h in doc["history"]] == [
        (1, v1["tx"], "needs_review"),
        (2, v2["tx"], "confirmed"),
    ]
    st, old = await get_doc(client, doc_id, version=1)
    assert old["version"] == 1 and old["fields"]["energy_wh"] == 7_980_000 and old["current_version"] == 2
    r = await client.get("/v1/documents", params={"review": "needs_review"})
    assert (await r.json())["documents"] == []
    r = await client.get("/v1/documents")
    assert [d["version"] for d in (await r.json())["documents"]] == [2]  # one document, listed once

    # A correction made on a stale screen (naming version 1) is refused; naming version 2 is a third version.
    st, body = await submit(client, c.admin_tx("owner", "document", corrected))
    assert st == 409 and "version 2" in body["message"]
    again = dataclasses.replace(corrected, supersedes=Hash32(bytes.fromhex(v2["tx"])))
    st, v3 = await submit(client, c.admin_tx("owner", "document", again, nonce=3))
    assert st == 200 and v3["result"]["ok"]
    assert (await get_doc(client, doc_id))[1]["current_version"] == 3
    # Superseding a document that does not exist.
    ghost = bill_payload(b"other image", review="confirmed", supersedes=b"\x02" * 32)
    st, body = await submit(client, c.admin_tx("owner", "document", ghost))
    assert st == 404 and body["code"] == "not_found"


async def test_admin_imports_ledger_rows(consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    c = consortium
    row = bill_payload(
        b"ledger.csv",
        device=None,
        doc_type=ShortStr("purchase_ledger_row"),
        row=3,
        media_type=Text("text/csv"),
        values={"period_start": "2025-01-01", "period_end": "2025-01-31", "energy_wh": 1_000_000},
    )
    st, body = await submit(client, c.admin_tx("equipment", "document", row))
    assert st == 200 and body["result"]["ok"]
    st, doc = await get_doc(client, document_id(row.source_sha256, "purchase_ledger_row", 3))
    assert doc["org"] == "equipment" and doc["row"] == 3 and doc["device"] is None
    # The next row of the same file is another document.
    st, body = await submit(client, c.admin_tx("equipment", "document", dataclasses.replace(row, row=4)))
    assert st == 200 and body["result"]["ok"]


def _f(name: str, i: int | None = None, t: str | None = None) -> DocField:
    return DocField(
        ShortStr(name), SignedInt(i) if i is not None else None, Text(t) if t is not None else None
    )


def _with_fields(*extra: DocField, drop: str = "") -> tuple[DocField, ...]:
    base = [f for f in make_fields(bill_values()) if f.name != drop]
    return tuple(sorted([*base, *extra], key=lambda f: f.name))


BAD_PAYLOADS: dict[str, tuple[dict[str, Any], int, str]] = {
    "too many fields": (
        {"fields": _with_fields(*(_f(f"x.n{i:03d}", i) for i in range(60)))},
        413,
        "too_large",
    ),
    "both values": ({"fields": _with_fields(_f("note", 1, "one"))}, 422, "invalid_payload"),
    "neither value": ({"fields": _with_fields(_f("note"))}, 422, "invalid_payload"),
    "upper-case name": ({"fields": _with_fields(_f("Note", 1))}, 422, "invalid_payload"),
    "empty name part": ({"fields": _with_fields(_f("tariff..x", 1))}, 422, "invalid_payload"),
    "name with a trailing newline": ({"fields": _with_fields(_f("note\n", 1))}, 422, "invalid_payload"),
    "name starts with a digit": ({"fields": _with_fields(_f("1st", 1))}, 422, "invalid_payload"),
    "reserved name": ({"fields": _with_fields(_f("review", t="auto"))}, 422, "invalid_payload"),
    "unsorted": ({"fields": tuple(reversed(make_fields(bill_values())))}, 422, "invalid_payload"),
    "duplicate": ({"fields": _with_fields(_f("energy_wh", 1))}, 422, "invalid_payload"),
    "no fields": ({"fields": ()}, 422, "invalid_payload"),
    "missing required": ({"fields": _with_fields(drop="amount_fen")}, 422, "invalid_payload"),
    "required of the wrong type": (
        {"fields": _with_fields(_f("amount_fen", t="4369.94"), drop="amount_fen")},
        422,
        "invalid_payload",
    ),
    "not a date": (
        {"fields": _with_fields(_f("period_end", t="2025-02-30"), drop="period_end")},
        422,
        "invalid_payload",
    ),
    "period backwards": (
        {"fields": _with_fields(_f("period_end", t="2024-12-31"), drop="period_end")},
        422,
        "invalid_payload",
    ),
    "control character": ({"fields": _with_fields(_f("note", t="a\x00b"))}, 422, "invalid_payload"),
    "text too long": ({"fields": _with_fields(_f("note", t="x" * 1025))}, 400, "bad_type"),
    "name too long": ({"fields": _with_fields(_f("n" * 65, 1))}, 400, "bad_type"),
    "unknown doc type": ({"doc_type": ShortStr("poem")}, 422, "invalid_payload"),
    "bill with a row number": ({"row": 1}, 422, "invalid_payload"),
    "bad media type": ({"media_type": Text("PNG image")}, 422, "invalid_payload"),
    "unknown review": ({"review": ShortStr("looks fine")}, 422, "invalid_payload"),
    "supersedes without confirmed": ({"supersedes": Hash32(b"\x01" * 32)}, 422, "invalid_payload"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
async def test_bad_payload_is_refused_and_writes_nothing(
    case: str, consortium: TestConsortium, doc_node
) -> None:
    node, client = doc_node
    c = consortium
    dev = await register(c, client)
    changes, status, code = BAD_PAYLOADS[case]
    payload = dataclasses.replace(bill_payload(), **changes)
    before = (node.ledger.height, node.ledger.app_hash)
    st, body = await submit(client, sign(dev.key, c.chain, 1, payload))
    assert (st, body["code"]) == (status, code), body
    assert (node.ledger.height, node.ledger.app_hash) == before
    assert document_keys(node) == []
    # The nonce was not used: a good document goes in with nonce 1.
    st, body = await submit(client, sign(dev.key, c.chain, 1, bill_payload()))
    assert st == 200 and body["result"]["ok"]


async def test_floats_cannot_be_encoded_or_smuggled_in(consortium: TestConsortium, doc_node) -> None:
    node, client = doc_node
    c = consortium
    dev = await register(c, client)
    with pytest.raises(TypeError):
        codec.encode(DocField(ShortStr("energy_wh"), 7986.0, None))  # type: ignore[arg-type]
    # A hand-made payload whose int_value is a msgpack float: correctly signed, refused by the codec.
    wire: list[Any] = codec.to_wire(bill_payload())  # type: ignore[assignment]
    fields = [list(f) for f in wire[5]]
    for f in fields:
        if f[0] == "energy_wh":
            f[1] = 7986.0
    wire[5] = fields
    payload = Blob(msgpack.packb(wire, use_bin_type=True))
    u = UnsignedTx(ShortStr(c.chain_id), ShortStr("document"), dev.key.public, Nonce(1), payload)
    raw = codec.encode(
        Tx(
            u.chain_id,
            u.kind,
            u.sender,
            u.nonce,
            u.payload,
            dev.key.sign(DOMAIN_TX, c.chain.genesis_hash + codec.encode(u)),
        )
    )
    before = node.ledger.app_hash
    st, body = await submit(client, raw)
    assert st == 400 and body["code"] == "bad_type" and "fields" in body["message"], body
    assert node.ledger.app_hash == before and document_keys(node) == []


async def test_invalid_inside_a_block_is_marked_identically(consortium: TestConsortium, doc_node) -> None:
    """Two txs for the same id admitted concurrently: the mempool refuses the second (pending head)."""
    node, client = doc_node
    c = consortium
    dev = await register(c, client)
    p = bill_payload()
    raws = [sign(dev.key, c.chain, 1, p), sign(dev.key, c.chain, 2, p)]
    r = await client.post(
        "/v1/txs/batch?wait=commit", data=msgpack.packb(raws), headers={"Content-Type": "x"}
    )
    res = (await r.json())["results"]
    assert res[0]["status"] == "committed" and res[0]["result"]["ok"]
    assert res[1]["status"] == "rejected" and res[1]["code"] == "already_exists"
    versions = [k for k in document_keys(node) if k.startswith(b"xv")]
    assert len(versions) == 1
    raw_rec = node.ledger.store.get(schema.document(payload_id(p)))
    assert raw_rec is not None


def test_sign_tx_payload_round_trip() -> None:
    p = bill_payload()
    raw, _ = sign_tx(KeyPair.generate(), ChainRef("c", b"\0" * 32), "document", 1, p)
    tx = codec.decode(Tx, raw)
    assert codec.decode(DocumentPayload, tx.payload) == p
