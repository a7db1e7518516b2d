"""Languages, locale formatting and time zone of the web pages.

Two languages, Chinese (``zh``, the default) and English (``en``): chosen by ``?lang=``, then the ``lang`` cookie
that a switch sets, then the browser's Accept-Language. Numbers and dates are formatted by Babel for the
locale; times are shown in the site's time zone (``CEMP_WEB_TZ``, default ``Asia/Shanghai``), never in UTC.

``Fmt`` bundles one request's language and the formatters the templates call.
"""

from __future__ import annotations

import os
import re
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


_SYSTEM_ZH: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pat), zh)
    for pat, zh in (
        # accounting: which activity data an inventory used, and why (``accounting.inventory``)
        (
            r"meters cover ([\d.]+) % of the elapsed hours \(>= (\d+) %\)",
            r"电表覆盖已过小时数的 \1%（≥ \2%）",
        ),
        (
            r"meters cover ([\d.]+) % of the hours; the supplier's statements cover every day",
            r"电表覆盖 \1% 的小时；供电结算单覆盖每一天",
        ),
        (
            r"meters cover ([\d.]+) % and statements (\d+) of (\d+) days; the purchase ledger covers every day",
            r"电表覆盖 \1%，结算单覆盖 \3 天中的 \2 天；购电台账覆盖每一天",
        ),
        (
            r"no source covers the whole period \(meters ([\d.]+) % of hours, statements (\d+) and ledger (\d+) of "
            r"(\d+) days\): meters used as they are",
            r"没有数据源覆盖整个期间（电表覆盖 \1% 的小时；\4 天中结算单 \2 天、台账 \3 天）：按电表现有数据计算",
        ),
        # accounting: the rating's benchmark (``accounting.rating``)
        (
            r"coal-boiler baseline for the same heat, ([\d.]+) kgCO2/m2",
            r"同等供热量的燃煤锅炉基准，\1 kgCO2/m2",
        ),
        (
            r"gas-boiler baseline for the same heat, ([\d.]+) kgCO2/m2",
            r"同等供热量的燃气锅炉基准，\1 kgCO2/m2",
        ),
        # maintenance: what a step recorded (``maintenance.workorders``)
        (r"from alarm (\d+)", r"来自告警 \1"),
        (r"inspection of (\S+)", r"巡检 \1"),
        (r"calibration of (\S+)", r"校准 \1"),
        (r"alarm of (\S+)", r"告警 \1"),
        (r"verification passed", "验收通过"),
        (r"verification failed: repair again", "验收不通过：需重新维修"),
        (r"calibrated; next calibration due (\S+)", r"已校准；下次校准期限 \1"),
        (r"calibration of (\S+) recorded; due (\S+)", r"已记录 \1 的校准；期限 \2"),
        # resolver: who authorized a handle change (``resolver.handles``)
        (r"(\S+) admin key", r"\1 管理员密钥"),
        (r"(\S+) \(own key\)", r"\1（本人密钥）"),
        (r"(\S+) \(session on node (\S+)\)", r"\1（节点 \2 上的会话）"),
        (r"(\S+) \(secret key, vouched by node (\S+)\)", r"\1（密钥口令，由节点 \2 担保）"),
    )
)


def system_text(text: str, lang: str) -> str:
    """A sentence the accounting, maintenance or resolver code wrote in English (stored or answered as data) in
    the page's language: the known forms have a Chinese rendering; anything else stays as written."""
    if lang != "zh":
        return text
    for pat, zh in _SYSTEM_ZH:
        m = pat.fullmatch(text)
        if m:
            return m.expand(zh)
    return text


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
