"""CSV and XLSX import of purchase ledgers and supplier settlement statements."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from collector.ocr.ledgers import (
    LedgerFormatError,
    LedgerRow,
    RowError,
    classify_header,
    import_ledger,
    open_ledger,
)

PURCHASE_CSV = """\
呼和浩特青城大厦 购电台账
日期,户号,电量(kWh),单价(元/kWh),金额(元),供应商,发票号
2024-01,1234567890,"88,888.80",0.6250,"55,555.50",国网呼和浩特供电公司,INV-0001
2024年2月,1234567890,1000,0.6,600.00,国网呼和浩特供电公司,INV-0002
2024-03-01~2024-03-31,1234567890,12.345,,7.72,,
,,,,,,
2024-04,1234567890,abc,0.6,600,,
2024-05,1234567890,100.5,0.6,60.30,,
2024-13,1234567890,100,0.6,60,,
2024-06,1234567890,100,0.6,99.00,,
2024-07,1234567890,100,0.6,60.001,,
合计,,"89,802.10",,"56,822.52",,
"""


def test_csv_purchase_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.csv"
    path.write_text(PURCHASE_CSV, encoding="utf-8")
    ledger = open_ledger(path)
    assert ledger.header_row == 2
    assert ledger.headers == {
        "period": "日期",
        "account": "户号",
        "energy": "电量(kWh)",
        "price": "单价(元/kWh)",
        "amount": "金额(元)",
        "supplier": "供应商",
        "reference": "发票号",
    }
    assert ledger.total_rows == 10
    items = list(ledger)
    rows = [i for i in items if isinstance(i, LedgerRow)]
    errors = [i for i in items if isinstance(i, RowError)]

    first = rows[0]
    assert first == LedgerRow(
        row=3,
        period_start=date(2024, 1, 1),
        period_end=date(2024, 1, 31),
        energy_wh=88_888_800,
        account="1234567890",
        amount_fen=5_555_550,
        price_uyuan_per_kwh=625_000,
        supplier="国网呼和浩特供电公司",
        reference="INV-0001",
    )
    assert (rows[1].period_start, rows[1].period_end) == (date(2024, 2, 1), date(2024, 2, 29))
    assert rows[1].energy_wh == 1_000_000 and rows[1].amount_fen == 60_000
    assert rows[2].period_end == date(2024, 3, 31) and rows[2].energy_wh == 12_345
    assert rows[2].price_uyuan_per_kwh is None and rows[2].supplier is None
    assert rows[3].row == 8 and rows[3].energy_wh == 100_500 and not rows[3].warnings
    # energy x price = 60.00 yuan, but 99.00 is on the ledger: kept, with a warning.
    assert rows[4].row == 10 and rows[4].warnings

    assert [(e.row, e.column) for e in errors] == [(7, "电量(kWh)"), (9, "日期"), (11, "金额(元)")]
    assert errors[0].value == "abc" and "not a number" in errors[0].problem
    assert "more decimals" in errors[2].problem
    assert "row 7, column '电量(kWh)'" in str(errors[0])


def test_gbk_csv_with_english_headers_and_units() -> None:
    text = (
        "Settlement statement;;;;\n"
        "Period start;Period end;Account No;Energy (MWh);Amount (万元);Unit price (元/MWh)\n"
        "2024/01/01;2024/01/31;1234567890;88.8888;5.555550;625\n"
        "2024/02/01;2024/01/31;1234567890;1;0.06;600\n"
    )
    result = import_ledger(text.replace("Settlement statement", "结算单").encode("gb18030"), fmt="csv")
    assert result.headers["energy"] == "Energy (MWh)"
    assert len(result.rows) == 1
    row = result.rows[0]
    assert row.energy_wh == 88_888_800
    assert row.amount_fen == 5_555_550
    assert row.price_uyuan_per_kwh == 625_000
    assert (row.period_start, row.period_end) == (date(2024, 1, 1), date(2024, 1, 31))
    assert [(e.row, e.column, e.problem) for e in result.errors] == [
        (4, "Period end", "period ends before it starts")
    ]


def test_xlsx_settlement_statement(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "结算单"
    ws.append(["国网呼和浩特供电公司 电费结算单"])
    ws.append([])
    ws.append(["结算月份", "户号", "结算电量（千瓦时）", "电价", "结算金额（元）", "结算单号"])
    ws.append(["2024-01", 1234567890, 88888.8, 0.625, 55555.5, "JS-01"])
    ws.append([datetime(2024, 2, 15), "1234567890", 1000, 0.6, 600, "JS-02"])
    ws.append([202403, 1234567890, 0.1 + 0.2, 0.6, 0.18, "JS-03"])  # 0.30000000000000004
    ws.append(["2024-04", 1234567890, "", 0.6, 1, "JS-04"])
    ws.append(["2024-05", 1234567890, 1.23456, 0.6, 1, "JS-05"])
    ws.append(["2024-06", "12 34", 1, 0.6, 0.6, "JS-06"])
    ws.append(["小计", None, 89889.1, None, 56156.1])
    path = tmp_path / "settlement.xlsx"
    wb.save(path)

    ledger = open_ledger(path)
    assert ledger.header_row == 3
    assert ledger.total_rows == 7
    seen = list(ledger)  # an iterator: one item per data row, in order
    rows = [i for i in seen if isinstance(i, LedgerRow)]
    errors = [i for i in seen if isinstance(i, RowError)]
    assert [r.row for r in rows] == [4, 5, 6]
    assert rows[0].energy_wh == 88_888_800 and rows[0].amount_fen == 5_555_550
    assert rows[0].price_uyuan_per_kwh == 625_000 and rows[0].account == "1234567890"
    assert rows[0].reference == "JS-01"
    assert (rows[1].period_start, rows[1].period_end) == (date(2024, 2, 15), date(2024, 2, 15))
    assert (rows[2].period_start, rows[2].period_end) == (date(2024, 3, 1), date(2024, 3, 31))
    assert rows[2].energy_wh == 300  # Excel's 15 digits, not the double's binary noise
    assert [(e.row, e.column) for e in errors] == [
        (7, "结算电量（千瓦时）"),
        (8, "结算电量（千瓦时）"),
        (9, "户号"),
    ]
    assert errors[0].problem == "missing"

    with pytest.raises(LedgerFormatError, match="no sheet 'Sheet9'"):
        open_ledger(path, sheet="Sheet9")
    assert open_ledger(path, sheet="结算单").total_rows == 7

    rounded = import_ledger(path, round_excess=True)
    assert [r.row for r in rounded.rows] == [4, 5, 6, 8]
    assert rounded.rows[3].energy_wh == 1_235  # 1.23456 kWh rounded half-up to Wh


def test_progress_with_tqdm(tmp_path: Path) -> None:
    from tqdm import tqdm

    path = tmp_path / "big.csv"
    lines = ["date,account,energy (kWh),amount (CNY)"]
    lines += [f"2024-01-{d:02d},1234567890,{d}.5,{d}" for d in range(1, 32)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ledger = open_ledger(path)
    bar = tqdm(ledger, total=ledger.total_rows, disable=True)
    rows = [r for r in bar if isinstance(r, LedgerRow)]
    assert len(rows) == 31 and rows[-1].energy_wh == 31_500 and rows[-1].amount_fen == 3_100


def test_headers() -> None:
    assert classify_header("电量(kWh)") == ("energy", 3)
    assert classify_header("电量（MWh）") == ("energy", 6)
    assert classify_header(" Energy kWh ") == ("energy", 3)
    assert classify_header("金额(万元)") == ("amount", 6)
    assert classify_header("单价(分/kWh)") == ("price", 4)
    assert classify_header("户号") == ("account", 0)
    assert classify_header("电量(GWh)") is None  # unknown unit: not guessed
    assert classify_header("备注") is None


def test_no_header_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerFormatError, match="no header row"):
        import_ledger(b"a,b,c\n1,2,3\n", fmt="csv")
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LedgerFormatError, match="XLSX"):
        open_ledger(bad)
