"""Electricity bills and payment receipts: OCR text lines -> checked fields -> a person's confirmation.

Pipeline: ``read_bill(image)`` runs the OCR engine, groups its text regions into printed rows and calls
``extract_bill``, which finds each field by its label (户号, 计费周期, 上次示数, 本次示数, 倍率, 电量, 电价 or
峰/平/谷 lines, 电费, 缴费日期, 流水号), cross-checks them and flags what a person must look at. ``confirm``
applies that person's corrections and returns a reviewed extraction; ``to_document_fields`` flattens it for
a ``document`` transaction payload.

Invariants:
- quantities are exact integers in base units, parsed from the printed decimal text without floats:
  readings and energy in Wh, prices in micro-yuan per kWh, amounts in fen; a printed value with more
  decimals than its unit holds is not rounded but rejected (and flagged);
- ``image_sha256`` is the SHA-256 of the image bytes exactly as received (before any decoding), so the
  document on chain can be matched to the archived original;
- a field is ``needs_review`` when it is missing, derived rather than read, repaired (a decimal comma), read
  with a confidence below the threshold, implausible, or involved in a failed cross-check. Cross-checks:
  ``(current - previous) x multiplier == energy`` within 1 kWh, the 峰/平/谷 energies sum to the total within
  1 kWh, and ``sum(energy_i x price_i) == amount`` within 1 yuan;
- ``confirm`` never guesses: corrected fields get source ``confirmed``; the result is ``reviewed`` and keeps
  the outcome of the re-run cross-checks (a person may accept a bill whose amount includes other charges).
  Recording who confirmed and when is the caller's job.
- parsing tolerates what OCR does to a printed line: dropped or extra spaces, fullwidth ``：`` and digits
  (NFKC), text regions split or merged, a slightly rotated photo, 蜂 for 峰 and V for ¥.

Limits: 户名 and 用电地址 are free text that no check covers, and on degraded images the engine misreads
single characters in them with full confidence (北辰 -> 北展): treat them as informational and identify the
site by the account number, which the caller should match against its registry.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from typing import Any, Generic, Literal, TypeVar

from collector.ocr.engine import OcrEngine, OcrLine, default_engine

T = TypeVar("T")

DEFAULT_MIN_CONFIDENCE = 0.90
READING_TOLERANCE_WH = 1_000  # 1 kWh: printed kWh are rounded
AMOUNT_TOLERANCE_FEN = 100  # 1 yuan: per-line rounding on multi-rate bills

# Decimal places of each base unit relative to the printed unit.
WH_PER_KWH_DIGITS = 3  # kWh -> Wh
FEN_PER_YUAN_DIGITS = 2  # yuan -> fen
UYUAN_PER_YUAN_DIGITS = 6  # yuan/kWh -> micro-yuan/kWh

Source = Literal["ocr", "derived", "confirmed", "missing"]
Segment = Literal["single", "sharp", "peak", "flat", "valley"]
SEGMENTS: tuple[Segment, ...] = ("single", "sharp", "peak", "flat", "valley")


def sha256(data: bytes) -> str:
    """Hex SHA-256 of the original image bytes."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Exact number parsing


def parse_scaled(text: str, decimals: int) -> int:
    """A printed decimal as an integer count of ``10**-decimals`` units, exactly.

    ``parse_scaled("88,888.80", 3) == 88_888_800``. Accepts a sign, a currency mark and thousands commas
    (groups of three); raises ValueError for anything else, including more significant decimals than
    ``decimals`` (``"1.2345"`` at 3 decimals) -- rounding is the caller's decision, never silent."""
    s = unicodedata.normalize("NFKC", text).strip().replace("¥", "").replace("−", "-").replace(" ", "")
    negative = s.startswith("-")
    if s[:1] in "+-":
        s = s[1:]
    m = re.fullmatch(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d*))?", s)
    if m is None:
        raise ValueError(f"not a decimal number: {text!r}")
    whole = int(m.group(1).replace(",", ""))
    frac = (m.group(2) or "").rstrip("0")
    if len(frac) > decimals:
        raise ValueError(f"{text!r} has more than {decimals} significant decimals")
    value: int = whole * 10**decimals + (int(frac.ljust(decimals, "0")) if frac else 0)
    return -value if negative else value


