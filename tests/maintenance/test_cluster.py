"""A full alarm and work-order lifecycle on a three-node cluster of real node processes: each org takes its steps
at its own node; forbidden and illegal steps are refused on submission at every node (403/409 JSON, nothing
written); every node serves the same history. The ``cemp alarm`` / ``cemp workorder`` commands drive part of it.
(Refusal on apply, of a block built without the mempool, is in ``test_kinds.py``: three ledgers, same results.)"""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from access.client import submit_signed
from access.model import DataPolicyPayload
from cemp.cli import main as cemp_main
from maintenance import alarms as al
from maintenance import client as mc
from node.client import NodeClient
from node.crypto import write_key_file
from node.errors import CempError, Code
from node.types import ShortStr
from tests.cluster.harness import Cluster
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
DEV = "88.123.45/101.1.3"
NODE_OF = {"owner": "owner-1", "equipment": "equipment-1", "regulator": "regulator-1"}


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cemp_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


async def test_lifecycle_and_permissions_on_three_nodes(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, proxies=False)
    try:
        await cl.start_all()
        await cl.leader(60)
        c = cl.consortium
        keys = {}
        for org, kp in c.admins.items():
            keys[org] = tmp_path / f"{org}.admin.key"
            write_key_file(keys[org], kp)
        clients = {org: NodeClient(cl.url(nid)) for org, nid in NODE_OF.items()}
        try:
            dev, reg = c.register_device(DEV)
            assert (await clients["owner"].submit(reg, wait=True))["result"]["ok"]
            t0 = 1_790_000_000_000
            res = await clients["owner"].submit(
                dev.batch(c.chain, [(t0 + i * 60_000, "energy.import", 1000 + i, "Wh") for i in range(10)]),
                wait=True,
            )
            evidence = bytes.fromhex(res["tx"])
            for x in clients.values():  # a finding names readings every node has applied
                await wait_until(
                    lambda x=x: _has_tx(x, res["tx"]), 30, "the readings on every node", interval=0.1
                )
            chain = c.chain
            finding = al.make_raise(
                DEV, "step", t0, "10 kWh/h", "25 kWh/h", "tank stepped up", quantity="energy.import",
                evidence=(evidence,),
            )  # fmt: skip
            # Forbidden on submission at every node: the regulator raises.
            for nid in cl.ids:
                async with NodeClient(cl.url(nid)) as nc:
                    with pytest.raises(CempError) as e:
                        await mc.submit(nc, c.admins["regulator"], chain, "alarm", finding)
                    assert (
                        e.value.code == Code.NOT_AUTHORIZED
                        and "raise of an alarm is done by" in e.value.message
                    )
            raised = await mc.raise_alarm(clients["equipment"], c.admins["equipment"], chain, finding)
            assert raised.number == 1 and raised.state == "open"
            # The next poll's raise of the same episode, at another node: refused on submission.
            with pytest.raises(CempError) as e:
                await mc.raise_alarm(clients["owner"], c.admins["owner"], chain, finding)
            assert e.value.code == Code.ALREADY_EXISTS and "already records this episode" in e.value.message
            # Forbidden steps at every node, by the wrong org.
            for nid in cl.ids:
                async with NodeClient(cl.url(nid)) as nc:
                    with pytest.raises(CempError) as e:
                        await mc.alarm_step(nc, c.admins["equipment"], chain, "acknowledge", 1)
                    assert e.value.code == Code.NOT_AUTHORIZED
            await _synced(cl)
            d = await mc.alarm_step(clients["owner"], c.admins["owner"], chain, "acknowledge", 1, note="seen")
            assert d.state == "acknowledged"
            # The CLI at the equipment firm's node: assign the alarm, open, assign, diagnose, repair.
            eq = ["--nodes", cl.url("equipment-1"), "--key", str(keys["equipment"])]
            ow = ["--nodes", cl.url("owner-1"), "--key", str(keys["owner"])]
            await _synced(cl)
            rc, out, err = await asyncio.to_thread(cli, "alarm", "assign", "1", "--to", "Li Gang", *eq)
            assert rc == 0 and "alarm 1: assign committed" in out, err
            rc, out, err = await asyncio.to_thread(
                cli,
                "workorder",
                "open",
                "--alarm",
                "1",
                "--device",
                DEV,
                "--title",
                "check tank heaters",
                *ow,
            )
            assert rc == 0 and "work order 1: open committed" in out, err
            await _synced(cl)
            rc, out, err = await asyncio.to_thread(cli, "workorder", "diagnose", "1", "--note", "x", *eq)
            assert rc == 1 and "work order 1 is 'open'; diagnose needs 'assigned'" in err, (out, err)
            for argv in (
                ("assign", "1", "--to", "Li Gang"),
                ("diagnose", "1", "--note", "heater 2 contactor welded"),
                ("repair", "1", "--note", "contactor replaced"),
            ):
                rc, out, err = await asyncio.to_thread(cli, "workorder", *argv, *eq)
                assert rc == 0, err
            # The owner verifies and closes at its node; the regulator comments at its node before the close.
            rc, out, err = await asyncio.to_thread(
                cli, "workorder", "verify", "1", "--result", "pass", "--note", "ok", "--key", str(keys["equipment"]),
                "--nodes", cl.url("equipment-1"),
            )  # fmt: skip
            assert rc == 1 and "verify of work order 1 is done by the building owner" in err, err
            # Each org reads its own node before it acts: wait until every node has applied the last step.
            await _synced(cl)
            await mc.order_step(
                clients["regulator"], c.admins["regulator"], chain, "comment", 1, note="noted"
            )
            await _synced(cl)
            await mc.order_step(
                clients["owner"], c.admins["owner"], chain, "verify", 1, result="pass", note="ok"
            )
            await mc.order_step(clients["owner"], c.admins["owner"], chain, "close", 1, note="done")
            d = await mc.alarm_step(
                clients["owner"], c.admins["owner"], chain, "close", 1, note="fixed by WO 1"
            )
            assert d.state == "closed"
            rc, out, _ = await asyncio.to_thread(
                cli, "workorder", "show", "1", "--nodes", cl.url("regulator-1")
            )
            assert rc == 0 and "[closed]" in out and "verify" in out and "tx " in out
            # Every node serves the same history once it has applied the last block.
            async with aiohttp.ClientSession() as s:

                async def hist(nid: str) -> list[Any]:
                    async with s.get(f"{cl.url(nid)}/v1/workorders/1/history") as r:
                        return (await r.json()).get("history", []) if r.status == 200 else []

                for nid in cl.ids:
                    await wait_until(
                        lambda nid=nid: _len_is(hist(nid), 7),
                        30,
                        f"{nid} to hold the closed order",
                        interval=0.1,
                    )
                first = await hist(cl.ids[0])
                for nid in cl.ids[1:]:
                    assert await hist(nid) == first
                assert [(h["action"], h["org"]) for h in first] == [
                    ("open", "owner"),
                    ("assign", "equipment"),
                    ("diagnose", "equipment"),
                    ("repair", "equipment"),
                    ("comment", "regulator"),
                    ("verify", "owner"),
                    ("close", "owner"),
                ]
                # The owner makes the meter's readings members-only: alarms about it follow (the regulator sees
                # it counted, not shown; the owner's key shows it).
                await submit_signed(
                    clients["owner"],
                    c.admins["owner"],
                    "data.policy",
                    DataPolicyPayload((ShortStr("readings"),), ()),
                )
                await _synced(cl)
                reg = ("--nodes", cl.url("regulator-1"))
                rc, out, err = await asyncio.to_thread(cli, "alarm", "list", *reg)
                assert rc == 0 and "no alarms" in out and "1 more about members-only devices" in out, (
                    out,
                    err,
                )
                rc, out, err = await asyncio.to_thread(cli, "alarm", "show", "1", *reg)
                assert rc == 1 and "members" in err, (out, err)
                rc, out, err = await asyncio.to_thread(
                    cli, "alarm", "list", "--key", str(keys["owner"]), *reg
                )
                assert rc == 0 and DEV in out and "more about" not in out, (out, err)
                # Bad reads are 4xx JSON.
                for path, status in (
                    ("/v1/alarms/abc", 400),
                    ("/v1/alarms/99", 404),
                    ("/v1/workorders/0", 400),
                    ("/v1/alarms?state=bogus", 400),
                    ("/v1/workorders?limit=0", 400),
                ):
                    async with s.get(cl.url("owner-1") + path) as r:
                        assert r.status == status and "message" in await r.json(), path
        finally:
            for x in clients.values():
                await x.close()
    finally:
        await cl.stop()


async def _len_is(coro: Any, n: int) -> bool:
    return len(await coro) == n


async def _has_tx(c: NodeClient, h: str) -> bool:
    try:
        await c.get(f"/v1/txs/{h}")
        return True
    except CempError:
        return False


async def _synced(cl: Cluster) -> None:
    """Every node has applied the highest block any node has."""
    top = max([int((await cl.status(n))["height"]) for n in cl.ids])

    async def all_there() -> bool:
        return all([int((await cl.status(n))["height"]) >= top for n in cl.ids])

    await wait_until(all_there, 30, f"every node at height {top}", interval=0.05)
