"""Every explorer and device page through aiohttp's test client: content, languages, units, time zone, CSV,
cursor paging, search, live events, the in-page proof data, and bad input (a 4xx page, never a 500)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re

import pytest

from node import merkle
from tests.resolver.conftest import submit
from tests.web.conftest import METER, SENSOR, T0, WebFixture
from web.text import TEXT

LANGS = ("en", "zh")


async def get(w: WebFixture, path: str, status: int = 200, **params: str) -> str:
    r = await w.client.get(path, params=params)
    body = await r.text()
    assert r.status == status, (path, r.status, body[-1500:])
    return body


@pytest.mark.parametrize("lang", LANGS)
async def test_every_page_renders_in_both_languages(web_node: WebFixture, lang: str) -> None:
    w = web_node
    h = w.node.ledger.height
    paths = [
        "/",
        "/blocks",
        f"/block/{h}",
        "/txs",
        f"/tx/{w.tx_hashes[0]}",
        "/devices",
        f"/device/{METER}",
        f"/device/{SENSOR}?range=season",
        f"/handle/{METER}",
        "/consortium",
        "/search?q=heat-exchanger",
    ]
    for path in paths:
        html = await get(w, path, lang=lang)
        assert f'<html lang="{"en" if lang == "en" else "zh-CN"}">' in html
        assert 'name="viewport"' in html and '<main id="main"' in html
        other = "Overview" if lang == "zh" else "概览"
        assert other not in html.split("<main")[1], path  # no label from the other language in the page body


async def test_language_follows_accept_language_and_the_switch_sticks(web_node: WebFixture) -> None:
    c = web_node.client
    r = await c.get("/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Latest blocks" in await r.text()
    r = await c.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert "最新区块" in await r.text()
    r = await c.get("/?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "Latest blocks" in await r.text() and r.cookies["lang"].value == "en"
    r = await c.get("/blocks", headers={"Accept-Language": "zh-CN"})  # the cookie from the switch
    assert "<h1>Blocks</h1>" in await r.text()


async def test_home_shows_blocks_txs_and_status(web_node: WebFixture) -> None:
    w = web_node
    html = await get(w, "/", lang="en")
    h = w.node.ledger.height
    assert f'data-height="{h}"' in html and 'data-live="/events?lang=en"' in html
    assert w.tx_hashes[-1][:10] in html  # newest tx listed
    assert "owner-1" in html and 'href="/blocks?format=csv"' in html


async def test_block_page_has_header_fields_and_certificate(web_node: WebFixture) -> None:
    w = web_node
    led = w.node.ledger
    b = led.block(2)
    assert b is not None
    html = await get(w, "/block/2", lang="en")
    for field in (b.header.prev_hash, b.header.tx_root, b.header.app_hash, b.header.results_root):
        assert field.hex() in html
    assert "Commit certificate" in html
    cert = led.cert(2)
    assert cert and all(s.signature.hex() in html for s in cert)
    from node.chain import header_hash

    by_hash = await get(w, f"/block/{header_hash(b.header).hex()}", lang="en")
    assert "<h1>Block 2</h1>" in by_hash


async def test_tx_page_decodes_payload_and_carries_a_proof_that_verifies(web_node: WebFixture) -> None:
    w = web_node
    tx = w.tx_hashes[1]
    html = await get(w, f"/tx/{tx}", lang="en")
    assert "<code>readings</code>" in html and f'href="/device/{METER}"' in html
    assert "kWh" in html and "Verify in the browser" in html
    proof = json.loads(re.search(r'id="proof-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    leaf = bytes.fromhex(proof["leaf"])
    path = [bytes.fromhex(p) for p in proof["path"]]
    assert merkle.verify_inclusion(leaf, proof["index"], proof["size"], path, bytes.fromhex(proof["root"]))


async def test_proof_of_a_tx_in_a_block_of_several(web_node: WebFixture) -> None:
    import msgpack

    w = web_node
    c = w.consortium
    raws = [
        w.sensor.batch(c.chain, [(T0 + (20 + i) * 60_000, "temp.supply", 46_000 + i, "mdegC")])
        for i in range(5)
    ]
    r = await w.client.post(
        "/v1/txs/batch?wait=commit",
        data=msgpack.packb(raws, use_bin_type=True),
        headers={"Content-Type": "application/msgpack"},
    )
    res = (await r.json())["results"]
    heights = {x["height"] for x in res}
    assert len(heights) == 1, res  # one block
    lengths = []
    for x in res:
        html = await get(w, f"/tx/{x['tx']}", lang="en")
        proof = json.loads(re.search(r'id="proof-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
        assert proof["size"] == 5
        lengths.append(len(proof["path"]))
        path = [bytes.fromhex(p) for p in proof["path"]]
        assert merkle.verify_inclusion(
            bytes.fromhex(proof["leaf"]), proof["index"], 5, path, bytes.fromhex(proof["root"])
        )
    assert lengths == [3, 3, 3, 3, 1]  # RFC 6962 tree of 5 leaves: four in a full subtree, one alone


async def test_times_are_in_shanghai_and_numbers_are_localised(web_node: WebFixture) -> None:
    w = web_node
    html = await get(w, f"/device/{SENSOR}", lang="en")
    # T0 is 2025-12-01 00:00 UTC: the sensor's last reading (minute 11) is 08:11 in Shanghai
    assert 'datetime="2025-12-01T08:11:00+08:00"' in html and "2025-12-01 08:11:00" in html
    assert "99.0&nbsp;°C" in html and "99000 mdegC" in html
    assert "spike" in html  # the flagged reading's quality flag, in words
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert data["flagged"] == 1 and data["marks"] == [
        {"ts_ms": T0 + 11 * 60_000, "value": 99_000, "flags": 16}
    ]
    assert "Flagged readings (1)" in html
    prev = await get(w, f"/device/{SENSOR}", lang="en", range="prev_season")
    assert "No readings in this range" in prev  # 2024/25: before the sensor's first reading
    season = await get(w, f"/device/{SENSOR}", lang="en", range="season")
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', season, re.S).group(1))  # type: ignore[union-attr]
    assert data["resolution"] == "hourly" and data["marks"] == [{"ts_ms": T0, "hour_count": 1}]
    zh = await get(w, f"/device/{SENSOR}", lang="zh")
    assert "尖峰" in zh and "供水温度" in zh


async def test_device_page_chart_data_is_downsampled_and_in_display_units(web_node: WebFixture) -> None:
    w = web_node
    html = await get(w, f"/device/{METER}", lang="en", q="power")
    data = json.loads(re.search(r'id="chart-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert data["unit"] == "kW" and data["resolution"] == "raw" and len(data["t"]) == 180
    assert data["mean"][0] == 120.0 and max(data["max"]) == pytest.approx(120.29)
    assert "Alarms" in html and 'data-slot="alarms"' in html
    assert 'id="health"' in html and 'class="health health-' in html  # the health panel (energy.webpanel)
    assert "Handle record: Values" in html and "CEMP.DEVICE_TYPE" in html  # the handle record, folded
    r = await w.client.get(f"/device/{METER}/series.json", params={"q": "energy.import", "range": "season"})
    s = await r.json()
    assert r.status == 200 and s["counter"] and s["unit"].startswith("kWh")
    # three hours of 1-minute data, drawn from the raw readings; the use adds up to the register's growth
    total_wh = sum(2000 + (m % 5) * 100 for m in range(30)) * 6
    assert sum(s["mean"]) == pytest.approx((total_wh - 2000) / 1000, rel=1e-6)
    r = await w.client.get(
        f"/device/{METER}/series.json",
        params={"q": "power", "from": str(T0), "to": str(T0 + 3_600_000), "points": "10"},
    )
    s = await r.json()
    assert len(s["t"]) == 10 and s["resolution"] == "raw"


async def test_chart_follows_new_readings(web_node: WebFixture) -> None:
    """Chart data is reused between views only while the device has no new readings."""
    w = web_node
    params = {"q": "temp.supply", "from": str(T0), "to": str(T0 + 3_600_000)}
    first = await (await w.client.get(f"/device/{SENSOR}/series.json", params=params)).json()
    again = await (await w.client.get(f"/device/{SENSOR}/series.json", params=params)).json()
    assert first == again and len(first["t"]) == 11
    await submit(
        w.client, w.sensor.batch(w.consortium.chain, [(T0 + 30 * 60_000, "temp.supply", 41_000, "mdegC")])
    )
    later = await (await w.client.get(f"/device/{SENSOR}/series.json", params=params)).json()
    assert len(later["t"]) == 12 and later["mean"][-1] == 41.0
    html = await get(w, f"/device/{SENSOR}", lang="en", **params)
    assert "41.0&nbsp;°C" in html


async def test_csv_exports(web_node: WebFixture) -> None:
    w = web_node
    for path in (
        "/blocks",
        "/txs",
        "/devices",
        "/consortium",
        "/stats.json",
        f"/block/{w.node.ledger.height}",
    ):
        r = await w.client.get(path, params={"format": "csv"})
        assert r.status == 200 and r.content_type == "text/csv", path
        rows = list(csv.reader(io.StringIO((await r.read()).decode("utf-8-sig"))))
        assert len(rows) >= 2, path
    r = await w.client.get(f"/device/{METER}", params={"format": "csv", "q": "voltage.l1", "range": "season"})
    rows = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert len(rows) == 180 and rows[0]["unit"] == "mV" and rows[0]["unit_shown"] == "V"
    assert rows[0]["value"] == "219413" and rows[0]["value_shown"] == "219.413"
    assert rows[0]["time"].endswith("+08:00")
    r = await w.client.get("/txs", params={"format": "csv"})
    txs = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert {t["hash"] for t in txs} >= set(w.tx_hashes)
    assert {t["device"] for t in txs if t["kind"] == "readings"} == {METER, SENSOR}
    html = await get(w, "/txs", lang="en")
    assert f'<a href="/device/{METER}">{METER}</a>' in html  # a readings tx names its signing device


async def test_tx_list_pages_by_cursor_without_gaps_or_repeats(web_node: WebFixture) -> None:
    w = web_node
    seen: list[str] = []
    path = "/txs"
    params: dict[str, str] = {"lang": "en"}
    for _ in range(50):
        html = await get(w, path, **params)
        seen += re.findall(r'href="/tx/([0-9a-f]{64})"', html)
        m = re.search(r'href="/txs\?before=([0-9.]+)"', html)
        if not m:
            break
        params = {"lang": "en", "before": m.group(1)}
    total = sum(len(b.txs) for h in range(1, w.node.ledger.height + 1) if (b := w.node.ledger.block(h)))
    assert len(seen) == len(set(seen)) == total


async def test_block_list_pages_by_height(web_node: WebFixture) -> None:
    w = web_node
    html = await get(w, "/blocks", lang="en", before="5", limit="2")
    assert re.findall(r'data-height="(\d+)"', html) == ["4", "3"]
    assert 'href="/blocks?before=3"' in html


async def test_header_only_rows_match_full_rows(web_node: WebFixture) -> None:
    from web.chainview import ChainView

    led = web_node.node.ledger
    view = ChainView(led)
    for h in range(1, led.height + 1):
        full, head = view.row(h), ChainView(led).header_row(h)
        assert full is not None and head is not None
        assert (head.height, head.hash, head.time_ms, head.proposer, head.term, head.txs) == (
            full.height,
            full.hash,
            full.time_ms,
            full.proposer,
            full.term,
            full.txs,
        )
        assert head.readings is None and head.invalid is None


async def test_search_box(web_node: WebFixture) -> None:
    w = web_node
    c = w.client

    async def lands(q: str) -> str:
        r = await c.get("/search", params={"q": q}, allow_redirects=False)
        assert r.status == 303, (q, r.status)
        return r.headers["Location"]

    assert await lands("3") == "/block/3"
    b3 = w.node.ledger.block(3)
    assert b3 is not None
    from node.chain import header_hash

    assert await lands(header_hash(b3.header).hex()) == f"/block/{header_hash(b3.header).hex()}"
    assert await lands(w.tx_hashes[0].upper()) == f"/tx/{w.tx_hashes[0]}"
    assert await lands(METER) == f"/device/{METER}"
    assert await lands("88.123.45/admin") == "/handle/88.123.45/admin"
    html = await get(w, "/search", q="heat-exchanger", lang="en")
    assert SENSOR in html
    html = await get(w, "/search", q="nothing-like-this", lang="en")
    assert "Nothing matches" in html
    assert await lands("") == "/"


async def test_search_finds_a_site_by_id_name_or_address(web_node: WebFixture) -> None:
    from tests.accounting.chain import BUILDING, SITE, site_payload

    w = web_node
    await submit(w.client, w.consortium.admin_tx("owner", "site", site_payload(area=1_000)))
    r = await w.client.get("/search", params={"q": SITE}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"/handle/{BUILDING}"
    html = await get(w, "/search", q="inner mongolia", lang="en")
    assert "Hohhot commercial complex" in html and f'href="/handle/{BUILDING}"' in html
    assert f'href="/v1/sites/{SITE}"' in html
    page = await get(w, f"/handle/{BUILDING}", lang="zh")
    assert "Hohhot commercial complex" in page and "建筑" in page  # the cemp.building template, in Chinese


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/block/999999", 404),
        ("/block/" + "ab" * 32, 404),
        ("/block/xyz", 400),
        ("/block/-1", 400),
        ("/tx/" + "00" * 32, 404),
        ("/tx/nothex", 400),
        ("/device/88.123.45/none", 404),
        (f"/device/{METER}?q=nope", 400),
        (f"/device/{METER}?range=forever", 400),
        (f"/device/{METER}?range=prev_season", 200),
        (f"/device/{METER}?from=yesterday", 400),
        (f"/device/{METER}?from=2025-12-02&to=2025-12-01", 400),
        ("/blocks?before=abc", 400),
        ("/blocks?before=0", 400),
        ("/blocks?limit=100000", 400),
        ("/txs?before=1.2.3", 400),
        ("/txs?before=" + "9" * 40, 400),
        ("/handle/nonsense", 400),
        ("/stats.json?minutes=0", 400),
    ],
)
async def test_bad_input_gets_a_4xx_page_not_a_500(web_node: WebFixture, path: str, status: int) -> None:
    r = await web_node.client.get(path)
    body = await r.text()
    assert r.status == status, (path, r.status, body[-800:])
    if path.startswith("/stats.json"):
        return
    assert "<html" in body and "Traceback" not in body


async def test_bad_input_on_machine_routes_is_json(web_node: WebFixture) -> None:
    c = web_node.client
    r = await c.get(f"/device/{METER}/series.json", params={"q": "nope"})
    assert r.status == 400 and (await r.json())["code"] == "bad_param"
    r = await c.get("/device/88.123.45/none/series.json", params={"q": "power"})
    assert r.status == 404
    r = await c.get("/blocks", params={"format": "csv", "before": "x"})
    assert r.status == 400 and "before" in (await r.json())["message"]


async def test_live_events_deliver_new_blocks(web_node: WebFixture) -> None:
    w = web_node
    start = w.node.ledger.height
    r = await w.client.get("/events", params={"lang": "en"})
    assert r.status == 200 and r.content_type == "text/event-stream"
    now = T0 + 4 * 3_600_000
    await submit(w.client, w.sensor.batch(w.consortium.chain, [(now, "temp.supply", 50_000, "mdegC")]))
    got = b""
    async with asyncio.timeout(30):
        while f"id: {start + 1}".encode() not in got:
            got += await r.content.readany()
    event = next(e for e in got.decode().split("\n\n") if f"id: {start + 1}" in e)
    data = json.loads(event.split("data: ", 1)[1])
    assert data["height"] == start + 1 and f'data-height="{start + 1}"' in data["html"]
    r.close()


async def test_activity_stats_count_blocks_txs_and_readings(web_node: WebFixture) -> None:
    w = web_node
    r = await w.client.get("/stats.json", params={"minutes": "60"})
    s = await r.json()
    led = w.node.ledger
    assert sum(s["blocks"]) == led.height and s["complete"]
    assert sum(s["txs"]) == sum(len(b.txs) for h in range(1, led.height + 1) if (b := led.block(h)))
    assert sum(s["readings"]) == 6 * 90 + 11


def test_every_label_has_both_languages() -> None:
    import pathlib

    used: set[str] = set()
    for p in pathlib.Path("web/templates").glob("*.html"):
        used |= set(re.findall(r"\bt\.([a-z_0-9]+)", p.read_text()))
    missing = sorted(k for k in used if k not in TEXT and k not in ("get",))
    assert not missing, missing
    assert all(en and zh for en, zh in TEXT.values())
