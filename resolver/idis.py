"""IDIS-style metadata templates for CEMP handles, and the CEMP value types the accounting fills.

As on China's industrial identifier nodes, a record names its template at index 1000 (id) and 1001 (version);
the template's attributes live from index 2000 on. CEMP defines three templates:

- ``cemp.device``: meters, sensors, gateways. HS_PUBKEY at index 300 is the key that must sign the device's
  readings (``DeviceRecord.pubkey`` follows it in the same tx).
- ``cemp.building``: a building or site; carries the carbon summary and rating.
- ``cemp.org``: a consortium member.

CEMP types that the accounting issue writes (string values holding a JSON object, integers only):

- ``CEMP.CARBON`` (index 2100): ``{"period", "co2e_g", ...}``, e.g. ``{"period": "2025-11", "co2e_g": 81230000,
  "energy_wh": 145000000, "method": "location", "factor_set": "cn-grid-2023", "report": "<sha256 hex>"}``;
- ``CEMP.RATING`` (index 2101): ``{"grade", "scheme", ...}``, e.g. ``{"grade": "B", "scheme": "cemp-v1",
  "period": "2025/26-heating", "report": "<sha256 hex>"}``.

Invariant: ``device_values`` is a pure function of the registration, the owning org and the block time, so a
proof verifier can recompute the values a ``device.register`` tx set.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from node import codec
from node.types import Blob, DeviceRegistration, Handle, Org, ShortStr, Text
from resolver.values import (
    DEFAULT_PERMS,
    DEFAULT_TTL,
    HS_ADMIN,
    HS_PUBKEY,
    RC_INVALID_VALUE,
    AdminRef,
    HandleError,
    HandleValue,
    load_json,
)

TEMPLATE_INDEX = 1000
TEMPLATE_VERSION_INDEX = 1001
ADMIN_INDEX = 100
GROUP_INDEX = 200
KEY_INDEX = 300
"""Index of the Ed25519 HS_PUBKEY that signs a device's readings (and of admin identities' keys)."""
DEFAULT_ADMIN_PERMS = 0b011111110011
"""pyhandle's and hdl-admintool's default: everything but derived prefixes and listing."""
PREFIX_ADMIN_PERMS = 0b111111111111

T_TEMPLATE = "CEMP.TEMPLATE"
T_TEMPLATE_VERSION = "CEMP.TEMPLATE_VERSION"
CARBON = "CEMP.CARBON"
RATING = "CEMP.RATING"
CARBON_INDEX = 2100
RATING_INDEX = 2101


@dataclass(frozen=True)
class Item:
    index: int
    type: str
    en: str
    zh: str
    required: bool = False
    kind: str = "string"
    """``string`` | ``name`` (short lower-case id) | ``date`` (YYYY-MM-DD) | ``int`` | ``json``."""


@dataclass(frozen=True)
class Template:
    id: str
    version: str
    en: str
    zh: str
    items: tuple[Item, ...]


_SUMMARY = (
    Item(CARBON_INDEX, CARBON, "Carbon summary", "碳排放摘要", kind="json"),
    Item(RATING_INDEX, RATING, "Carbon-efficiency rating", "碳效等级", kind="json"),
)
TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        Template(
            "cemp.device",
            "1",
            "Device",
            "设备",
            (
                Item(2000, "CEMP.DEVICE_TYPE", "Device type", "设备类型", True, "name"),
                Item(2001, "CEMP.MODEL", "Model", "型号"),
                Item(2002, "CEMP.SUBSYSTEM", "Subsystem", "所属子系统", True, "name"),
                Item(2003, "CEMP.LOCATION", "Location", "安装位置"),
                Item(2004, "CEMP.REGISTER_MAP", "Meter register map", "寄存器映射", kind="json"),
                Item(2005, "CEMP.COMMISSIONED", "Commissioning date", "投运日期", True, "date"),
                Item(2006, "CEMP.OWNER_ORG", "Owner org", "所属单位", True, "name"),
                *_SUMMARY,
            ),
        ),
        Template(
            "cemp.building",
            "1",
            "Building",
            "建筑",
            (
                Item(2000, "CEMP.NAME", "Name", "名称", True),
                Item(2001, "CEMP.FLOOR_AREA_M2", "Floor area (m²)", "建筑面积 (m²)", True, "int"),
                Item(2002, "CEMP.LOCATION", "Location", "位置"),
                Item(2003, "CEMP.OWNER_ORG", "Owner org", "所属单位", True, "name"),
                *_SUMMARY,
            ),
        ),
        Template(
            "cemp.org",
            "1",
            "Organisation",
            "单位",
            (
                Item(2000, "CEMP.NAME", "Name", "名称", True),
                Item(2001, "CEMP.ROLE", "Role", "角色", True, "name"),
                Item(2002, "CEMP.PREFIX", "Handle prefix", "标识前缀", True),
            ),
        ),
    )
}
DEVICE_TEMPLATE = "cemp.device"
LABELS: dict[str, tuple[str, str]] = {
    T_TEMPLATE: ("Template", "模板"),
    T_TEMPLATE_VERSION: ("Template version", "模板版本"),
    HS_ADMIN: ("Administrator", "管理员"),
    HS_PUBKEY: ("Public key", "公钥"),
    "URL": ("URL", "网址"),
    "EMAIL": ("E-mail", "电子邮件"),
    "HS_VLIST": ("Admin group", "管理组"),
}
for _t in TEMPLATES.values():
    for _it in _t.items:
        LABELS.setdefault(_it.type, (_it.en, _it.zh))

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def _bad(msg: str) -> HandleError:
    return HandleError(RC_INVALID_VALUE, msg)


def _text(values: dict[int, HandleValue], index: int) -> str | None:
    v = values.get(index)
    if v is None or v.format != "string":
        return None
    return bytes(v.data).decode("utf-8")


def template_of(values: dict[int, HandleValue]) -> str | None:
    return _text(values, TEMPLATE_INDEX)


def _json_obj(s: str, what: str) -> dict[str, object]:
    obj = load_json(s, f"{what} must be a JSON object with integer numbers")
    if not isinstance(obj, dict):
        raise _bad(f"{what} must be a JSON object")
    return obj


def check_cemp_types(values: dict[int, HandleValue]) -> None:
    """Validate CEMP.CARBON / CEMP.RATING values and, when index 1000 names a CEMP template, its attributes."""
    for val in values.values():
        if val.type in (CARBON, RATING):
            if val.format != "string":
                raise _bad(f"value {val.index}: {val.type} is a string holding a JSON object")
            obj = _json_obj(bytes(val.data).decode("utf-8"), f"value {val.index} ({val.type})")
            if val.type == CARBON:
                if not isinstance(obj.get("period"), str) or not isinstance(obj.get("co2e_g"), int):
                    raise _bad(
                        f"value {val.index}: CEMP.CARBON needs period (string) and co2e_g (integer grams)"
                    )
            elif not isinstance(obj.get("grade"), str) or not isinstance(obj.get("scheme"), str):
                raise _bad(f"value {val.index}: CEMP.RATING needs grade and scheme (strings)")
            report = obj.get("report")
            if report is not None and not (isinstance(report, str) and _HEX64_RE.match(report)):
                raise _bad(f"value {val.index}: report must be a SHA-256 in lower-case hex")
    tid = template_of(values)
    if tid is None or tid not in TEMPLATES:
        return
    tpl = TEMPLATES[tid]
    ver = _text(values, TEMPLATE_VERSION_INDEX)
    if ver != tpl.version:
        raise _bad(f"template {tid} needs version {tpl.version!r} at index {TEMPLATE_VERSION_INDEX}")
    for it in tpl.items:
        v = values.get(it.index)
        if v is None:
            if it.required:
                raise _bad(f"template {tid}: index {it.index} ({it.type}, {it.en}) is required")
            continue
        if v.type != it.type or v.format != "string":
            raise _bad(f"template {tid}: index {it.index} must be a string value of type {it.type}")
        s = bytes(v.data).decode("utf-8")
        if it.kind == "name" and not _NAME_RE.match(s):
            raise _bad(f"template {tid}: {it.type} {s!r} must be a short lower-case name")
        if it.kind == "date" and not _DATE_RE.match(s):
            raise _bad(f"template {tid}: {it.type} must be a date YYYY-MM-DD")
        if it.kind == "int" and not re.fullmatch(r"[0-9]{1,15}", s):
            raise _bad(f"template {tid}: {it.type} must be a whole number")
        if it.kind == "json" and it.type not in (CARBON, RATING):
            _json_obj(s, f"template {tid}: {it.type}")


def string_value(index: int, typ: str, text: str) -> HandleValue:
    return HandleValue(
        index, Text(typ), ShortStr("string"), Blob(text.encode()), DEFAULT_TTL, 0, DEFAULT_PERMS, ()
    )


def admin_value(index: int, handle: str, admin_index: int, perms: int) -> HandleValue:
    data = codec.encode(AdminRef(Handle(handle), admin_index, perms))
    return HandleValue(
        index, Text(HS_ADMIN), ShortStr("admin"), Blob(data), DEFAULT_TTL, 0, DEFAULT_PERMS, ()
    )


def pubkey_value(index: int, key: bytes) -> HandleValue:
    return HandleValue(index, Text(HS_PUBKEY), ShortStr("key"), Blob(key), DEFAULT_TTL, 0, DEFAULT_PERMS, ())


def prefix_handle(prefix: str) -> str:
    return f"0.NA/{prefix}"


def device_values(reg: DeviceRegistration, org: Org, time_ms: int) -> tuple[HandleValue, ...]:
    """The values ``device.register`` writes at the device's handle (template ``cemp.device``)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(time_ms // 1000))
    return (
        admin_value(ADMIN_INDEX, prefix_handle(org.prefix), GROUP_INDEX, DEFAULT_ADMIN_PERMS),
        pubkey_value(KEY_INDEX, reg.pubkey),
        string_value(TEMPLATE_INDEX, T_TEMPLATE, DEVICE_TEMPLATE),
        string_value(TEMPLATE_VERSION_INDEX, T_TEMPLATE_VERSION, TEMPLATES[DEVICE_TEMPLATE].version),
        string_value(2000, "CEMP.DEVICE_TYPE", reg.kind),
        string_value(2002, "CEMP.SUBSYSTEM", reg.subsystem),
        string_value(2005, "CEMP.COMMISSIONED", day),
        string_value(2006, "CEMP.OWNER_ORG", org.name),
    )
