"""The handle resolution page for people (moved here from ``resolver.page``), and handle look-ups for search.

``/handle/{handle}`` shows the public values with readable labels, the owner and admins, the template, the
carbon summary and rating, the change history, and for a device its latest readings in the units people read,
with a link to the device page; a QR code (inline SVG, ``segno``) encodes the handle's resolution URL on this
node (``/api/handles/...``: a phone's browser gets this page, a program the JSON). The resolver's Handle API
redirects browsers here.

Invariant: reads committed state only; everything printed is escaped (jinja2 autoescape) except the QR SVG,
made here from the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from node import codec, schema
from node.devices import load_device
from node.state import StateView
from node.store import Store, prefix_stop
from resolver import idis
from resolver.handles import load_change, load_record, parse_name
from resolver.values import (
    HS_ADMIN,
    RC_SERVER_NOT_RESP,
    HandleError,
    HandleRecord,
    decode_admin,
    load_json,
    publicly_readable,
    value_text,
)
from web import series
from web.errors import PageError
from web.i18n import Fmt, pick_lang

try:
    import segno
except ImportError:  # pragma: no cover - segno is a declared dependency; pages still work without it
    segno = None  # type: ignore[assignment]

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
SITE_SCAN = 5000


def _fmt_value(f: Fmt, key: str, v: object) -> str:
    if key == "co2e_g" and isinstance(v, int):
        q = f.qty(v, "g")
        return f"{q.text} {q.unit}"
    if key == "energy_wh" and isinstance(v, int):
        q = f.qty(v, "Wh")
        return f"{q.text} {q.unit}"
    return str(v)


def _summary_of(rec: HandleRecord, typ: str, f: Fmt) -> list[tuple[str, str]]:
    for sv in rec.values:
        if sv.value.type == typ and publicly_readable(sv.value):
            try:  # bounded: a value stored before the JSON limits shows as text, never a 500
                obj = load_json(value_text(sv.value), typ)
            except HandleError:
                return []
            if not isinstance(obj, dict):
                return []
            return [(CARBON_LABELS.get(k, (k, k))[f.li], _fmt_value(f, k, v)) for k, v in obj.items()]
    return []


def _qr(url: str) -> str:
    if segno is None:
        return ""
    return str(segno.make(url, error="m").svg_inline(scale=4, border=2, title=url))


def exists(store: Store, handle: str) -> bool:
    try:
        return load_record(StateView(store), handle) is not None
    except (HandleError, ValueError):
        return False


def public_values(rec: HandleRecord, f: Fmt) -> list[dict[str, Any]]:
    """The record's publicly readable values with readable labels, for the handle and device pages."""
    return [
        {
            "index": sv.value.index,
            "type": sv.value.type,
            "label": idis.LABELS.get(sv.value.type, (sv.value.type, sv.value.type))[f.li],
            "text": value_text(sv.value),
            "timestamp": f.short(sv.timestamp_ms),
            "height": sv.set_height,
            "tx": bytes(sv.set_tx).hex(),
        }
        for sv in rec.values
        if publicly_readable(sv.value)
    ]


def summary(store: Store, handle: str, f: Fmt) -> dict[str, Any] | None:
    """Template, name and public values of a handle record, for the device page."""
    rec = load_record(StateView(store), handle)
    if rec is None:
        return None
    tmap = {sv.value.index: sv.value for sv in rec.values}
    names = [
        value_text(sv.value)
        for sv in rec.values
        if sv.value.type == "CEMP.NAME" and publicly_readable(sv.value)
    ]
    return {
        "values": public_values(rec, f),
        "template": idis.template_of(tmap) or "",
        "name": names[0] if names else "",
        "version": rec.version,
    }


def find_sites(store: Store, needle: str, limit: int) -> list[dict[str, str]]:
    """Handles (buildings and sites first) whose handle or public name/location contains ``needle``."""
    out: list[dict[str, str]] = []
    start = schema.HANDLE_RECORD_PREFIX
    for n, (_, raw) in enumerate(store.iterate(start, prefix_stop(start))):
        if n >= SITE_SCAN or len(out) >= limit:
            break
        if raw[-1] != 0:  # tombstone (the record's last field is its deleted flag)
            continue
        rec = codec.decode(HandleRecord, raw)
        tmap = {sv.value.index: sv.value for sv in rec.values}
        name = ""
        hay = [rec.handle.lower()]
        for sv in rec.values:
            if sv.value.type in ("CEMP.NAME", "CEMP.LOCATION") and publicly_readable(sv.value):
                text = value_text(sv.value)
                hay.append(text.lower())
                if sv.value.type == "CEMP.NAME":
                    name = text
        if any(needle in h for h in hay):
            out.append({"handle": rec.handle, "name": name, "template": idis.template_of(tmap) or ""})
    out.sort(key=lambda s: (s["template"] != "cemp.building", s["handle"]))
    return out


def render(ui: Any, request: web.Request) -> web.Response:
    handle = request.match_info["handle"]
    f = Fmt(pick_lang(request))
    try:
        name = parse_name(ui.ledger.genesis, handle)
    except HandleError as e:
        # a prefix no org of this consortium homes is "not here" (404); a malformed handle is a bad request
        status = 404 if e.rc == RC_SERVER_NOT_RESP else 400
        raise PageError(status, "no_handle" if status == 404 else "bad_handle", e.message) from None
    store = ui.store
    view = StateView(store)
    rec = load_record(view, name.handle)
    if rec is None:
        raise PageError(404, "no_handle", name.handle)
    url = f"{request.scheme}://{request.host}/api/handles/{quote(name.handle, safe='/')}"
    values = public_values(rec, f)
    admins = []
    for sv in rec.values:
        if sv.value.type == HS_ADMIN:
            a = decode_admin(bytes(sv.value.data))
            admins.append(f"{a.index}:{a.handle}")
    tmap = {sv.value.index: sv.value for sv in rec.values}
    tid = idis.template_of(tmap)
    tpl = idis.TEMPLATES.get(tid or "")
    template = f"{(tpl.en, tpl.zh)[f.li]} ({tid})" if tpl else (tid or "")
    history = []
    for version in range(rec.version, max(0, rec.version - 20), -1):
        c = load_change(view, name.handle, version)
        if c is None:
            continue
        history.append(
            {
                "version": c.version,
                "time": f.short(c.time_ms),
                "height": c.height,
                "kind": c.kind,
                "deleted": c.deleted,
                "first": version == 1,
                "indices": ", ".join(str(i) for i in c.indices[:12]),
                "actor": c.actor,
                "tx": bytes(c.tx).hex(),
            }
        )
    dev = load_device(view, rec.handle)
    latest = series.latest(store, dev) if dev is not None else []
    resp: web.Response = ui.render(
        request,
        "handle.html",
        handle=name.handle,
        qr_url=url,
        qr=_qr(url),
        template=template,
        owner=f"{name.org.name} ({name.org.role}, {name.org.prefix})",
        admins=admins,
        rec=rec,
        carbon=_summary_of(rec, idis.CARBON, f),
        rating=_summary_of(rec, idis.RATING, f),
        values=values,
        dev=dev,
        latest=latest,
        history=history,
    )
    return resp
