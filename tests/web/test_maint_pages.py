"""The alarm inbox, the work-order board and their item pages on an in-process node: what they show (expected,
observed, since, evidence, the whole history with each signer), the forms offered to the signed-in person (by
their org and roles), and that a step is a tx signed with the PERSON's key: the page's ``/sign`` route answers
the exact bytes (what ``web/static/sign.js`` signs in the browser; here the test's key signs them), the node
rebuilds them from the form, checks the signature and admits the tx, and the chain's rules decide. A forbidden,
stale, unsigned, wrongly signed or cross-site post changes nothing; pages follow the device's readings rule."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from access.model import DataPolicyPayload, PersonPut
from cemp import wiring
from maintenance import alarms as al
from maintenance.alarms import alarm_history, load_alarm
from maintenance.workorders import load_order
from node.crypto import KeyPair
from node.server import Node
from node.store import MemoryStore
from node.types import Handle, ShortStr, Text
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
    operator: KeyPair
    """Wang Fang, the owner's operator: acknowledges, comments, opens work orders; may not close."""
    auditor: KeyPair
    """Chen Jing, the owner's auditor: takes no step."""

    def cookie(self, key: KeyPair | None) -> dict[str, str]:
        if key is None:
            return dict(BROWSER)
        tok, _ = self.node.reads.tokens.issue(key.public, b"w", int(time.time() * 1000))  # type: ignore[attr-defined]
        return {**BROWSER, "Cookie": f"cemp_session={tok}"}

    async def page(self, path: str, key: KeyPair | None) -> tuple[int, str]:
        r = await self.client.get(path, headers=self.cookie(key))
        return r.status, await r.text()

    async def sign(self, path: str, form: dict[str, str], key: KeyPair) -> dict[str, Any]:
        r = await self.client.post(path + "/sign", data=form, headers=self.cookie(key))
        body: dict[str, Any] = await r.json()
        assert r.status == 200, body
        return body

    async def act(
        self, path: str, form: dict[str, str], key: KeyPair, signer: KeyPair | None = None
    ) -> tuple[int, str, str]:
        """What the browser does: ask for the bytes, sign them with ``signer`` (the person's key), post again."""
        j = await self.sign(path, form, key)
        assert j["signer"] == key.public.hex() and j["kind"] in ("alarm", "workorder")
        sig = (signer or key).sign(b"", bytes.fromhex(j["sign_bytes"]))
        r = await self.client.post(
            path,
            data={**form, "nonce": str(j["nonce"]), "signature": sig.hex()},
            headers=self.cookie(key),
            allow_redirects=False,
        )
        return r.status, r.headers.get("Location", ""), await r.text()


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        dev, raw = c.register_device(DEV)
        await submit(client, raw)
        res = await submit(
            client,
            dev.batch(c.chain, [(SINCE + i * 5000, "energy.import", 1000 + i, "Wh") for i in range(3)]),
        )
        p = al.make_raise(
            DEV, "silent", SINCE + 20_000, "a reading every 5 s", "no reading for 31 s", "tank meter silent",
            evidence=(bytes.fromhex(str(res["tx"])),), message_zh="储热罐电表无数据",
        )  # fmt: skip
        assert (await submit(client, c.admin_tx("equipment", "alarm", p)))["result"]["ok"]  # type: ignore[index]
        op, aud = KeyPair.generate(), KeyPair.generate()
        for key, name, role in ((op, "Wang Fang", "operator"), (aud, "Chen Jing", "auditor")):
            put = PersonPut(key.public, Text(name), (ShortStr(role),))
            assert (await submit(client, c.admin_tx("owner", "person.put", put)))["result"]["ok"]  # type: ignore[index]
        yield Env(node, client, c, op, aud)
    finally:
        await client.close()


