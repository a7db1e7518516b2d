"""The carbon portrait and the reports pages through aiohttp's test client: every figure equals what the
accounting's JSON routes answer, both languages, the issued report's anchor and "verify against the chain" (a
match, then a mismatch once late readings change the period), a report file verified by upload (tampered: refused),
and bad input answered with a 4xx page."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from accounting import render
from accounting.report import payload_of, report_sha256
from tests.accounting.chain import HOUR_MS, SITE
from tests.accounting.test_api import MAIN, T0, acc, setup_site, submit
from tests.support.testing import TestConsortium

__all__ = ["acc"]

Acc = tuple[TestConsortium, TestClient]


async def page(client: TestClient, path: str, status: int = 200, **params: str) -> str:
    r = await client.get(path, params=params)
    body = await r.text()
    assert r.status == status, (path, r.status, body[-2000:])
    assert r.content_type == "text/html"
    return body


async def js(client: TestClient, path: str, **params: str) -> Any:
    r = await client.get(path, params=params)
    assert r.status == 200, await r.text()
    return await r.json()


def main_part(html: str) -> str:
    return html.split('<main id="main"', 1)[1].split("</main>", 1)[0]


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_portrait_shows_the_json_routes_figures(acc: Acc, lang: str) -> None:
    c, client = acc
    await setup_site(c, client)
    inv = await js(client, f"/v1/sites/{SITE}/inventory", period="2026-01")
    kp = await js(client, f"/v1/sites/{SITE}/kpis", period="2026-01")
    rating = await js(client, f"/v1/sites/{SITE}/rating", period="2026-01")
    html = await page(client, f"/carbon/{SITE}", period="2026-01", lang=lang)
    body = main_part(html)
    assert 'href="/carbon"' in html and 'href="/reports"' in html  # menu entries
    tot = inv["site_total"]
    assert re.search(rf'data-key="co2_location_t">{re.escape(tot["co2_location_t"])}<', body)
    assert re.search(rf'data-key="co2_market_t">{re.escape(tot["co2_market_t"])}<', body)
    assert (
        f"grade g{rating['computed']['grade_location']}" in body and rating["computed"]["k_location"] in body
    )
    chart = re.search(r'<script type="application/json" id="carbon-data">(.*?)</script>', body, re.S)
    assert chart is not None
    import json

    data = json.loads(chart.group(1))
    assert data["labels"] == [r["label"] for r in inv["breakdown"]]
    assert data["co2_location_t"] == [float(r["co2_location_t"]) for r in inv["breakdown"]]
    assert f"{kp['power']['electric_avg_w_per_m2']:.2f}" in body  # 10.00 W/m² against the 50 reference
    for s in inv["subsystems"]:
        assert s["subsystem"] in body
    assert MAIN in body and f"/v1/sites/{SITE}/kpis?period=2026-01" in body
    if lang == "en":
        assert "Location-based" in body and "Gas boiler, same heat" in body and "基于位置" not in body
    else:
        assert "基于位置" in body and "燃气锅炉" in body and "Location-based" not in body
    # the day breakdown, on request
    html = await page(client, f"/carbon/{SITE}", period="2026-01", grain="day", lang=lang)
    assert "2026-01-01" in main_part(html)
    html = await page(client, "/carbon", lang=lang)
    assert f'href="/carbon/{SITE}"' in html


async def test_portrait_rating_label_once_recorded(acc: Acc) -> None:
    c, client = acc
    await setup_site(c, client)
    html = await page(client, f"/carbon/{SITE}", period="2026-01-01", lang="en")
    assert "label.svg" not in html and "No rating of this period" in html
    rating = await js(client, f"/v1/sites/{SITE}/rating", period="2026-01-01")
    await submit(client, c.admin_tx("owner", "rating", payload_of_rating(rating["computed"])))
    html = await page(client, f"/carbon/{SITE}", period="2026-01-01", lang="en")
    m = re.search(r'<img src="([^"]*label\.svg[^"]*)"', html)
    assert m is not None
    r = await client.get(m.group(1).replace("&amp;", "&"))
    assert r.status == 200 and "<svg" in await r.text()


def payload_of_rating(r: dict[str, Any]) -> Any:
    from accounting.rating import payload_of as rating_payload

    return rating_payload(r)


async def test_reports_list_preview_download_and_verify(acc: Acc) -> None:
    c, client = acc
    meter = await setup_site(c, client)
    html = await page(client, "/reports", lang="en")
    assert "No report has been issued" in html and f'action="/reports/{SITE}/preview"' in html
    model = await js(client, f"/v1/sites/{SITE}/report", period="2026-01")
    res = await submit(client, c.admin_tx("owner", "report", payload_of(model)))
    sha = report_sha256(model)

    html = await page(client, "/reports", lang="en")
    body = main_part(html)
    assert f'href="/tx/{res["tx"]}"' in body and f'value="{sha}"' in body
    for fmt in ("pdf", "xlsx", "html"):
        m = re.search(rf'href="(/v1/sites/{SITE}/report\?[^"]*format={fmt}[^"]*)"', body)
        assert m is not None, fmt
        r = await client.get(m.group(1).replace("&amp;", "&"))
        assert r.status == 200 and render.extract(await r.read())[1]["key_figures"] == model["key_figures"]

    html = await page(client, f"/reports/{SITE}/preview", period="2026-01", lang="en")
    body = main_part(html)
    assert "ISO 14064-1" in body and "Annex: readings txs" in body and f'href="/tx/{res["tx"]}"' in body
    assert model["display"]["co2_location_t"] in body
    for hashes in model["provenance"]["devices"].values():
        assert all(h in body for h in hashes)

    html = await page(client, "/reports/verify", sha=sha, lang="en")
    assert "Match: every figure" in html and "✗" not in main_part(html)

    # a late reading inside January changes what the chain gives: the anchored figures no longer match
    late = [(T0 + 30 * HOUR_MS, "energy.import", 1000 + 10_000 * 24 + 5_000, "Wh")]
    await submit(client, meter.batch(c.chain, late))
    html = await page(client, "/reports/verify", sha=sha, lang="en")
    body = main_part(html)
    assert "Mismatch" in body and "✗" in body
    energy_row = re.search(r'<li data-figure="energy_wh" class="bad-row">(.*?)</li>', body, re.S)
    assert energy_row is not None and "✗" in energy_row.group(1) and "245,000" in energy_row.group(1)
    # the late tx changes energy, both CO2 figures and both roots; the site has no heat meter: heat still matches
    assert re.findall(r'data-figure="(\w+)" class="good-row"', body) == ["heat_wh"]
    html = await page(client, "/reports/verify", sha=sha, lang="zh")
    assert "不一致" in html


async def test_verify_an_uploaded_report_file(acc: Acc) -> None:
    c, client = acc
    await setup_site(c, client)
    model = await js(client, f"/v1/sites/{SITE}/report", period="2026-01")
    r = await client.get(
        f"/v1/sites/{SITE}/report", params={"period": "2026-01", "format": "html", "lang": "en"}
    )
    good = await r.read()

    async def upload(data: bytes, name: str) -> tuple[int, str]:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
        r = await client.post("/reports/verify?lang=en", data=form)
        return r.status, await r.text()

    status, html = await upload(good, "jan.html")
    assert status == 200 and "Match: every figure" in html and "not issued on this chain" in html
    shown = model["display"]["co2_location_t"]
    bad = good.decode().replace(
        f'data-key="co2_location_t">{render.num(shown)}<', 'data-key="co2_location_t">9.999<'
    )
    assert bad != good.decode()
    status, html = await upload(bad.encode(), "jan-edited.html")
    assert status == 200 and "Mismatch" in html and "printed co2_location_t" in html
    status, html = await upload(b"%PDF-1.4 not a report", "x.pdf")
    assert status == 400 and "<main" in html
    r = await client.post("/reports/verify?lang=en", data={"nothing": "here"})
    assert r.status == 400 and "choose a report file" in await r.text()


async def test_bad_input_is_a_4xx_page(acc: Acc) -> None:
    c, client = acc
    await setup_site(c, client)
    for path, params, status in (
        ("/carbon/NOT_A_SITE", {}, 400),
        ("/carbon/nowhere", {}, 404),
        (f"/carbon/{SITE}", {"period": "2026-13"}, 400),
        (f"/carbon/{SITE}", {"period": "2026-01", "grain": "week"}, 400),
        ("/reports", {"site": "Bad Site"}, 400),
        ("/reports/verify", {"sha": "xyz"}, 400),
        ("/reports/verify", {"sha": "0" * 64}, 404),
        (f"/reports/{SITE}/preview", {"period": "yesterday"}, 400),
    ):
        await page(client, path, status, lang="en", **params)


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_portrait_shows_the_energy_routes_forecast_and_plan(acc: Acc, lang: str) -> None:
    """The forecast and charging-plan sections show what ``/v1/sites/{id}/energy/forecast`` and ``.../plan``
    answer (the routes' own handlers), or the route's reason when it has nothing (too little history)."""
    import json

    c, client = acc
    await setup_site(c, client)
    plan = await js(client, f"/v1/sites/{SITE}/energy/plan", date="2026-01-02")
    html = await page(client, f"/carbon/{SITE}", period="2026-01", plan_date="2026-01-02", lang=lang)
    body = main_part(html)
    best = plan["plan"]
    cost = re.search(r'data-key="plan_cost_yuan">([^<]+)<', body)
    assert cost is not None and cost.group(1).replace(",", "") == f"{best['cost_yuan']:.2f}"
    m = re.search(r'<script type="application/json" id="plan-data">(.*?)</script>', body, re.S)
    assert m is not None
    data = json.loads(m.group(1))
    assert data["power_kw"] == [h["power_kw"] for h in best["hours"]]
    assert data["price"] == [h["price_yuan_per_kwh"] for h in best["hours"]]
    assert f"/v1/sites/{SITE}/energy/plan?date=2026-01-02" in body
    assert ("Charging plan for the storage tank" if lang == "en" else "蓄热罐充热计划") in body
    r = await client.get(f"/v1/sites/{SITE}/energy/forecast")
    if r.status == 200:
        fc = await r.json()
        cv = re.search(r'data-key="cv_rmse_pct">([^<]+) %<', body)
        assert cv is not None and cv.group(1) == f"{fc['model_error']['hourly_held_out']['cv_rmse_pct']:.1f}"
    else:  # a day of history is too little for a model scored on held-out weeks: the route says so, and the page
        assert 'id="fc-missing"' in body and 'id="fc-table"' not in body
        if r.status != 404:  # (404: a node from before the site forecast route)
            reason = (await r.json())["message"]
            # (up to the time it names, which may have moved on to the next minute since the page asked)
            assert reason.split(" before ")[0].replace("'", "&#39;") in body, reason
    # a date the tariffs do not cover, or a malformed one: the plan section says why, the page still renders
    html = await page(client, f"/carbon/{SITE}", period="2026-01", plan_date="20x6", lang=lang)
    assert 'id="plan-missing"' in main_part(html) and "YYYY-MM-DD" in html


async def test_portrait_forecast_with_five_weeks_of_history() -> None:
    """A site with 35 days of meter and outdoor-sensor readings (the energy tests' load model): the forecast
    section shows the route's model, its held-out errors and each horizon's figures."""
    from aiohttp.test_utils import TestServer

    from accounting.factors import shipped_sets
    from cemp import wiring
    from node.server import Node
    from tests.energy.test_siteforecast import DAYS, _site

    c, _t0 = _site(DAYS)
    for s in shipped_sets():
        c.ok(c.admin("regulator", "factors", s))
    node = Node(c.c.genesis, c.store, c.nid, c.c.node_keys[c.nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    try:
        now = "2026-01-03T10:00"
        fc = await js(client, f"/v1/sites/{SITE}/energy/forecast", now=now)
        for lang in ("en", "zh"):
            body = main_part(await page(client, f"/carbon/{SITE}", period="2025-12", fc_now=now, lang=lang))
            he = fc["model_error"]["hourly_held_out"]
            assert re.search(rf'data-key="cv_rmse_pct">{he["cv_rmse_pct"]:.1f} %<', body), body[:3000]
            assert re.search(rf'data-key="nmbe_pct">{he["nmbe_pct"]:.1f} %<', body)
            assert f"<code>{fc['model']}</code>" in body and 'id="fc-missing"' not in body
            rows = re.findall(
                r'<tr>\s*<td><b>[^<]+</b><div class="muted"><span class="nw">([^<]+)</span> – <span class="nw">([^<]+)<',
                body,
            )
            assert rows == [(h["start"][:10], h["end"][:10]) for h in fc["horizons"].values()]
            season = fc["horizons"]["season"]
            assert f"{season['energy_kwh']:,.0f}" in body  # en and zh group digits alike
            assert f"energy/forecast?now={now.replace(':', '%3A')}" in body
    finally:
        await client.close()
