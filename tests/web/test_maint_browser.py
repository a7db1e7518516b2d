"""The alarm inbox and the work-order board in a real headless browser (Debian's Chromium through Playwright)
against a three-node cluster of ``cemp node`` processes, where PEOPLE act with their own keys: each signs in at
their org's node with the one-time link ``cemp login --web`` gives, loads their key file once on the sign-in page
(WebCrypto keeps it non-extractable in IndexedDB), and every click is a tx the browser signs with it. The owner's
energy manager acknowledges the alarm (the tx on chain names her key as signer); the equipment firm's maintenance
engineer is told that assigning needs an operator and gets no form for it; the owner opens a work order, the
firm's operator assigns it, the engineer diagnoses and repairs it, the energy manager verifies and closes it.
Phone (375 px, zh) and desktop (en) viewports; screenshots under ``$CEMP_SCREENSHOT_DIR`` (default
``test-artifacts/screenshots``). Waits are conditions with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from access.client import sign_in
from access.model import PersonPut
from maintenance import alarms as al
from node.client import NodeClient
from node.crypto import KeyPair, write_key_file
from node.types import ShortStr, Text
from tests.cluster.harness import Cluster
from tests.web.test_browser import (  # noqa: F401
    CHROMIUM,
    DESKTOP,
    PHONE,
    browser,
    no_overflow,
    page_for,
    shots_dir,
)

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.async_api")
TANK = "88.123.45/101.1.3"
ORG_OF = {"owner-1": "owner", "equipment-1": "equipment", "regulator-1": "regulator"}


@dataclass
class Site:
    cluster: Cluster
    shots: Path
    keys: Path
    people: dict[str, tuple[str, KeyPair]]
    """Person -> (org, key): registered by the org's admin."""

    def url(self, org: str) -> str:
        return self.cluster.url(next(n for n, o in ORG_OF.items() if o == org))

    async def steps_at_least(self, org: str, path: str, n: int) -> None:
        """Wait until ``org``'s node has applied the item's ``n``-th step (each person acts at their org's node)."""
        deadline = time.monotonic() + 30
        async with NodeClient(self.url(org)) as c:
            while True:
                try:
                    if int((await c.get(path))["steps"]) >= n:
                        return
                except Exception:
                    pass
                assert time.monotonic() < deadline, f"{org}'s node did not apply step {n} of {path}"
                await asyncio.sleep(0.1)

    async def signed_in(self, b: object, person: str, viewport: dict[str, int], lang: str) -> object:
        """A browser of its own for ``person``: signed in at their org's node with the link ``cemp login --web``
        prints, their key file loaded on the sign-in page."""
        org, key = self.people[person]
        page = await page_for(b, viewport, lang)
        async with NodeClient(self.url(org)) as nc:
            link = self.url(org) + (await sign_in(nc, key, "web"))["login_path"]
        await page.goto(link)  # type: ignore[attr-defined]
        await page.goto(self.url(org) + "/signin")  # type: ignore[attr-defined]
        await page.wait_for_selector("#key-file:not([disabled])")  # type: ignore[attr-defined]
        await page.set_input_files("#key-file", str(self.keys / f"{person}.key"))  # type: ignore[attr-defined]
        await page.wait_for_selector("#key-status.good")  # type: ignore[attr-defined]
        page.org = org  # type: ignore[attr-defined]
        return page