def line_amount_fen(energy_wh: int, price_uyuan_per_kwh: int) -> int:
    """energy x price rounded half-up to the fen: Wh x micro-yuan/kWh / 10^7 = fen."""
    return (energy_wh * price_uyuan_per_kwh + 5_000_000) // 10_000_000


def format_scaled(value: int, scale_digits: int, decimals: int, *, thousands: bool = False) -> str:
    """An integer in base units printed as a decimal: ``format_scaled(88_888_800, 3, 2) == "88888.80"``.

    ``value`` must be exact at ``decimals`` places; nothing is rounded here."""
    drop = scale_digits - decimals
    if drop < 0 or value % (10**drop) != 0:
        raise ValueError(f"{value} x 10^-{scale_digits} does not fit {decimals} decimals")
    sign = "-" if value < 0 else ""
    q = abs(value) // (10**drop)
    whole, frac = divmod(q, 10**decimals)
    whole_text = f"{whole:,}" if thousands else str(whole)
    return f"{sign}{whole_text}.{frac:0{decimals}d}" if decimals else f"{sign}{whole_text}"


_DATE = r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
_MONTH = r"(\d{4})[-/.年](\d{1,2})月?"


def parse_date(text: str) -> date:
    """``2024-01-31``, ``2024/1/31``, ``2024年1月31日``, ``2024-01-3110:23:45`` (time glued on by OCR)."""
    s = unicodedata.normalize("NFKC", text).replace(" ", "")
    m = re.match(_DATE, s)
    if m is None:
        raise ValueError(f"not a date: {text!r}")
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def month_bounds(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


# ---------------------------------------------------------------------------------------------------------------
# Extracted values


@dataclass(frozen=True, slots=True)
class TariffLine:
    """One priced block of energy: the whole bill at a single rate, or one 尖/峰/平/谷 segment."""

    segment: Segment
    energy_wh: int
    price_uyuan_per_kwh: int
    """Micro-yuan per kWh: 0.6250 元/kWh is 625000."""


@dataclass(frozen=True, slots=True)
class FieldValue(Generic[T]):
    """One extracted field, with what a reviewer needs to know about it."""

    value: T | None
    confidence: float
    """OCR score of the characters the value was read from (min over them); 1.0 once confirmed; 0.0 when
    derived or missing."""
    source: Source
    reasons: tuple[str, ...] = ()
    """Why the field needs review; empty when it does not."""

    @property
    def needs_review(self) -> bool:
        return bool(self.reasons)

    def flag(self, reason: str) -> FieldValue[T]:
        if reason in self.reasons:
            return self
        return replace(self, reasons=(*self.reasons, reason))


def _missing() -> FieldValue[Any]:
    return FieldValue(None, 0.0, "missing", ("not found",))


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    """``reading``, ``tariff_sum``, ``amount``, ``period`` or ``reading_order``."""
    ok: bool
    detail: str
    fields: tuple[str, ...]
    """The fields the check involves (all are flagged when it fails)."""


class IncompleteExtraction(ValueError):
    """A required field has no value."""


REQUIRED_FIELDS: tuple[str, ...] = ("account", "period_start", "period_end", "energy_wh", "amount_fen")
CORE_FIELDS: tuple[str, ...] = (
    "account",
    "period_start",
    "period_end",
    "previous_reading_wh",
    "current_reading_wh",
    "multiplier",
    "energy_wh",
    "tariff",
    "amount_fen",
)
"""The nine fields the accuracy floor is measured on."""
EXTRA_FIELDS: tuple[str, ...] = ("account_name", "address", "pay_date", "serial")


@dataclass(frozen=True, slots=True)
class BillExtraction:
    """Fields read from one bill image, their cross-checks and review state."""

    image_sha256: str
    account: FieldValue[str]
    account_name: FieldValue[str]
    address: FieldValue[str]
    period_start: FieldValue[date]
    period_end: FieldValue[date]
    previous_reading_wh: FieldValue[int]
    current_reading_wh: FieldValue[int]
    multiplier: FieldValue[int]
    energy_wh: FieldValue[int]
    tariff: FieldValue[tuple[TariffLine, ...]]
    amount_fen: FieldValue[int]
    pay_date: FieldValue[date]
    serial: FieldValue[str]
    checks: tuple[CheckResult, ...] = ()
    reviewed: bool = False
    """True once a person confirmed (and possibly corrected) the fields."""
    ocr_rows: tuple[str, ...] = field(default=(), compare=False)
    """The normalised OCR rows the fields were read from, for the review screen and audits."""

    def field_values(self) -> dict[str, FieldValue[Any]]:
        return {name: getattr(self, name) for name in FIELD_NAMES}

    @property
    def flagged(self) -> tuple[str, ...]:
        """Fields that need a person's look (empty once reviewed)."""
        if self.reviewed:
            return ()
        return tuple(name for name, fv in self.field_values().items() if fv.needs_review)

    @property
    def needs_review(self) -> bool:
        return bool(self.flagged)

    @property
    def failed_checks(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.ok)

    def to_document_fields(self) -> dict[str, int | str]:
        """Flat ``str -> int | str`` fields for a ``document`` tx payload (no floats, no nesting).

        Always present: ``doc_type``, ``image_sha256``, ``account``, ``period_start``/``period_end`` (ISO
        dates), ``energy_wh``, ``amount_fen``, ``review`` (``confirmed``, ``needs_review`` or ``auto``),
        ``flagged`` and ``checks_failed`` (comma-separated names, possibly empty), ``min_confidence_permille``.
        Present when known: ``account_name``, ``address``, ``previous_reading_wh``, ``current_reading_wh``,
        ``multiplier``, ``pay_date``, ``serial``, and per tariff line ``tariff.<segment>.energy_wh`` and
        ``tariff.<segment>.price_uyuan_per_kwh``. Raises IncompleteExtraction if a required field is missing.
        """
        missing = [name for name in REQUIRED_FIELDS if getattr(self, name).value is None]
        if missing:
            raise IncompleteExtraction(f"required fields missing: {', '.join(missing)}")
        out: dict[str, int | str] = {"doc_type": "electricity_bill", "image_sha256": self.image_sha256}
        for name, fv in self.field_values().items():
            v = fv.value
            if v is None:
                continue
            if name == "tariff":
                for line in v:
                    out[f"tariff.{line.segment}.energy_wh"] = line.energy_wh
                    out[f"tariff.{line.segment}.price_uyuan_per_kwh"] = line.price_uyuan_per_kwh
            elif isinstance(v, date):
                out[name] = v.isoformat()
            else:
                out[name] = v
        out["review"] = "confirmed" if self.reviewed else "needs_review" if self.needs_review else "auto"
        out["flagged"] = ",".join(self.flagged)
        out["checks_failed"] = ",".join(self.failed_checks)
        read = [fv.confidence for fv in self.field_values().values() if fv.source == "ocr"]
        out["min_confidence_permille"] = math.floor(min(read, default=0.0) * 1000)
        return out


FIELD_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(BillExtraction) if f.name not in ("image_sha256", "checks", "reviewed", "ocr_rows")
)

