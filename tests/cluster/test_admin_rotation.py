"""Org admin key rotation on a real three-node cluster under load (``cemp keys rotate-admin``).

Devices keep sending readings to random nodes, the equipment firm's admin keeps registering devices, and the
owner's admin keeps registering devices with its genesis key, while the owner's admin key is rotated by the
command line; one follower is down during the rotation and catches up afterwards. Afterwards: no reading and no
equipment-firm tx was refused; every owner tx the old key signed either committed before the effective height or
was refused with ``KEY_RETIRED`` (none committed from that height on); the old key is refused on every node and
the new one accepted; every node (the one that caught up and one restarted) reports the same admin key and
converges on the same block; ``cemp audit`` lists the rotation; ``cemp verify`` replays the chain from the genesis.
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

from node.chain import sign_tx
from node.crypto import KeyPair, read_key_file, write_key_file
from node.errors import CempError, Code
from node.types import DeviceRegistration, Handle, PublicKey, ShortStr
from tests.cluster.harness import Cluster
from tests.cluster.test_real_cluster import Workload, wait_converged
from tests.support.testing import TestDevice

pytestmark = pytest.mark.slow


def cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cemp.cli", *args], capture_output=True, text=True, timeout=180
    )


class AdminLoad:
    """One org admin key registering devices one after another (each awaited), recording every outcome."""

    def __init__(self, cl: Cluster, key: KeyPair, prefix: str, nonce: int = 0) -> None:
        self.cl = cl
        self.nonce = nonce
        """The key's last used nonce."""
        self.key = key
        self.prefix = prefix
        self.stop = False
        self.ok: list[int] = []
        """Heights at which a registration committed valid."""
        self.refused: list[tuple[int, str]] = []
        """(code, message) of every refusal, at admission or on apply."""
        self.errors: list[str] = []
        """Transport trouble (a node busy or down): retried with the same bytes, not a refusal."""

    async def run(self) -> None:
        n = 0
        raw: bytes | None = None
        while not self.stop:
            if raw is None:
                n += 1
                self.nonce += 1
                reg = DeviceRegistration(
                    Handle(f"{self.prefix}/load.{n}"),
                    PublicKey(KeyPair.generate().public),
                    ShortStr("meter.energy"),
                    ShortStr("core"),
                )
                raw, _ = sign_tx(self.key, self.cl.consortium.chain, "device.register", self.nonce, reg)
            nid = sorted(self.cl.procs)[n % len(self.cl.procs)] if self.cl.procs else self.cl.ids[0]
            try:
                async with self.cl.client(nid, timeout_s=15) as nc:
                    res = await nc.submit(raw, wait=True, timeout_ms=8000)
            except CempError as e:
                if e.code in (Code.UNAVAILABLE, Code.TIMEOUT):
                    self.errors.append(f"{nid}: {e.message}")
                    await asyncio.sleep(0.1)
                    continue
                if e.code == Code.NONCE_REPLAYED:  # an earlier attempt of these bytes committed meanwhile
                    raw = None
                    continue
                if (
                    e.code == Code.NONCE_GAP
                ):  # a node behind the others (catching up): the same bytes go again
                    self.errors.append(f"{nid}: {e.message}")
                    await asyncio.sleep(0.1)
                    continue
                self.refused.append((int(e.code), e.message))
                raw = None
                await asyncio.sleep(0.05)
                continue
            except Exception as e:  # a node restarting under us: the same bytes go again
                self.errors.append(f"{nid}: {e!r}")
                await asyncio.sleep(0.1)
                continue
            if res.get("status") != "committed":
                continue  # not yet: send the same bytes again (a duplicate is recognised)
            r = res["result"]
            if r["ok"]:
                self.ok.append(int(res["height"]))
            else:
                self.refused.append((int(r["code"]), str(r["reason"])))
            raw = None
            await asyncio.sleep(0.05)


