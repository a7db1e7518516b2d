"""Accounting periods in a site's local time: parsing labels, bounds in UTC milliseconds, and sub-periods.

Labels: ``2026-01-15`` (day), ``2026-01`` (month), ``2026-Q1`` (quarter), ``2026`` (year) and ``2025/26-season``
(the heating season that starts in 2025 on the site's ``season_start`` and ends in 2026 on ``season_end``,
inclusive). A period is ``[start_ms, stop_ms)``; days begin at local midnight (``utc_offset_min``). Years outside
2015-2100 are refused: readings before 2015 are refused by the chain anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from node.errors import CempError, Code

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MIN_YEAR, MAX_YEAR = 2015, 2100
KINDS = ("day", "month", "quarter", "year", "season")
GRAINS = ("hour", "day", "month", "quarter", "year")

_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_QUARTER = re.compile(r"(\d{4})-Q([1-4])")
_YEAR = re.compile(r"(\d{4})")
_SEASON = re.compile(r"(\d{4})/(\d{2})-season")


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    kind: str
    first_day: date
    """First local day."""
    last_day: date
    """Last local day (inclusive)."""
    start_ms: int
    stop_ms: int

    @property
    def hours(self) -> int:
        return (self.stop_ms - self.start_ms) // HOUR_MS

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


def _bad(msg: str) -> CempError:
    return CempError(Code.BAD_REQUEST, msg)


def day_start_ms(d: date, utc_offset_min: int) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000) - utc_offset_min * 60_000


def local_day(ts_ms: int, utc_offset_min: int) -> date:
    return (datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=ts_ms + utc_offset_min * 60_000)).date()


def _year(y: int, label: str) -> int:
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise _bad(f"period {label!r}: year {y} is outside {MIN_YEAR}-{MAX_YEAR}")
    return y


def _make(label: str, kind: str, first: date, last: date, off: int) -> Period:
    return Period(
        label, kind, first, last, day_start_ms(first, off), day_start_ms(last + timedelta(days=1), off)
    )


def parse_period(label: str, utc_offset_min: int, season: tuple[tuple[int, int], tuple[int, int]]) -> Period:
    """Parse a period label for a site (``season`` = ((month, day) start, (month, day) last day))."""
    if len(label) > 20:
        raise _bad("period label too long; use 2026-01-15, 2026-01, 2026-Q1, 2026 or 2025/26-season")
    try:
        if m := _DAY.fullmatch(label):
            d = date(_year(int(m[1]), label), int(m[2]), int(m[3]))
            return _make(label, "day", d, d, utc_offset_min)
        if m := _MONTH.fullmatch(label):
            y, mo = _year(int(m[1]), label), int(m[2])
            first = date(y, mo, 1)
            last = (date(y + 1, 1, 1) if mo == 12 else date(y, mo + 1, 1)) - timedelta(days=1)
            return _make(label, "month", first, last, utc_offset_min)
        if m := _QUARTER.fullmatch(label):
            y, q = _year(int(m[1]), label), int(m[2])
            first = date(y, 3 * q - 2, 1)
            last = (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - timedelta(days=1)
            return _make(label, "quarter", first, last, utc_offset_min)
        if m := _YEAR.fullmatch(label):
            y = _year(int(m[1]), label)
            return _make(label, "year", date(y, 1, 1), date(y, 12, 31), utc_offset_min)
        if m := _SEASON.fullmatch(label):
            y = _year(int(m[1]), label)
            if int(m[2]) != (y + 1) % 100:
                raise _bad(
                    f"period {label!r}: a season runs from one year into the next, e.g. {y}/{(y + 1) % 100:02d}-season"
                )
            (sm, sd), (em, ed) = season
            first = date(y, sm, sd)
            last = date(y + 1 if (em, ed) < (sm, sd) else y, em, ed)
            return _make(label, "season", first, last, utc_offset_min)
    except ValueError as e:
        raise _bad(f"period {label!r} is not a calendar date: {e}") from None
    raise _bad(f"period {label!r} not understood; use 2026-01-15, 2026-01, 2026-Q1, 2026 or 2025/26-season")


def grain_label(d: date, grain: str) -> str:
    if grain == "day":
        return d.isoformat()
    if grain == "month":
        return f"{d.year}-{d.month:02d}"
    if grain == "quarter":
        return f"{d.year}-Q{(d.month - 1) // 3 + 1}"
    if grain == "year":
        return str(d.year)
    raise ValueError(grain)


def default_grain(kind: str) -> str:
    return {"day": "hour", "month": "day", "quarter": "month", "year": "month", "season": "month"}[kind]


def season_of(d: date, season: tuple[tuple[int, int], tuple[int, int]]) -> str | None:
    """The season label a local day belongs to, or None outside the heating season."""
    (sm, sd), (em, ed) = season
    md = (d.month, d.day)
    if (em, ed) < (sm, sd):  # crosses new year
        if md >= (sm, sd):
            return f"{d.year}/{(d.year + 1) % 100:02d}-season"
        if md <= (em, ed):
            return f"{d.year - 1}/{d.year % 100:02d}-season"
        return None
    if (sm, sd) <= md <= (em, ed):
        return f"{d.year}/{(d.year + 1) % 100:02d}-season"
    return None
