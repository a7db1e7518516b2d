"""The alarm inbox, the work-order board and their item pages on an in-process node: what they show (expected,
observed, since, evidence, the whole history), the forms offered to the acting org, and that a submitted form is a
signed tx the chain checks (a forbidden, stale or cross-site post changes nothing)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from cemp import wiring
from maintenance import alarms as al
from maintenance.alarms import load_alarm
from maintenance.workorders import load_order
from node.crypto import write_key_file
from node.server import Node
from node.store import MemoryStore
from tests.resolver.conftest import submit
from tests.support.testing import TestConsortium

DEV = "88.123.45/101.1.3"
SINCE = 1_764_547_200_000
BROWSER = {"Accept": "text/html", "Accept-Language": "en"}


@dataclass
class Env:
    node: Node
    client: TestClient
    c: TestConsortium


async def _node(c: TestConsortium, key_org: str | None, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    if key_org is not None:
        path = tmp / f"{key_org}.key"
        write_key_file(path, c.admins[key_org])
        monkeypatch.setenv("CEMP_WEB_ACT_KEY", str(path))
    else:
        monkeypatch.delenv("CEMP_WEB_ACT_KEY", raising=False)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    dev, raw = c.register_device(DEV)
    await submit(client, raw)
    res = await submit(
        client, dev.batch(c.chain, [(SINCE + i * 5000, "energy.import", 1000 + i, "Wh") for i in range(3)])
    )
    p = al.make_raise(
        DEV, "silent", SINCE + 20_000, "a reading every 5 s", "no reading for 31 s", "tank meter silent",
        evidence=(bytes.fromhex(str(res["tx"])),), message_zh="储热罐电表无数据",
    )  # fmt: skip
    assert (await submit(client, c.admin_tx("equipment", "alarm", p)))["result"]["ok"]  # type: ignore[index]
    return Env(node, client, c)


@pytest_asyncio.fixture
async def owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    e = await _node(TestConsortium.create(n_nodes=1, block_interval_ms=5), "owner", tmp_path, monkeypatch)
    try:
        yield e
    finally:
        await e.client.close()


def _token(html: str) -> str:
    m = re.search(r'name="token" value="([0-9a-f]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def test_inbox_and_alarm_page_show_the_finding_and_the_forms_of_the_acting_org(owner: Env) -> None:
    r = await owner.client.get("/alarms", headers=BROWSER)
    html = await r.text()
    assert r.status == 200 and 'href="/alarms/1"' in html and "tank meter silent" in html
    r = await owner.client.get("/alarms/1", headers=BROWSER)
    html = await r.text()
    assert r.status == 200
    for words in ("a reading every 5 s", "no reading for 31 s", DEV, "Acting as <b>owner</b>", "/tx/"):
        assert words in html, words
    # The owner may acknowledge, comment, close and open a work order; assigning is the equipment firm's.
    assert 'id="act-acknowledge"' in html and 'id="act-open_order"' in html and 'id="act-close"' in html
    assert 'id="act-assign"' not in html
    r = await owner.client.get("/alarms/1?lang=zh", headers=BROWSER)
    html = await r.text()
    assert "储热罐电表无数据" in html and "当前身份" in html and "确认" in html
    r = await owner.client.get("/alarms/abc", headers=BROWSER)
    assert r.status == 400
    r = await owner.client.get("/alarms/99", headers=BROWSER)
    assert r.status == 404


async def test_a_form_is_a_signed_step_and_bad_posts_change_nothing(owner: Env) -> None:
    cl = owner.client
    html = await (await cl.get("/alarms/1", headers=BROWSER)).text()
    tok = _token(html)
    form = {"token": tok, "action": "acknowledge", "step": "1", "note": "seen in the control room"}
    r = await cl.post("/alarms/1", data=form, allow_redirects=False)
    assert r.status == 303 and re.search(r"/alarms/1\?done=[0-9a-f]{64}", r.headers["Location"]), r.headers
    a = load_alarm(owner.node.ledger.store, 1)
    assert a is not None and a.state == "acknowledged"
    done = await (await cl.get(r.headers["Location"], headers=BROWSER)).text()
    assert "Committed: tx" in done and "seen in the control room" in done
    # The same form again (a double click): stale, refused with the chain's reason, nothing changes.
    r = await cl.post("/alarms/1", data=form)
    assert r.status == 409 and "someone acted meanwhile" in await r.text()
    # A crafted post of a step the owner may not take.
    r = await cl.post("/alarms/1", data={"token": tok, "action": "assign", "step": "2", "assignee": "x"})
    assert r.status == 403 and "assign of alarm 1 is done by the equipment firm" in await r.text()
    # A post without the page's token (another site's form).
    r = await cl.post("/alarms/1", data={"token": "0" * 32, "action": "comment", "step": "2", "note": "x"})
    assert r.status == 403
    a = load_alarm(owner.node.ledger.store, 1)
    assert a is not None and a.steps == 2 and a.state == "acknowledged"
    # Open a work order from the alarm: the board and the order page show it with its history.
    r = await cl.post(
        "/alarms/1",
        data={"token": tok, "action": "open_order", "title": "inspect the RS-485 line"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"].startswith("/workorders/1?done="), r.headers
    w = load_order(owner.node.ledger.store, 1)
    assert w is not None and w.state == "open" and w.opened.alarm == 1
    board = await (await cl.get("/workorders", headers=BROWSER)).text()
    assert 'href="/workorders/1"' in board and "inspect the RS-485 line" in board
    page = await (await cl.get("/workorders/1", headers=BROWSER)).text()
    assert "from alarm 1" in page and 'id="act-assign"' not in page and 'id="act-comment"' in page
    # The device page's alarms panel lists the open alarm.
    dev = await (await cl.get(f"/device/{DEV}", headers=BROWSER)).text()
    assert 'href="/alarms/1"' in dev


async def test_without_an_org_key_the_pages_are_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = await _node(TestConsortium.create(n_nodes=1, block_interval_ms=5), None, tmp_path, monkeypatch)
    try:
        html = await (await e.client.get("/alarms/1", headers=BROWSER)).text()
        assert "Read-only" in html and '<form method="post"' not in html
        r = await e.client.post("/alarms/1", data={"token": "x", "action": "acknowledge", "step": "1"})
        assert r.status == 403
        a = load_alarm(e.node.ledger.store, 1)
        assert a is not None and a.state == "open"
    finally:
        await e.client.close()