# ---------------------------------------------------------------------------------------------------------------
# OCR regions -> printed rows


@dataclass(frozen=True, slots=True)
class Row:
    """One printed row: its regions' normalised text joined by ``|``, with a confidence per character."""

    text: str
    char_conf: tuple[float, ...]

    def conf(self, start: int, end: int) -> float:
        return min(self.char_conf[start:end], default=0.0)


def normalise(text: str) -> str:
    """NFKC (fullwidth ``：`` and digits to ASCII) and no whitespace: OCR drops or adds spaces at random."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).replace("￥", "¥")


def group_rows(lines: Sequence[OcrLine]) -> tuple[Row, ...]:
    """Regions that share a printed row, left to right; rows top to bottom.

    A photo is often rotated by a degree or two, which moves a region 600 px to the right by ~15 px: the
    dominant skew is estimated from the regions' top edges and removed before rows are formed."""
    if not lines:
        return ()
    slopes = []
    for line in lines:
        (x0, y0), (x1, y1) = line.box[0], line.box[1]
        if x1 - x0 > 20:
            slopes.append((y1 - y0) / (x1 - x0))
    slopes.sort()
    slope = slopes[len(slopes) // 2] if slopes else 0.0

    def level(line: OcrLine) -> float:
        cx = sum(p[0] for p in line.box) / 4
        return line.center_y - slope * cx

    heights = sorted(max(line.height, 1.0) for line in lines)
    tolerance = 0.5 * heights[len(heights) // 2]
    ordered = sorted(lines, key=level)
    groups: list[list[OcrLine]] = []
    anchor = 0.0
    for line in ordered:
        y = level(line)
        if groups and abs(y - anchor) <= tolerance:
            groups[-1].append(line)
        else:
            groups.append([line])
            anchor = y
    rows = []
    for group in groups:
        group.sort(key=lambda ln: ln.left)
        text = ""
        conf: list[float] = []
        for i, line in enumerate(group):
            part = normalise(line.text)
            if i:
                text += "|"
                conf.append(1.0)
            text += part
            conf.extend([line.confidence] * len(part))
        rows.append(Row(text, tuple(conf)))
    return tuple(rows)


# ---------------------------------------------------------------------------------------------------------------
# Rows -> fields

_SEP = r"[:|]*"
_NUM = r"([-+]?\d[\d,]*(?:\.\d+)?)"
_LABELS: dict[str, str] = {
    "account": r"(?:户号|客户编号|用户编号|户编号)",
    "account_name": r"(?:户名|客户名称|用户名称)",
    "address": r"(?:用电地址|用户地址|地址)",
    "period": r"(?:计费周期|抄表周期|电费周期|计费期间|账期|电费年月)",
    "previous_reading_wh": r"(?:上次示数|上月示数|上期示数|起码|起度)",
    "current_reading_wh": r"(?:本次示数|本月示数|本期示数|止码|止度)",
    "multiplier": r"(?:综合倍率|倍率)",
    "energy_wh": r"(?:结算电量|本期电量|计费电量|抄见电量|合计电量|总电量|用电量|电量)",
    "price": r"(?:到户电价|电度电价|电价|单价)",
    "amount_fen": r"(?:电费金额|应缴电费|实缴金额|缴费金额|应收电费|本期电费|合计金额|应交电费|实收金额|电费合计|电费)",
    "pay_date": r"(?:缴费日期|缴费时间|交易时间|收费日期|交费日期)",
    "serial": r"(?:交易流水号|流水号|凭证号|交易号)",
}
# Segment labels of time-of-use rows, with the look-alikes OCR reads for them on poor images (蜂段 for 峰段).
_SEGMENT_OF: dict[str, Segment] = {
    "尖峰": "sharp",
    "尖": "sharp",
    "峰": "peak",
    "蜂": "peak",
    "锋": "peak",
    "峯": "peak",
    "平": "flat",
    "评": "flat",
    "谷": "valley",
    "俗": "valley",
}
_TOU_HEAD = re.compile(r"^([^:|\d]{1,3}?)(时段|段)?" + _SEP + r"电量")
_TOU_ROW = re.compile(_TOU_HEAD.pattern + _SEP + _NUM + r".*?电价" + _SEP + _NUM)


def _find(rows: Sequence[Row], pattern: str) -> list[tuple[re.Match[str], Row]]:
    rx = re.compile(pattern)
    return [(m, row) for row in rows for m in rx.finditer(row.text)]


def _repair_decimal_comma(text: str) -> str:
    """``8993,40`` -> ``8993.40``: a comma before the last one or two digits is a misread decimal point (it
    cannot be a thousands separator). Anything else comes back unchanged."""
    if re.fullmatch(r"[-+]?\d+,\d{1,2}", text):
        return text.replace(",", ".")
    return text


def _scalar(rows: Sequence[Row], name: str, value_rx: str, convert: Callable[[str], T]) -> FieldValue[T]:
    hits = _find(rows, _LABELS[name] + _SEP + value_rx)
    if not hits:
        return _missing()
    values: list[FieldValue[T]] = []
    for m, row in hits:
        conf = row.conf(m.start(1), m.end(1))
        raw = m.group(1)
        try:
            values.append(FieldValue(convert(raw), conf, "ocr"))
            continue
        except ValueError as exc:
            problem = f"unreadable {raw!r}: {exc}"
        repaired = _repair_decimal_comma(raw)
        try:
            values.append(FieldValue(convert(repaired), conf, "ocr", (f"read {raw!r} as {repaired!r}",)))
        except ValueError:
            values.append(FieldValue(None, conf, "ocr", (problem,)))
    first = next((v for v in values if v.value is not None), values[0])
    distinct = {v.value for v in values if v.value is not None}
    if len(distinct) > 1:
        first = first.flag(f"printed more than once with different values: {sorted(map(str, distinct))}")
    return first


def _text_value(rows: Sequence[Row], name: str) -> FieldValue[str]:
    return _scalar(rows, name, r"([^|]+)", lambda s: s.strip(":"))


def _period(rows: Sequence[Row]) -> tuple[FieldValue[date], FieldValue[date]]:
    label = _LABELS["period"] + _SEP
    for m, row in _find(rows, label + f"({_DATE})" + r"(?:至|到|~|-|—|–|\|)+" + f"({_DATE})"):
        conf = row.conf(m.start(1), m.end(5))
        try:
            start, end = parse_date(m.group(1)), parse_date(m.group(5))
        except ValueError as exc:
            bad: FieldValue[date] = FieldValue(None, conf, "ocr", (f"unreadable period: {exc}",))
            return bad, bad
        return FieldValue(start, conf, "ocr"), FieldValue(end, conf, "ocr")
    for m, row in _find(rows, label + _MONTH + r"(?!\d)"):
        conf = row.conf(m.start(1), m.end(2))
        try:
            start, end = month_bounds(int(m.group(1)), int(m.group(2)))
        except ValueError as exc:
            bad = FieldValue(None, conf, "ocr", (f"unreadable period: {exc}",))
            return bad, bad
        return FieldValue(start, conf, "ocr"), FieldValue(end, conf, "ocr")
    return _missing(), _missing()


def _tariff_lines(rows: Sequence[Row]) -> tuple[list[Row], FieldValue[tuple[TariffLine, ...]] | None]:
    """峰/平/谷 rows (returned so other fields skip them) and the lines read from them."""
    seg_rows: list[Row] = []
    lines: list[TariffLine] = []
    confs: list[float] = []
    reasons: list[str] = []
    for row in rows:
        head = _TOU_HEAD.match(row.text)
        # "本期电量:..." is a plain row; "峰段电量:..." or "X段电量:..." is a time-of-use row.
        if head is None or (head.group(1) not in _SEGMENT_OF and head.group(2) is None):
            continue
        seg_rows.append(row)
        m = _TOU_ROW.match(row.text)
        segment = _SEGMENT_OF.get(head.group(1))
        if m is None or segment is None:
            reasons.append(f"unreadable time-of-use line {row.text!r}")
            continue
        confs.append(row.conf(m.start(3), m.end(4)))
        try:
            lines.append(
                TariffLine(
                    segment,
                    parse_scaled(m.group(3), WH_PER_KWH_DIGITS),
                    parse_scaled(m.group(4), UYUAN_PER_YUAN_DIGITS),
                )
            )
        except ValueError as exc:
            reasons.append(f"unreadable {segment} line: {exc}")
    if not seg_rows:
        return [], None
    if len({line.segment for line in lines}) != len(lines):
        reasons.append("a time-of-use segment is printed twice")
    fv: FieldValue[tuple[TariffLine, ...]] = FieldValue(
        tuple(lines) if lines else None, min(confs, default=0.0), "ocr", tuple(reasons)
    )
    return seg_rows, fv


def extract_bill(
    lines: Sequence[OcrLine], image_sha256: str, *, min_confidence: float = DEFAULT_MIN_CONFIDENCE
) -> BillExtraction:
    """Fields from OCR regions of one bill, cross-checked and flagged (pure: no I/O)."""
    rows = group_rows(lines)
    seg_rows, tou = _tariff_lines(rows)
    plain = [row for row in rows if row not in seg_rows]

    def wh(s: str) -> int:
        return parse_scaled(s, WH_PER_KWH_DIGITS)

    energy = _scalar(plain, "energy_wh", _NUM, wh)
    if tou is not None:
        tariff = tou
    else:
        price = _scalar(plain, "price", _NUM, lambda s: parse_scaled(s, UYUAN_PER_YUAN_DIGITS))
        if price.value is not None and energy.value is not None:
            tariff = FieldValue((TariffLine("single", energy.value, price.value),), price.confidence, "ocr")
        else:
            tariff = FieldValue(None, price.confidence, price.source, price.reasons or ("price not found",))
    period_start, period_end = _period(plain)
    extraction = BillExtraction(
        image_sha256=image_sha256,
        account=_scalar(plain, "account", r"(\d{6,20})", str),
        account_name=_text_value(plain, "account_name"),
        address=_text_value(plain, "address"),
        period_start=period_start,
        period_end=period_end,
        previous_reading_wh=_scalar(plain, "previous_reading_wh", _NUM, wh),
        current_reading_wh=_scalar(plain, "current_reading_wh", _NUM, wh),
        multiplier=_scalar(plain, "multiplier", r"(\d+(?:\.\d+)?)", lambda s: parse_scaled(s, 0)),
        energy_wh=energy,
        tariff=tariff,
        amount_fen=_scalar(
            plain, "amount_fen", r"[¥VY]{0,2}" + _NUM, lambda s: parse_scaled(s, FEN_PER_YUAN_DIGITS)
        ),
        pay_date=_scalar(plain, "pay_date", f"({_DATE})", parse_date),
        serial=_scalar(plain, "serial", r"([0-9A-Za-z]{6,40})", str),
        ocr_rows=tuple(row.text for row in rows),
    )
    extraction = _derive(extraction)
    extraction = _flag_low_confidence(extraction, min_confidence)
    extraction = _flag_implausible(extraction)
    return run_checks(extraction)


def _derive(x: BillExtraction) -> BillExtraction:
    """Fill a single missing member of a checked relation from the others; derived values need review."""
    prev, cur, mult, energy = (
        x.previous_reading_wh.value,
        x.current_reading_wh.value,
        x.multiplier.value,
        x.energy_wh.value,
    )
    if energy is None and x.tariff.value:
        total = sum(line.energy_wh for line in x.tariff.value)
        x = replace(x, energy_wh=FieldValue(total, 0.0, "derived", ("derived from time-of-use lines",)))
    elif energy is None and None not in (prev, cur, mult):
        assert prev is not None and cur is not None and mult is not None
        derived = (cur - prev) * mult
        x = replace(x, energy_wh=FieldValue(derived, 0.0, "derived", ("derived from readings x multiplier",)))
    elif mult is None and None not in (prev, cur, energy) and cur != prev:
        assert prev is not None and cur is not None and energy is not None
        ratio, rest = divmod(energy, cur - prev)
        if rest == 0 and ratio > 0:
            x = replace(x, multiplier=FieldValue(ratio, 0.0, "derived", ("derived from energy / readings",)))
    if x.amount_fen.value is None and x.tariff.value:
        total_fen = sum(line_amount_fen(ln.energy_wh, ln.price_uyuan_per_kwh) for ln in x.tariff.value)
        x = replace(x, amount_fen=FieldValue(total_fen, 0.0, "derived", ("derived from energy x price",)))
    return x


def _with(x: BillExtraction, changes: Mapping[str, FieldValue[Any]]) -> BillExtraction:
    """``x`` with some fields replaced (the names are FIELD_NAMES)."""
    kwargs: dict[str, Any] = dict(changes)
    return replace(x, **kwargs)


def _flag_low_confidence(x: BillExtraction, min_confidence: float) -> BillExtraction:
    changes = {
        name: fv.flag(f"low OCR confidence {fv.confidence:.2f}")
        for name, fv in x.field_values().items()
        if fv.source == "ocr" and fv.value is not None and fv.confidence < min_confidence
    }
    return _with(x, changes)


def _flag_implausible(x: BillExtraction) -> BillExtraction:
    changes: dict[str, FieldValue[Any]] = {}
    if x.account.value is not None and len(x.account.value) not in (10, 13):
        changes["account"] = x.account.flag(
            f"unusual account length {len(x.account.value)} (10 or 13 digits)"
        )
    if x.multiplier.value is not None and x.multiplier.value <= 0:
        changes["multiplier"] = x.multiplier.flag("multiplier must be positive")
    for name in ("energy_wh", "amount_fen"):
        fv = getattr(x, name)
        if fv.value is not None and fv.value < 0:
            changes[name] = fv.flag("negative")
    return _with(x, changes)


def run_checks(x: BillExtraction) -> BillExtraction:
    """Evaluate the arithmetic cross-checks and flag every field of a failed one (unless reviewed)."""
    checks: list[CheckResult] = []
    prev, cur, mult, energy = (
        x.previous_reading_wh.value,
        x.current_reading_wh.value,
        x.multiplier.value,
        x.energy_wh.value,
    )
    if prev is not None and cur is not None:
        ok = cur >= prev
        checks.append(
            CheckResult(
                "reading_order",
                ok,
                "current >= previous"
                if ok
                else "current reading below previous (meter replaced or rolled over?)",
                ("previous_reading_wh", "current_reading_wh"),
            )
        )
    if prev is not None and cur is not None and mult is not None and energy is not None:
        expected = (cur - prev) * mult
        diff = energy - expected
        checks.append(
            CheckResult(
                "reading",
                abs(diff) <= READING_TOLERANCE_WH,
                f"(current - previous) x multiplier = {format_scaled(expected, 3, 3)} kWh, "
                f"printed energy {format_scaled(energy, 3, 3)} kWh",
                ("previous_reading_wh", "current_reading_wh", "multiplier", "energy_wh"),
            )
        )
    lines = x.tariff.value
    if lines and energy is not None and len(lines) > 1:
        total = sum(line.energy_wh for line in lines)
        checks.append(
            CheckResult(
                "tariff_sum",
                abs(total - energy) <= READING_TOLERANCE_WH,
                f"time-of-use energies sum to {format_scaled(total, 3, 3)} kWh, "
                f"printed energy {format_scaled(energy, 3, 3)} kWh",
                ("tariff", "energy_wh"),
            )
        )
    if lines and x.amount_fen.value is not None:
        expected_fen = sum(line_amount_fen(ln.energy_wh, ln.price_uyuan_per_kwh) for ln in lines)
        checks.append(
            CheckResult(
                "amount",
                abs(expected_fen - x.amount_fen.value) <= AMOUNT_TOLERANCE_FEN,
                f"energy x price = {format_scaled(expected_fen, 2, 2)} yuan, "
                f"printed amount {format_scaled(x.amount_fen.value, 2, 2)} yuan",
                ("tariff", "energy_wh", "amount_fen") if len(lines) == 1 else ("tariff", "amount_fen"),
            )
        )
    if x.period_start.value is not None and x.period_end.value is not None:
        days = (x.period_end.value - x.period_start.value).days
        checks.append(
            CheckResult(
                "period",
                0 <= days <= 92,
                f"period of {days + 1} days",
                ("period_start", "period_end"),
            )
        )
    changes: dict[str, FieldValue[Any]] = {}
    if not x.reviewed:
        for check in checks:
            if check.ok:
                continue
            for name in check.fields:
                changes[name] = changes.get(name, getattr(x, name)).flag(f"failed {check.name} check")
    return _with(replace(x, checks=tuple(checks)), changes)


def read_bill(
    image: bytes, *, engine: OcrEngine | None = None, min_confidence: float = DEFAULT_MIN_CONFIDENCE
) -> BillExtraction:
    """OCR one bill image and extract its fields (``image_sha256`` is over these exact bytes)."""
    lines = (engine or default_engine()).recognize(image)
    return extract_bill(lines, sha256(image), min_confidence=min_confidence)


# ---------------------------------------------------------------------------------------------------------------
# Review


def _coerce(name: str, raw: object, x: BillExtraction, energy: int | None) -> Any:
    """A correction as the domain value: ints are base units, strings are read as printed on the bill."""
    if isinstance(raw, bool):
        raise ValueError(f"{name}: a bool is not a value")
    if name in ("account", "account_name", "address", "serial"):
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"{name}: expected a non-empty string")
        value = raw.strip()
        if name == "account" and not value.isdigit():
            raise ValueError(f"account must be digits, got {value!r}")
        return value
    if name in ("period_start", "period_end", "pay_date"):
        if isinstance(raw, date):
            return raw
        if isinstance(raw, str):
            return parse_date(raw)
        raise ValueError(f"{name}: expected a date or 'YYYY-MM-DD'")
    digits = {
        "previous_reading_wh": WH_PER_KWH_DIGITS,
        "current_reading_wh": WH_PER_KWH_DIGITS,
        "energy_wh": WH_PER_KWH_DIGITS,
        "amount_fen": FEN_PER_YUAN_DIGITS,
        "multiplier": 0,
    }
    if name in digits:
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str):
            return parse_scaled(raw, digits[name])
        raise ValueError(f"{name}: expected an int in base units or the printed decimal text")
    if name == "tariff":
        if isinstance(raw, tuple) and all(isinstance(line, TariffLine) for line in raw) and raw:
            return raw
        if isinstance(raw, int | str):
            # A single-rate price: micro-yuan/kWh as int, or the printed 元/kWh text.
            price = raw if isinstance(raw, int) else parse_scaled(raw, UYUAN_PER_YUAN_DIGITS)
            if energy is None:
                raise ValueError("tariff: a single price needs the energy to be known")
            return (TariffLine("single", energy, price),)
        raise ValueError("tariff: expected a tuple of TariffLine or a single price")
    raise ValueError(f"unknown field {name!r}")


