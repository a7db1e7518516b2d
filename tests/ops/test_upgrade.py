"""Upgrading a running three-node consortium (real processes, steady signed load), as docs/operations.md says.

The "new release" is ``tests.support.nextrelease``: today's code plus a storage migration 1 -> 2 (compatible on the
wire) and a new tx kind ``note`` (not compatible: an old node refuses it).

- rolling upgrade: each node in turn is stopped (SIGTERM, clean exit), started on the new release (it migrates
  its data directory) and caught up, followers first, the leader last, while devices keep sending readings to
  whichever nodes are up; every acknowledged reading is on every node afterwards, and the old release refuses to
  start on an upgraded directory;
- coordinated halt: every node is restarted with ``CEMP_HALT_HEIGHT=H`` (one at a time, the chain keeps
  running); under load all three stop at exactly H (same head), refuse txs while they drain, exit 0 with the
  halt line; started on the new release they accept the new kind and carry on from H, nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node import schema
from node.errors import CempError, Code
from node.store import LevelDBStore, prefix_stop
from tests.cluster.harness import Cluster
from tests.cluster.test_real_cluster import Workload, wait_converged
from tests.support.nextrelease import BLOCKS_BY_PROPOSER, Note
from tests.support.testing import TestDevice

pytestmark = pytest.mark.slow
NEXT = "tests.support.nextrelease"


async def _devices(cl: Cluster, n: int) -> list[TestDevice]:
    out = []
    async with cl.client(await cl.leader(30)) as nc:
        for i in range(n):
            dev, reg = cl.consortium.register_device(f"88.123.45/101.7.{i + 1}")
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            out.append(dev)
    return out


def _acked(wl: Workload) -> int:
    return sum(len(v) for v in wl.acked.values())


async def _progress(wl: Workload, label: str, more: int = 20, timeout: float = 60) -> None:
    before = _acked(wl)
    end = time.monotonic() + timeout
    while _acked(wl) < before + more:
        assert time.monotonic() < end, (
            f"no progress after {label} ({wl.errors} submission errors, last {wl.last_error})"
        )
        await asyncio.sleep(0.1)


async def _stop_clean(cl: Cluster, nid: str) -> None:
    p = cl.procs.pop(nid)
    p.terminate()
    rc = await asyncio.to_thread(p.wait, 30)
    assert rc == 0, f"{nid} did not stop cleanly: exit {rc}"


async def _check_acked_everywhere(cl: Cluster, wl: Workload, devices: list[TestDevice]) -> None:
    for nid in cl.ids:
        async with cl.client(nid) as nc:
            for dev in devices:
                rows = (await nc.get(f"/v1/devices/{dev.handle}/readings", limit=10_000))["readings"]
                seqs = [r["seq"] for r in rows]
                assert len(seqs) == len(set(seqs)), f"{nid}: duplicate readings for {dev.handle}"
                assert wl.acked[dev.handle] <= set(seqs), f"{nid}: acknowledged readings missing"


async def _end(wl: Workload, tasks: list[asyncio.Task[None]]) -> None:
    wl.stop = True
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def test_rolling_upgrade_under_load(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False)
    await cl.start_all()
    tasks: list[asyncio.Task[None]] = []
    wl = Workload(cl, [])
    try:
        devices = await _devices(cl, 3)
        wl = Workload(cl, devices)
        tasks = [asyncio.create_task(wl.run_device(d)) for d in devices]
        await _progress(wl, "start")
        leader = await cl.leader()
        for nid in [n for n in cl.ids if n != leader] + [leader]:
            await _stop_clean(cl, nid)
            await _progress(wl, f"{nid} stopped (two nodes left)")
            await cl.start(nid, module=NEXT)
            target = max([int((await cl.status(n))["height"]) for n in cl.procs if n != nid])
            end = time.monotonic() + 60
            while int((await cl.status(nid))["height"]) < target:
                assert time.monotonic() < end, f"{nid} did not catch up after its upgrade"
                await asyncio.sleep(0.2)
            await _progress(wl, f"{nid} upgraded")
        await _end(wl, tasks)
        height = await wait_converged(cl, 60)
        await _check_acked_everywhere(cl, wl, devices)
        assert _acked(wl) >= 140, _acked(wl)
        print(
            f"rolling upgrade: {_acked(wl)} readings acknowledged, height {height}, {wl.errors} retried sends"
        )
    finally:
        await _end(wl, tasks)
        await cl.stop()
    for nid in cl.ids:
        log = (tmp_path / nid / "node.log").read_text()
        st = LevelDBStore(tmp_path / nid / "data" / nid / "ledger")
        try:
            assert st.get(schema.META_SCHEMA) == b"2", nid
            counts = [int(v) for _, v in st.iterate(BLOCKS_BY_PROPOSER, prefix_stop(BLOCKS_BY_PROPOSER))]
            assert counts and sum(counts) > 0, nid  # the migration's index was built from that node's blocks
        finally:
            st.close()
        assert "Traceback" not in log, log[-3000:]
    # The old release refuses the upgraded directory rather than misreading it.
    old = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "node", "--config", str(cl.configs[cl.ids[0]])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert old.returncode == 2 and "newer than this release" in old.stderr, old.stderr


async def test_coordinated_halt_height_then_the_new_release(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False)
    await cl.start_all()
    tasks: list[asyncio.Task[None]] = []
    wl = Workload(cl, [])
    c = cl.consortium
    try:
        devices = await _devices(cl, 2)
        note = c.admin_tx("regulator", "note", Note("tariff rules change at the halt height"))
        async with cl.client(cl.ids[0]) as nc:
            with pytest.raises(CempError) as e:  # why this change needs a halt: the old release refuses it
                await nc.submit(note, wait=True)
            assert e.value.code == Code.UNKNOWN_KIND
        c.admin_nonce["regulator"] -= 1  # the refused tx consumed nothing
        # Blocks are cut only for txs: with no load the height stays put while each node is restarted.
        h0 = max([int((await cl.status(n))["height"]) for n in cl.ids])
        halt = h0 + 15
        for nid in cl.ids:
            await _stop_clean(cl, nid)
            await cl.start(nid, env={"CEMP_HALT_HEIGHT": str(halt)})
        await cl.leader(30)
        for nid in cl.ids:
            assert (await cl.status(nid))["halt_height"] == halt
        wl = Workload(cl, devices)
        tasks = [asyncio.create_task(wl.run_device(d)) for d in devices]
        # Once a node says it has halted, it refuses new txs (503) until it exits.
        end = time.monotonic() + 90
        halted = None
        while halted is None:
            assert time.monotonic() < end, "no node reached the halt height"
            for nid in list(cl.procs):
                with contextlib.suppress(Exception):
                    if (await cl.status(nid))["halted"]:
                        halted = nid
            await asyncio.sleep(0.1)
        _probe, probe_raw = c.register_device("88.123.45/101.7.99")
        async with cl.client(halted) as nc:
            with pytest.raises(CempError) as e:
                await nc.submit(probe_raw, wait=False)
            assert e.value.code == Code.UNAVAILABLE and "halt height" in e.value.message
        c.admin_nonce["owner"] -= 1
        for nid in list(cl.procs):  # every node exits by itself, cleanly
            p = cl.procs.pop(nid)
            rc = await asyncio.to_thread(p.wait, 60)
            assert rc == 0, f"{nid} exited {rc}"
        # (the devices keep trying, each its same unacknowledged tx, while no node runs)
        heads = set()
        for nid in cl.ids:
            log = (tmp_path / nid / "node.log").read_text()
            assert f"node {nid} halted at height {halt} (halt_height {halt})" in log, log[-2000:]
            st = LevelDBStore(tmp_path / nid / "data" / nid / "ledger")
            try:
                assert int.from_bytes(st.get(schema.META_HEIGHT) or b"", "big") == halt, nid
                heads.add(st.get(schema.META_LAST_HASH))
            finally:
                st.close()
        assert len(heads) == 1, "the nodes halted on different blocks"
        acked_at_halt = _acked(wl)
        # Everyone on the new release, without the halt height: the new kind commits, the chain carries on.
        await asyncio.gather(*(cl.start(n, module=NEXT) for n in cl.ids))
        await cl.leader(30)
        async with cl.client(cl.ids[1]) as nc:
            r = await nc.submit(note, wait=True, timeout_ms=30_000)
            assert r["status"] == "committed" and r["result"]["ok"], r
            assert r["height"] > halt
        await _progress(wl, "the new release")
        await _end(wl, tasks)
        await wait_converged(cl, 60)
        await _check_acked_everywhere(cl, wl, devices)
        assert acked_at_halt > 0
        sts = [await cl.status(n) for n in cl.ids]
        assert len({s["app_hash"] for s in sts}) == 1
    finally:
        await _end(wl, tasks)
        await cl.stop()
