"""Three real ``cemp node`` processes behind per-link TCP proxies, under a steady stream of signed readings.

Nemesis, one fault at a time: kill -9 the leader and restart it; SIGSTOP a node past the election timeout,
then SIGCONT; partition the leader from the majority, then heal; cut the leader's outgoing links only; delay and
drop on every link; restart every node. Afterwards every reading
acknowledged as committed is present exactly once on every node, nothing unsubmitted appears, and all
nodes hold byte-identical chains.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import aiohttp
import pytest

from node.client import NodeClient
from tests.cluster.harness import Cluster
from tests.support.testing import TestDevice

pytestmark = pytest.mark.slow


class Workload:
    """Devices sending signed batches to random live nodes; records what was acknowledged."""

    def __init__(self, cl: Cluster, devices: list[TestDevice]) -> None:
        self.cl = cl
        self.devices = devices
        self.acked: dict[str, set[int]] = {d.handle: set() for d in devices}
        self.sent: dict[str, set[int]] = {d.handle: set() for d in devices}
        self.rng = random.Random(7)
        self.stop = False
        self.errors = 0
        self.last_error = ""

    async def run_device(self, dev: TestDevice) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8)) as s:
            pending: bytes | None = None
            seqs: list[int] = []
            while not self.stop:
                if pending is None:
                    now = int(time.time() * 1000)
                    first = dev.seq + 1
                    pending = dev.batch(
                        self.cl.consortium.chain,
                        [(now + k, "energy.import", first + k, "Wh") for k in range(5)],
                    )
                    seqs = list(range(first, first + 5))
                    self.sent[dev.handle].update(seqs)
                nid = self.rng.choice(list(self.cl.procs) or self.cl.ids)
                try:
                    nc = NodeClient(self.cl.url(nid), session=s)
                    res = await nc.submit(pending, wait=True, timeout_ms=4000)
                    if res.get("status") == "committed" and res["result"]["ok"]:
                        self.acked[dev.handle].update(seqs)
                        pending = None  # resubmit the same bytes until acknowledged
                    elif res.get("status") == "committed":
                        raise AssertionError(f"committed but invalid: {res}")
                except AssertionError:
                    raise
                except Exception as e:
                    self.errors += 1
                    self.last_error = f"{nid}: {e!r}"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.02)


async def wait_converged(cl: Cluster, timeout: float = 30) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            sts = [await cl.status(n) for n in cl.ids]
            hs = {(s["height"], s["last_block_hash"]) for s in sts}
            if len(hs) == 1:
                return int(sts[0]["height"])
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"nodes did not converge: {[await cl.status(n) for n in cl.ids]}")


async def test_cluster_survives_nemesis(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path)
    await cl.start_all()
    try:
        c = cl.consortium
        leader = await cl.leader()
        devices = []
        async with NodeClient(cl.url(leader)) as nc:
            for i in range(4):
                dev, reg = c.register_device(f"88.123.45/101.1.{i + 1}")
                assert (await nc.submit(reg, wait=True))["result"]["ok"]
                devices.append(dev)
        wl = Workload(cl, devices)
        tasks = [asyncio.create_task(wl.run_device(d)) for d in devices]
        election_s = c.genesis.params.election_ticks * c.genesis.params.tick_ms / 1000

        async def progress(label: str) -> None:
            before = sum(len(v) for v in wl.acked.values())
            end = time.monotonic() + 20
            while sum(len(v) for v in wl.acked.values()) < before + 20:
                assert time.monotonic() < end, f"no progress after {label}"
                await asyncio.sleep(0.1)

        await progress("start")
        # 1. kill -9 the leader, restart it
        old = await cl.leader()
        cl.kill(old)
        await progress("leader kill")
        await cl.start(old)
        await progress("leader restart")
        # 2. SIGSTOP a node past the election timeout
        victim = await cl.leader()
        cl.pause(victim)
        await asyncio.sleep(election_s * 3)  # the fault's duration (three election timeouts), not a wait
        cl.resume(victim)
        await progress("pause/resume")
        # 3. partition the leader from the majority
        ld = await cl.leader()
        cl.isolate(ld)
        await asyncio.sleep(election_s * 3)
        cl.heal()
        await progress("partition")
        # 4. one-way cut: the leader can hear the others but its messages to them are lost
        ld = await cl.leader()
        for (src, _dst), proxy in cl.proxies.items():
            if src == ld:
                proxy.blackhole()
        await asyncio.sleep(election_s * 3)
        cl.heal()
        await progress("one-way cut")
        # 5. slow, lossy links: 20-40 ms delay everywhere, 5 % of connections dropped
        for proxy in cl.proxies.values():
            proxy.delay(20, 20)
            proxy.drop(0.05)
        await progress("delay and drop")
        cl.heal()
        # 6. restart every node
        for nid in list(cl.procs):
            cl.kill(nid)
        await cl.start_all()
        await progress("full restart")
        wl.stop = True
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        height = await wait_converged(cl)
        assert height > 10
        # Every acknowledged reading is on every node exactly once; nothing unsubmitted appears.
        for nid in cl.ids:
            async with NodeClient(cl.url(nid)) as nc:
                for dev in devices:
                    rows = (await nc.get(f"/v1/devices/{dev.handle}/readings", limit=10_000))["readings"]
                    seqs = [r["seq"] for r in rows]
                    assert len(seqs) == len(set(seqs)), f"{nid}: duplicate readings for {dev.handle}"
                    assert wl.acked[dev.handle] <= set(seqs), f"{nid}: acknowledged readings missing"
                    assert set(seqs) <= wl.sent[dev.handle], f"{nid}: readings nobody sent"
        # Byte-identical chains.
        chains = {}
        for nid in cl.ids:
            async with NodeClient(cl.url(nid)) as nc:
                hashes = []
                for h in range(1, height + 1):
                    async with nc.session.get(
                        f"{cl.url(nid)}/v1/blocks/{h}", params={"format": "msgpack"}
                    ) as r:
                        hashes.append(await r.read())
                chains[nid] = hashes
        first = chains[cl.ids[0]]
        for nid in cl.ids[1:]:
            assert chains[nid] == first, f"{nid} holds a different chain"
    finally:
        await cl.stop()
