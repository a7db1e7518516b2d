"""Languages, locale formatting and time zone of the web pages.

Two languages, Chinese (``zh``, the default) and English (``en``): chosen by ``?lang=``, then the ``lang`` cookie
that a switch sets, then the browser's Accept-Language. Numbers and dates are formatted by Babel for the
locale; times are shown in the site's time zone (``CEMP_WEB_TZ``, default ``Asia/Shanghai``), never in UTC.

``Fmt`` bundles one request's language and the formatters the templates call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from aiohttp import web
from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal, get_group_symbol
from markupsafe import Markup, escape

from web import units

LANGS = (("zh", "中文"), ("en", "English"))
BABEL_LOCALE = {"zh": "zh_Hans_CN", "en": "en_GB"}
HTML_LANG = {"zh": "zh-CN", "en": "en"}
DEFAULT_TZ = "Asia/Shanghai"

# Quality flags (node.readings.Flag bits) as people read them.
FLAGS: dict[int, tuple[str, str]] = {
    1 << 0: ("estimated", "估算值"),
    1 << 1: ("counter rollover", "计数器翻转"),
    1 << 2: ("meter replaced", "更换表计"),
    1 << 3: ("negative delta", "负增量"),
    1 << 4: ("spike", "尖峰"),
    1 << 5: ("stale", "数值停滞"),
    1 << 6: ("gap before", "此前缺数"),
    1 << 7: ("clock drift", "时钟偏差"),
    1 << 8: ("entered by hand", "人工录入"),
    1 << 9: ("OCR uncertain", "识别存疑"),
    1 << 10: ("source error", "数据源故障"),
}

QUANTITIES: dict[str, tuple[str, str]] = {
    "energy.import": ("Energy imported", "正向有功电能"),
    "energy.export": ("Energy exported", "反向有功电能"),
    "energy.total": ("Energy total", "总有功电能"),
    "energy.heat": ("Heat energy", "热量"),
    "power": ("Active power", "有功功率"),
    "power.l1": ("Power L1", "A相功率"),
    "power.l2": ("Power L2", "B相功率"),
    "power.l3": ("Power L3", "C相功率"),
    "voltage.l1": ("Voltage L1", "A相电压"),
    "voltage.l2": ("Voltage L2", "B相电压"),
    "voltage.l3": ("Voltage L3", "C相电压"),
    "current.l1": ("Current L1", "A相电流"),
    "current.l2": ("Current L2", "B相电流"),
    "current.l3": ("Current L3", "C相电流"),
    "frequency": ("Frequency", "频率"),
    "temp.supply": ("Supply temperature", "供水温度"),
    "temp.return": ("Return temperature", "回水温度"),
    "flow": ("Flow", "流量"),
}


def site_tz() -> ZoneInfo:
    return _tz(os.environ.get("CEMP_WEB_TZ", DEFAULT_TZ))


@lru_cache(maxsize=8)
def _tz(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):  # an unknown zone name: fall back rather than fail every page
        return ZoneInfo(DEFAULT_TZ)


def pick_lang(request: web.Request) -> str:
    want = request.query.get("lang", "").lower()
    if want in BABEL_LOCALE:
        return want
    cookie = request.cookies.get("lang", "")
    if cookie in BABEL_LOCALE:
        return cookie
    for part in request.headers.get("Accept-Language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


@dataclass(frozen=True)
class Quantity:
    """One value ready for a page: the shown text and the on-chain integer behind it."""

    text: str
    unit: str
    raw: str


class Fmt:
    """Formatters for one language; the templates call these (``f.num``, ``f.dt``, ``f.qty`` ...)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.locale = Locale.parse(BABEL_LOCALE[lang])
        self.tz = site_tz()
        self.li = 0 if lang == "en" else 1
        self.group = get_group_symbol(locale=self.locale)

    def num(self, v: int | float | Decimal, decimals: int | None = None) -> str:
        if decimals is None:
            if type(v) is int:  # the common case (heights, counts): no need for Babel's full path
                return format(v, ",").replace(",", self.group)
            return format_decimal(v, locale=self.locale)
        fmt = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
        return format_decimal(v, format=fmt, locale=self.locale, decimal_quantization=True)

    def dt(self, ms: int | None, fmt: str = "medium") -> str:
        if not ms:
            return "–"
        return format_datetime(
            datetime.fromtimestamp(ms / 1000, UTC), fmt, tzinfo=self.tz, locale=self.locale
        )

    def short(self, ms: int | None) -> str:
        """Compact, sortable local time (the same digits in every locale; no Babel call on hot paths)."""
        if not ms:
            return "–"
        return datetime.fromtimestamp(ms / 1000, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def time(self, ms: int | None) -> Markup:
        """``<time>`` element: machine-readable ISO time with offset, shown in the site's time zone."""
        if not ms:
            return Markup("–")
        d = datetime.fromtimestamp(ms / 1000, self.tz)
        # both strings are digits and punctuation made here: nothing to escape
        return Markup(
            f'<time datetime="{d.isoformat(timespec="seconds")}">{d.strftime("%Y-%m-%d %H:%M:%S")}</time>'
        )

    @staticmethod
    def hash(h: str, n: int = 10) -> Markup:
        e = escape(h)
        return Markup(f'<code class="h" title="{e}">{escape(h[:n])}…</code>')

    def iso(self, ms: int) -> str:
        """Machine-readable time for ``<time datetime=...>`` (site time zone, with offset)."""
        return datetime.fromtimestamp(ms / 1000, self.tz).isoformat(timespec="seconds")

    def qty(self, value: int, unit: str) -> Quantity:
        shown, du = units.to_display(value, unit)
        return Quantity(self.num(shown, du.decimals), du.unit, f"{value} {unit}")

    def flags(self, bits: int) -> list[str]:
        return [names[self.li] for bit, names in FLAGS.items() if bits & bit]

    def quantity(self, name: str) -> str:
        label = QUANTITIES.get(name)
        return label[self.li] if label else name

    def tz_name(self) -> str:
        return str(self.tz.key)
