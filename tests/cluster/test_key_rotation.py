"""Node key rotation on a real three-node cluster under a steady signed load (``cemp keys rotate``).

The leader's key is rotated by its own key and a follower's by its org admin's key, both while devices keep
sending readings; the new keys are made by the command beside the node keys (``<key>.next``), where the running
nodes pick them up. Afterwards: no tx was refused that should pass (every acknowledged reading is on every node,
none committed invalid), the chain went on past both effective heights, every block from a rotated node's
effective height on is signed (and voted on) with its new key and before it with its old one, no node skipped a
block; the rotated node restarts on its new key file, refuses to start on the old one alone, and ``cemp verify``
replays the chain from the genesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node import codec
from node.chain import header_hash
from node.crypto import read_key_file, verify
from node.types import DOMAIN_BLOCK, DOMAIN_VOTE, Block
from tests.cluster.harness import Cluster
from tests.cluster.test_real_cluster import Workload, wait_converged
from tests.support.testing import TestDevice

pytestmark = pytest.mark.slow


def rotate(args: list[str]) -> dict[str, object]:
    p = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "keys", "rotate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.splitlines()[0])  # type: ignore[no-any-return]


async def _progress(wl: Workload, label: str, more: int = 20, timeout: float = 60) -> None:
    before = sum(len(v) for v in wl.acked.values())
    end = time.monotonic() + timeout
    while sum(len(v) for v in wl.acked.values()) < before + more:
        assert time.monotonic() < end, f"no progress after {label} ({wl.errors} errors, last {wl.last_error})"
        await asyncio.sleep(0.1)


async def test_rotate_node_keys_under_load(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False)
    await cl.start_all()
    tasks: list[asyncio.Task[None]] = []
    wl = Workload(cl, [])
    c = cl.consortium
    try:
        leader = await cl.leader(30)
        devices: list[TestDevice] = []
        async with cl.client(leader) as nc:
            for i in range(3):
                dev, reg = c.register_device(f"88.123.45/101.9.{i + 1}")
                assert (await nc.submit(reg, wait=True))["result"]["ok"]
                devices.append(dev)
        wl = Workload(cl, devices)
        tasks = [asyncio.create_task(wl.run_device(d)) for d in devices]
        await _progress(wl, "start")
        follower = next(n for n in cl.ids if n != leader)
        old = {n: c.node_keys[n] for n in (leader, follower)}
        admin_file = tmp_path / "owner-admin.key"
        from node.crypto import write_key_file

        org = next(str(x.org) for x in c.genesis.nodes if x.node_id == follower)
        write_key_file(admin_file, c.admins[org])
        url = cl.url(leader)
        r1 = await asyncio.to_thread(
            rotate, ["--node-id", leader, "--key", str(tmp_path / leader / f"{leader}.key"), "--api", url]
        )
        new_file_f = tmp_path / follower / f"{follower}.key.next"
        r2 = await asyncio.to_thread(
            rotate,
            ["--node-id", follower, "--admin", str(admin_file), "--new-key", str(new_file_f), "--api", url],
        )
        eff = {leader: int(r1["effective_height"]), follower: int(r2["effective_height"])}  # type: ignore[call-overload]
        new = {
            leader: read_key_file(tmp_path / leader / f"{leader}.key.next"),
            follower: read_key_file(new_file_f),
        }
        target = max(eff.values()) + 15
        end = time.monotonic() + 120
        while min([int((await cl.status(n))["height"]) for n in cl.ids]) < target:
            assert time.monotonic() < end, f"the chain did not pass height {target}"
            await asyncio.sleep(0.2)
        await _progress(wl, "both rotations effective")
        wl.stop = True
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        height = await wait_converged(cl, 60)
        # Every block and vote by a rotated node is signed with the key of its height.
        seen = {n: {"old_block": 0, "new_block": 0, "old_vote": 0, "new_vote": 0} for n in eff}
        async with cl.client(cl.ids[2]) as nc:
            prev: Block | None = None
            for h in range(1, height + 1):
                async with nc.session.get(
                    f"{cl.url(cl.ids[2])}/v1/blocks/{h}", params={"format": "msgpack"}
                ) as r:
                    b = codec.decode(Block, await r.read())
                hd = b.header
                if hd.proposer in eff:
                    n = str(hd.proposer)
                    want = new[n] if h >= eff[n] else old[n]
                    assert verify(want.public, DOMAIN_BLOCK, codec.encode(hd), b.signature), (n, h)
                    seen[n]["new_block" if h >= eff[n] else "old_block"] += 1
                if prev is not None:
                    ph = header_hash(prev.header)
                    for v in hd.last_commit:
                        if v.node_id in eff:
                            n = str(v.node_id)
                            want = new[n] if h - 1 >= eff[n] else old[n]
                            assert verify(want.public, DOMAIN_VOTE, ph, v.signature), (n, h - 1)
                            seen[n]["new_vote" if h - 1 >= eff[n] else "old_vote"] += 1
                prev = b
        assert seen[leader]["old_block"] > 0 and seen[leader]["new_vote"] > 0, seen
        assert seen[follower]["old_vote"] > 0 and seen[follower]["new_vote"] > 0, seen
        for nid in cl.ids:
            st = await cl.status(nid)
            assert st["skipped_blocks"] == 0, (nid, st)
            async with cl.client(nid) as nc:
                for dev in devices:
                    rows = (await nc.get(f"/v1/devices/{dev.handle}/readings", limit=10_000))["readings"]
                    seqs = [x["seq"] for x in rows]
                    assert len(seqs) == len(set(seqs)) and wl.acked[dev.handle] <= set(seqs), nid
        acked = sum(len(v) for v in wl.acked.values())
        print(
            f"key rotation under load: {acked} readings acknowledged, height {height}, effective {eff}, {seen}"
        )

        # The rotated leader restarts: on its old key file alone it refuses; with the new one in its place it runs.
        await asyncio.to_thread(cl.kill, leader)
        key_file = tmp_path / leader / f"{leader}.key"
        moved = key_file.with_name(key_file.name + ".moved")
        (tmp_path / leader / f"{leader}.key.next").rename(moved)
        with pytest.raises(RuntimeError, match="current key"):
            await cl.start(leader)
        moved.replace(key_file)
        await cl.start(leader)
        assert (await cl.status(leader))["height"] >= height
    finally:
        wl.stop = True
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await cl.stop()
    ver = subprocess.run(
        [
            sys.executable,
            "-m",
            "cemp.cli",
            "verify",
            "--data-dir",
            str(tmp_path / follower / "data" / follower),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ver.returncode == 0, ver.stdout + ver.stderr
