"""The bill scanner with real OCR on generated bills against a real ``cemp node`` process that dies mid-way."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from collector.ocr import billgen
from collector.scanner import SIDECAR_SUFFIX, BillScanner, ScannerSettings
from node.client import NodeClient
from tests.support.testing import TestConsortium, free_port, start_node_process
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

SCANNER = "88.123.45/900.1"


async def chain_documents(cl: NodeClient) -> list[dict[str, Any]]:
    """Every ``document`` tx on the chain, read through the core API (blocks and txs)."""
    out = []
    height = (await cl.status())["height"]
    for h in range(1, height + 1):
        for t in (await cl.get(f"/v1/blocks/{h}"))["txs"]:
            tx = await cl.get(f"/v1/txs/{t['hash']}")
            if tx["kind"] == "document":
                out.append(tx)
    return out


async def test_scanner_loses_nothing_and_doubles_nothing_across_a_node_crash(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    c = TestConsortium.create(ports=[port], block_interval_ms=10)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path / "node", nid, port)
    log = tmp_path / "node.log"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bills = [billgen.generate(seed, "clean") for seed in (0, 1, 2)]
    for i, bill in enumerate(bills):
        (inbox / f"bill{i}.png").write_bytes(bill.image)
    proc = start_node_process(cfg, log, port)
    try:
        async with NodeClient(url) as cl:
            dev, reg = c.register_device(SCANNER, kind="scanner.bill", subsystem="billing")
            assert (await cl.submit(reg, wait=True))["result"]["ok"]
        settings = ScannerSettings(
            nodes=(url,),
            settle_s=0,
            poll_interval_s=0.05,
            retry_base_s=0.05,
            retry_max_s=0.3,
            commit_timeout_ms=5000,
        )
        scanner = BillScanner(inbox, dev.key, SCANNER, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(scanner.run(stop))
        try:
            await wait_until(lambda: scanner.stats.committed >= 1, 60, "the first bill to commit")
            proc.kill()  # mid-way: the next bill is being read or sent
            proc.wait()
            await wait_until(lambda: scanner.stats.unreachable >= 2, 30, "the scanner to find no node")
            waiting = sorted(p.name for p in inbox.iterdir() if p.is_file())
            assert any(n.endswith(SIDECAR_SUFFIX) for n in waiting), waiting  # signed, durable, unsent
            assert len([n for n in waiting if n.endswith(".png")]) == 3 - scanner.stats.committed
            proc = start_node_process(cfg, log, port)
            await wait_until(lambda: scanner.stats.committed == 3, 60, "every bill to commit")
        finally:
            stop.set()
            await task
        assert scanner.stats.rejected == 0
        assert [p.name for p in inbox.iterdir() if p.is_file()] == []
        assert sorted(p.name for p in (inbox / "done").glob("*.png")) == [
            "bill0.png",
            "bill1.png",
            "bill2.png",
        ]

        async with NodeClient(url) as cl:
            docs = await chain_documents(cl)
            assert (
                await cl.nonce(dev.key.public)
            ) == 3  # one nonce per bill: nothing re-signed, nothing doubled
        assert len(docs) == 3 and all(d["result"]["ok"] for d in docs)
        by_sha = {d["payload"]["source_sha256"]: d["payload"] for d in docs}
        for bill in bills:
            p = by_sha[hashlib.sha256(bill.image).hexdigest()]
            assert (
                p["doc_type"] == "electricity_bill"
                and p["device"] == SCANNER
                and p["media_type"] == "image/png"
            )
            assert p["fields"]["energy_wh"] == bill.fields.energy_wh
            assert p["fields"]["amount_fen"] == bill.fields.amount_fen
            assert p["fields"]["account"] == bill.fields.account
    finally:
        proc.terminate()
        proc.wait(15)
    # Replaying the chain from genesis reaches the same state (the document kind is deterministic).
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cemp.cli",
            "verify",
            "--data-dir",
            str(tmp_path / "node" / "data" / nid),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])["ok"], (
        out.stdout + out.stderr
    )