async def _until(what: str, cond: object, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while True:
        got = await cond()  # type: ignore[operator]
        if got:
            return
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_rotate_an_org_admin_key_under_load(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False)
    await cl.start_all()
    c = cl.consortium
    wl = Workload(cl, [])
    loads: list[AdminLoad] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        leader = await cl.leader(30)
        devices: list[TestDevice] = []
        async with cl.client(leader) as nc:
            for i in range(3):
                dev, reg = c.register_device(f"88.123.45/101.7.{i + 1}")
                assert (await nc.submit(reg, wait=True))["result"]["ok"]
                devices.append(dev)
        old_owner = c.admins["owner"]
        wl = Workload(cl, devices)
        owner_load = AdminLoad(cl, old_owner, "88.123.45", nonce=3)  # after the three registrations above
        eq_load = AdminLoad(cl, c.admins["equipment"], "88.123.46")
        loads = [owner_load, eq_load]
        tasks = [asyncio.create_task(wl.run_device(d)) for d in devices]
        tasks += [asyncio.create_task(owner_load.run()), asyncio.create_task(eq_load.run())]
        await _until("load going", lambda: _acked(wl, 30), 60)
        await _until("admins going", lambda: _const(len(owner_load.ok) >= 3 and len(eq_load.ok) >= 3), 60)

        # a follower is down while the rotation commits: it catches up afterwards
        leader = await cl.leader(30)
        down = next(n for n in cl.ids if n != leader)
        await asyncio.to_thread(cl.kill, down)

        old_file = tmp_path / "owner.admin.key"
        write_key_file(old_file, old_owner)
        live = next(n for n in cl.ids if n != down)
        p = await asyncio.to_thread(
            cli, ["keys", "rotate-admin", "--org", "owner", "--admin", str(old_file), "--api", cl.url(live)]
        )
        assert p.returncode == 0, p.stdout + p.stderr
        out = json.loads(p.stdout.splitlines()[0])
        eff = int(out["effective_height"])
        new_owner = read_key_file(tmp_path / "owner.admin.key.next")
        assert out["new_key"] == new_owner.public.hex()

        async def past(h: int) -> bool:
            return min([int((await cl.status(n))["height"]) for n in cl.procs]) >= h

        await _until(f"height {eff + 10}", lambda: past(eff + 10))
        await _until("owner's old key refused", lambda: _const(bool(owner_load.refused)), 60)
        await cl.start(down)  # catches up over the rotation

        async def caught_up() -> bool:
            return int((await cl.status(down))["height"]) >= eff + 10

        await _until(f"{down} caught up past the rotation", caught_up)
        more = sum(len(v) for v in wl.acked.values()) + 30
        await _until("more readings", lambda: _acked(wl, more), 60)

        # the old key is refused by every node; the new one is accepted
        owner_load.stop = True
        for nid in cl.ids:
            async with cl.client(nid) as nc:
                orgs = {o["name"]: o for o in (await nc.get("/v1/consortium"))["orgs"]}
                assert orgs["owner"]["admin_key"] == new_owner.public.hex(), (
                    nid,
                    down,
                    eff,
                    orgs["owner"],
                    await cl.status(nid),
                )
                nxt = int((await nc.get(f"/v1/nonces/{old_owner.public.hex()}"))["next"])
                reg = DeviceRegistration(
                    Handle(f"88.123.45/old.{nid}"),
                    PublicKey(KeyPair.generate().public),
                    ShortStr("m"),
                    ShortStr("c"),
                )
                raw, _ = sign_tx(old_owner, c.chain, "device.register", nxt, reg)
                with pytest.raises(CempError) as ei:
                    await nc.submit(raw, wait=True)
                assert ei.value.code == Code.KEY_RETIRED, ei.value.message
        async with cl.client(down) as nc:
            reg = DeviceRegistration(
                Handle("88.123.45/new.1"), PublicKey(KeyPair.generate().public), ShortStr("m"), ShortStr("c")
            )
            raw, _ = sign_tx(new_owner, c.chain, "device.register", 1, reg)
            res = await nc.submit(raw, wait=True)
            assert res["result"]["ok"], res

        wl.stop = True
        for ld in loads:
            ld.stop = True
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        tasks = []
        # a node restarted after the rotation reads the new key from its own state
        restart = next(n for n in cl.ids if n != down)
        await asyncio.to_thread(cl.kill, restart)
        await cl.start(restart)
        height = await wait_converged(cl, 90)

        # nothing refused that should pass
        assert not eq_load.refused, eq_load.refused[:3]
        assert len(eq_load.ok) >= 3
        assert all(h < eff for h in owner_load.ok), (eff, owner_load.ok[-3:])
        assert owner_load.ok and owner_load.refused
        assert all(code == Code.KEY_RETIRED for code, _ in owner_load.refused), owner_load.refused[:3]
        for nid in cl.ids:
            async with cl.client(nid) as nc:
                orgs = {o["name"]: o for o in (await nc.get("/v1/consortium"))["orgs"]}
                assert orgs["owner"]["admin_key"] == new_owner.public.hex(), nid
                assert orgs["owner"]["admin_key_rotations"] == [
                    {"since": eff, "pubkey": new_owner.public.hex()}
                ]
                assert orgs["equipment"]["admin_key"] == c.admins["equipment"].public.hex()
                for dev in devices:
                    rows = (await nc.get(f"/v1/devices/{dev.handle}/readings", limit=10_000))["readings"]
                    seqs = {x["seq"] for x in rows}
                    assert wl.acked[dev.handle] <= seqs, nid
                assert (await cl.status(nid))["skipped_blocks"] == 0
        print(
            f"admin rotation under load: effective {eff}, height {height}, "
            f"{sum(len(v) for v in wl.acked.values())} readings, owner ok/refused "
            f"{len(owner_load.ok)}/{len(owner_load.refused)}, equipment ok {len(eq_load.ok)}"
        )
        new_file = tmp_path / "owner.admin.key.next"
        audit = [
            "audit",
            "--nodes",
            cl.url(down),
            "--kind",
            "org.admin_rotate",
            "--format",
            "json",
            "--quiet",
        ]
        aud = await asyncio.to_thread(cli, [*audit, "--key", str(new_file)])  # the new key signs in
        assert aud.returncode == 0, aud.stderr
        entries = json.loads(aud.stdout)
        assert len(entries) == 1 and entries[0]["object"] == "org owner admin key", entries
        assert entries[0]["height"] == eff - 1 and entries[0]["ok"]
        aud = await asyncio.to_thread(cli, [*audit, "--key", str(old_file)])  # the old one no longer does
        assert aud.returncode != 0 and "new admin key" in aud.stderr, aud.stdout + aud.stderr
    finally:
        wl.stop = True
        for ld in loads:
            ld.stop = True
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await cl.stop()
    for nid in (down, restart):
        ver = await asyncio.to_thread(
            cli, ["verify", "--data-dir", str(tmp_path / nid / "data" / nid), "--quiet"]
        )
        assert ver.returncode == 0, ver.stdout + ver.stderr


async def _const(v: bool) -> bool:
    return v


async def _acked(wl: Workload, n: int) -> bool:
    return sum(len(v) for v in wl.acked.values()) >= n
