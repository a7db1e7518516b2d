"""Field extraction, cross-checks and review on hand-written OCR output (no engine needed).

The OCR regions below are what rapidocr returns for the generated bills, including its habits: spaces
dropped inside a region (``2024-02-0510:23:45``), fullwidth colons, a row split into two regions."""

from __future__ import annotations

from datetime import date

import pytest

from collector.ocr.bills import (
    BillExtraction,
    IncompleteExtraction,
    TariffLine,
    confirm,
    extract_bill,
    format_scaled,
    group_rows,
    parse_scaled,
    sha256,
)
from collector.ocr.engine import OcrLine

IMAGE = b"\x89PNG fake image bytes"


def region(
    text: str, x: float, y: float, *, conf: float = 0.99, w: float = 400, slope: float = 0.0
) -> OcrLine:
    h = 30.0
    dy = slope * w
    return OcrLine(text, conf, ((x, y), (x + w, y + dy), (x + w, y + dy + h), (x, y + h)))


PrintedRow = str | tuple[str, str]


def receipt(*rows: PrintedRow, conf: float = 0.99, slope: float = 0.0) -> list[OcrLine]:
    """Regions laid out like the generated receipt: one or two columns per row, 50 px apart."""
    out = []
    for i, row in enumerate(rows):
        y = 150 + 50 * i
        left, right = (row, None) if isinstance(row, str) else row
        out.append(region(left, 60, y + slope * 60, conf=conf, slope=slope))
        if right is not None:
            out.append(region(right, 600, y + slope * 600, conf=conf, slope=slope))
    return out


SINGLE_RATE: tuple[PrintedRow, ...] = (
    "国网内蒙古东部电力有限公司",
    "电费缴费凭证",
    ("户号：1234567890", "客服热线：95598"),
    "户名：青城物业管理有限公司",
    "用电地址：内蒙古呼和浩特市赛罕区大学西路12号",
    "计费周期：2024-01-01至2024-01-31",
    ("上次示数：12345.67", "本次示数：13456.78"),
    ("倍率：80", "结算电量：88888.80 kWh"),
    ("电价：0.6250元/kWh", "电费金额：¥55,555.50元"),
    "缴费日期：2024-02-0510:23:45",
    "流水号：2024020512345678",
    "请妥善保管本凭证，如有疑问请致电95598。",
)


def single_rate(overrides: dict[int, PrintedRow] | None = None) -> list[OcrLine]:
    """The single-rate receipt with some rows (by index) printed differently."""
    rows = [(overrides or {}).get(i, row) for i, row in enumerate(SINGLE_RATE)]
    return receipt(*rows)


def test_parse_scaled_is_exact() -> None:
    assert parse_scaled("88,888.80", 3) == 88_888_800
    assert parse_scaled("0.6250", 6) == 625_000
    assert parse_scaled("¥55,555.50", 2) == 5_555_550
    assert parse_scaled("１２.５", 1) == 125  # fullwidth digits
    assert parse_scaled("-3", 2) == -300
    assert parse_scaled("1.2300", 2) == 123  # trailing zeros are not precision
    for bad in ("1.234", "12,34.5", "", "1.2.3", "abc"):
        with pytest.raises(ValueError):
            parse_scaled(bad, 2)
    assert format_scaled(88_888_800, 3, 2) == "88888.80"
    assert format_scaled(5_555_550, 2, 2, thousands=True) == "55,555.50"


def test_single_rate_bill() -> None:
    x = extract_bill(single_rate(), sha256(IMAGE))
    assert x.image_sha256 == sha256(IMAGE)
    assert x.account.value == "1234567890"
    assert x.account_name.value == "青城物业管理有限公司"
    assert x.address.value == "内蒙古呼和浩特市赛罕区大学西路12号"
    assert (x.period_start.value, x.period_end.value) == (date(2024, 1, 1), date(2024, 1, 31))
    assert x.previous_reading_wh.value == 12_345_670
    assert x.current_reading_wh.value == 13_456_780
    assert x.multiplier.value == 80
    assert x.energy_wh.value == 88_888_800
    assert x.tariff.value == (TariffLine("single", 88_888_800, 625_000),)
    assert x.amount_fen.value == 5_555_550
    assert x.pay_date.value == date(2024, 2, 5)
    assert x.serial.value == "2024020512345678"
    assert all(c.ok for c in x.checks), x.checks
    assert {c.name for c in x.checks} == {"reading_order", "reading", "amount", "period"}
    assert not x.needs_review, x.flagged


def test_whitespace_and_fullwidth_tolerance() -> None:
    lines = single_rate(
        {
            2: ("户 号 : 1234567890", "客服热线：95598"),
            6: ("上次示数 ： 12 345.67", "本次示数:13456.78"),
            7: ("倍率:８０", "结算电量 ：88888.80 千瓦时"),
            8: ("电价: 0.6250 元/kWh", "电费金额 ￥ 55555.50 元"),
        }
    )
    x = extract_bill(lines, "00" * 32)
    assert x.account.value == "1234567890"
    assert x.previous_reading_wh.value == 12_345_670
    assert x.multiplier.value == 80
    assert x.amount_fen.value == 5_555_550
    assert not x.needs_review, x.flagged


