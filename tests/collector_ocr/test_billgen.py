"""The synthetic bill generator: deterministic, internally consistent unless a defect is asked for."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from collector.ocr import billgen
from collector.ocr.bills import line_amount_fen


def test_same_seed_same_bytes_and_fields() -> None:
    for variant in billgen.VARIANTS:
        a, b = billgen.generate(7, variant), billgen.generate(7, variant)
        assert a.image == b.image
        assert a.fields == b.fields
    assert billgen.generate(7).image != billgen.generate(8).image


def test_fields_are_consistent_over_many_seeds() -> None:
    # Fields only: rendering is not needed to check the arithmetic.
    import random

    for seed in range(300):
        f = billgen.random_fields(random.Random(seed), tou=seed % 2 == 0)
        assert (f.current_reading_wh - f.previous_reading_wh) * f.multiplier == f.energy_wh
        assert sum(line.energy_wh for line in f.tariff) == f.energy_wh
        assert f.amount_fen == sum(line_amount_fen(ln.energy_wh, ln.price_uyuan_per_kwh) for ln in f.tariff)
        assert f.previous_reading_wh % 10 == 0 and f.energy_wh % 10 == 0  # printable with 2 decimals
        assert all(line.price_uyuan_per_kwh % 100 == 0 for line in f.tariff)  # 4 printed decimals
        assert f.period_start <= f.period_end < f.pay_date
        assert len(f.account) == 10 and f.account.isdigit()
        assert len(f.serial) == 16 and f.serial.isdigit()


def test_variants_have_the_promised_format_and_size() -> None:
    clean = billgen.generate(1, "clean")
    photo = billgen.generate(1, "photo")
    small = billgen.generate(1, "small")
    assert clean.media_type == "image/png" and clean.image.startswith(b"\x89PNG")
    assert photo.media_type == small.media_type == "image/jpeg"
    assert Image.open(io.BytesIO(clean.image)).width == billgen.WIDTH
    assert Image.open(io.BytesIO(small.image)).width == billgen.SMALL_WIDTH
    assert Image.open(io.BytesIO(photo.image)).width > billgen.WIDTH  # rotated with expand
    assert clean.fields == photo.fields == small.fields


def test_defects_break_exactly_one_relation() -> None:
    good = billgen.generate(3)
    reading = billgen.generate(3, defect="reading")
    amount = billgen.generate(3, defect="amount")
    assert good.consistent and not reading.consistent and not amount.consistent
    r = reading.fields
    assert abs((r.current_reading_wh - r.previous_reading_wh) * r.multiplier - r.energy_wh) > 1_000
    assert r.amount_fen == good.fields.amount_fen
    a = amount.fields
    assert a.amount_fen - good.fields.amount_fen >= 5_000
    assert a.current_reading_wh == good.fields.current_reading_wh


def test_missing_font_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(billgen.FONT_ENV, "/nonexistent/font.ttc")
    with pytest.raises(billgen.FontNotFound, match="CEMP_CJK_FONT"):
        billgen.generate(1)
    monkeypatch.delenv(billgen.FONT_ENV)
    monkeypatch.setattr(billgen, "FONT_CANDIDATES", ("/nonexistent/a.ttc",))
    with pytest.raises(billgen.FontNotFound, match="fonts-wqy-microhei"):
        billgen.find_font()


def test_unknown_variant() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        billgen.generate(1, "blurry")  # type: ignore[arg-type]
