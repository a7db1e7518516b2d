"""The web UI in a real headless browser: Debian's Chromium driven by Playwright (``executable_path``, no
browser download), against a real three-node cluster (``cemp node`` processes on loopback ports).

Covers search, navigation, a live block arriving over server-sent events, a CSV download, the language
switch, a phone-sized (375 px) and a desktop viewport, charts that render with data, the in-browser Merkle
proof check, and keyboard access. Screenshots of the main pages are kept as artifacts in
``$CEMP_SCREENSHOT_DIR`` (default ``test-artifacts/screenshots``, ignored by git) so a person can look at them.

Every wait has a deadline and waits for a condition, never a fixed sleep: the machine may be loaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from node.client import NodeClient
from tests.cluster.harness import Cluster
from tests.support.testing import TestDevice

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
WAIT_MS = 30_000
METER = "88.123.45/101.1.1"


def shots_dir() -> Path:
    """Where the browser tests save their screenshots: ``$CEMP_SCREENSHOT_DIR``, default ``test-artifacts/screenshots``
    in the checkout (kept out of git); ``make test`` leaves them there to be looked at."""
    d = Path(
        os.environ.get("CEMP_SCREENSHOT_DIR")
        or Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
    )
    d.mkdir(parents=True, exist_ok=True)
    return d


SENSOR = "88.123.45/102.1.1"


@dataclass
class Live:
    cluster: Cluster
    meter: TestDevice
    sensor: TestDevice
    tx: str
    shots: Path

    @property
    def url(self) -> str:
        return self.cluster.url(self.cluster.ids[0])

    async def add_block(self) -> int:
        """Commit one more readings tx through a follower; returns the height it landed at."""
        c = self.cluster
        now = int(time.time() * 1000)
        raw = self.sensor.batch(c.consortium.chain, [(now, "temp.supply", 47_500, "mdegC")])
        async with NodeClient(c.url(c.ids[1])) as nc:
            res = await nc.submit(raw, wait=True, timeout_ms=20_000)
        assert res["status"] == "committed", res
        return int(res["height"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    assert CHROMIUM, "Chromium is missing: apt-get install chromium (.ci/run and make sysdeps install it)"
    base = tmp_path_factory.mktemp("webcluster")
    shots = shots_dir()

    async def setup() -> tuple[Cluster, TestDevice, TestDevice, str]:
        cl = await Cluster.create(base, n=3, proxies=False)
        await cl.start_all()
        c = cl.consortium
        async with NodeClient(cl.url(cl.ids[0])) as nc:
            deadline = time.monotonic() + 60
            while not (await nc.status()).get("leader"):
                assert time.monotonic() < deadline, "no leader within 60 s"
                await asyncio.sleep(0.1)
            meter, reg = c.register_device(METER)
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            sensor, reg = c.register_device(SENSOR, kind="sensor.temperature", subsystem="heat-exchanger")
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
            now = int(time.time() * 1000) // 60_000 * 60_000
            energy = 1_234_573_355
            batches = []
            for b in range(4):  # four hours of 1-minute readings, ending now
                vals = []
                for m in range(60):
                    ts = now - (4 * 60 - b * 60 - m) * 60_000
                    energy += 1500 + 400 * ((b * 60 + m) % 7 == 0)
                    vals += [
                        (ts, "energy.import", energy, "Wh"),
                        (ts, "power", 90_000 + 20_000 * (m % 20 < 10), "W"),
                    ]
                    vals += [(ts, "voltage.l1", 219_000 + (m * 37) % 900, "mV")]
                batches.append(meter.batch(c.chain, vals))
            # one HTTP batch: the four txs share a block, so the proof of one has a real Merkle path
            res = await nc.submit_batch(batches, wait=True)
            assert all(r["status"] == "committed" and r["result"]["ok"] for r in res), res
            tx = res[2]["tx"]
            temps = [(now - (30 - i) * 60_000, "temp.supply", 45_000 + 120 * i, "mdegC") for i in range(30)]
            assert (await nc.submit(sensor.batch(c.chain, temps), wait=True))["result"]["ok"]
        return cl, meter, sensor, tx

    cl, meter, sensor, tx = asyncio.run(setup())
    try:
        yield Live(cl, meter, sensor, tx, shots)
    finally:
        for p in cl.procs.values():
            p.terminate()
        for p in cl.procs.values():
            try:
                p.wait(15)
            except Exception:
                p.kill()


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


async def page_for(browser: object, viewport: dict[str, int], lang: str) -> object:
    ctx = await browser.new_context(  # type: ignore[attr-defined]
        viewport=viewport,
        locale="zh-CN" if lang == "zh" else "en-GB",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9" if lang == "zh" else "en-GB,en;q=0.9"},
        accept_downloads=True,
    )
    ctx.set_default_timeout(WAIT_MS)
    page = await ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


async def no_overflow(page: object) -> None:
    """Nothing makes the page wider than the viewport (tables scroll inside their own box)."""
    w = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")  # type: ignore[attr-defined]
    assert w[0] <= w[1] + 1, f"page is {w[0]} px wide in a {w[1]} px viewport"


@pytest.mark.parametrize(("lang", "viewport"), [("en", DESKTOP), ("zh", PHONE)])
async def test_home_live_block_and_activity_charts(
    live: Live, browser: object, lang: str, viewport: dict[str, int]
) -> None:
    page = await page_for(browser, viewport, lang)
    await page.goto(live.url + "/")  # type: ignore[attr-defined]
    assert await page.get_attribute("html", "lang") == ("en" if lang == "en" else "zh-CN")  # type: ignore[attr-defined]
    await page.wait_for_selector("#live-on:not([hidden])")  # type: ignore[attr-defined]
    top = int(await page.get_attribute("#live-blocks tr", "data-height"))  # type: ignore[attr-defined]
    h = await live.add_block()
    assert h > top
    await page.wait_for_selector(f'#live-blocks tr[data-height="{h}"]')  # type: ignore[attr-defined]
    await page.wait_for_function("document.querySelectorAll('#activity figure canvas').length === 3")  # type: ignore[attr-defined]
    await no_overflow(page)
    name = "desktop" if viewport is DESKTOP else "phone"
    await page.screenshot(path=str(live.shots / f"home-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    assert not page.js_errors  # type: ignore[attr-defined]


@pytest.mark.parametrize(("lang", "viewport"), [("en", PHONE), ("zh", DESKTOP)])
async def test_search_to_device_page_with_chart_and_zoom(
    live: Live, browser: object, lang: str, viewport: dict[str, int]
) -> None:
    page = await page_for(browser, viewport, lang)
    await page.goto(live.url + "/")  # type: ignore[attr-defined]
    await page.fill("#search-q", METER)  # type: ignore[attr-defined]
    await page.press("#search-q", "Enter")  # type: ignore[attr-defined]
    await page.wait_for_url(f"**/device/{METER}")  # type: ignore[attr-defined]
    await page.wait_for_selector("#device-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]
    # units people read, the on-chain integer one click away
    summary = page.locator("details.q summary").first  # type: ignore[attr-defined]
    assert "kWh" in await summary.inner_text()
    await summary.click()
    assert "Wh" in await page.locator("details.q .raw").first.inner_text()  # type: ignore[attr-defined]
    await no_overflow(page)
    name = "desktop" if viewport is DESKTOP else "phone"
    await page.screenshot(path=str(live.shots / f"device-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    # zoom: drag across the middle of the plot; the page fetches finer data for the selected range
    await page.locator("#device-chart .u-over").scroll_into_view_if_needed()  # type: ignore[attr-defined]
    box = await page.locator("#device-chart .u-over").bounding_box()  # type: ignore[attr-defined]
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * 0.3, y)  # type: ignore[attr-defined]
    await page.mouse.down()  # type: ignore[attr-defined]
    await page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)  # type: ignore[attr-defined]
    await page.mouse.up()  # type: ignore[attr-defined]
    await page.wait_for_selector("#device-chart[data-zoomed]")  # type: ignore[attr-defined]
    # another quantity and the season range through the form, without JS help
    await page.select_option("#r-q", "voltage.l1")  # type: ignore[attr-defined]
    await page.click("form.range button[type=submit]")  # type: ignore[attr-defined]
    await page.wait_for_url("**q=voltage.l1**")  # type: ignore[attr-defined]
    await page.wait_for_selector("#device-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]
    assert not page.js_errors  # type: ignore[attr-defined]


async def test_tx_page_verifies_its_proof_in_the_browser(live: Live, browser: object) -> None:
    page = await page_for(browser, DESKTOP, "en")
    await page.goto(f"{live.url}/tx/{live.tx}")  # type: ignore[attr-defined]
    await page.click("#verify-btn")  # type: ignore[attr-defined]
    await page.wait_for_selector("#verify[data-result]")  # type: ignore[attr-defined]
    assert await page.get_attribute("#verify", "data-result") == "ok"  # type: ignore[attr-defined]
    assert "Verified" in await page.inner_text("#verify-out")  # type: ignore[attr-defined]
    # the same check refuses a path that was tampered with
    bad = await page.evaluate(  # type: ignore[attr-defined]
        "() => { const p = JSON.parse(document.getElementById('proof-data').textContent);"
        " const path = p.path.map(x => x); if (path.length) path[0] = '00'.repeat(32);"
        " const leaf = path.length ? p.leaf : p.leaf.slice(0, -2) + '00';"
        " return window.cempMerkleRoot(leaf, p.index, p.size, path).then(r => r === p.root); }"
    )
    assert bad is False
    # the pure-JS SHA-256 used outside secure contexts (a phone on the LAN over http) matches WebCrypto's
    for n in (0, 1, 55, 56, 63, 64, 65, 1000):
        same = await page.evaluate(  # type: ignore[attr-defined]
            "(n) => { const b = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 255);"
            " const hex = Array.from(b, x => x.toString(16).padStart(2, '0')).join('');"
            " return crypto.subtle.digest('SHA-256', b).then(d => Array.from(new Uint8Array(d),"
            " x => x.toString(16).padStart(2, '0')).join('') === window.cempSha256js(hex)); }",
            n,
        )
        assert same, n
    await page.screenshot(path=str(live.shots / "tx-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    # the block of the tx, with its commit certificate signed by the nodes
    await page.click("dl.kv a[href^='/block/']")  # type: ignore[attr-defined]
    await page.wait_for_selector("#cert")  # type: ignore[attr-defined]
    signers = await page.locator("#cert + p + div table tbody tr").count()  # type: ignore[attr-defined]
    assert signers >= 2
    await page.screenshot(path=str(live.shots / "block-en-desktop.png"), full_page=True)  # type: ignore[attr-defined]


async def test_language_switch_and_csv_download(live: Live, browser: object) -> None:
    page = await page_for(browser, PHONE, "zh")
    await page.goto(live.url + "/blocks")  # type: ignore[attr-defined]
    assert await page.inner_text("h1") == "区块"  # type: ignore[attr-defined]
    await page.click("nav.langs a[hreflang=en]")  # type: ignore[attr-defined]
    await page.wait_for_function("document.documentElement.lang === 'en'")  # type: ignore[attr-defined]
    await page.click("nav.menu a[href='/devices']")  # type: ignore[attr-defined]
    assert await page.inner_text("h1") == "Devices"  # the choice sticks (cookie) over Accept-Language zh  # type: ignore[attr-defined]
    async with page.expect_download() as dl_info:  # type: ignore[attr-defined]
        await page.click("nav.pager a[download]")  # type: ignore[attr-defined]
    dl = await dl_info.value
    text = Path(await dl.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("handle,org,kind") and METER in text and SENSOR in text
    await page.screenshot(path=str(live.shots / "devices-en-phone.png"), full_page=True)  # type: ignore[attr-defined]


async def test_consortium_page_and_handle_page(live: Live, browser: object) -> None:
    page = await page_for(browser, DESKTOP, "zh")
    await page.goto(live.url + "/consortium")  # type: ignore[attr-defined]
    rows = page.locator("main table").first.locator("tbody tr")  # type: ignore[attr-defined]
    assert await rows.count() == 3
    assert await page.locator("main table").first.locator(".good").count() == 3  # type: ignore[attr-defined]
    await page.screenshot(path=str(live.shots / "consortium-zh-desktop.png"), full_page=True)  # type: ignore[attr-defined]
    phone = await page_for(browser, PHONE, "zh")
    # a phone scanning the QR label opens the Handle API URL; the browser lands on the page
    await phone.goto(f"{live.url}/api/handles/{METER}")  # type: ignore[attr-defined]
    await phone.wait_for_url(f"**/handle/{METER}")  # type: ignore[attr-defined]
    assert await phone.locator(".qr svg").count() == 1  # type: ignore[attr-defined]
    await no_overflow(phone)
    await phone.screenshot(path=str(live.shots / "handle-zh-phone.png"), full_page=True)  # type: ignore[attr-defined]
    await phone.click(f"a[href='/device/{METER}']")  # type: ignore[attr-defined]
    await phone.wait_for_selector("#device-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]


async def test_keyboard_reaches_the_content_and_the_search(live: Live, browser: object) -> None:
    page = await page_for(browser, DESKTOP, "en")
    await page.goto(live.url + "/")  # type: ignore[attr-defined]
    await page.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert await page.evaluate("document.activeElement.className") == "skip"  # type: ignore[attr-defined]
    await page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert await page.evaluate("location.hash") == "#main"  # type: ignore[attr-defined]
    # every form control has a label
    unlabelled = await page.evaluate(  # type: ignore[attr-defined]
        "[...document.querySelectorAll('input:not([type=hidden]), select')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).length"
    )
    assert unlabelled == 0
    await page.focus("#search-q")  # type: ignore[attr-defined]
    await page.keyboard.type("1")  # type: ignore[attr-defined]
    await page.keyboard.press("Enter")  # type: ignore[attr-defined]
    await page.wait_for_url("**/block/1")  # type: ignore[attr-defined]


# --- carbon portrait and reports (web/carbon.py) ------------------------------------------------------------------

SITE_ID = "bw-site"
SITE_MAIN, SITE_SUB, SITE_HEAT = "88.123.45/301.2.1", "88.123.45/301.1.1", "88.123.45/302.2.1"


@dataclass
class CarbonSite:
    live: Live
    period: str
    report_sha: str
    report_tx: str


@pytest.fixture(scope="module")
def carbon_site(live: Live) -> CarbonSite:
    """On the live cluster: the factor sets, a site with a main meter, a sub-meter and a heat meter, 20 days of
    hourly counter readings ending now, a recorded rating and an issued report of this month."""
    from accounting.factors import shipped_sets
    from accounting.model import BoundaryDevice, BoundaryPayload, SitePayload
    from accounting.rating import payload_of as rating_payload
    from accounting.report import payload_of as report_payload
    from accounting.report import report_sha256
    from node.types import Handle, ShortStr, Text, TimestampMs

    c = live.cluster.consortium

    async def setup() -> CarbonSite:
        async with NodeClient(live.url) as nc:

            async def ok(raw: bytes) -> dict[str, object]:
                """Submit and wait for the commit: a loaded machine can take longer than one wait, so a tx
                still pending is polled until it has a result (deadline 180 s)."""
                from node.errors import CempError

                try:
                    res = await nc.submit(raw, wait=True, timeout_ms=30_000)
                except CempError as e:
                    if "still pending" not in e.message:
                        raise
                    tx_hash = e.message.split()[1]
                    deadline = time.monotonic() + 180
                    while True:
                        try:
                            res = await nc.get(f"/v1/txs/{tx_hash}")
                            if res.get("result") is not None:
                                res = {**res, "tx": tx_hash}
                                break
                        except CempError:
                            pass
                        assert time.monotonic() < deadline, f"tx {tx_hash} not committed within 210 s"
                        await asyncio.sleep(0.5)
                assert res["result"]["ok"], res  # type: ignore[index]
                return res

            for s in shipped_sets():
                await ok(c.admin_tx("regulator", "factors", s))
            site = SitePayload(
                ShortStr(SITE_ID), 1, Text("Hohhot test complex 呼和浩特"), 100_000, Text("Hohhot, Inner Mongolia"),
                ShortStr("Inner Mongolia"), ShortStr("North China"), ShortStr("10-15"), ShortStr("04-15"), 480,
                Handle("88.123.45/site.bw"), (), 4186,
            )  # fmt: skip
            await ok(c.admin_tx("owner", "site", site))
            devs = {}
            for h, sub in (
                (SITE_MAIN, "incoming"),
                (SITE_SUB, "core-heating"),
                (SITE_HEAT, "plate-heat-exchanger"),
            ):
                devs[h], reg = c.register_device(h, subsystem=sub)
                await ok(reg)
            hour = 3_600_000
            now = int(time.time() * 1000)
            start = (now // hour - 20 * 24) * hour
            bdevs = tuple(
                BoundaryDevice(Handle(h), ShortStr(s), ShortStr(car), ShortStr("energy.import"))
                for h, s, car in sorted(
                    (
                        (SITE_MAIN, "incoming", "electricity"),
                        (SITE_SUB, "core-heating", "electricity"),
                        (SITE_HEAT, "plate-heat-exchanger", "heat"),
                    )
                )
            )
            b = BoundaryPayload(ShortStr(SITE_ID), 1, TimestampMs(start), bdevs, Handle(SITE_MAIN), Text(""))
            await ok(c.admin_tx("owner", "boundary", b))
            per_hour = {SITE_MAIN: 2_100_000, SITE_SUB: 1_500_000, SITE_HEAT: 1_900_000}
            for h, dev in devs.items():
                v = 5_000_000
                vals = [(start - 60_000, "energy.import", v, "Wh")]
                for k in range(20 * 24):
                    ts = start + k * hour + 1_800_000
                    if ts > now:
                        break
                    # a daily shape: more at night, when the tank charges on the cheap tariff
                    v += per_hour[h] * (13 if (k % 24) < 7 else 9) // 10
                    vals.append((ts, "energy.import", v, "Wh"))
                await ok(dev.batch(c.chain, vals))
            local = time.gmtime(now / 1000 + 8 * 3600)
            period = f"{local.tm_year}-{local.tm_mon:02d}"
            rating = await nc.get(f"/v1/sites/{SITE_ID}/rating", period=period)
            await ok(c.admin_tx("owner", "rating", rating_payload(rating["computed"])))
            model = await nc.get(f"/v1/sites/{SITE_ID}/report", period=period)
            res = await ok(c.admin_tx("owner", "report", report_payload(model)))
            return CarbonSite(live, period, report_sha256(model), str(res["tx"]))

    return asyncio.run(setup())


@pytest.mark.parametrize(("lang", "viewport"), [("zh", PHONE), ("en", DESKTOP)])
async def test_carbon_portrait(
    carbon_site: CarbonSite, browser: object, lang: str, viewport: dict[str, int]
) -> None:
    live = carbon_site.live
    page = await page_for(browser, viewport, lang)
    await page.goto(live.url + "/")  # type: ignore[attr-defined]
    await page.click("nav.menu a[href='/carbon']")  # type: ignore[attr-defined]
    await page.wait_for_url("**/carbon")  # type: ignore[attr-defined]
    await page.click(f"a[href='/carbon/{SITE_ID}']")  # type: ignore[attr-defined]
    await page.wait_for_url(f"**/carbon/{SITE_ID}")  # type: ignore[attr-defined]
    # this month by day, through the form
    await page.fill("#c-period", carbon_site.period)  # type: ignore[attr-defined]
    await page.select_option("#c-grain", "day")  # type: ignore[attr-defined]
    await page.click("form.range button[type=submit]")  # type: ignore[attr-defined]
    await page.wait_for_url("**grain=day**")  # type: ignore[attr-defined]
    await page.wait_for_selector("#carbon-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]
    # tomorrow's charging plan from the 7 days before it, drawn; the forecast, or the route's reason for none
    await page.wait_for_selector("#plan-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]
    assert await page.locator("#fc-table, #fc-missing").count() == 1  # type: ignore[attr-defined]
    async with NodeClient(live.url) as nc:
        inv = await nc.get(f"/v1/sites/{SITE_ID}/inventory", period=carbon_site.period, grain="day")
    shown = (await page.inner_text("[data-key=co2_location_t]")).replace(",", "")  # type: ignore[attr-defined]
    assert shown == inv["site_total"]["co2_location_t"]
    assert await page.locator("figure.qr img").count() == 1  # type: ignore[attr-defined]
    loaded = await page.evaluate("document.querySelector('figure.qr img').naturalWidth")  # type: ignore[attr-defined]
    assert loaded > 0  # the QR label (SVG from the rating route) loaded
    await no_overflow(page)
    name = "desktop" if viewport is DESKTOP else "phone"
    await page.screenshot(path=str(live.shots / f"carbon-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    assert not page.js_errors  # type: ignore[attr-defined]


@pytest.mark.parametrize(("lang", "viewport"), [("en", PHONE), ("zh", DESKTOP)])
async def test_reports_preview_download_and_verify(
    carbon_site: CarbonSite, browser: object, lang: str, viewport: dict[str, int]
) -> None:
    live = carbon_site.live
    page = await page_for(browser, viewport, lang)
    await page.goto(live.url + "/reports")  # type: ignore[attr-defined]
    row = page.locator(f"li[data-report='{carbon_site.report_sha}']")  # type: ignore[attr-defined]
    assert await row.locator(f"a[href='/tx/{carbon_site.report_tx}']").count() == 1
    await no_overflow(page)
    name = "desktop" if viewport is DESKTOP else "phone"
    await page.screenshot(path=str(live.shots / f"reports-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    # download the PDF: it is the report of the period, whose figures the chain gives
    async with page.expect_download() as dl_info:  # type: ignore[attr-defined]
        await row.locator("a[download]", has_text="PDF").click()
    dl = await dl_info.value
    from accounting import render

    _, model, _ = render.extract(Path(await dl.path()).read_bytes())
    assert model["site"]["site_id"] == SITE_ID and model["period"]["label"] == carbon_site.period
    # verify against the chain: the anchored figures match what the chain gives now
    await row.locator("button[type=submit]").click()
    await page.wait_for_url("**/reports/verify?sha=**")  # type: ignore[attr-defined]
    verdict = page.locator("p.verdict")  # type: ignore[attr-defined]
    assert "good" in (await verdict.get_attribute("class") or "")
    assert await page.locator("li.bad-row").count() == 0  # type: ignore[attr-defined]
    assert await page.locator("li.good-row").count() == 6  # type: ignore[attr-defined]
    await page.screenshot(path=str(live.shots / f"report-verify-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    # the preview (HTML, in the page) names the readings txs behind its figures
    await page.goto(f"{live.url}/reports/{SITE_ID}/preview?period={carbon_site.period}")  # type: ignore[attr-defined]
    await page.wait_for_selector("#txs")  # type: ignore[attr-defined]
    await no_overflow(page)
    await page.screenshot(path=str(live.shots / f"report-preview-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    assert not page.js_errors  # type: ignore[attr-defined]


@pytest.mark.parametrize(("lang", "viewport"), [("en", DESKTOP), ("zh", PHONE)])
async def test_carbon_portrait_forecast_and_plan_drawn(
    browser: object, lang: str, viewport: dict[str, int]
) -> None:
    """A node (in this process, on a loopback port) holding five weeks of a site's meter and outdoor-sensor readings:
    the portrait shows the forecast with its held-out errors and draws the charging plan."""
    from aiohttp.test_utils import TestServer

    from accounting.factors import shipped_sets
    from cemp import wiring
    from node.server import Node
    from tests.accounting.chain import SITE
    from tests.energy.test_siteforecast import DAYS, _site

    c, _t0 = _site(DAYS)
    for s in shipped_sets():
        c.ok(c.admin("regulator", "factors", s))
    node = Node(c.c.genesis, c.store, c.nid, c.c.node_keys[c.nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    server = TestServer(node.web_app(), host="127.0.0.1")
    await server.start_server()
    try:
        page = await page_for(browser, viewport, lang)
        url = str(
            server.make_url(f"/carbon/{SITE}?period=2025-12&fc_now=2026-01-03T10:00&plan_date=2026-01-04")
        )
        await page.goto(url)  # type: ignore[attr-defined]
        await page.wait_for_selector("#plan-chart[data-rendered='1'] canvas")  # type: ignore[attr-defined]
        assert await page.locator("#fc-table tbody tr").count() == 3  # type: ignore[attr-defined]
        cv = await page.inner_text("[data-key=cv_rmse_pct]")  # type: ignore[attr-defined]
        assert cv.endswith("%") and float(cv.split()[0]) < 30
        await no_overflow(page)
        shots = Path(
            os.environ.get("CEMP_SCREENSHOT_DIR")
            or Path(__file__).resolve().parents[2] / "build" / "screenshots"
        )
        shots.mkdir(parents=True, exist_ok=True)
        name = "desktop" if viewport is DESKTOP else "phone"
        await page.locator("#forecast").scroll_into_view_if_needed()  # type: ignore[attr-defined]
        await page.screenshot(path=str(shots / f"carbon-forecast-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
        assert not page.js_errors  # type: ignore[attr-defined]
    finally:
        await server.close()


@pytest.mark.parametrize(("lang", "viewport"), [("en", DESKTOP), ("zh", PHONE), ("en", PHONE)])
async def test_main_pages_fit_and_are_saved(
    live: Live, browser: object, lang: str, viewport: dict[str, int]
) -> None:
    """The explorer's main pages at 1280 px and at 375 px: nothing wider than the screen, no script error; each
    saved as a screenshot to look at (``<page>-<lang>-<desktop|phone>.png``)."""
    page = await page_for(browser, viewport, lang)
    name = "desktop" if viewport is DESKTOP else "phone"
    pages = {
        "home": "/",
        "blocks": "/blocks",
        "block": "/block/3",
        "tx": f"/tx/{live.tx}",
        "device": f"/device/{METER}",
        "handle": f"/handle/{METER}",
        "consortium": "/consortium",
        "search": "/search?q=heat",
        "signin": "/signin",
    }
    for key, path in pages.items():
        await page.goto(live.url + path)  # type: ignore[attr-defined]
        await page.wait_for_load_state("load")  # type: ignore[attr-defined]
        await no_overflow(page)
        await page.screenshot(path=str(live.shots / f"page-{key}-{lang}-{name}.png"), full_page=True)  # type: ignore[attr-defined]
    assert not page.js_errors, page.js_errors  # type: ignore[attr-defined]