def test_label_and_value_in_separate_regions_and_rotated_photo() -> None:
    # A 1.5 degree rotation moves the right column ~14 px relative to the left one; the label and its value
    # come back as two regions.
    slope = 0.026
    lines = receipt(*SINGLE_RATE, slope=slope)
    lines = [ln for ln in lines if not ln.text.startswith("户号")]
    lines += [
        region("户号：", 60, 250 + slope * 60, w=80, slope=slope),
        region("1234567890", 150, 251, slope=slope),
    ]
    rows = group_rows(lines)
    assert any(row.text.startswith("户号:|1234567890|客服热线") for row in rows), [r.text for r in rows]
    x = extract_bill(lines, "00" * 32)
    assert x.account.value == "1234567890"
    assert x.current_reading_wh.value == 13_456_780
    assert not x.needs_review, x.flagged


def test_time_of_use_lines() -> None:
    lines = receipt(
        ("户号：1234567890", "电价类别：一般工商业"),
        "计费周期：2024年01月01日至2024年01月31日",
        ("上次示数：46894.24", "本次示数：47038.20"),
        ("倍率：80", "本期电量：11516.80 kWh"),
        "峰段 电量：4606.72 kWh 电价：0.9298 元/kWh 金额：4283.33 元",
        "平段 电量：3455.04 kWh电价：0.6199 元/kWh 金额：2141.78元",
        "谷段 电量：3455.04 kWh 电价：0.3099 元/kWh 金额：1070.72元",
        "应缴电费：7,495.83元",
    )
    x = extract_bill(lines, "00" * 32)
    assert x.energy_wh.value == 11_516_800  # the total, not a segment's energy
    assert x.amount_fen.value == 749_583  # not a segment's 金额
    assert x.tariff.value == (
        TariffLine("peak", 4_606_720, 929_800),
        TariffLine("flat", 3_455_040, 619_900),
        TariffLine("valley", 3_455_040, 309_900),
    )
    assert all(c.ok for c in x.checks), x.checks
    assert "tariff_sum" in {c.name for c in x.checks}
    # Fields the bill does not print are missing and flagged, not invented.
    assert x.serial.value is None and x.serial.needs_review
    fields = x.to_document_fields()
    assert fields["tariff.peak.energy_wh"] == 4_606_720
    assert fields["tariff.valley.price_uyuan_per_kwh"] == 309_900
    assert "serial" not in fields


def test_reading_mismatch_flags_the_reading_fields() -> None:
    x = extract_bill(single_rate({6: ("上次示数：12345.67", "本次示数：13556.78")}), "00" * 32)
    assert x.failed_checks == ("reading",)
    assert set(x.flagged) == {"previous_reading_wh", "current_reading_wh", "multiplier", "energy_wh"}
    assert x.to_document_fields()["review"] == "needs_review"


def test_amount_mismatch_flags_amount_and_tariff() -> None:
    x = extract_bill(single_rate({8: ("电价：0.6250元/kWh", "电费金额：55,755.50元")}), "00" * 32)
    assert x.failed_checks == ("amount",)
    assert {"amount_fen", "tariff", "energy_wh"} <= set(x.flagged)
    assert "account" not in x.flagged


def test_amount_within_one_yuan_passes() -> None:
    x = extract_bill(single_rate({8: ("电价：0.6250元/kWh", "电费金额：55,556.30元")}), "00" * 32)
    assert x.failed_checks == ()


def test_low_confidence_is_flagged() -> None:
    lines = single_rate()
    lines = [
        OcrLine(ln.text, 0.62, ln.box) if ln.text.startswith("户号") else ln for ln in lines
    ]  # only the account's region is doubtful
    x = extract_bill(lines, "00" * 32)
    assert x.flagged == ("account",)
    assert "low OCR confidence 0.62" in x.account.reasons[0]


def test_missing_energy_is_derived_and_flagged() -> None:
    x = extract_bill(single_rate({7: ("倍率：80", "客服热线：95598")}), "00" * 32)
    assert x.energy_wh.value == 88_888_800
    assert x.energy_wh.source == "derived"
    assert "energy_wh" in x.flagged
    assert x.tariff.value is None  # a price without energy is no tariff line
    assert "tariff" in x.flagged


def test_unreadable_value_is_flagged_not_guessed() -> None:
    x = extract_bill(single_rate({8: ("电价：0.62505678元/kWh", "电费金额：¥55,555.50元")}), "00" * 32)
    assert x.tariff.value is None
    assert any("more than 6" in r for r in x.tariff.reasons)


