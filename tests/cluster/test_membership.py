"""Membership on a real three-node cluster: a fourth node joins (learner, then voter) and is removed again.

Also: a change without a majority of org approvals, or reusing a node id, is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from node.client import NodeClient
from node.crypto import KeyPair, write_key_file
from node.errors import CempError
from node.membership import DOMAIN_MEMBERSHIP, Approval, MembershipChange, MembershipTx, approval_message
from node.types import PublicKey, ShortStr
from tests.cluster.harness import Cluster
from tests.support.testing import free_port, start_node_process

pytestmark = pytest.mark.slow


def change_tx(cl: Cluster, op: str, node_id: str, pub: bytes, address: str, orgs: list[str]) -> bytes:
    c = cl.consortium
    ch = MembershipChange(
        ShortStr(c.chain_id),
        ShortStr(op),
        ShortStr(node_id),
        ShortStr("owner"),
        PublicKey(pub),
        ShortStr(address),
    )
    approvals = tuple(
        Approval(ShortStr(o), c.admins[o].sign(DOMAIN_MEMBERSHIP, approval_message(ch))) for o in orgs
    )
    return c.admin_tx(orgs[0], "membership", MembershipTx(ch, approvals))


async def until(pred, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if await pred():
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached")


async def test_add_learner_promote_and_remove(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, proxies=False)
    await cl.start_all()
    new_proc = None
    try:
        leader = await cl.leader()
        c = cl.consortium
        dev, reg = c.register_device("88.123.45/101.1.1")
        async with NodeClient(cl.url(leader)) as nc:
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            now = int(time.time() * 1000)
            for i in range(5):
                assert (await nc.submit(dev.batch(c.chain, [(now + i, "power", i, "W")]), wait=True))[
                    "result"
                ]["ok"]
            # Refused: one org's approval only; nothing written.
            h0 = (await nc.status())["height"]
            with pytest.raises(CempError) as e:
                await nc.submit(
                    change_tx(cl, "add", "owner-2", KeyPair.generate().public, "127.0.0.1:1", ["owner"]),
                    wait=True,
                )
            assert "majority" in e.value.message
            c.admin_nonce["owner"] -= 1  # refused: the nonce was not used
            # Refused: an id that already exists.
            with pytest.raises(CempError) as e:
                await nc.submit(
                    change_tx(
                        cl,
                        "add",
                        "equipment-1",
                        KeyPair.generate().public,
                        "127.0.0.1:1",
                        ["owner", "regulator"],
                    ),
                    wait=True,
                )
            assert "never reused" in e.value.message
            c.admin_nonce["owner"] -= 1
            assert (await nc.status())["height"] == h0

        # Start the new node from the genesis alone; it is not a member yet and must not campaign.
        port = free_port()
        key = KeyPair.generate()
        base = tmp_path / "owner-2"
        base.mkdir()
        (base / "genesis.cemp").write_bytes((tmp_path / cl.ids[0] / "genesis.cemp").read_bytes())
        write_key_file(base / "owner-2.key", key)
        cfg = base / "owner-2.toml"
        cfg.write_text(
            'node_id = "owner-2"\ndata_dir = "data/owner-2"\nkey_file = "owner-2.key"\n'
            f'genesis = "genesis.cemp"\n[api]\nhost = "127.0.0.1"\nport = {port}\n'
        )
        new_proc = await asyncio.to_thread(start_node_process, cfg, base / "node.log", port)
        async with NodeClient(f"http://127.0.0.1:{port}") as newc, NodeClient(cl.url(leader)) as nc:
            assert (await newc.status())["height"] == 0
            res = await nc.submit(
                change_tx(cl, "add", "owner-2", key.public, f"127.0.0.1:{port}", ["owner", "equipment"]),
                wait=True,
            )
            assert res["result"]["ok"], res

            async def joined() -> bool:
                st = await nc.status()
                mine = await newc.status()
                return (
                    "owner-2" in st["members"] and mine["height"] >= st["height"] - 1 and mine["height"] > 5
                )

            await until(joined)
            # It serves reads from its own verified copy, and its vote now counts.
            rows = (await newc.get(f"/v1/devices/{dev.handle}/readings"))["readings"]
            assert len(rows) == 5
            assert (await nc.submit(dev.batch(c.chain, [(now + 99, "power", 99, "W")]), wait=True))["result"][
                "ok"
            ]
            cons = await nc.get("/v1/consortium")
            assert {n["node_id"]: n["active"] for n in cons["nodes"]}["owner-2"] is True

            res = await nc.submit(
                change_tx(cl, "remove", "owner-2", b"\x00" * 32, "", ["regulator", "equipment"]), wait=True
            )
            assert res["result"]["ok"], res

            async def left() -> bool:
                return "owner-2" not in (await nc.status())["members"]

            await until(left)
            assert (await nc.submit(dev.batch(c.chain, [(now + 100, "power", 100, "W")]), wait=True))[
                "result"
            ]["ok"]
            # Removed for good: the id cannot come back.
            with pytest.raises(CempError):
                await nc.submit(
                    change_tx(cl, "add", "owner-2", key.public, f"127.0.0.1:{port}", ["owner", "equipment"]),
                    wait=True,
                )
    finally:
        if new_proc is not None:
            new_proc.terminate()
            new_proc.wait(10)
        await cl.stop()
