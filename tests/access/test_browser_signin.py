"""Sign-in and who sees what, in a real headless browser (Debian's Chromium through Playwright, no download)
against a real ``cemp node`` process.

The equipment firm keeps its heat meter's readings members-only. Signed out, the device page shows no value and
offers the sign-in page; the equipment engineer opens the one-time link ``cemp login --web`` prints and sees the
chart and can download the CSV; the owner's energy manager sees nothing until the firm grants the readings, and
nothing again once it revokes them (a reload, no new sign-in); signing out ends the session. Screenshots go to
``$CEMP_SCREENSHOT_DIR`` (default ``test-artifacts/screenshots``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from access.client import sign_in
from access.model import DataPolicyPayload, GrantPayload, GrantRevoke, PersonPut
from node.chain import sign_tx
from node.client import NodeClient
from node.crypto import KeyPair
from node.types import Handle, ShortStr, Text, TimestampMs
from tests.support.testing import TestConsortium, free_port, start_node_process
from tests.web.test_browser import shots_dir

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEAT = "88.123.46/201.1.1"
WAIT_MS = 30_000


@dataclass
class Site:
    url: str
    c: TestConsortium
    engineer: KeyPair
    manager: KeyPair
    nonces: dict[bytes, int]
    shots: Path

    async def tx(self, key: KeyPair, kind: str, payload: object) -> None:
        self.nonces[key.public] = self.nonces.get(key.public, 0) + 1
        raw, _ = sign_tx(key, self.c.chain, kind, self.nonces[key.public], payload)
        async with NodeClient(self.url) as nc:
            res = await nc.submit(raw, wait=True)
        assert res["result"]["ok"], res

    async def link(self, key: KeyPair) -> str:
        async with NodeClient(self.url) as nc:
            return self.url + (await sign_in(nc, key, "web"))["login_path"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    assert CHROMIUM, "Chromium is missing: apt-get install chromium (.ci/run and make sysdeps install it)"
    base = tmp_path_factory.mktemp("signin")
    port = free_port()
    c = TestConsortium.create(n_nodes=1, ports=[port], block_interval_ms=5)
    cfg = c.write_files(base, c.genesis.nodes[0].node_id, port)
    proc = start_node_process(cfg, base / "node.log", port)
    shots = shots_dir()
    s = Site(f"http://127.0.0.1:{port}", c, KeyPair.generate(), KeyPair.generate(), {}, shots)

    async def setup() -> None:
        dev, raw = c.register_device(HEAT, kind="meter.heat", org="equipment")
        s.nonces[c.admins["equipment"].public] = 1
        now = int(time.time() * 1000) // 60_000 * 60_000
        vals = [(now - (120 - i) * 60_000, "power", 80_000 + 500 * (i % 30), "W") for i in range(120)]
        async with NodeClient(s.url) as nc:
            assert (await nc.submit(raw, wait=True))["result"]["ok"]
            assert (await nc.submit(dev.batch(c.chain, vals), wait=True))["result"]["ok"]
        eq, ow = c.admins["equipment"], c.admins["owner"]
        await s.tx(eq, "person.put", PersonPut(s.engineer.public, Text("Zhang Min"), (ShortStr("operator"),)))
        await s.tx(
            ow, "person.put", PersonPut(s.manager.public, Text("Li Wei"), (ShortStr("energy_manager"),))
        )
        await s.tx(eq, "data.policy", DataPolicyPayload((ShortStr("readings"),), ()))

    try:
        asyncio.run(setup())
        yield s
    finally:
        proc.terminate()
        proc.wait(30)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: object, phone: bool = False) -> object:
    ctx = await browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 375, "height": 812} if phone else {"width": 1280, "height": 900},
        locale="en-GB",
        extra_http_headers={"Accept-Language": "en-GB,en;q=0.9"},
    )
    ctx.set_default_timeout(WAIT_MS)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


async def shows_values(page: object, url: str) -> bool:
    await page.goto(url + f"/device/{HEAT}")  # type: ignore[attr-defined]
    restricted = await page.locator("#restricted").count()  # type: ignore[attr-defined]
    if restricted:
        assert await page.locator("#chart-data").count() == 0  # type: ignore[attr-defined]
        assert "kW" not in await page.locator("main").inner_text()  # type: ignore[attr-defined]
        return False
    await page.wait_for_selector("#device-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]
    return True


async def test_sign_in_boundaries_in_a_browser(site: Site, browser: object) -> None:
    s = site
    anon = await new_page(browser)
    assert not await shows_values(anon, s.url)
    await anon.click("#restricted a")  # type: ignore[attr-defined]
    await anon.wait_for_url("**/signin")  # type: ignore[attr-defined]
    assert "cemp login --web" in await anon.locator("main").inner_text()  # type: ignore[attr-defined]
    r = await anon.request.get(s.url + f"/device/{HEAT}?format=csv")  # type: ignore[attr-defined]
    assert r.status == 401
    await anon.screenshot(path=str(s.shots / "signin-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]

    # the equipment firm's engineer: its own data
    eng = await new_page(browser, phone=True)
    await eng.goto(await s.link(s.engineer))  # type: ignore[attr-defined]
    assert "Zhang Min" in await eng.locator("#who").inner_text()  # type: ignore[attr-defined]
    assert await shows_values(eng, s.url)
    r = await eng.request.get(s.url + f"/device/{HEAT}?format=csv")  # type: ignore[attr-defined]
    assert r.status == 200 and (await r.text()).count("\n") > 100
    await eng.screenshot(path=str(s.shots / "device-signed-in-en-phone.png"), full_page=True)  # type: ignore[attr-defined]

    # the owner's energy manager: nothing until granted, nothing once revoked
    mgr = await new_page(browser)
    await mgr.goto(await s.link(s.manager))  # type: ignore[attr-defined]
    assert "Li Wei" in await mgr.locator("#who").inner_text()  # type: ignore[attr-defined]
    assert not await shows_values(mgr, s.url)
    until = int(time.time() * 1000) + 86_400_000
    g = GrantPayload(
        ShortStr("heat"),
        ShortStr("owner"),
        None,
        (ShortStr("readings"),),
        (Handle(HEAT),),
        (),
        TimestampMs(until),
        Text(""),
    )
    await s.tx(s.c.admins["equipment"], "grant", g)
    assert await shows_values(mgr, s.url)
    await s.tx(s.c.admins["equipment"], "grant.revoke", GrantRevoke(ShortStr("heat"), Text("ended")))
    assert not await shows_values(mgr, s.url)
    await mgr.screenshot(path=str(s.shots / "device-revoked-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]

    # signing out ends the engineer's session
    await eng.click("#who button")  # type: ignore[attr-defined]
    await eng.wait_for_selector("#who a[href='/signin']")  # type: ignore[attr-defined]
    assert not await shows_values(eng, s.url)
    for p in (anon, eng, mgr):
        assert not p.js_errors  # type: ignore[attr-defined]