def test_confirm_applies_corrections_and_reviews() -> None:
    bad = extract_bill(single_rate({6: ("上次示数：12345.67", "本次示数：18456.78")}), sha256(IMAGE))
    assert bad.needs_review
    ok = confirm(bad, {"current_reading_wh": "13456.78"})
    assert ok.reviewed and not ok.needs_review
    assert ok.current_reading_wh.value == 13_456_780
    assert ok.current_reading_wh.source == "confirmed"
    assert ok.current_reading_wh.confidence == 1.0
    assert ok.failed_checks == ()
    assert ok.image_sha256 == bad.image_sha256
    doc = ok.to_document_fields()
    assert doc["review"] == "confirmed"
    assert doc["current_reading_wh"] == 13_456_780
    assert all(isinstance(v, int | str) for v in doc.values())
    assert not any(isinstance(v, float) for v in doc.values())


def test_confirm_accepts_base_units_and_keeps_failed_checks() -> None:
    x = extract_bill(single_rate({8: ("电价：0.6250元/kWh", "电费金额：56,555.50元")}), "00" * 32)
    # The reviewer says the printed amount is right (it includes a 1000-yuan surcharge).
    ok = confirm(x, {"amount_fen": 5_655_550})
    assert ok.reviewed and not ok.needs_review
    assert ok.failed_checks == ("amount",)
    assert ok.to_document_fields()["checks_failed"] == "amount"


def test_confirm_single_price_and_energy() -> None:
    x = extract_bill(single_rate({7: ("倍率：80", "客服热线：95598")}), "00" * 32)
    ok = confirm(x, {"energy_wh": "88888.80", "tariff": "0.6250"})
    assert ok.tariff.value == (TariffLine("single", 88_888_800, 625_000),)
    assert ok.failed_checks == ()


def test_confirm_rejects_unknown_fields_and_bad_values() -> None:
    x = extract_bill(single_rate(), "00" * 32)
    with pytest.raises(ValueError, match="unknown fields: kwh"):
        confirm(x, {"kwh": 1})
    with pytest.raises(ValueError):
        confirm(x, {"amount_fen": "12.345"})
    with pytest.raises(ValueError):
        confirm(x, {"account": "12AB"})
    with pytest.raises(ValueError):
        confirm(x, {"multiplier": True})


def test_required_fields() -> None:
    x = extract_bill(receipt("电费缴费凭证", "户号：1234567890"), "00" * 32)
    with pytest.raises(IncompleteExtraction, match="period_start"):
        x.to_document_fields()
    with pytest.raises(IncompleteExtraction):
        confirm(x, {"period_start": "2024-01-01"})
    ok = confirm(
        x,
        {
            "period_start": "2024-01-01",
            "period_end": date(2024, 1, 31),
            "energy_wh": 1_000_000,
            "amount_fen": 62_500,
        },
    )
    doc = ok.to_document_fields()
    assert doc["period_end"] == "2024-01-31"
    assert doc["energy_wh"] == 1_000_000


def test_no_text_at_all() -> None:
    x = extract_bill([], sha256(b""))
    assert isinstance(x, BillExtraction)
    assert x.needs_review
    assert x.image_sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_common_misreads_on_poor_images() -> None:
    """What rapidocr returned for heavily degraded bills: 峰 read as 蜂, ¥ as V, a decimal point as a comma."""
    lines = receipt(
        ("户号：1234567890", "电价类别：一般工商业"),
        "计费周期：2024-01-01至2024-01-31",
        ("上次示数：46894.24", "本次示数：47038.20"),
        ("倍率：80", "本期电量：11516,80kWh"),
        "蜂段电量:4606.72kWh电价:0.9298元/kWh金罐:4283.33元",
        "平段电量:3455.04kWh电价:0.6199元/kWh金醋:2141.78元",
        "谷段电量:3455.04kWh电价:0.3099元/kWh金:1070.72元",
        "应缴电费:V7,495.83元",
    )
    x = extract_bill(lines, "00" * 32)
    assert x.tariff.value is not None and [ln.segment for ln in x.tariff.value] == ["peak", "flat", "valley"]
    assert x.amount_fen.value == 749_583 and not x.amount_fen.needs_review
    # The repaired energy is right (the checks agree) but stays flagged: a person saw a comma.
    assert x.energy_wh.value == 11_516_800
    assert x.energy_wh.reasons == ("read '11516,80' as '11516.80'",)
    assert x.failed_checks == ()
    # Not printed on this receipt: missing and flagged too.
    assert set(x.flagged) == {"energy_wh", "account_name", "address", "pay_date", "serial"}


def test_unknown_segment_label_is_flagged() -> None:
    lines = receipt(
        ("倍率：80", "本期电量：11516.80kWh"),
        "X段电量:4606.72kWh电价:0.9298元/kWh",
        "平段电量:3455.04kWh电价:0.6199元/kWh",
        "谷段电量:3455.04kWh电价:0.3099元/kWh",
        "应缴电费:7,495.83元",
    )
    x = extract_bill(lines, "00" * 32)
    assert x.energy_wh.value == 11_516_800  # the plain total row is not taken for a segment
    assert x.tariff.value is not None and len(x.tariff.value) == 2
    assert any("unreadable time-of-use line" in r for r in x.tariff.reasons)
    assert {"tariff_sum", "amount"} <= set(x.failed_checks)
