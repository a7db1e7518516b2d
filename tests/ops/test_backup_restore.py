"""Online backup of a running node under load, verified restore, and the restored node rejoining (real processes).

Also: ``cemp verify --online`` against a running node, a damaged or truncated backup refused, a restore into a
used directory refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.backup import read_manifest
from node.client import NodeClient
from tests.cluster.harness import Cluster

pytestmark = pytest.mark.slow


def cemp(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cemp.cli", *args], capture_output=True, text=True, timeout=timeout
    )


async def test_backup_under_load_restore_and_rejoin(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False)
    await cl.start_all()
    stop = asyncio.Event()
    acked: list[str] = []
    try:
        leader = await cl.leader()
        c = cl.consortium
        dev, reg = c.register_device("88.123.45/101.2.1")
        async with NodeClient(cl.url(leader)) as nc:
            assert (await nc.submit(reg, wait=True))["result"]["ok"]

        async def load() -> None:
            now = int(time.time() * 1000)
            i = 0
            async with NodeClient(cl.url(leader)) as nc:
                while not stop.is_set():
                    raw = dev.batch(
                        c.chain, [(now + i * 10 + k, "energy.import", i * 10 + k, "Wh") for k in range(5)]
                    )
                    res = await nc.submit(raw, wait=True)
                    assert res["result"]["ok"], res
                    acked.append(res["tx"])
                    i += 1

        task = asyncio.create_task(load())
        deadline = time.monotonic() + 60
        while len(acked) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        victim = next(n for n in cl.ids if n != leader)
        # The leader's metrics move with the load: commit latency of the txs it admitted, each peer's lag.
        async with aiohttp.ClientSession() as s, s.get(cl.url(leader) + "/metrics") as r:
            fams = {f.name: f for f in text_string_to_metric_families(await r.text())}
        lat = next(x for x in fams["cemp_commit_latency_seconds"].samples if x.name.endswith("_count"))
        assert lat.value >= 10
        assert {x.labels["peer"] for x in fams["cemp_peer_lag_entries"].samples} == set(cl.ids) - {leader}
        assert fams["cemp_has_leader"].samples[0].value == 1
        data = tmp_path / victim / "data" / victim
        bak = tmp_path / "victim.cempbak"
        assert (data / "admin.sock").stat().st_mode & 0o777 == 0o600  # only the data directory's owner
        out = await asyncio.to_thread(cemp, "backup", "--data-dir", str(data), "--out", str(bak), "--quiet")
        assert out.returncode == 0, out.stderr
        m = json.loads(out.stdout)
        assert m["height"] > 1 and m["node_id"] == victim and len(m["sha256"]) == 64
        assert read_manifest(bak).sha256 == m["sha256"]
        assert (
            json.loads((tmp_path / "victim.cempbak.manifest.json").read_text())["app_hash"] == m["app_hash"]
        )
        # An auditor's check of a running node (under load, nothing stopped).
        other = next(n for n in cl.ids if n not in (leader, victim))
        out = await asyncio.to_thread(
            cemp, "verify", "--online", "--data-dir", str(tmp_path / other / "data" / other), "--quiet"
        )
        assert out.returncode == 0, out.stdout + out.stderr
        rep = json.loads(out.stdout)
        assert rep["ok"] and rep["online"] and rep["height"] >= m["height"] - 50 and rep["txs"] > 10

        # The victim loses its disk; it is rebuilt from its backup while the others keep committing.
        cl.kill(victim)
        data.rename(data.with_name("lost"))
        damaged = tmp_path / "damaged.cempbak"
        raw = bytearray(bak.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        damaged.write_bytes(bytes(raw))
        out = await asyncio.to_thread(
            cemp, "restore", str(damaged), "--data-dir", str(tmp_path / "x"), "--quiet"
        )
        # Where the flipped byte lands decides which check refuses it first: a length field fails the record
        # parse ("the backup file is damaged"), anything else the hash ("damaged or was altered"). Both refuse.
        assert out.returncode == 1 and "damaged" in out.stderr, out.stderr
        assert not (tmp_path / "x" / "ledger").exists()
        (tmp_path / "short.cempbak").write_bytes(bak.read_bytes()[:-100])
        out = await asyncio.to_thread(
            cemp, "restore", str(tmp_path / "short.cempbak"), "--data-dir", str(tmp_path / "y"), "--quiet"
        )
        assert out.returncode == 1 and "truncated" in out.stderr, out.stderr
        out = await asyncio.to_thread(
            cemp,
            "restore",
            str(bak),
            "--data-dir",
            str(data),
            "--genesis",
            str(tmp_path / victim / "genesis.cemp"),
            "--quiet",
        )
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout)["verified"]
        assert res["app_hash"] == m["app_hash"] and res["height"] == m["height"]
        out = await asyncio.to_thread(cemp, "restore", str(bak), "--data-dir", str(data), "--quiet")
        assert out.returncode == 2 and "exists" in out.stderr
        await cl.start(victim)
        n_before = len(acked)
        while len(acked) < n_before + 10 and time.monotonic() < deadline + 60:
            await asyncio.sleep(0.1)
        stop.set()
        await task
        # Everyone converges on one chain; the rebuilt node holds every acknowledged tx.
        end = time.monotonic() + 60
        while True:
            sts = [await cl.status(n) for n in cl.ids]
            if len({(s["height"], s["app_hash"]) for s in sts}) == 1:
                break
            assert time.monotonic() < end, [
                {k: st.get(k) for k in ("node_id", "height", "raft_commit", "raft_last_index")} for st in sts
            ]
            await asyncio.sleep(0.2)
        async with NodeClient(cl.url(victim)) as nc:
            for h in acked[-5:] + acked[:5]:
                assert (await nc.get(f"/v1/txs/{h}"))["status"] == "committed"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await cl.stop()
