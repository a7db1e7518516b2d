"""Every page in Chinese carries no English of its own: each page of the UI is rendered with ``Accept-Language:
zh-CN`` on an in-process node holding devices, readings, a site with its figures, an issued report, an alarm and a
work order, and its visible text (outside code, data and what people wrote) is checked for
- catalogue misses: a label key shown as itself (``web.text`` answers a missing key with the key);
- English labels: an English catalogue text (``web.text.TEXT``, ``web.maint``'s tables) shown on the zh page;
- English written into a template: a run of English words that is not data of the fixture (names, messages).
A failure names the page and the text, so a new English string on a zh page is caught where it is added."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from accounting.report import payload_of as report_payload
from maintenance import alarms as al
from maintenance import workorders as wo
from tests.accounting.chain import SITE
from tests.accounting.test_api import setup_site
from tests.resolver.conftest import submit
from tests.web.conftest import METER, SENSOR, WebFixture
from web.maint import MTEXT, PERSON_ROLE_TEXT, RULE_TEXT, SEVERITY_TEXT, STATE_TEXT
from web.text import TEXT

SKIP_TAGS = {"script", "style", "code", "pre", "kbd", "samp", "textarea", "option", "svg"}
"""Code, data and command lines stay as they are in every language."""
COMMAND = re.compile(r"cemp(?: [a-z][\w\-]*)+")
"""A command line quoted in a sentence (``cemp report verify``)."""
WORDS = re.compile(r"[A-Za-z]{3,}(?:[ \-][A-Za-z]{2,}){1,}")
KEY = re.compile(r"[a-z]+(?:_[a-z0-9]+)+")
KIND = re.compile(
    r"[a-z]+(?:\.[a-z_]+)+|readings|document|factors|boundary|site|rating|report|grant|membership|alarm|workorder"
)
"""A tx or device kind's name shown as a label: zh pages show known kinds in words, others as code."""
ALLOWED = {
    # names of standards, units and formats, the same in Chinese text
    "CV(RMSE)", "ASHRAE G14", "ASHRAE Guideline", "Guideline 14", "Merkle", "JSON", "CSV", "PDF", "XLSX", "HTML",
    "ISO", "QR", "UTC", "SHA", "Ed25519", "Scope", "WebCrypto", "JavaScript", "HTTPS", "GHG Protocol", "IPCC",
    "GWP", "RFC", "AR5/AR6",
}  # fmt: skip


FACTOR_DATA = re.compile(r"grid\.[a-z.\-]+|MEE/NBS[^:]*:[^(]*|\(cn-[a-z0-9\-]+ v\d+\)|\(MEE/NBS[^)]*\)")
"""Factor keys and the factor sets' own titles (as the regulator recorded them), quoted in the report."""
KNOWN_REPORT_MODEL = (
    re.compile(r"hourly aggregates of \d+ meters .*"),
    re.compile(r"采用：meters；原因：.*"),
    re.compile(r"inventory [0-9a-f]+…"),
)
"""English the report model itself still carries in its Chinese text (``accounting.report``: the on-chain data
sentence and the inventory's reason for its activity data); the report preview shows the model as issued."""