PEOPLE = {
    "li-wei": ("owner", "Li Wei", "energy_manager"),
    "zhou-jie": ("equipment", "Zhou Jie", "operator"),
    "zhang-min": ("equipment", "Zhang Min", "maintenance_engineer"),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    assert CHROMIUM, "Chromium is missing: apt-get install chromium"
    base = tmp_path_factory.mktemp("maintweb")
    shots = shots_dir()
    people = {p: (org, KeyPair.generate()) for p, (org, _n, _r) in PEOPLE.items()}
    for p, (_org, key) in people.items():
        write_key_file(base / f"{p}.key", key, label=p)

    async def setup() -> Cluster:
        cl = await Cluster.create(base, n=3, proxies=False)
        c = cl.consortium
        for nid in cl.ids:
            await cl.start(nid)
        await cl.leader(60)
        async with NodeClient(cl.url("owner-1")) as nc:
            for p, (org, name, role) in PEOPLE.items():
                put = PersonPut(people[p][1].public, Text(name), (ShortStr(role),))
                assert (await nc.submit(c.admin_tx(org, "person.put", put), wait=True))["result"]["ok"]
            dev, reg = c.register_device(TANK, subsystem="storage-tank")
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            now = int(time.time() * 1000) // 5000 * 5000
            res = await nc.submit(
                dev.batch(
                    c.chain,
                    [(now - (20 - i) * 5000, "energy.import", 456_789_000 + i * 40, "Wh") for i in range(20)],
                ),
                wait=True,
            )
            p = al.make_raise(
                TANK, "silent", now + 5000, "a reading every 5 s, never more than 30 s apart", "no reading for 42 s",
                f"{TANK}: silent for 42 s; check power, network and the collector agent",
                evidence=(bytes.fromhex(res["tx"]),), message_zh=f"{TANK}：已 42 秒无数据；请检查供电、网络和采集代理",
            )  # fmt: skip
            assert (await nc.submit(c.admin_tx("equipment", "alarm", p), wait=True))["result"]["ok"]
        return cl

    cl = asyncio.run(setup())
    try:
        yield Site(cl, shots, base, people)
    finally:
        for p in cl.procs.values():
            p.terminate()
        for p in cl.procs.values():
            try:
                p.wait(15)
            except Exception:
                p.kill()


async def _submit_form(page: object, form_id: str, **fields: str) -> None:
    for name, value in fields.items():
        sel = f"#{form_id} [name={name}]"
        if name == "result":
            await page.select_option(sel, value)  # type: ignore[attr-defined]
        else:
            await page.fill(sel, value)  # type: ignore[attr-defined]
    async with page.expect_navigation():  # type: ignore[attr-defined]
        await page.click(f"#{form_id} button[type=submit]")  # type: ignore[attr-defined]
    await page.wait_for_selector(".flash.good")  # type: ignore[attr-defined]


async def test_alarm_to_closed_work_order_signed_by_people(site: Site, browser: object) -> None:  # noqa: F811
    # Signed out: the inbox and the alarm are public here, and the page says to sign in to act.
    anon = await page_for(browser, DESKTOP, "en")
    await anon.goto(site.url("owner") + "/alarms/1")  # type: ignore[attr-defined]
    assert "Sign in to take a step" in await anon.inner_text("main")  # type: ignore[attr-defined]
    assert await anon.locator("form.act").count() == 0  # type: ignore[attr-defined]
    li = await site.signed_in(browser, "li-wei", DESKTOP, "en")
    await li.screenshot(path=str(site.shots / "signin-key-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    # The owner's energy manager: her inbox lists the alarm; she acknowledges it, signed in her browser.
    await li.goto(site.url("owner") + "/alarms")  # type: ignore[attr-defined]
    await li.wait_for_selector("#alarm-list a[href='/alarms/1']")  # type: ignore[attr-defined]
    await li.screenshot(path=str(site.shots / "alarms-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    await li.click("#alarm-list a[href='/alarms/1']")  # type: ignore[attr-defined]
    body = await li.inner_text("main")  # type: ignore[attr-defined]
    for words in (
        "a reading every 5 s",
        "no reading for 42 s",
        "Acting as Li Wei (owner, roles: energy manager).",
    ):
        assert words in body, words
    assert await li.locator("#act-assign").count() == 0  # type: ignore[attr-defined]
    await _submit_form(li, "act-acknowledge", note="seen in the control room")
    assert "acknowledged" in await li.inner_text("h1")  # type: ignore[attr-defined]
    # The step on chain is a tx whose signer is Li Wei's own key.
    async with NodeClient(site.url("owner")) as c:
        last = (await c.get("/v1/alarms/1"))["history"][-1]
        assert last["action"] == "acknowledge" and last["signer"] == site.people["li-wei"][1].public.hex()
    await li.click(f"a[href='/tx/{last['tx']}']")  # type: ignore[attr-defined]
    assert site.people["li-wei"][1].public.hex()[:16] in await li.content()  # type: ignore[attr-defined]
    # The equipment firm's maintenance engineer, on a phone in Chinese: assigning needs an operator, and says so.
    zm = await site.signed_in(browser, "zhang-min", PHONE, "zh")
    await no_overflow(zm)
    await zm.screenshot(path=str(site.shots / "signin-key-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    await site.steps_at_least("equipment", "/v1/alarms/1", 2)
    await zm.goto(site.url("equipment") + "/alarms/1")  # type: ignore[attr-defined]
    text = await zm.inner_text("main")  # type: ignore[attr-defined]
    assert "Zhang Min" in text and "指派：需要角色 运维员 或 能源经理；您的角色 维修工程师" in text
    assert await zm.locator("#act-assign").count() == 0  # type: ignore[attr-defined]
    await no_overflow(zm)
    await zm.screenshot(path=str(site.shots / "alarm-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    # The firm's operator assigns it; the owner opens a work order from the alarm.
    zj = await site.signed_in(browser, "zhou-jie", DESKTOP, "en")
    await zj.goto(site.url("equipment") + "/alarms/1")  # type: ignore[attr-defined]
    await _submit_form(zj, "act-assign", assignee="Zhang Min")
    await site.steps_at_least("owner", "/v1/alarms/1", 3)
    await li.goto(site.url("owner") + "/alarms/1")  # type: ignore[attr-defined]
    await _submit_form(li, "act-open_order", title="Tank meter silent: check the RS-485 line")
    assert "/workorders/1" in li.url  # type: ignore[attr-defined]
    # The firm assigns, the engineer diagnoses and repairs (from the board, on the phone).
    await site.steps_at_least("equipment", "/v1/workorders/1", 1)
    await zj.goto(site.url("equipment") + "/workorders/1")  # type: ignore[attr-defined]
    await _submit_form(zj, "act-assign", assignee="Zhang Min")
    await zm.goto(site.url("equipment") + "/workorders")  # type: ignore[attr-defined]
    await no_overflow(zm)
    await zm.screenshot(path=str(site.shots / "workorders-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    await zm.click("a[href='/workorders/1']")  # type: ignore[attr-defined]
    await _submit_form(zm, "act-diagnose", note="RS-485 line cut at the cable tray")
    await _submit_form(zm, "act-repair", note="cable spliced and re-terminated")
    await no_overflow(zm)
    await zm.screenshot(path=str(site.shots / "workorder-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    # The owner verifies and closes; the order's page shows the whole history with each person.
    await site.steps_at_least("owner", "/v1/workorders/1", 4)
    await li.goto(site.url("owner") + "/workorders/1")  # type: ignore[attr-defined]
    await _submit_form(li, "act-verify", result="pass", note="readings back on chain")
    await _submit_form(li, "act-close", note="done")
    text = await li.inner_text("main")  # type: ignore[attr-defined]
    assert "closed" in await li.inner_text("h1")  # type: ignore[attr-defined]
    for words in ("RS-485 line cut at the cable tray", "cable spliced", "readings back on chain", "Zhou Jie"):
        assert words in text, words
    assert await li.locator("table.list tbody tr").count() == 6  # type: ignore[attr-defined]
    await li.screenshot(path=str(site.shots / "workorder-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    await li.goto(site.url("owner") + "/workorders")  # type: ignore[attr-defined]
    await li.screenshot(path=str(site.shots / "workorders-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    await zm.goto(site.url("equipment") + "/alarms?state=all")  # type: ignore[attr-defined]
    await no_overflow(zm)
    await zm.screenshot(path=str(site.shots / "alarms-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    # Every node shows the same closed order, each step signed by the person who took it.
    who = {site.people[p][1].public.hex(): p for p in site.people}
    async with NodeClient(site.url("regulator")) as c:
        await site.steps_at_least("regulator", "/v1/workorders/1", 6)
        w = await c.get("/v1/workorders/1")
        assert w["state"] == "closed" and [who[h["signer"]] for h in w["history"]] == [
            "li-wei", "zhou-jie", "zhang-min", "zhang-min", "li-wei", "li-wei",
        ]  # fmt: skip
    for pg in (li, zm, zj, anon):
        assert not pg.js_errors, pg.js_errors  # type: ignore[attr-defined]
