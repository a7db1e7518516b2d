"""The bill scanner against an in-process node, with a stand-in for OCR: the inbox as a durable outbox."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from collector.scanner import SIDECAR_SUFFIX, BillScanner, ScannerSettings
from node import codec
from node.documents import document_id
from node.types import Tx
from tests.documents.conftest import SCANNER, bill_payload, bill_values, register, sign, submit
from tests.support.testing import TestConsortium, TestDevice, free_port
from tests.support.wait import wait_until


def fake_ocr(data: bytes) -> Mapping[str, int | str]:
    """What ``read_bill(...).to_document_fields()`` returns, without the OCR; 'garbage' is unreadable."""
    if b"garbage" in data:
        raise ValueError("not a decodable image")
    energy = 1000 * (1 + data[-1])
    return {
        "doc_type": "electricity_bill",
        "image_sha256": hashlib.sha256(data).hexdigest(),
        "review": "needs_review" if data[-1] % 2 else "auto",
        **bill_values(energy_wh=energy),
    }


def image(n: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"bill image " + bytes([n])


def url(client: TestClient) -> str:
    return str(client.make_url(""))


def scanner(inbox: Path, dev: TestDevice, *urls: str, device: str = SCANNER) -> BillScanner:
    settings = ScannerSettings(
        nodes=urls,
        settle_s=0,
        poll_interval_s=0.01,
        retry_base_s=0.01,
        retry_max_s=0.05,
        commit_timeout_ms=5000,
    )
    return BillScanner(inbox, dev.key, device, settings, extract=fake_ocr)


async def nonce(client: TestClient, dev: TestDevice) -> int:
    r = await client.get(f"/v1/nonces/{dev.key.public.hex()}")
    return int((await r.json())["nonce"])


async def documents(client: TestClient) -> list[dict[str, Any]]:
    r = await client.get("/v1/documents", params={"limit": "100"})
    return list((await r.json())["documents"])


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.is_file())


async def test_images_are_committed_then_moved_to_done(
    tmp_path: Path, consortium: TestConsortium, doc_node
) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    for n in (1, 2):
        (tmp_path / f"bill{n}.png").write_bytes(image(n))
    (tmp_path / "notes.txt").write_text("not an image")
    sc = scanner(tmp_path, dev, url(client))
    try:
        assert await sc.scan_once() == 0
    finally:
        await sc.aclose()
    assert names(tmp_path) == ["notes.txt"]
    assert names(tmp_path / "done") == [
        "bill1.png",
        "bill1.png.cemp-tx",
        "bill1.png.receipt.json",
        "bill2.png",
        "bill2.png.cemp-tx",
        "bill2.png.receipt.json",
    ]
    docs = await documents(client)
    assert sorted(d["source_sha256"] for d in docs) == sorted(
        hashlib.sha256(image(n)).hexdigest() for n in (1, 2)
    )
    assert {d["review"] for d in docs} == {"auto", "needs_review"}
    receipt = json.loads((tmp_path / "done" / "bill1.png.receipt.json").read_text())
    assert (
        receipt["document_id"] == document_id(hashlib.sha256(image(1)).digest(), "electricity_bill", 0).hex()
    )
    assert await nonce(client, dev) == 2 and sc.stats.committed == 2


async def test_restart_resends_the_signed_bytes_instead_of_signing_again(
    tmp_path: Path, consortium: TestConsortium, doc_node
) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    img = tmp_path / "bill.png"
    img.write_bytes(image(1))
    # Crash 1: the tx was signed and its sidecar written, nothing sent.
    first = scanner(tmp_path, dev, url(client))
    signed = await first.prepare(img)
    await first.aclose()
    assert signed is not None
    sidecar = tmp_path / ("bill.png" + SIDECAR_SUFFIX)
    assert sidecar.read_bytes() == signed.raw
    second = scanner(tmp_path, dev, url(client))
    assert await second.scan_once() == 0
    await second.aclose()
    assert second.stats.resubmitted == 1 and second.stats.committed == 1
    committed = json.loads((tmp_path / "done" / "bill.png.receipt.json").read_text())
    assert committed["tx"] == signed.tx_hash

    # Crash 2: committed, but the image never left the inbox.
    img2 = tmp_path / "bill2.png"
    img2.write_bytes(image(2))
    third = scanner(tmp_path, dev, url(client))
    signed2 = await third.prepare(img2)
    assert signed2 is not None
    assert (await third.nodes.submit(signed2.raw, timeout_ms=5000)).status == "committed"
    await third.aclose()
    fourth = scanner(tmp_path, dev, url(client))
    assert await fourth.scan_once() == 0
    await fourth.aclose()
    assert fourth.stats.resubmitted == 1 and (tmp_path / "done" / "bill2.png").exists()
    assert len(await documents(client)) == 2 and await nonce(client, dev) == 2  # nothing doubled


async def test_lone_sidecar_follows_its_image(tmp_path: Path, consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "bill.png").write_bytes(image(1))
    (tmp_path / ("bill.png" + SIDECAR_SUFFIX)).write_bytes(b"signed tx")
    sc = scanner(tmp_path, dev, url(client))
    assert await sc.scan_once() == 0
    await sc.aclose()
    assert names(tmp_path) == [] and (tmp_path / "done" / ("bill.png" + SIDECAR_SUFFIX)).exists()


async def test_unreadable_and_duplicate_images_are_rejected_with_a_reason(
    tmp_path: Path, consortium: TestConsortium, doc_node
) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    (tmp_path / "a.png").write_bytes(image(1))
    (tmp_path / "b.png").write_bytes(image(1))  # the same file again
    (tmp_path / "c.jpg").write_bytes(b"garbage")
    sc = scanner(tmp_path, dev, url(client))
    assert await sc.scan_once() == 0
    assert names(tmp_path / "done")[0] == "a.png"
    assert names(tmp_path / "rejected") == [
        "b.png",
        "b.png.cemp-tx",
        "b.png.reason.json",
        "c.jpg",
        "c.jpg.reason.json",
    ]
    dup = json.loads((tmp_path / "rejected" / "b.png.reason.json").read_text())
    assert dup["code"] == "already_exists" and dup["document_id"] in dup["message"]
    bad = json.loads((tmp_path / "rejected" / "c.jpg.reason.json").read_text())
    assert bad["code"] == "unreadable" and "decodable" in bad["message"] and bad["tx"] is None
    # The refused duplicate did not use its nonce: the next image goes in without a gap.
    (tmp_path / "d.png").write_bytes(image(2))
    assert await sc.scan_once() == 0
    await sc.aclose()
    assert (tmp_path / "done" / "d.png").exists() and await nonce(client, dev) == 2


async def test_a_device_that_is_not_a_scanner_is_refused(
    tmp_path: Path, consortium: TestConsortium, doc_node
) -> None:
    _, client = doc_node
    meter = await register(consortium, client, "88.123.45/101.1.1", kind="meter.energy")
    (tmp_path / "a.png").write_bytes(image(1))
    sc = scanner(tmp_path, meter, url(client), device="88.123.45/101.1.1")
    assert await sc.scan_once() == 0
    await sc.aclose()
    reason = json.loads((tmp_path / "rejected" / "a.png.reason.json").read_text())
    assert reason["code"] == "not_authorized" and "scanner.bill" in reason["message"]


async def test_a_taken_nonce_is_re_signed(tmp_path: Path, consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    img = tmp_path / "a.png"
    img.write_bytes(image(1))
    sc = scanner(tmp_path, dev, url(client))
    signed = await sc.prepare(img)
    assert signed is not None and signed.tx.nonce == 1
    # Someone else with the scanner's key took nonce 1 meanwhile.
    st, _ = await submit(client, sign(dev.key, consortium.chain, 1, bill_payload(b"another bill")))
    assert st == 200
    assert await sc.scan_once() == 0
    await sc.aclose()
    assert sc.stats.resigned == 1
    tx = codec.decode(Tx, (tmp_path / "done" / ("a.png" + SIDECAR_SUFFIX)).read_bytes())
    assert tx.nonce == 2 and await nonce(client, dev) == 2


async def test_images_wait_while_no_node_answers_and_fail_over(
    tmp_path: Path, consortium: TestConsortium, doc_node
) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    (tmp_path / "a.png").write_bytes(image(1))
    dead = f"http://127.0.0.1:{free_port()}"
    away = scanner(tmp_path, dev, dead)
    stop = asyncio.Event()
    task = asyncio.create_task(away.run(stop))
    await wait_until(lambda: away.stats.unreachable >= 2, 20, "two failed attempts to reach the dead node")
    stop.set()
    await task
    assert away.stats.unreachable >= 2 and names(tmp_path) == ["a.png"]
    # Dead node first, live one second: fails over.
    sc = scanner(tmp_path, dev, dead, url(client))
    assert await sc.scan_once() == 0
    await sc.aclose()
    assert (tmp_path / "done" / "a.png").exists()