class Visible(HTMLParser):
    """Text nodes a person reads, with the tag stack; skips code-like elements, ``translate="no"`` (values as
    stored) and text marked ``lang="en"`` (a route's refusal, which the API words in English)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "img", "input", "meta", "link", "hr", "wbr", "source"):
            return
        a = dict(attrs)
        skip = tag in SKIP_TAGS or a.get("translate") == "no" or (a.get("lang") or "").startswith("en")
        self.stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if any(skip for _, skip in self.stack) or not data.strip():
            return
        self.texts.append(" ".join(data.split()))


def visible_main(html: str) -> list[str]:
    p = Visible()
    p.feed(html[html.index(">", html.index("<body")) + 1 :])
    return p.texts


def english_labels() -> dict[str, str]:
    """English catalogue text -> its key, for labels whose Chinese differs."""
    out: dict[str, str] = {}
    tables = [TEXT, MTEXT, STATE_TEXT, RULE_TEXT, SEVERITY_TEXT, PERSON_ROLE_TEXT]
    for table in tables:
        for k, (en, zh) in table.items():
            if en != zh and len(en) >= 4 and re.search("[A-Za-z]{3}", en):
                out[en.strip(" .:")] = k
    return out


async def zh_fixture(w: WebFixture) -> tuple[list[str], set[str]]:
    """Adds a site with figures and an issued report, an alarm and a work order; returns the pages and the data
    strings (written by people or devices) that may be English on any page."""
    c, client = w.consortium, w.client
    await setup_site(c, client)
    r = await client.get(f"/v1/sites/{SITE}/report", params={"period": "2026-01"})
    model = await r.json()
    assert (await submit(client, c.admin_tx("owner", "report", report_payload(model))))["result"]["ok"]  # type: ignore[index]
    p = al.make_raise(
        METER, "silent", 1_764_547_200_000 + 20_000, "a reading every minute", "no reading for 31 minutes",
        "meter silent", message_zh="电表无数据",
    )  # fmt: skip
    assert (await submit(client, c.admin_tx("equipment", "alarm", p)))["result"]["ok"]  # type: ignore[index]
    o = wo.make_open("alarm", METER, "check the meter line", alarm=1, note="line check")
    assert (await submit(client, c.admin_tx("owner", "workorder", o)))["result"]["ok"]  # type: ignore[index]
    h = w.node.ledger.height
    pages = [
        "/", "/blocks", f"/block/{h}", "/block/1", "/txs", f"/tx/{w.tx_hashes[0]}", "/devices", f"/device/{METER}",
        f"/device/{SENSOR}?range=season", f"/handle/{METER}", "/consortium", "/search?q=heat-exchanger",
        "/search?q=nothing-like-this", "/carbon", f"/carbon/{SITE}?period=2026-01&plan_date=2026-01-02",
        f"/carbon/{SITE}?period=2026-01&grain=day", "/reports", f"/reports/{SITE}/preview?period=2026-01",
        "/alarms", "/alarms?state=all", "/alarms/1", "/workorders", "/workorders/1", "/signin", "/block/99999",
    ]  # fmt: skip
    data = {
        "a reading every minute", "no reading for 31 minutes", "meter silent", "check the meter line", "line check",
        "Hohhot commercial complex", "Hohhot", "Inner Mongolia", "North China", "heat-exchanger", "core-heating",
        "nothing-like-this", "owner", "equipment", "regulator",
    }  # fmt: skip
    return pages, data


async def test_chinese_pages_have_no_english_of_their_own(web_node: WebFixture) -> None:
    pages, data = await zh_fixture(web_node)
    labels = english_labels()
    keys = set(TEXT) | set(MTEXT)
    problems: list[str] = []
    for path in pages:
        r = await web_node.client.get(path, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert r.status in (200, 404), (path, r.status)
        html = await r.text()
        assert '<html lang="zh-CN">' in html, path
        for text in visible_main(html):
            if text in data:
                continue
            if "/preview" in path and any(k.fullmatch(text) for k in KNOWN_REPORT_MODEL):
                continue
            rest = FACTOR_DATA.sub(" ", COMMAND.sub(" ", text))
            for d in sorted(data | ALLOWED, key=len, reverse=True):
                rest = rest.replace(d, " ")
            if KIND.fullmatch(text):
                problems.append(f"{path}: tx kind shown by its name: {text!r}")
            elif KEY.fullmatch(text) and (text in keys or "_" in text):
                problems.append(f"{path}: catalogue key shown: {text!r}")
            elif text.strip(" .:") in labels:
                problems.append(f"{path}: English label {labels[text.strip(' .:')]!r}: {text!r}")
            elif WORDS.search(rest):
                problems.append(f"{path}: English text: {text!r}")
    assert not problems, "\n".join(sorted(set(problems)))
