"""Ledger import (one admin-signed document per good row) and a person's confirmation, as library and CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from collector.scanner import apply_corrections, bill_checks, confirm_document, import_ledger_file
from node.crypto import write_key_file
from node.documents import document_id
from tests.documents.conftest import bill_payload, bill_values, register, sign, submit
from tests.support.testing import TestConsortium

LEDGER = """购电台账 2025
日期,户号,电量(kWh),单价(元/kWh),金额(元),发票号
2025-01,5127336124,"1,000.5",0.5472,547.47,INV-001
2025-02,5127336124,abc,0.5472,0,INV-002
2025-03,5127336124,900,0.5472,492.48,INV-003
合计,,1900.5,,1039.95,
"""


def url(client: TestClient) -> str:
    return str(client.make_url(""))


async def test_ledger_rows_become_documents_once(
    tmp_path: Path, consortium: TestConsortium, doc_node
) -> None:
    node, client = doc_node
    path = tmp_path / "ledger.csv"
    path.write_text(LEDGER, encoding="utf-8")
    key = consortium.admins["equipment"]
    report = await import_ledger_file(path, key, [url(client)], "purchase_ledger_row", progress=False)
    assert (report.rows, report.committed, report.already, report.refused) == (2, 2, 0, [])
    assert report.bad_rows == [{"row": 4, "column": "电量(kWh)", "problem": "not a number", "value": "abc"}]
    assert not report.ok  # a bad row needs a person
    r = await client.get("/v1/documents", params={"doc_type": "purchase_ledger_row"})
    docs = sorted((await r.json())["documents"], key=lambda d: d["row"])
    source = hashlib.sha256(path.read_bytes()).digest()
    assert [d["id"] for d in docs] == [document_id(source, "purchase_ledger_row", n).hex() for n in (3, 5)]
    first = docs[0]
    assert (
        first["org"] == "equipment" and first["sender_role"] == "admin" and first["media_type"] == "text/csv"
    )
    assert first["fields"] == {
        "account": "5127336124",
        "amount_fen": 54747,
        "energy_wh": 1_000_500,
        "file_name": "ledger.csv",
        "period_end": "2025-01-31",
        "period_start": "2025-01-01",
        "price_uyuan_per_kwh": 547_200,
        "reference": "INV-001",
    }
    height = node.ledger.height
    again = await import_ledger_file(path, key, [url(client)], "purchase_ledger_row", progress=False)
    assert (again.committed, again.already, again.refused) == (0, 2, [])
    assert node.ledger.height == height  # nothing signed, nothing written


async def test_confirmation_corrects_fields_and_reruns_the_checks(
    consortium: TestConsortium, doc_node
) -> None:
    _, client = doc_node
    c = consortium
    dev = await register(c, client)
    wrong = bill_values(energy_wh=7_980_000, flagged="energy_wh", checks_failed="reading,amount")
    p = bill_payload(review="needs_review", values=wrong)
    st, v1 = await submit(client, sign(dev.key, c.chain, 1, p))
    assert st == 200
    doc_id = document_id(p.source_sha256, "electricity_bill", 0).hex()
    assert bill_checks(wrong) == ["reading", "amount"]
    out = await confirm_document(
        doc_id,
        c.admins["owner"],
        [url(client)],
        sets=["energy_wh=7986000", "tariff.single.energy_wh=7986000"],
        set_texts=["note=checked against the paper bill"],
    )
    assert out["version"] == 2 and out["checks_failed"] == [] and out["result"]["result"]["ok"]
    r = await client.get(f"/v1/documents/{doc_id}")
    doc = await r.json()
    assert doc["review"] == "confirmed" and doc["supersedes"] == v1["tx"]
    assert doc["fields"]["energy_wh"] == 7_986_000 and doc["fields"]["flagged"] == ""
    assert doc["fields"]["checks_failed"] == "" and doc["fields"]["note"] == "checked against the paper bill"
    # Another org's admin may not.
    from node.errors import CempError

    with pytest.raises(CempError) as e:
        await confirm_document(doc_id, c.admins["equipment"], [url(client)])
    assert e.value.code.name == "NOT_AUTHORIZED"


def test_corrections_keep_field_types() -> None:
    cur: dict[str, int | str] = {"energy_wh": 1, "account": "0123"}
    assert apply_corrections(cur, ["energy_wh=5", "account=0999", "new=7", "memo=x y"], ["serial=0042"]) == {
        "energy_wh": 5,
        "account": "0999",
        "new": 7,
        "memo": "x y",
        "serial": "0042",
    }
    assert apply_corrections(cur, unsets=["account"]) == {"energy_wh": 1}
    for bad in (["energy_wh=12.5"], ["noequals"]):
        with pytest.raises(ValueError):
            apply_corrections(cur, bad)
    with pytest.raises(ValueError):
        apply_corrections(cur, unsets=["ghost"])


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collector.scanner",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_commands(tmp_path: Path, consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    c = consortium
    key = tmp_path / "owner.key"
    write_key_file(key, c.admins["owner"])
    path = tmp_path / "settlement.csv"
    path.write_text(LEDGER, encoding="utf-8")
    rc, out, err = await _cli(
        "import-ledger", str(path), "--key", str(key), "--nodes", url(client), "--doc-type", "settlement_row"
    )
    assert rc == 1, err  # the bad row
    assert "row 4, column '电量(kWh)': not a number" in err
    report = json.loads(out)
    assert report["committed"] == 2 and report["doc_type"] == "settlement_row"
    doc_id = document_id(bytes.fromhex(report["source_sha256"]), "settlement_row", 3).hex()
    rc, out, err = await _cli(
        "confirm-document", doc_id, "--set", "energy_wh=1000600", "--key", str(key), "--nodes", url(client)
    )
    assert rc == 0, err
    assert json.loads(out)["version"] == 2
    r = await client.get(f"/v1/documents/{doc_id}")
    assert (await r.json())["fields"]["energy_wh"] == 1_000_600


async def test_scan_bills_command_once(tmp_path: Path, consortium: TestConsortium, doc_node) -> None:
    _, client = doc_node
    dev = await register(consortium, client)
    key = tmp_path / "scanner.key"
    write_key_file(key, dev.key)
    inbox = tmp_path / "inbox"
    rc, out, err = await _cli(
        "scan-bills",
        "--inbox",
        str(inbox),
        "--key",
        str(key),
        "--device",
        "88.123.45/900.1",
        "--nodes",
        f"http://127.0.0.1:1,{url(client)}",
        "--once",
        "--log-level",
        "warning",
    )
    assert rc == 0, err
    assert json.loads(out) == {"committed": 0, "rejected": 0, "waiting": 0}
    assert (inbox / "done").is_dir() and (inbox / "rejected").is_dir()
