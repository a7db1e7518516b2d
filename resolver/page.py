"""The resolution page for people: a browser asking for HTML at ``/api/handles/{handle}`` gets this.

Shows the public values with readable labels, the owner and admins, the template, the carbon summary and
rating, the history of changes, and for a device its latest readings; a QR code (inline SVG, ``segno``) encodes
the handle's URL on this node. Labels are Chinese or English, chosen by ``?lang=zh|en`` or Accept-Language.

Invariant: the page reads committed state only and escapes everything it prints (jinja2 autoescape); only the
QR SVG, produced here from the URL, is inserted unescaped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

try:
    import segno
except ImportError:  # pragma: no cover - segno is a declared dependency; pages still work without it
    segno = None  # type: ignore[assignment]

from node import codec, schema
from node.devices import load_device
from node.readings import decode_reading_value
from node.state import StateView
from resolver import idis
from resolver.handles import Name, load_change, load_record
from resolver.values import HS_ADMIN, HandleRecord, decode_admin, publicly_readable, value_text

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=jinja2.select_autoescape(["html"]),
)
LANGS = (("zh", "中文"), ("en", "English"))
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "html_lang": "en",
        "resolver": "identifier resolution",
        "identifier": "Identifier (88.x handle)",
        "owner": "Owner",
        "admin": "Administrator",
        "created": "Created",
        "updated": "Last change",
        "scan": "Scan to open",
        "carbon": "Carbon summary",
        "values": "Values",
        "index": "Index",
        "type": "Type",
        "value": "Value",
        "timestamp": "Set at",
        "device": "Device",
        "kind": "Device type",
        "subsystem": "Subsystem",
        "readings_count": "Readings on chain",
        "last_seen": "Last reading",
        "latest": "Latest readings",
        "no_readings": "No readings yet.",
        "quantity": "Quantity",
        "history": "History of changes",
        "when": "When",
        "change": "Change",
        "by": "Authorised by",
        "block": "block",
        "proof": "proof",
        "as_of": "As of block",
        "not_found": "This handle does not exist on this ledger.",
        "created_as": "created",
        "changed": "changed values",
        "deleted": "deleted",
        "registered": "device registered",
    },
    "zh": {
        "html_lang": "zh-CN",
        "resolver": "标识解析",
        "identifier": "标识 (88.x)",
        "owner": "所属单位",
        "admin": "管理员",
        "created": "创建于",
        "updated": "最近变更",
        "scan": "扫码打开",
        "carbon": "碳排放摘要",
        "values": "标识值",
        "index": "索引",
        "type": "类型",
        "value": "值",
        "timestamp": "写入时间",
        "device": "设备",
        "kind": "设备类型",
        "subsystem": "所属子系统",
        "readings_count": "链上读数",
        "last_seen": "最近读数",
        "latest": "最新读数",
        "no_readings": "暂无读数。",
        "quantity": "测量量",
        "history": "变更记录",
        "when": "时间",
        "change": "变更",
        "by": "授权方",
        "block": "区块",
        "proof": "证明",
        "as_of": "截至区块",
        "not_found": "该标识在本账本上不存在。",
        "created_as": "创建",
        "changed": "修改值",
        "deleted": "删除",
        "registered": "设备注册",
    },
}
CARBON_LABELS = {
    "period": ("Period", "核算期"),
    "co2e_g": ("CO₂e", "碳排放量"),
    "energy_wh": ("Energy", "用能"),
    "method": ("Method", "方法"),
    "factor_set": ("Emission factors", "排放因子"),
    "report": ("Report", "报告"),
    "grade": ("Grade", "等级"),
    "scheme": ("Scheme", "评价体系"),
}


def pick_lang(request: web.Request, q: dict[str, list[str]]) -> str:
    want = q.get("lang", [""])[-1].lower()
    if want in TEXT:
        return want
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


def _ts(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "-"


def _fmt_number(key: str, v: object) -> str:
    if key == "co2e_g" and isinstance(v, int):
        return f"{v / 1e6:,.3f} t" if v >= 1_000_000 else f"{v / 1000:,.1f} kg"
    if key == "energy_wh" and isinstance(v, int):
        return f"{v / 1000:,.1f} kWh"
    return str(v)


def _summary(rec: HandleRecord, typ: str, lang: str) -> list[tuple[str, str]]:
    for sv in rec.values:
        if sv.value.type == typ and publicly_readable(sv.value):
            try:
                obj = json.loads(value_text(sv.value))
            except ValueError:
                return []
            li = 0 if lang == "en" else 1
            return [(CARBON_LABELS.get(k, (k, k))[li], _fmt_number(k, v)) for k, v in obj.items()]
    return []


def _qr(url: str) -> str:
    if segno is None:
        return ""
    return str(segno.make(url, error="m").svg_inline(scale=4, border=2))


def render(resolver: Any, request: web.Request, name: Name, q: dict[str, list[str]]) -> web.Response:
    lang = pick_lang(request, q)
    t = TEXT[lang]
    li = 0 if lang == "en" else 1
    store = resolver.store
    view = StateView(store)
    rec = load_record(view, name.handle)
    base = {"t": t, "lang": lang, "langs": LANGS, "handle": name.handle}
    if rec is None:
        html = _ENV.get_template("not_found.html").render(**base, message=t["not_found"])
        return web.Response(text=html, status=404, content_type="text/html")
    url = f"{request.scheme}://{request.host}/api/handles/{name.handle}"
    values = [
        {
            "index": sv.value.index,
            "type": sv.value.type,
            "label": idis.LABELS.get(sv.value.type, (sv.value.type, sv.value.type))[li],
            "text": value_text(sv.value),
            "timestamp": _ts(sv.timestamp_ms),
        }
        for sv in rec.values
        if publicly_readable(sv.value)
    ]
    admins = []
    for sv in rec.values:
        if sv.value.type == HS_ADMIN:
            a = decode_admin(bytes(sv.value.data))
            admins.append(f"{a.index}:{a.handle}")
    tmap = {sv.value.index: sv.value for sv in rec.values}
    tid = idis.template_of(tmap)
    tpl = idis.TEMPLATES.get(tid or "")
    template = f"{(tpl.en, tpl.zh)[li]} ({tid})" if tpl else (tid or "")
    history = []
    for version in range(rec.version, max(0, rec.version - 20), -1):
        c = load_change(view, name.handle, version)
        if c is None:
            continue
        if c.kind == "device.register":
            what = t["registered"]
        elif c.deleted:
            what = t["deleted"]
        elif version == 1:
            what = t["created_as"]
        else:
            what = f"{t['changed']} {', '.join(str(i) for i in c.indices[:12])}"
        history.append(
            {
                "version": c.version,
                "time": _ts(c.time_ms),
                "height": c.height,
                "what": what,
                "actor": c.actor,
                "tx": bytes(c.tx).hex(),
            }
        )
    device = None
    readings = []
    dev = load_device(view, rec.handle)
    if dev is not None:
        device = {
            "kind": dev.kind,
            "subsystem": dev.subsystem,
            "readings": dev.readings,
            "last_seen": _ts(dev.last_ts_ms),
        }
        lo, hi = schema.reading_range(dev.devnum, 0, 1 << 62)
        for k, v in store.iterate(lo, hi, reverse=True, limit=12):
            _, ts, seq = schema.parse_reading_key(k)
            qn, val, unit, flags = decode_reading_value(v)
            readings.append(
                {"time": _ts(ts), "quantity": qn, "value": val, "unit": unit, "flags": flags, "seq": seq}
            )
    html = _ENV.get_template("handle.html").render(
        **base,
        url=url,
        qr=_qr(url),
        template=template,
        owner=f"{name.org.name} ({name.org.role}, {name.org.prefix})",
        admins=admins,
        created_height=rec.created_height,
        updated=f"{t['block']} {rec.last_height}",
        carbon=_summary(rec, idis.CARBON, lang),
        rating=_summary(rec, idis.RATING, lang),
        values=values,
        device=device,
        readings=readings,
        history=history,
        height=resolver.ledger.height,
    )
    return web.Response(text=html, content_type="text/html")


__all__ = ["codec", "pick_lang", "render"]
