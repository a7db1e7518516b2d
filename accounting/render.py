"""Renderers of the report model (``accounting.report.build``): HTML, PDF and XLSX, in Chinese or English.

All three draw from the one model and nothing else, and each embeds the model's canonical JSON, so ``extract``
gets back exactly what was rendered (``cemp report verify`` re-derives it from the chain): HTML in a
``<script type="application/json" id="cemp-report-model">``, PDF in its document-information keywords (zlib +
base64), XLSX in a hidden sheet. The printed key figures are read back too (HTML ``data-key`` cells, the XLSX
summary sheet, the PDF's text), so a file whose print and embedded model disagree is refused.

The PDF is drawn in-process with ReportLab and the WenQuanYi Micro Hei font (subset-embedded, with a ToUnicode
map, so PDF text extraction returns the Chinese text): a season report takes well under a second, where a headless
browser's print-to-pdf of the HTML costs ~2.5 s of process start on this class of machine.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accounting.inventory import canonical
from accounting.report import report_sha256
from node.errors import CempError, Code

FORMATS = ("html", "pdf", "xlsx")
LANGS = ("zh", "en")
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/wqy-microhei/wqy-microhei.ttc"),
)
KEYWORDS_PREFIX = "cemp-report-model:"
MODEL_SHEET = "cemp-model"
SUMMARY_KEYS = ("energy_mwh", "heat_gj", "co2_location_t", "co2_market_t")
SUMMARY_LABELS = {
    "energy_mwh": ("电量 MWh", "Electricity MWh"),
    "heat_gj": ("供热量 GJ", "Heat delivered GJ"),
    "co2_location_t": ("范围二（基于位置）tCO2", "Scope 2 location-based tCO2"),
    "co2_market_t": ("范围二（基于市场）tCO2", "Scope 2 market-based tCO2"),
}
TITLE = ("温室气体排放清单报告", "Greenhouse gas inventory report")


def _lang_index(lang: str) -> int:
    if lang not in LANGS:
        raise CempError(Code.BAD_REQUEST, f"language {lang!r}: use zh or en")
    return LANGS.index(lang)


def text(v: Any, li: int) -> str:
    """A model text in one language: ``[zh, en]`` pairs pick one, anything else is shown as it is."""
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v):
        return v[li]
    return "" if v is None else str(v)


def num(s: Any) -> str:
    """A decimal string with thousands separators (display); parsing back strips them."""
    m = re.fullmatch(r"(-?)(\d+)(\.\d+)?", str(s))
    if not m:
        return str(s)
    return f"{m.group(1)}{int(m.group(2)):,}{m.group(3) or ''}"


def _asof_text(model: dict[str, Any]) -> str:
    t = datetime.fromtimestamp(model["as_of"]["time_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"block {model['as_of']['height']}, {t}"


def render(model: dict[str, Any], fmt: str, lang: str = "zh") -> bytes:
    if fmt == "html":
        return render_html(model, lang)
    if fmt == "pdf":
        return render_pdf(model, lang)
    if fmt == "xlsx":
        return render_xlsx(model, lang)
    raise CempError(Code.BAD_REQUEST, f"format {fmt!r}: use html, pdf or xlsx")


# --- HTML -------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC",sans-serif;font-size:10pt;margin:2em;color:#111}
h1{font-size:16pt}h2{font-size:12pt;margin-top:1.6em;border-bottom:1px solid #999}h3{font-size:10.5pt}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:9pt}td,th{border:1px solid #aaa;padding:2px 5px;
vertical-align:top}th{background:#eee}td.n{text-align:right;white-space:nowrap}td.h{word-break:break-all}
.summary td{font-size:11pt}.note{color:#444;font-size:9pt}
"""


