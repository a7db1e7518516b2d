"""The alarm inbox and the work-order board in a real headless browser (Debian's Chromium through Playwright)
against a three-node cluster of ``cemp node`` processes, each node acting with its own org's key
(``CEMP_WEB_ACT_KEY``): the owner acknowledges at its node, the equipment firm assigns at its node, the owner opens
a work order from the alarm, the equipment firm assigns, diagnoses and repairs it, the owner verifies and closes it
-- every click a signed tx the chain checks. Phone (375 px, zh) and desktop (en) viewports; screenshots under
``$CEMP_SCREENSHOT_DIR`` (default ``build/screenshots``). Waits are conditions with deadlines."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from maintenance import alarms as al
from node.client import NodeClient
from node.crypto import write_key_file
from tests.cluster.harness import Cluster
from tests.web.test_browser import CHROMIUM, DESKTOP, PHONE, browser, no_overflow, page_for  # noqa: F401

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.async_api")
TANK = "88.123.45/101.1.3"
ORG_OF = {"owner-1": "owner", "equipment-1": "equipment", "regulator-1": "regulator"}


@dataclass
class Site:
    cluster: Cluster
    shots: Path

    def url(self, org: str) -> str:
        return self.cluster.url(next(n for n, o in ORG_OF.items() if o == org))

    async def steps_at_least(self, org: str, path: str, n: int) -> None:
        """Wait until ``org``'s node has applied the item's ``n``-th step (each org acts at its own node)."""
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    assert CHROMIUM, "Chromium is missing: apt-get install chromium"
    base = tmp_path_factory.mktemp("maintweb")
    shots = Path(
        os.environ.get("CEMP_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "build" / "screenshots"
    )
    shots.mkdir(parents=True, exist_ok=True)

    async def setup() -> Cluster:
        cl = await Cluster.create(base, n=3, proxies=False)
        c = cl.consortium
        saved = os.environ.get("CEMP_WEB_ACT_KEY")
        try:
            for nid in cl.ids:  # one node at a time: each process reads its org's key at start
                key = base / f"{ORG_OF[nid]}.admin.key"
                write_key_file(key, c.admins[ORG_OF[nid]])
                os.environ["CEMP_WEB_ACT_KEY"] = str(key)
                await cl.start(nid)
        finally:
            if saved is None:
                os.environ.pop("CEMP_WEB_ACT_KEY", None)
            else:
                os.environ["CEMP_WEB_ACT_KEY"] = saved
        await cl.leader(60)
        async with NodeClient(cl.url("owner-1")) as nc:
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
        yield Site(cl, shots)
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


async def test_alarm_to_closed_work_order_through_the_pages(site: Site, browser: object) -> None:  # noqa: F811
    owner = await page_for(browser, DESKTOP, "en")
    eq = await page_for(browser, PHONE, "zh")
    # The owner's inbox lists the alarm; its page says what was expected and observed, and who acts.
    await owner.goto(site.url("owner") + "/alarms")  # type: ignore[attr-defined]
    await owner.wait_for_selector("#alarm-list a[href='/alarms/1']")  # type: ignore[attr-defined]
    await owner.screenshot(path=str(site.shots / "alarms-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    await owner.click("#alarm-list a[href='/alarms/1']")  # type: ignore[attr-defined]
    body = await owner.inner_text("main")  # type: ignore[attr-defined]
    for words in ("a reading every 5 s", "no reading for 42 s", "Acting as owner"):
        assert words in body, words
    assert await owner.locator("#act-assign").count() == 0  # type: ignore[attr-defined]
    await _submit_form(owner, "act-acknowledge", note="seen in the control room")
    assert "acknowledged" in await owner.inner_text("h1")  # type: ignore[attr-defined]
    # The equipment firm, on a phone in Chinese, at its own node: assigns the alarm.
    await site.steps_at_least("equipment", "/v1/alarms/1", 2)
    await eq.goto(site.url("equipment") + "/alarms/1")  # type: ignore[attr-defined]
    assert "当前身份" in await eq.inner_text("main")  # type: ignore[attr-defined]
    await _submit_form(eq, "act-assign", assignee="Li Gang")
    await no_overflow(eq)
    await eq.screenshot(path=str(site.shots / "alarm-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    # The owner opens a work order from the alarm.
    await site.steps_at_least("owner", "/v1/alarms/1", 3)
    await owner.goto(site.url("owner") + "/alarms/1")  # type: ignore[attr-defined]
    await _submit_form(owner, "act-open_order", title="Tank meter silent: check the RS-485 line")
    assert "/workorders/1" in owner.url  # type: ignore[attr-defined]
    # The equipment firm finds it on its board and takes its steps.
    await site.steps_at_least("equipment", "/v1/workorders/1", 1)
    await eq.goto(site.url("equipment") + "/workorders")  # type: ignore[attr-defined]
    await no_overflow(eq)
    await eq.screenshot(path=str(site.shots / "workorders-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    await eq.click("a[href='/workorders/1']")  # type: ignore[attr-defined]
    await _submit_form(eq, "act-assign", assignee="Li Gang")
    await _submit_form(eq, "act-diagnose", note="RS-485 line cut at the cable tray")
    await _submit_form(eq, "act-repair", note="cable spliced and re-terminated")
    # The owner verifies and closes; the order's page shows the whole history.
    await site.steps_at_least("owner", "/v1/workorders/1", 4)
    await owner.goto(site.url("owner") + "/workorders/1")  # type: ignore[attr-defined]
    await _submit_form(owner, "act-verify", result="pass", note="readings back on chain")
    await _submit_form(owner, "act-close", note="done")
    text = await owner.inner_text("main")  # type: ignore[attr-defined]
    assert "closed" in await owner.inner_text("h1")  # type: ignore[attr-defined]
    for words in ("RS-485 line cut at the cable tray", "cable spliced", "readings back on chain", "Li Gang"):
        assert words in text, words
    assert await owner.locator("table.list tbody tr").count() == 6  # type: ignore[attr-defined]
    await owner.screenshot(path=str(site.shots / "workorder-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    # Every node shows the same closed order.
    async with NodeClient(site.url("regulator")) as c:
        await site.steps_at_least("regulator", "/v1/workorders/1", 6)
        w = await c.get("/v1/workorders/1")
        assert w["state"] == "closed" and [h["org"] for h in w["history"]] == [
            "owner", "equipment", "equipment", "equipment", "owner", "owner",
        ]  # fmt: skip
    assert not owner.js_errors and not eq.js_errors  # type: ignore[attr-defined]
