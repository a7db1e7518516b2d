"""Purchase ledgers and supplier settlement statements (CSV or XLSX) -> normalised electricity rows.

A ledger is a table with one purchase or settlement per row: a date or billing period, usually an account
(户号), the energy (电量), the amount (金额) and often the unit price (单价). Headers are found automatically
in Chinese or English, below any title rows, and may carry a unit (``电量(MWh)``, ``金额(万元)``).

Invariants:
- quantities are exact integers: energy in Wh, amounts in fen, prices in micro-yuan per kWh. Text cells are
  parsed as printed decimals; XLSX number cells are read at Excel's 15 significant digits; a value finer than
  the base unit (``1.2345`` 元) is an error for that cell, never silently rounded (unless ``round_excess``);
- a bad cell never raises: it yields a ``RowError`` (1-based row number as shown by a spreadsheet program,
  column header as printed, problem, raw value) and the import goes on with the next row;
- empty rows and total rows (合计/小计/总计/Total) are skipped;
- rows come out in file order through an iterator, so a caller can show progress (``Ledger.total_rows`` is
  the number of rows below the header, known before iterating). The cells are read into memory first:
  ledgers have thousands of rows, not millions.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from collector.ocr.bills import AMOUNT_TOLERANCE_FEN, line_amount_fen, month_bounds

Column = Literal["period", "start", "end", "account", "energy", "amount", "price", "supplier", "reference"]
Cell = str | int | float | datetime | date | None

HEADER_SCAN_ROWS = 15


@dataclass(frozen=True, slots=True)
class LedgerRow:
    row: int
    """1-based row number in the sheet or file (the header is a row too)."""
    period_start: date
    period_end: date
    """Inclusive; a single date gives a one-day period, a month (``2024-01``) its first and last day."""
    energy_wh: int
    account: str | None = None
    amount_fen: int | None = None
    price_uyuan_per_kwh: int | None = None
    supplier: str | None = None
    reference: str | None = None
    """Invoice, settlement or voucher number."""
    warnings: tuple[str, ...] = ()
    """Non-fatal doubts, e.g. energy x price does not match the amount within 1 yuan."""


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str
    """The header as printed in the file (or the canonical name when the column is missing)."""
    problem: str
    value: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.problem} (value {self.value!r})"


class LedgerFormatError(ValueError):
    """The file as a whole cannot be read: unknown format, no recognisable header."""


# Header synonyms after normalisation (NFKC, lower case, no spaces, unit in brackets removed).
_SYNONYMS: dict[Column, tuple[str, ...]] = {
    "period": (
        "日期",
        "期间",
        "账期",
        "计费周期",
        "结算周期",
        "结算期间",
        "电费年月",
        "年月",
        "月份",
        "结算月份",
        "购电日期",
        "结算日期",
        "date",
        "period",
        "month",
        "billingperiod",
        "settlementperiod",
    ),
    "start": ("开始日期", "起始日期", "起日期", "周期开始", "start", "startdate", "periodstart", "from"),
    "end": ("结束日期", "截止日期", "止日期", "周期结束", "end", "enddate", "periodend", "to"),
    "account": (
        "户号",
        "客户编号",
        "用户编号",
        "户编号",
        "电表户号",
        "account",
        "accountno",
        "accountnumber",
        "customerno",
    ),
    "energy": (
        "电量",
        "用电量",
        "结算电量",
        "购电量",
        "计费电量",
        "电量kwh",
        "energy",
        "kwh",
        "consumption",
        "quantity",
        "energykwh",
        "usage",
    ),
    "amount": (
        "金额",
        "电费",
        "电费金额",
        "结算金额",
        "含税金额",
        "价税合计",
        "amount",
        "cost",
        "total",
        "charge",
        "value",
    ),
    "price": ("单价", "电价", "平均电价", "price", "unitprice", "rate", "tariff"),
    "supplier": ("供应商", "售电公司", "供电单位", "供电公司", "supplier", "vendor", "retailer"),
    "reference": (
        "单号",
        "发票号",
        "发票号码",
        "结算单号",
        "凭证号",
        "流水号",
        "invoice",
        "invoiceno",
        "reference",
        "ref",
    ),
}
_LOOKUP: dict[str, Column] = {alias: col for col, aliases in _SYNONYMS.items() for alias in aliases}

# Units a header may carry, as (scale to the base unit's printed unit) = extra decimal digits.
#   energy: kWh printed -> Wh (3 digits); MWh -> 6; Wh -> 0
#   amount: 元 -> fen (2); 万元 -> 6
#   price:  元/kWh -> micro-yuan/kWh (6); 元/MWh -> 3; 分/kWh -> 4
_UNIT_DIGITS: dict[Column, dict[str, int]] = {
    "energy": {
        "": 3,
        "kwh": 3,
        "千瓦时": 3,
        "度": 3,
        "mwh": 6,
        "兆瓦时": 6,
        "wh": 0,
        "万kwh": 7,
        "万千瓦时": 7,
    },
    "amount": {"": 2, "元": 2, "yuan": 2, "cny": 2, "rmb": 2, "万元": 6},
    "price": {
        "": 6,
        "元/kwh": 6,
        "元/千瓦时": 6,
        "元/度": 6,
        "yuan/kwh": 6,
        "cny/kwh": 6,
        "元/mwh": 3,
        "分/kwh": 4,
    },
}
_TOTAL_WORDS = ("合计", "小计", "总计", "total", "subtotal", "sum")


@dataclass(frozen=True, slots=True)
class _ColumnSpec:
    index: int
    header: str
    column: Column
    digits: int


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


def classify_header(text: str) -> tuple[Column, int] | None:
    """(column, decimal digits to base units) for a header cell, or None if it is not one we know."""
    norm = _norm(text)
    unit = ""
    m = re.fullmatch(r"(.+?)[(\[](.+?)[)\]]", norm)
    if m is not None:
        norm, unit = m.group(1), m.group(2)
    column = _LOOKUP.get(norm)
    if column is None:
        # "电量kwh", "金额元": a unit glued on without brackets.
        for alias in sorted(_LOOKUP, key=len, reverse=True):
            if norm.startswith(alias) and alias:
                rest = norm[len(alias) :]
                if rest in _UNIT_DIGITS.get(_LOOKUP[alias], {}):
                    column, unit = _LOOKUP[alias], rest
                    break
    if column is None:
        return None
    units = _UNIT_DIGITS.get(column)
    if units is None:
        return column, 0
    if unit not in units:
        return None
    return column, units[unit]


def _detect_header(rows: Sequence[Sequence[Cell]]) -> tuple[int, list[_ColumnSpec]] | None:
    """The first row among the top ones that names the energy and a date or period column."""
    for r, cells in enumerate(rows[:HEADER_SCAN_ROWS]):
        specs: list[_ColumnSpec] = []
        seen: set[Column] = set()
        for i, cell in enumerate(cells):
            if not isinstance(cell, str) or not cell.strip():
                continue
            found = classify_header(cell)
            if found is None or found[0] in seen:
                continue
            seen.add(found[0])
            specs.append(_ColumnSpec(i, cell.strip(), found[0], found[1]))
        if "energy" in seen and ({"period", "start"} & seen):
            return r, specs
    return None


# ---------------------------------------------------------------------------------------------------------------
# Cells


def _decimal(cell: Cell) -> Decimal:
    if isinstance(cell, bool):
        raise ValueError("not a number")
    if isinstance(cell, int):
        return Decimal(cell)
    if isinstance(cell, float):
        # Excel keeps 15 significant digits; repr() of the double carries binary noise past that.
        return Decimal(f"{cell:.15g}")
    if isinstance(cell, str):
        s = _norm(cell).replace("¥", "").replace("￥", "").replace("−", "-")
        s = re.sub(r"(元|kwh|千瓦时|度|mwh)$", "", s)
        if re.fullmatch(r"\(.+\)", s):  # accounting negative: (123.45)
            s = "-" + s[1:-1]
        if not re.fullmatch(r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?|[-+]?\.\d+", s):
            raise ValueError("not a number")
        try:
            return Decimal(s.replace(",", ""))
        except InvalidOperation as exc:
            raise ValueError("not a number") from exc
    raise ValueError(f"not a number ({type(cell).__name__})")


def _scaled(cell: Cell, digits: int, round_excess: bool) -> int:
    d = _decimal(cell).scaleb(digits)
    if d != d.to_integral_value():
        if not round_excess:
            raise ValueError(f"more decimals than the unit holds (10^-{digits})")
        d = d.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(d)


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, datetime):
        return cell.date().isoformat()
    return str(cell).strip()


def _period(cell: Cell) -> tuple[date, date]:
    if isinstance(cell, datetime):
        return cell.date(), cell.date()
    if isinstance(cell, date):
        return cell, cell
    if isinstance(cell, int) and 190001 <= cell <= 299912:
        return month_bounds(cell // 100, cell % 100)
    if not isinstance(cell, str):
        raise ValueError("not a date or period")
    s = _norm(cell)
    d = r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    if m := re.fullmatch(d + r"(?:至|到|~|--|—|–|-)" + d, s):
        return date(*map(int, m.group(1, 2, 3))), date(*map(int, m.group(4, 5, 6)))
    if m := re.fullmatch(d + r"(?:t?\d{1,2}:\d{2}(?::\d{2})?)?", s):
        day = date(*map(int, m.group(1, 2, 3)))
        return day, day
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s):
        day = date(*map(int, m.group(1, 2, 3)))
        return day, day
    if m := re.fullmatch(r"(\d{4})[-/.年](\d{1,2})月?|(\d{4})(\d{2})", s):
        year, month = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return month_bounds(int(year), int(month))
    raise ValueError(
        "not a date or period (expected e.g. 2024-01-31, 2024-01, 2024年1月, 2024-01-01~2024-01-31)"
    )


def _date(cell: Cell) -> date:
    start, end = _period(cell)
    if start != end:
        raise ValueError("expected a single date")
    return start


# ---------------------------------------------------------------------------------------------------------------
# Files


def _read_csv(data: bytes) -> list[list[Cell]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise LedgerFormatError("CSV is neither UTF-8 nor GB18030")
    rows: list[list[Cell]] = [list(r) for r in csv.reader(io.StringIO(text), delimiter=_delimiter(text))]
    return rows


def _delimiter(text: str) -> str:
    """The candidate that splits the top lines into the most columns (title rows have fewer; quoted
    ``"88,888.80"`` cells are handled by the csv reader itself)."""
    head = [line for line in text.splitlines()[: HEADER_SCAN_ROWS + 5] if line.strip()]
    best, best_width = ",", 1
    for delimiter in (",", "\t", ";", "|"):
        widths = [len(r) for r in csv.reader(head, delimiter=delimiter)]
        width = max(widths, default=1)
        if width > best_width:
            best, best_width = delimiter, width
    return best


def _read_xlsx(data: bytes, sheet: str | None) -> list[list[Cell]]:
    try:
        import openpyxl
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LedgerFormatError("XLSX import needs openpyxl: pip install openpyxl") from exc
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise LedgerFormatError(f"not a readable XLSX workbook: {exc}") from exc
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise LedgerFormatError(f"no sheet {sheet!r}; the workbook has {', '.join(wb.sheetnames)}")
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        rows: list[list[Cell]] = []
        for values in ws.iter_rows(values_only=True):
            rows.append([v if isinstance(v, str | int | float | datetime | date) else None for v in values])
        return rows
    finally:
        wb.close()


class Ledger:
    """An opened ledger: header found, rows waiting to be parsed one by one.

    ``for item in ledger`` yields LedgerRow or RowError in file order; ``total_rows`` is how many data
    rows (below the header, including ones that will be skipped) there are, for a progress bar."""

    def __init__(self, rows: list[list[Cell]], *, source: str = "", round_excess: bool = False) -> None:
        found = _detect_header(rows)
        if found is None:
            raise LedgerFormatError(
                f"{source or 'ledger'}: no header row with an energy column (电量/kWh) and a date or period column "
                f"(日期/期间/period) in the first {HEADER_SCAN_ROWS} rows"
            )
        self.header_row = found[0] + 1
        self.columns: dict[Column, _ColumnSpec] = {spec.column: spec for spec in found[1]}
        self._rows = rows[found[0] + 1 :]
        self._round_excess = round_excess
        self.source = source

    @property
    def total_rows(self) -> int:
        return len(self._rows)

    @property
    def headers(self) -> dict[Column, str]:
        """Canonical column -> header as printed."""
        return {col: spec.header for col, spec in self.columns.items()}

    def __iter__(self) -> Iterator[LedgerRow | RowError]:
        for offset, cells in enumerate(self._rows):
            item = self._parse(self.header_row + 1 + offset, cells)
            if item is not None:
                yield item

    def _cell(self, cells: Sequence[Cell], column: Column) -> Cell:
        spec = self.columns.get(column)
        if spec is None or spec.index >= len(cells):
            return None
        value = cells[spec.index]
        return None if isinstance(value, str) and not value.strip() else value

    def _parse(self, row: int, cells: Sequence[Cell]) -> LedgerRow | RowError | None:
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            return None
        first = next(_norm(_text(c)) for c in cells if c is not None and _text(c))
        if any(first.startswith(word) for word in _TOTAL_WORDS):
            return None

        def err(column: Column, problem: str) -> RowError:
            spec = self.columns.get(column)
            return RowError(row, spec.header if spec else column, problem, _text(self._cell(cells, column)))

        # Period: one column (a date, a month or a range), or separate start and end columns.
        try:
            if "period" in self.columns and self._cell(cells, "period") is not None:
                start, end = _period(self._cell(cells, "period"))
            else:
                if self._cell(cells, "start") is None:
                    return err("period" if "period" in self.columns else "start", "missing")
                start = _date(self._cell(cells, "start"))
                end_cell = self._cell(cells, "end")
                end = _date(end_cell) if end_cell is not None else start
        except ValueError as exc:
            return err("period" if "period" in self.columns else "start", str(exc))
        if end < start:
            return err("period" if "period" in self.columns else "end", "period ends before it starts")

        numbers: dict[Column, int | None] = {}
        for column in ("energy", "amount", "price"):
            cell = self._cell(cells, column)
            if cell is None:
                if column == "energy":
                    return err(column, "missing")
                numbers[column] = None
                continue
            try:
                numbers[column] = _scaled(cell, self.columns[column].digits, self._round_excess)
            except ValueError as exc:
                return err(column, str(exc))
        energy = numbers["energy"]
        assert energy is not None
        amount, price = numbers["amount"], numbers["price"]

        warnings: list[str] = []
        if price is not None and amount is not None:
            expected = line_amount_fen(energy, price)
            if abs(expected - amount) > AMOUNT_TOLERANCE_FEN:
                warnings.append(f"energy x price = {expected} fen, amount {amount} fen")
        account = _text(self._cell(cells, "account")) or None
        if account is not None and not re.fullmatch(r"[0-9A-Za-z-]{4,32}", account):
            return err("account", "not an account number")
        return LedgerRow(
            row=row,
            period_start=start,
            period_end=end,
            energy_wh=energy,
            account=account,
            amount_fen=amount,
            price_uyuan_per_kwh=price,
            supplier=_text(self._cell(cells, "supplier")) or None,
            reference=_text(self._cell(cells, "reference")) or None,
            warnings=tuple(warnings),
        )


def open_ledger(
    source: str | Path | bytes,
    *,
    fmt: Literal["csv", "xlsx"] | None = None,
    sheet: str | None = None,
    round_excess: bool = False,
) -> Ledger:
    """Open a CSV or XLSX ledger from a path or bytes (format from the suffix, ``fmt``, or the content)."""
    if isinstance(source, bytes):
        data, name = source, ""
    else:
        path = Path(source)
        data, name = path.read_bytes(), str(path)
    if fmt is None:
        suffix = Path(name).suffix.lower()
        if suffix in (".xlsx", ".xlsm"):
            fmt = "xlsx"
        elif suffix in (".csv", ".tsv", ".txt"):
            fmt = "csv"
        else:
            fmt = "xlsx" if data[:2] == b"PK" else "csv"
    rows = _read_xlsx(data, sheet) if fmt == "xlsx" else _read_csv(data)
    return Ledger(rows, source=name, round_excess=round_excess)


@dataclass(frozen=True, slots=True)
class LedgerImport:
    rows: tuple[LedgerRow, ...]
    errors: tuple[RowError, ...]
    headers: dict[Column, str]


def import_ledger(
    source: str | Path | bytes,
    *,
    fmt: Literal["csv", "xlsx"] | None = None,
    sheet: str | None = None,
    round_excess: bool = False,
) -> LedgerImport:
    """Read a whole ledger: the good rows and the per-row errors."""
    ledger = open_ledger(source, fmt=fmt, sheet=sheet, round_excess=round_excess)
    good: list[LedgerRow] = []
    bad: list[RowError] = []
    for item in ledger:
        if isinstance(item, LedgerRow):
            good.append(item)
        else:
            bad.append(item)
    return LedgerImport(tuple(good), tuple(bad), ledger.headers)
