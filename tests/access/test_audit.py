"""``cemp audit`` against a running node process: every administrative tx is listed with its
actor, object and time, filtered by actor, object, kind and time, exported as CSV and JSON, page by page with a
progress bar; device readings are not administrative actions and never appear."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from access.model import GrantPayload
from cemp.cli import main
from node.chain import sign_tx
from node.client import NodeClient
from node.crypto import KeyPair, write_key_file
from node.types import ShortStr, Text, TimestampMs
from tests.support.testing import TestConsortium, free_port, start_node_process

pytestmark = pytest.mark.slow


def test_cemp_audit_lists_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    c = TestConsortium.create(n_nodes=1, ports=[port], block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path, nid, port)
    proc = start_node_process(cfg, tmp_path / "node.log", port)
    url = f"http://127.0.0.1:{port}"
    manager = KeyPair.generate()
    write_key_file(tmp_path / "manager.key", manager)
    write_key_file(tmp_path / "equipment.admin.key", c.admins["equipment"])
    nonces: dict[bytes, int] = {}

    async def send(key: KeyPair, kind: str, payload: object) -> dict[str, Any]:
        nonces[key.public] = nonces.get(key.public, 0) + 1
        raw, _ = sign_tx(key, c.chain, kind, nonces[key.public], payload)
        async with NodeClient(url) as nc:
            return await nc.submit(raw, wait=True)

    until = int(time.time() * 1000) + 86_400_000

    def g(gid: str) -> GrantPayload:
        return GrantPayload(
            ShortStr(gid),
            ShortStr("equipment"),
            None,
            (ShortStr("readings"),),
            (),
            (),
            TimestampMs(until),
            Text(""),
        )

    async def setup() -> None:
        dev, raw = c.register_device("88.123.45/101.1.1", org="owner")
        nonces[c.admins["owner"].public] = 1
        async with NodeClient(url) as nc:
            await nc.submit(raw, wait=True)
            await nc.submit(
                dev.batch(c.chain, [(int(time.time() * 1000) - 1000, "power", 5, "W")]), wait=True
            )

    async def second_grant() -> None:
        nonces[c.admins["owner"].public] = 2
        await send(c.admins["owner"], "grant", g("second"))

    try:
        asyncio.run(setup())
        # people and grants through the command line: the owner's admin registers Li Wei, who grants and revokes
        write_key_file(tmp_path / "owner.admin.key", c.admins["owner"])
        people = ["people", "add", "--key", str(tmp_path / "owner.admin.key"), "--nodes", url]
        assert (
            main(
                [
                    *people,
                    "--person",
                    str(tmp_path / "manager.key"),
                    "--name",
                    "Li Wei",
                    "--roles",
                    "energy_manager",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out)["kind"] == "person.put"
        mgr = ["--key", str(tmp_path / "manager.key"), "--nodes", url]
        day = time.strftime("%Y-%m-%d", time.gmtime(until / 1000))
        assert (
            main(
                [
                    "grant",
                    "add",
                    *mgr,
                    "--id",
                    "heat-2026",
                    "--to",
                    "equipment",
                    "--data",
                    "readings",
                    "--until",
                    day,
                ]
            )
            == 0
        )
        assert main(["grant", "revoke", *mgr, "--id", "heat-2026", "--reason", "ended"]) == 0
        capsys.readouterr()
        # a grant to an org that is not in the consortium is refused at submission, with the reason
        assert (
            main(["grant", "add", *mgr, "--id", "x", "--to", "nobody", "--data", "readings", "--until", day])
            == 1
        )
        assert "grantee 'nobody' is not an org" in capsys.readouterr().err
        asyncio.run(second_grant())
        assert main(["grant", "list", *mgr]) == 0
        listed = {x["grant_id"]: x["status"] for x in json.loads(capsys.readouterr().out)["grants"]}
        assert listed == {"heat-2026": "revoked", "second": "active"}
        assert main(["login", *mgr]) == 0
        assert json.loads(capsys.readouterr().out)["token"].startswith("cemp1.")
        base = ["audit", "--key", str(tmp_path / "equipment.admin.key"), "--nodes", url]
        # everything, as JSON, a few blocks per request, with the progress bar
        assert main([*base, "--format", "json", "--page-blocks", "2", "--progress"]) == 0
        out = capsys.readouterr()
        entries = json.loads(out.out)
        assert "audit" in out.err and "block" in out.err  # the tqdm bar
        kinds = [e["kind"] for e in entries]
        assert kinds == ["device.register", "person.put", "grant", "grant.revoke", "grant"]
        assert "readings" not in kinds
        by_kind = {(e["kind"], e["ok"]): e for e in reversed(entries)}  # the first of each kind
        assert all(e["ok"] for e in entries)
        gr = by_kind[("grant", True)]
        assert (
            gr["actor"]["name"] == "Li Wei"
            and gr["actor"]["type"] == "person"
            and gr["object"] == "heat-2026"
        )
        assert by_kind[("person.put", True)]["actor"] == {
            "type": "admin",
            "org": "owner",
            "name": "owner admin",
            "pubkey": c.admins["owner"].public.hex(),
        }
        assert entries == sorted(entries, key=lambda e: (e["height"], e["index"]))
        # by actor (a name), by object, by kind
        assert main([*base, "--format", "json", "--actor", "li wei", "--quiet"]) == 0
        assert [e["kind"] for e in json.loads(capsys.readouterr().out)] == ["grant", "grant.revoke"]
        assert main([*base, "--format", "json", "--object", "heat-2026", "--quiet"]) == 0
        assert [e["kind"] for e in json.loads(capsys.readouterr().out)] == ["grant", "grant.revoke"]
        assert main([*base, "--format", "json", "--kind", "grant", "--actor", "owner", "--quiet"]) == 0
        assert [e["object"] for e in json.loads(capsys.readouterr().out)] == [
            "heat-2026",
            "second",
        ]  # the org's
        assert main([*base, "--format", "json", "--kind", "grant", "--actor", "owner admin", "--quiet"]) == 0
        assert [e["object"] for e in json.loads(capsys.readouterr().out)] == ["second"]
        key_prefix = manager.public.hex()[:12]
        assert main([*base, "--format", "json", "--actor", key_prefix, "--quiet"]) == 0
        assert len(json.loads(capsys.readouterr().out)) == 2
        # by time: nothing before genesis's era, everything up to tomorrow
        assert main([*base, "--format", "json", "--until", "2020-01-01", "--quiet"]) == 0
        assert json.loads(capsys.readouterr().out) == []
        # CSV to a file
        dest = tmp_path / "audit.csv"
        assert main([*base, "--format", "csv", "--out", str(dest), "--quiet"]) == 0
        rows = list(csv.reader(io.StringIO(dest.read_text())))
        assert rows[0][:4] == ["time_utc", "height", "index", "kind"] and len(rows) == 6
        assert rows[3][3] == "grant" and rows[3][6] == "Li Wei" and rows[3][8] == "heat-2026"
        # reading the audit trail needs a member's key
        write_key_file(tmp_path / "stranger.key", KeyPair.generate())
        assert main(["audit", "--key", str(tmp_path / "stranger.key"), "--nodes", url, "--quiet"]) == 1
        assert "no org admin key" in capsys.readouterr().err
    finally:
        proc.terminate()
        proc.wait(timeout=30)
