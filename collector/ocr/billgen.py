"""Synthetic State Grid (国网) electricity bills and payment receipts, rendered as images.

Used by the device simulators and by the OCR tests as labelled data: every image comes with the fields that are
printed on it, so accuracy can be measured without hand-labelled photos.

Invariants:
- deterministic: the same ``(seed, variant, defect)`` gives the same fields and the same image bytes (for a
  given Pillow/libjpeg build and font file);
- unless a ``defect`` is asked for, a bill is internally consistent:
  ``(current - previous) x multiplier == energy`` exactly, and the amount is the sum over tariff lines of
  ``energy_i x price_i`` rounded half-up to the fen (one line for a single-rate bill, 峰/平/谷 for time-of-use);
- every quantity is an integer in base units: readings and energy in Wh, prices in micro-yuan per kWh,
  amounts in fen. The printed text is derived from those integers, never the other way round.

Rendering needs a CJK font: Debian ``fonts-wqy-microhei`` (``/usr/share/fonts/truetype/wqy/wqy-microhei.ttc``)
is looked up first; ``CEMP_CJK_FONT`` overrides the path.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from collector.ocr.bills import TariffLine, format_scaled, line_amount_fen

Variant = Literal["clean", "photo", "small"]
Defect = Literal["reading", "amount"]
VARIANTS: tuple[Variant, ...] = ("clean", "photo", "small")

FONT_ENV = "CEMP_CJK_FONT"
FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei (5 MB)
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian fonts-wqy-zenhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian fonts-noto-cjk
)

WIDTH = 1100
SMALL_WIDTH = 540

SEGMENT_LABELS: dict[str, str] = {"sharp": "尖峰", "peak": "峰段", "flat": "平段", "valley": "谷段"}


class FontNotFound(RuntimeError):
    """No CJK font to render bills with."""


@dataclass(frozen=True, slots=True)
class BillFields:
    """The ground truth printed on a generated bill, in base units."""

    account: str
    """户号, 10 digits."""
    account_name: str
    address: str
    period_start: date
    period_end: date
    previous_reading_wh: int
    """上次示数 on the meter register, in Wh (the bill prints kWh with 2 decimals)."""
    current_reading_wh: int
    multiplier: int
    """倍率: CT x PT ratio; register difference x multiplier = billed energy."""
    energy_wh: int
    tariff: tuple[TariffLine, ...]
    amount_fen: int
    pay_date: date
    serial: str
    """流水号, 16 digits."""


@dataclass(frozen=True, slots=True)
class GeneratedBill:
    image: bytes
    media_type: str
    """``image/png`` or ``image/jpeg``."""
    fields: BillFields
    variant: Variant
    seed: int
    consistent: bool
    """False when a ``defect`` was asked for: the printed numbers then fail a cross-check."""


def find_font() -> Path:
    """The CJK font file to render with, or a FontNotFound that says which Debian package to install."""
    override = os.environ.get(FONT_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FontNotFound(f"{FONT_ENV}={override} is not a file")
        return path
    for candidate in FONT_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    raise FontNotFound(
        "no CJK font found for bill images; install it with `apt-get install -y fonts-wqy-microhei` "
        f"(or set {FONT_ENV} to a .ttf/.ttc path); looked in: " + ", ".join(FONT_CANDIDATES)
    )


_SURNAMES = "王李张刘陈杨赵黄周吴"
_CITIES = ("呼和浩特市", "包头市", "鄂尔多斯市", "赤峰市", "通辽市")
_DISTRICTS = ("赛罕区", "新城区", "回民区", "玉泉区", "昆都仑区", "东胜区")
_ROADS = ("新华大街", "大学西路", "昭君路", "兴安南路", "锡林北路", "鄂尔多斯大街")
_ORGS = ("物业管理有限公司", "商贸有限公司", "第一中学", "人民医院", "酒店管理有限公司", "供热有限责任公司")
_ORG_PREFIX = ("恒信", "金桥", "北辰", "青城", "草原", "万达", "蒙苑")
_MULTIPLIERS = (1, 20, 30, 40, 60, 80, 120, 200)
_TITLES = ("电费缴费凭证", "电费结算单", "电费通知单")
_ENERGY_LABELS = ("结算电量", "本期电量", "用电量")
_AMOUNT_LABELS = ("电费金额", "应缴电费", "实缴金额")


def random_fields(rng: random.Random, *, tou: bool) -> BillFields:
    """Consistent bill fields drawn from ``rng``."""
    account = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(9))
    if rng.random() < 0.5:
        name = rng.choice(_SURNAMES) + rng.choice(("建国", "秀英", "志强", "丽华", "海军"))
    else:
        name = rng.choice(_CITIES)[:-1] + rng.choice(_ORG_PREFIX) + rng.choice(_ORGS)
    address = (
        "内蒙古"
        + rng.choice(_CITIES)
        + rng.choice(_DISTRICTS)
        + rng.choice(_ROADS)
        + f"{rng.randint(1, 399)}号"
    )
    year = rng.randint(2022, 2025)
    month = rng.randint(1, 12)
    start = date(year, month, 1)
    end = (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
    pay = end + timedelta(days=rng.randint(3, 20))
    # Readings are printed with 2 decimals: keep them multiples of 10 Wh.
    previous = rng.randint(100_000, 8_000_000) * 10
    multiplier = rng.choice(_MULTIPLIERS)
    max_diff = max(2_000, 2_000_000 // multiplier)
    diff = rng.randint(max_diff // 10, max_diff) * 10
    current = previous + diff
    energy = diff * multiplier
    if tou:
        # 峰/平/谷 shares of the energy, each a multiple of 10 Wh; valley takes the remainder.
        peak = energy * rng.randint(25, 40) // 100 // 10 * 10
        flat = energy * rng.randint(30, 40) // 100 // 10 * 10
        valley = energy - peak - flat
        base = rng.randint(4500, 6500) * 100  # micro-yuan/kWh with 4 printed decimals
        lines: tuple[TariffLine, ...] = (
            TariffLine("peak", peak, base * 3 // 2 // 100 * 100),
            TariffLine("flat", flat, base),
            TariffLine("valley", valley, base // 2 // 100 * 100),
        )
    else:
        lines = (TariffLine("single", energy, rng.randint(3500, 9500) * 100),)
    amount = sum(line_amount_fen(line.energy_wh, line.price_uyuan_per_kwh) for line in lines)
    serial = pay.strftime("%Y%m%d") + "".join(str(rng.randint(0, 9)) for _ in range(8))
    return BillFields(
        account=account,
        account_name=name,
        address=address,
        period_start=start,
        period_end=end,
        previous_reading_wh=previous,
        current_reading_wh=current,
        multiplier=multiplier,
        energy_wh=energy,
        tariff=lines,
        amount_fen=amount,
        pay_date=pay,
        serial=serial,
    )


def _with_defect(fields: BillFields, defect: Defect | None, rng: random.Random) -> BillFields:
    if defect is None:
        return fields
    if defect == "reading":
        # The register difference no longer explains the billed energy by a wide margin.
        bump = max(1_000_000 // fields.multiplier, 50_000) // 10 * 10
        return replace(fields, current_reading_wh=fields.current_reading_wh + bump)
    bump_fen = rng.randint(50, 500) * 100  # 50..500 yuan
    return replace(fields, amount_fen=fields.amount_fen + bump_fen)


def _lines(fields: BillFields, rng: random.Random) -> list[tuple[str, str | None]]:
    """The printed rows as (left, right) column text."""
    thousands = rng.random() < 0.4
    energy_label = rng.choice(_ENERGY_LABELS)
    amount_label = rng.choice(_AMOUNT_LABELS)
    rows: list[tuple[str, str | None]] = [
        (f"户号：{fields.account}", "电价类别：一般工商业" if rng.random() < 0.5 else "客服热线：95598"),
        (f"户名：{fields.account_name}", None),
        (f"用电地址：{fields.address}", None),
        (f"计费周期：{fields.period_start:%Y-%m-%d} 至 {fields.period_end:%Y-%m-%d}", None),
        (
            f"上次示数：{format_scaled(fields.previous_reading_wh, 3, 2)}",
            f"本次示数：{format_scaled(fields.current_reading_wh, 3, 2)}",
        ),
        (f"倍率：{fields.multiplier}", f"{energy_label}：{format_scaled(fields.energy_wh, 3, 2)} kWh"),
    ]
    money = "¥" if rng.random() < 0.5 else ""
    amount_text = f"{amount_label}：{money}{format_scaled(fields.amount_fen, 2, 2, thousands=thousands)} 元"
    if len(fields.tariff) == 1:
        price = format_scaled(fields.tariff[0].price_uyuan_per_kwh, 6, 4)
        rows.append((f"电价：{price} 元/kWh", amount_text))
    else:
        for line in fields.tariff:
            seg_amount = line_amount_fen(line.energy_wh, line.price_uyuan_per_kwh)
            rows.append(
                (
                    f"{SEGMENT_LABELS[line.segment]} 电量：{format_scaled(line.energy_wh, 3, 2)} kWh"
                    f"  电价：{format_scaled(line.price_uyuan_per_kwh, 6, 4)} 元/kWh"
                    f"  金额：{format_scaled(seg_amount, 2, 2)} 元",
                    None,
                )
            )
        rows.append((amount_text, None))
    pay_time = datetime.combine(fields.pay_date, datetime.min.time()) + timedelta(
        seconds=rng.randint(8 * 3600, 18 * 3600)
    )
    rows.append((f"缴费日期：{pay_time:%Y-%m-%d %H:%M:%S}", None))
    rows.append((f"流水号：{fields.serial}", None))
    return rows


def render(fields: BillFields, rng: random.Random, font_path: Path | None = None) -> Image.Image:
    """Draw a clean bill (RGB, WIDTH px wide)."""
    font_file = str(font_path or find_font())
    title_font = ImageFont.truetype(font_file, 40)
    body_font = ImageFont.truetype(font_file, 27)
    small_font = ImageFont.truetype(font_file, 22)
    rows = _lines(fields, rng)
    row_h = 50
    top = 150
    height = top + row_h * len(rows) + 110
    img = Image.new("RGB", (WIDTH, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    company = "国网内蒙古东部电力有限公司" if rng.random() < 0.5 else "国网北京市电力公司"
    title = rng.choice(_TITLES)
    draw.text((WIDTH // 2, 45), f"{company}", font=small_font, fill=(40, 40, 40), anchor="mm")
    draw.text((WIDTH // 2, 95), title, font=title_font, fill=(0, 0, 0), anchor="mm")
    draw.rectangle((30, 20, WIDTH - 30, height - 20), outline=(60, 60, 60), width=2)
    draw.line((30, 128, WIDTH - 30, 128), fill=(60, 60, 60), width=2)
    y = top
    for left, right in rows:
        draw.text((60, y), left, font=body_font, fill=(0, 0, 0))
        if right is not None:
            draw.text((600, y), right, font=body_font, fill=(0, 0, 0))
        y += row_h
    draw.line((30, y + 10, WIDTH - 30, y + 10), fill=(60, 60, 60), width=1)
    draw.text((60, y + 30), "请妥善保管本凭证，如有疑问请致电95598。", font=small_font, fill=(80, 80, 80))
    # A red "paid" stamp: real receipts have one, and it overlaps nothing the parser needs.
    cx, cy, r = WIDTH - 170, height - 125, 62
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(210, 40, 40), width=4)
    draw.text((cx, cy), "收讫", font=title_font, fill=(210, 40, 40), anchor="mm")
    return img


def _photo(img: Image.Image, rng: random.Random) -> Image.Image:
    """A phone photo: slight rotation, blur, sensor noise, uneven light."""
    import numpy as np

    angle = rng.choice((-1, 1)) * rng.uniform(1.2, 1.8)
    out = img.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(235, 232, 225))
    out = out.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.8, 1.2)))
    arr = np.asarray(out).astype(np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, 8.0, arr.shape)
    w = arr.shape[1]
    light = np.linspace(1.0, rng.uniform(0.82, 0.92), w, dtype=np.float32)[None, :, None]
    arr = np.clip(arr * light + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _encode(img: Image.Image, fmt: Literal["PNG", "JPEG"], quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, format="PNG", optimize=False)
    else:
        img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def generate(
    seed: int,
    variant: Variant = "clean",
    *,
    tou: bool | None = None,
    defect: Defect | None = None,
    font_path: Path | None = None,
) -> GeneratedBill:
    """One bill image plus the fields printed on it.

    ``tou`` forces a time-of-use (峰/平/谷) or single-rate bill; by default a quarter of the seeds are TOU.
    ``defect="reading"`` prints a current reading that does not match the energy; ``defect="amount"`` prints an
    amount that does not match energy x price. The returned fields are what is printed, defect included.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    rng = random.Random(f"cemp-bill/{seed}")
    use_tou = (rng.random() < 0.25) if tou is None else tou
    fields = _with_defect(random_fields(rng, tou=use_tou), defect, rng)
    img = render(fields, rng, font_path)
    if variant == "clean":
        data, media = _encode(img, "PNG"), "image/png"
    elif variant == "photo":
        data, media = _encode(_photo(img, rng), "JPEG", quality=60), "image/jpeg"
    else:
        small_h = round(img.height * SMALL_WIDTH / img.width)
        small = img.resize((SMALL_WIDTH, small_h), Image.Resampling.LANCZOS)
        data, media = _encode(small, "JPEG", quality=50), "image/jpeg"
    return GeneratedBill(
        image=data, media_type=media, fields=fields, variant=variant, seed=seed, consistent=defect is None
    )