def render_html(model: dict[str, Any], lang: str = "zh") -> bytes:
    li = _lang_index(lang)
    e = html.escape
    site, per = model["site"], model["period"]
    out = [
        f'<!doctype html><html lang="{"zh-CN" if li == 0 else "en"}"><head><meta charset="utf-8">',
        f"<title>{e(TITLE[li])} {e(site['name'])} {e(per['label'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(TITLE[li])}</h1>",
        f"<p>{e(site['name'])} ({e(site['site_id'])}, {e(site['building'])}) — {e(per['label'])} "
        f"({e(per['first_day'])} – {e(per['last_day'])}); {e(_asof_text(model))}</p>",
        '<table class="summary">',
    ]
    for k in SUMMARY_KEYS:
        out.append(
            f'<tr><th>{e(SUMMARY_LABELS[k][li])}</th><td class="n" data-key="{k}">{e(num(model["display"][k]))}</td></tr>'
        )
    out.append(
        f'<tr><th>{"报告哈希" if li == 0 else "Report SHA-256"}</th><td class="h">{report_sha256(model)}</td></tr></table>'
    )
    for sec in model["sections"]:
        out.append(f'<h2 id="{e(sec["id"])}">{e(text(sec["title"], li))}</h2>')
        if sec["items"]:
            out.append("<table>")
            for label, value in sec["items"]:
                out.append(f"<tr><th>{e(text(label, li))}</th><td>{e(text(value, li))}</td></tr>")
            out.append("</table>")
        for t in sec["tables"]:
            out.append(f"<h3>{e(text(t['title'], li))}</h3><table><tr>")
            out.extend(f"<th>{e(c['zh'] if li == 0 else c['en'])}</th>" for c in t["columns"])
            out.append("</tr>")
            for row in t["rows"]:
                cells = []
                for c, v in zip(t["columns"], row, strict=True):
                    cls = ' class="n"' if c["type"] == "num" else ""
                    cells.append(f"<td{cls}>{e(num(v) if c['type'] == 'num' else text(v, li))}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</table>")
        for n in sec["notes"]:
            out.append(f'<p class="note">{e(text(n, li))}</p>')
    blob = canonical(model).decode().replace("</", "<\\/")
    out.append(f'<script type="application/json" id="cemp-report-model">{blob}</script></body></html>')
    return "\n".join(out).encode()


# --- PDF --------------------------------------------------------------------------------------------------------

_FONT = "WQYMicroHei"


def _font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if _FONT in pdfmetrics.getRegisteredFontNames():
        return _FONT
    for p in FONT_PATHS:
        if p.exists():
            pdfmetrics.registerFont(TTFont(_FONT, str(p), subfontIndex=0))
            return _FONT
    raise CempError(
        Code.NOT_FOUND,
        "no CJK font for the PDF: install the Debian package fonts-wqy-microhei "
        f"(looked for {', '.join(str(p) for p in FONT_PATHS)})",
    )