def confirm(extraction: BillExtraction, corrections: Mapping[str, object]) -> BillExtraction:
    """A person's review: apply ``corrections`` (field name -> value) and mark the extraction reviewed.

    Values are domain values (ints in base units, dates, strings, a tuple of TariffLine) or text as printed
    on the bill (``"12345.67"`` kWh, ``"55,555.50"`` yuan, ``"0.6250"`` yuan/kWh for a single-rate tariff).
    Raises ValueError for an unknown field or an unreadable value, and IncompleteExtraction when a required
    field is still missing. Cross-checks are re-run and kept; they no longer block (the person saw them)."""
    unknown = sorted(set(corrections) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}; expected some of {', '.join(FIELD_NAMES)}")
    energy_raw = corrections.get("energy_wh")
    energy = _coerce("energy_wh", energy_raw, extraction, None) if energy_raw is not None else None
    if energy is None:
        energy = extraction.energy_wh.value
    changes: dict[str, FieldValue[Any]] = {}
    for name, raw in corrections.items():
        changes[name] = FieldValue(_coerce(name, raw, extraction, energy), 1.0, "confirmed")
    x = _with(extraction, changes)
    # A single-rate line carries the energy: keep it in step with a corrected total.
    if (
        "energy_wh" in corrections
        and "tariff" not in corrections
        and x.tariff.value
        and len(x.tariff.value) == 1
        and x.tariff.value[0].segment == "single"
    ):
        line, total = x.tariff.value[0], x.energy_wh.value
        if total is not None:
            x = replace(x, tariff=replace(x.tariff, value=(replace(line, energy_wh=total),)))
    missing = [name for name in REQUIRED_FIELDS if getattr(x, name).value is None]
    if missing:
        raise IncompleteExtraction(f"still missing after review: {', '.join(missing)}")
    cleared = {name: replace(fv, reasons=()) for name, fv in x.field_values().items()}
    return run_checks(_with(replace(x, reviewed=True), cleared))