def _token(html: str) -> str:
    m = re.search(r'name="token" value="([0-9a-f]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def test_signed_out_the_pages_show_the_alarm_and_no_forms(env: Env) -> None:
    st, html = await env.page("/alarms", None)
    assert st == 200 and 'href="/alarms/1"' in html and "tank meter silent" in html
    st, html = await env.page("/alarms/1", None)
    assert st == 200
    for words in ("a reading every 5 s", "no reading for 31 s", DEV, "/tx/", "Sign in to take a step"):
        assert words in html, words
    assert '<form method="post" action="/alarms' not in html
    r = await env.client.post("/alarms/1", data={"token": "x", "action": "acknowledge", "step": "1"})
    assert r.status == 401 and "sign in first" in await r.text()
    r = await env.client.post("/alarms/1/sign", data={"token": "x", "action": "acknowledge", "step": "1"})
    assert r.status == 401 and "sign in first" in (await r.json())["message"]
    st, html = await env.page("/alarms/1?lang=zh", None)
    assert "储热罐电表无数据" in html and "登录后才能处理" in html
    assert (await env.page("/alarms/abc", None))[0] == 400
    assert (await env.page("/alarms/99", None))[0] == 404


async def test_a_person_signs_a_step_with_their_own_key(env: Env) -> None:
    op = env.operator
    st, html = await env.page("/alarms/1", op)
    assert st == 200 and "Acting as <b>Wang Fang</b> (owner, roles: operator)." in html
    # The operator may acknowledge, comment and open a work order; closing needs an energy manager; assigning is
    # the equipment firm's and is not offered at all.
    assert 'id="act-acknowledge"' in html and 'id="act-open_order"' in html and 'id="act-comment"' in html
    assert 'id="act-close"' not in html and 'id="act-assign"' not in html
    assert (
        'data-blocked="close"' in html and "close: needs the role energy manager; you hold operator." in html
    )
    assert "cemp alarm acknowledge 1 --note &#39;NOTE&#39; --key YOUR.key --nodes http://" in html
    tok = _token(html)
    form = {"token": tok, "action": "acknowledge", "step": "1", "note": "seen in the control room"}
    # Without a signature (no JavaScript): refused, nothing changes, the command line is offered.
    r = await env.client.post("/alarms/1", data=form, headers=env.cookie(op))
    text = await r.text()
    assert r.status == 400 and "signed with your own key" in text and '<details class="cli" open>' in text
    # Signed by another key than the signed-in one: refused by the page before anything is admitted.
    st, _loc, text = await env.act("/alarms/1", form, op, signer=KeyPair.generate())
    assert st == 400 and "does not verify with the key you signed in with" in text
    a = load_alarm(env.node.ledger.store, 1)
    assert a is not None and a.state == "open" and a.steps == 1
    # Signed with the person's key: a tx on chain whose signer is the person.
    st, loc, _ = await env.act("/alarms/1", form, op)
    assert st == 303 and re.search(r"/alarms/1\?done=[0-9a-f]{64}", loc), loc
    a = load_alarm(env.node.ledger.store, 1)
    assert a is not None and a.state == "acknowledged"
    step = alarm_history(env.node.ledger.store, 1)[-1]
    assert step.sender == op.public and step.org == "owner" and step.tx_hash.hex() == loc.split("=")[1]
    tx = await (await env.client.get(f"/v1/txs/{step.tx_hash.hex()}")).json()
    assert op.public.hex() in str(tx)
    st, done = await env.page(loc, op)
    assert "Committed: tx" in done and "seen in the control room" in done and "Wang Fang" in done
    # The same form again, freshly signed (a second click, or a page made stale by someone else): refused with the
    # chain's reason, nothing changes.
    st, _loc, text = await env.act("/alarms/1", form, op)
    assert st == 409 and "someone acted meanwhile" in text
    # A crafted step the owner's org may not take.
    st, _loc, text = await env.act(
        "/alarms/1", {"token": tok, "action": "assign", "step": "2", "assignee": "x"}, op
    )
    assert st == 403 and "assign of alarm 1 is done by the equipment firm" in text
    # A post without the page's token (another site's form).
    r = await env.client.post(
        "/alarms/1", data={**form, "token": "0" * 32, "step": "2"}, headers=env.cookie(op)
    )
    assert r.status == 403
    a = load_alarm(env.node.ledger.store, 1)
    assert a is not None and a.steps == 2 and a.state == "acknowledged"
    # Open a work order from the alarm: the board and the order page show it with its history.
    st, loc, _ = await env.act(
        "/alarms/1", {"token": tok, "action": "open_order", "title": "inspect RS-485"}, op
    )
    assert st == 303 and loc.startswith("/workorders/1?done="), loc
    w = load_order(env.node.ledger.store, 1)
    assert w is not None and w.state == "open" and w.opened.alarm == 1
    board = (await env.page("/workorders", None))[1]
    assert 'href="/workorders/1"' in board and "inspect RS-485" in board
    page = (await env.page("/workorders/1", op))[1]
    assert "from alarm 1" in page and 'id="act-assign"' not in page and 'id="act-comment"' in page
    # The device page's alarms panel lists the open alarm.
    assert 'href="/alarms/1"' in (await env.page(f"/device/{DEV}", None))[1]


async def test_a_person_without_the_role_is_refused_with_the_reason(env: Env) -> None:
    aud = env.auditor
    st, html = await env.page("/alarms/1", aud)
    assert st == 200 and "Chen Jing" in html and 'class="act"' not in html
    assert "acknowledge: needs the role operator or energy manager; you hold auditor." in html
    # A step the auditor signs anyway (a crafted form): the chain's authorizer refuses it on admission.
    tok = _token((await env.page("/alarms/1", env.operator))[1])
    st, _loc, text = await env.act(
        "/alarms/1", {"token": tok, "action": "comment", "step": "1", "note": "x"}, aud
    )
    assert st == 403 and "Chen Jing (owner) holds auditor" in text
    a = load_alarm(env.node.ledger.store, 1)
    assert a is not None and a.steps == 1


async def test_pages_follow_the_devices_readings_rule(env: Env) -> None:
    policy = DataPolicyPayload((ShortStr("readings"),), (Handle(DEV),))
    assert (await submit(env.client, env.c.admin_tx("owner", "data.policy", policy)))["result"]["ok"]  # type: ignore[index]
    st, html = await env.page("/alarms", None)
    assert st == 200 and 'href="/alarms/1"' not in html and "1 items about devices" in html
    st, html = await env.page("/alarms/1", None)
    assert st == 401 and "tank meter silent" not in html
    st, html = await env.page("/alarms/1", env.operator)
    assert st == 200 and "tank meter silent" in html
    st, html = await env.page("/alarms", env.auditor)
    assert 'href="/alarms/1"' in html