def render_pdf(model: dict[str, Any], lang: str = "zh") -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer

    li = _lang_index(lang)
    font = _font()
    wrap = "CJK"  # breaks between any two characters: CJK text and long hashes both wrap
    body = ParagraphStyle("b", fontName=font, fontSize=8, leading=10, wordWrap=wrap)
    cell = ParagraphStyle("c", parent=body, fontSize=7, leading=8.6)
    ncell = ParagraphStyle("n", parent=cell, alignment=2)
    h1 = ParagraphStyle("h1", parent=body, fontSize=15, leading=19, spaceAfter=4)
    h2 = ParagraphStyle("h2", parent=body, fontSize=11, leading=14, spaceBefore=8, spaceAfter=3)
    h3 = ParagraphStyle("h3", parent=body, fontSize=9, leading=12, spaceBefore=3, spaceAfter=2)
    e = html.escape
    site, per = model["site"], model["period"]
    pagesize = landscape(A4)
    width = pagesize[0] - 24 * mm
    style = [
        ("FONT", (0, 0), (-1, -1), font, 7),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]

    def P(s: str, st: ParagraphStyle = cell) -> Paragraph:
        return Paragraph(e(s), st)

    flow: list[Any] = [
        Paragraph(e(TITLE[li]), h1),
        P(
            f"{site['name']} ({site['site_id']}, {site['building']}) — {per['label']} "
            f"({per['first_day']} – {per['last_day']}); {_asof_text(model)}",
            body,
        ),
        Spacer(1, 3 * mm),
    ]
    rows = [[P(SUMMARY_LABELS[k][li], body), P(num(model["display"][k]), body)] for k in SUMMARY_KEYS]
    rows.append([P("报告哈希" if li == 0 else "Report SHA-256", body), P(report_sha256(model), body)])
    flow.append(LongTable(rows, colWidths=[70 * mm, 120 * mm], style=style[:2] + style[3:], hAlign="LEFT"))
    for sec in model["sections"]:
        flow.append(Paragraph(e(text(sec["title"], li)), h2))
        if sec["items"]:
            rows = [[P(text(a, li)), P(text(b, li))] for a, b in sec["items"]]
            flow.append(
                LongTable(
                    rows, colWidths=[70 * mm, width - 70 * mm], style=style[:2] + style[3:], hAlign="LEFT"
                )
            )
        for t in sec["tables"]:
            flow.append(Paragraph(e(text(t["title"], li)), h3))
            if t.get("print") == "html-xlsx":  # long lists (tx hashes): embedded in the file, not printed
                flow.append(
                    P(
                        f"共 {len(t['rows'])} 行，未打印；已嵌入本文件（cemp report txs FILE 列出）"
                        if li == 0
                        else f"{len(t['rows'])} rows, not printed; embedded in this file (cemp report txs FILE "
                        "lists them)",
                        body,
                    )
                )
                continue
            cols = t["columns"]
            head = [P(c["zh"] if li == 0 else c["en"]) for c in cols]
            body_rows = [
                [
                    P(num(v), ncell) if c["type"] == "num" else P(text(v, li))
                    for c, v in zip(cols, row, strict=True)
                ]
                for row in t["rows"]
            ]
            flow.append(
                LongTable(
                    [head, *body_rows],
                    colWidths=_widths(t, width, li),
                    repeatRows=1,
                    style=style,
                    hAlign="LEFT",
                )
            )
        for n in sec["notes"]:
            flow.append(P(text(n, li), body))
    buf = io.BytesIO()
    blob = base64.b64encode(zlib.compress(canonical(model), 9)).decode()
    title = f"{TITLE[li]} {site['name']} {per['label']}"

    def footer(canv: Any, doc: Any) -> None:
        canv.saveState()
        canv.setFont(font, 7)
        canv.drawString(12 * mm, 7 * mm, f"{site['site_id']} {per['label']} · {report_sha256(model)}")
        canv.drawRightString(pagesize[0] - 12 * mm, 7 * mm, str(doc.page))
        canv.restoreState()

    doc = SimpleDocTemplate(
        buf,
        pagesize=pagesize,
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=14 * mm,
        title=title,
        author=site["org"],
        subject=report_sha256(model),
        keywords=KEYWORDS_PREFIX + blob,
        creator="CEMP",
        invariant=1,
    )
    doc.build(flow, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


def _widths(t: dict[str, Any], width: float, li: int) -> list[float]:
    """Column widths in proportion to the longest text of each column (clamped), filling ``width``."""
    cols = t["columns"]
    lens = []
    for i, c in enumerate(cols):
        n = _w(c["zh"] if li == 0 else c["en"])
        for row in t["rows"][:60]:
            n = max(n, _w(num(row[i]) if c["type"] == "num" else text(row[i], li)))
        lens.append(min(max(n, 11 if c["type"] == "num" else 8), 60))
    s = sum(lens)
    return [width * n / s for n in lens]


def _w(s: str) -> int:
    """Display width: CJK characters count twice."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in s)


# --- XLSX -------------------------------------------------------------------------------------------------------


def _xnum(v: Any) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(str(v))
    except InvalidOperation:
        return str(v)
    return int(d) if d == d.to_integral_value() and "." not in str(v) else float(d)


def render_xlsx(model: dict[str, Any], lang: str = "zh") -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    li = _lang_index(lang)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "summary"
    bold = Font(bold=True)
    site, per = model["site"], model["period"]
    ws.append([TITLE[li]])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(
        [site["name"], site["site_id"], site["building"], per["label"], per["first_day"], per["last_day"]]
    )
    ws.append(["as of", _asof_text(model)])
    ws.append([])
    for k in SUMMARY_KEYS:
        ws.append([SUMMARY_LABELS[k][li], _xnum(model["display"][k]), k])
        c = ws.cell(row=ws.max_row, column=2)
        c.number_format = "#,##0.000"
    ws.append(["报告哈希" if li == 0 else "Report SHA-256", report_sha256(model)])
    ws.column_dimensions["A"].width = 42
    ws.column_dimensions["B"].width = 24
    for sec in model["sections"]:
        sh = wb.create_sheet(sec["id"][:31])
        sh.append([text(sec["title"], li)])
        sh["A1"].font = Font(bold=True, size=12)
        for a, b in sec["items"]:
            sh.append([text(a, li), text(b, li)])
        for t in sec["tables"]:
            sh.append([])
            sh.append([text(t["title"], li)])
            sh.cell(row=sh.max_row, column=1).font = bold
            sh.append([c["zh"] if li == 0 else c["en"] for c in t["columns"]])
            for cc in sh[sh.max_row]:
                cc.font = bold
            for row in t["rows"]:
                sh.append(
                    [
                        _xnum(v) if c["type"] == "num" else text(v, li)
                        for c, v in zip(t["columns"], row, strict=True)
                    ]
                )
        for n in sec["notes"]:
            sh.append([text(n, li)])
        sh.column_dimensions["A"].width = 40
        for col in "BCDEFGHIJ":
            sh.column_dimensions[col].width = 22
    ms = wb.create_sheet(MODEL_SHEET)
    blob = canonical(model).decode()
    for i in range(0, len(blob), 30_000):
        ms.append([blob[i : i + 30_000]])
    ms.sheet_state = "hidden"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --- reading a rendered report back -----------------------------------------------------------------------------


def detect(data: bytes) -> str:
    if data[:5] == b"%PDF-":
        return "pdf"
    if data[:2] == b"PK":
        return "xlsx"
    if b"cemp-report-model" in data[-(1 << 24) :]:
        return "html"
    raise CempError(Code.BAD_REQUEST, "not a CEMP report: neither a PDF, an XLSX nor a report HTML page")


def _model_json(raw: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError as ex:
        raise CempError(Code.BAD_REQUEST, f"the embedded report model is not JSON: {ex}") from None
    if not isinstance(obj, dict) or obj.get("schema") != "cemp.report/1":
        raise CempError(Code.BAD_REQUEST, "the embedded object is not a cemp.report/1 model")
    return obj


def extract(data: bytes) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(format, embedded model, printed key figures without thousands separators) of a rendered report; a file
    that is not one, or is damaged, is a ``CempError`` (400), never a parser's own exception."""
    try:
        return _extract(data)
    except CempError:
        raise
    except Exception as e:  # pypdf, openpyxl and zipfile raise many kinds on damaged files
        raise CempError(
            Code.BAD_REQUEST, f"not a readable CEMP report file ({type(e).__name__}: {str(e)[:120]})"
        ) from None


def _extract(data: bytes) -> tuple[str, dict[str, Any], dict[str, str]]:
    fmt = detect(data)
    printed: dict[str, str] = {}
    if fmt == "html":
        s = data.decode("utf-8", errors="replace")
        m = re.search(r'<script type="application/json" id="cemp-report-model">(.*?)</script>', s, re.S)
        if not m:
            raise CempError(Code.BAD_REQUEST, "the HTML report holds no embedded model")
        model = _model_json(m.group(1).replace("<\\/", "</"))
        for k, v in re.findall(r'data-key="([a-z0-9_]+)">([^<]*)<', s):
            printed[k] = html.unescape(v).replace(",", "")
    elif fmt == "xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(io.BytesIO(data), read_only=True)
        if MODEL_SHEET not in wb.sheetnames or "summary" not in wb.sheetnames:
            raise CempError(Code.BAD_REQUEST, "the XLSX holds no embedded report model")
        model = _model_json("".join(str(r[0] or "") for r in wb[MODEL_SHEET].iter_rows(values_only=True)))
        for row in wb["summary"].iter_rows(values_only=True):
            if len(row) >= 3 and row[2] in SUMMARY_KEYS:
                printed[str(row[2])] = _plain(row[1])
    else:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        meta = reader.metadata
        kw = str(meta.get("/Keywords", "")) if meta is not None else ""
        if not kw.startswith(KEYWORDS_PREFIX):
            raise CempError(Code.BAD_REQUEST, "the PDF holds no embedded report model")
        try:
            raw = zlib.decompress(base64.b64decode(kw[len(KEYWORDS_PREFIX) :])).decode()
        except (ValueError, zlib.error) as ex:
            raise CempError(Code.BAD_REQUEST, f"the PDF's embedded model is damaged: {ex}") from None
        model = _model_json(raw)
        first = reader.pages[0].extract_text().replace(",", "")
        for k in SUMMARY_KEYS:
            want = str(model["display"][k])
            printed[k] = (
                want if re.search(rf"(?<![\d.]){re.escape(want)}(?![\d])", first) else "(not printed)"
            )
    return fmt, model, printed


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def check_printed(model: dict[str, Any], printed: dict[str, str]) -> list[str]:
    """Differences between the figures printed in a file and those of its embedded model."""
    out = []
    for k in SUMMARY_KEYS:
        want = str(model["display"][k])
        got = printed.get(k)
        if got != want:
            out.append(f"printed {k} is {got!r} but the embedded model says {want!r}")
    return out


def verify(
    data: bytes,
    inventory_now: Any,
    anchored: Any,
) -> dict[str, Any]:
    """Re-check a rendered report: its print against its embedded model, the model's key figures against an
    inventory computed now (``inventory_now(site_id, period) -> finished inventory``), and, when the report was
    issued, the figures its ``report`` tx anchored (``anchored(report_sha256) -> record JSON or None``).
    """
    from accounting.report import compare

    fmt, model, printed = extract(data)
    sha = report_sha256(model)
    problems = check_printed(model, printed)
    inv = inventory_now(model["site"]["site_id"], model["period"]["label"])
    problems += compare(model, inv)
    rec = anchored(sha)
    if rec is not None:
        kf = model["key_figures"]
        want = {
            "energy_wh": kf["energy_wh"],
            "heat_wh": kf["heat_wh"],
            "co2e_g": kf["co2_location_ug"] // 10**6,
            "co2e_market_g": kf["co2_market_ug"] // 10**6,
            "inventory": model["inventory_sha256"],
            "aggregates_root": kf["aggregates_root"],
            "readings_txs_root": kf.get("readings_txs_root"),
        }
        for k, v in want.items():
            if rec.get(k) != v:
                problems.append(f"anchored {k}: report tx {rec.get(k)}, file {v}")
    return {
        "format": fmt,
        "report_sha256": sha,
        "site": model["site"]["site_id"],
        "period": model["period"]["label"],
        "issued": None if rec is None else {"tx": rec.get("tx"), "height": rec.get("height")},
        "chain_height": inv["as_of"]["height"],
        "match": not problems,
        "problems": problems,
        "figures": model["display"],
    }
