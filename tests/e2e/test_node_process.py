"""A real ``cemp node`` process on a loopback port: commits survive kill -9; the CLI verifies the result."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.client import NodeClient
from tests.support.testing import TestConsortium, free_port, start_node_process

pytestmark = pytest.mark.slow


async def test_kill9_restart_keeps_every_acknowledged_reading(tmp_path: Path) -> None:
    port = free_port()
    c = TestConsortium.create(ports=[port], block_interval_ms=10)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path, nid, port)
    proc = start_node_process(cfg, tmp_path / "node.log", port)
    acked: dict[str, int] = {}
    try:
        async with NodeClient(f"http://127.0.0.1:{port}") as cl:
            dev, reg = c.register_device("88.123.45/101.1.1")
            assert (await cl.submit(reg, wait=True))["result"]["ok"]
            now = int(time.time() * 1000)
            for i in range(30):
                raw = dev.batch(
                    c.chain, [(now + i * 10 + k, "energy.import", i * 100 + k, "Wh") for k in range(10)]
                )
                res = await cl.submit(raw, wait=True)
                acked[res["tx"]] = res["height"]
            height_before = (await cl.status())["height"]
    finally:
        proc.kill()  # SIGKILL: no shutdown path runs
        proc.wait()
    proc = start_node_process(cfg, tmp_path / "node.log", port)
    try:
        async with NodeClient(f"http://127.0.0.1:{port}") as cl:
            st = await cl.status()
            assert st["height"] == height_before
            for h, height in acked.items():
                tx = await cl.get(f"/v1/txs/{h}")
                assert tx["status"] == "committed" and tx["height"] == height and tx["result"]["ok"]
            rows = (await cl.get("/v1/devices/88.123.45/101.1.1/readings", limit=10_000))["readings"]
            assert len(rows) == 300 and len({r["seq"] for r in rows}) == 300
            # The device continues where it left off after the restart.
            raw = dev.batch(c.chain, [(now + 10_000, "energy.import", 99_999, "Wh")])
            assert (await cl.submit(raw, wait=True))["result"]["ok"]
    finally:
        proc.terminate()
        proc.wait(10)
    out = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "verify", "--data-dir", str(tmp_path / "data" / nid), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and rep["ok"] and rep["height"] == height_before + 1, out.stdout + out.stderr
