"""Profiles are data: every shipped map loads, plans few reads, and its codec round-trips exactly."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from collector.profiles import (
    GarbageError,
    ProfileError,
    ReadBlock,
    decode_words,
    encode_value,
    list_profiles,
    load_profile,
    load_profiles,
    profile_from_dict,
    to_base,
)

REQUIRED = {
    "eastron_sdm630",
    "eastron_sdm630_cdab",
    "acrel_dtsd1352",
    "acrel_adl400",
    "schneider_pm5xxx",
    "hx_temp_4ch",
    "heat_meter_modbus",
    "outdoor_temp_1ch",
}


def test_shipped_profiles_load_and_cover_the_case() -> None:
    profiles = load_profiles()
    assert REQUIRED <= set(profiles) == set(list_profiles())
    for p in profiles.values():
        assert p.function_code in (3, 4)
        assert p.source, f"{p.name} must say where its map comes from"
        units = {r.unit for r in p.registers}
        assert units <= {"Wh", "W", "mV", "mA", "mHz", "mdegC", "L/h"}  # L/h: a heat meter's flow


def test_sdm630_map_matches_the_reference() -> None:
    p = load_profile("eastron_sdm630")
    assert p.function_code == 4
    addr = {r.quantity: r.address for r in p.registers}
    assert [addr[f"voltage.l{i}"] for i in (1, 2, 3)] == [0x00, 0x02, 0x04]
    assert [addr[f"current.l{i}"] for i in (1, 2, 3)] == [0x06, 0x08, 0x0A]
    assert addr["power.l1"] == 0x0C and addr["power"] == 0x34
    assert addr["frequency"] == 0x46 and addr["energy.import"] == 0x48
    e = p.register("energy.import")
    assert (e.dtype, e.word_order, e.scale, e.unit, e.counter) == (
        "float32",
        "big",
        Fraction(1000),
        "Wh",
        True,
    )


def test_plan_groups_registers_into_few_reads() -> None:
    for p in load_profiles().values():
        plan = p.plan()
        for b in plan:
            assert b.count <= p.max_block <= 125
        for r in p.registers:
            assert any(b.start <= r.address and r.address + r.words <= b.end for b in plan), r.quantity
    assert load_profile("eastron_sdm630").plan() == (ReadBlock(0, 0x4C),)
    assert len(load_profile("acrel_dtsd1352").plan()) == 3
    pm = load_profile("schneider_pm5xxx")  # max_gap 0: strictly contiguous runs only
    assert pm.plan()[0] == ReadBlock(2999, 6)
    for b in pm.plan():
        covered = sum(r.words for r in pm.registers if b.start <= r.address < b.end)
        assert covered == b.count


def test_address_base_one_subtracts_one() -> None:
    pm = load_profile("schneider_pm5xxx")
    assert pm.address_base == 1
    assert pm.register("voltage.l1").address == 3027  # documented register 3028
    assert pm.register("energy.import").address == 3203 and pm.register("energy.import").dtype == "int64"


def test_cdab_variant_inherits_with_little_word_order() -> None:
    big, little = load_profile("eastron_sdm630"), load_profile("eastron_sdm630_cdab")
    assert [r.address for r in big.registers] == [r.address for r in little.registers]
    assert {r.word_order for r in little.registers} == {"little"}
    assert little.name == "eastron_sdm630_cdab"


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("float32", 12345.669921875), ("int32", -123456789), ("uint32", 4_000_000_000), ("int64", -(2**40) - 7)],
)
@pytest.mark.parametrize("order", ["big", "little"])
def test_codec_agrees_with_pymodbus(dtype: str, value: float, order: Any) -> None:
    dt = getattr(AsyncModbusTcpClient.DATATYPE, dtype.upper())
    regs = AsyncModbusTcpClient.convert_to_registers(value, dt, word_order=order)
    assert encode_value(value, dtype, order) == regs
    assert decode_words(regs, dtype, order) == value


def test_reference_float_vector() -> None:
    assert encode_value(12345.67, "float32", "big") == [17984, 59054]
    assert encode_value(12345.67, "float32", "little") == [59054, 17984]
    # the wrong word order decodes to an absurd value, which is what the range check is for
    assert decode_words([17984, 59054], "float32", "little") < -1e23


def test_byte_swapped_orders_pymodbus_cannot_decode() -> None:
    for wo in ("big", "little"):
        words = encode_value(230.5, "float32", wo, "little")
        assert decode_words(words, "float32", wo, "little") == 230.5
    assert encode_value(1, "uint16", "big", "little") == [0x0100]  # BA


def test_scaling_is_exact_and_rounds_half_to_even() -> None:
    assert to_base(25, Fraction(1, 10)) == 2  # 2.5 -> 2
    assert to_base(35, Fraction(1, 10)) == 4  # 3.5 -> 4
    assert to_base(-25, Fraction(1, 10)) == -2
    assert to_base(12345.669921875, Fraction(1000)) == 12345670  # float32 12345.67 kWh -> Wh
    assert to_base(123456, Fraction(10)) == 1234560  # 1234.56 kWh (0.01 kWh units) -> Wh
    assert to_base(math.nan, Fraction(1)) is None and to_base(math.inf, Fraction(1)) is None
    assert isinstance(to_base(2.5, Fraction(1)), int)


def test_counters_wrap_and_gauges_saturate() -> None:
    assert encode_value(2**32 + 5, "uint32", "big", wrap=True) == [0, 5]
    assert encode_value(2**32 + 5, "uint32", "big") == [0xFFFF, 0xFFFF]
    assert encode_value(-40000, "int16", "big") == [0x8000]
    dt = load_profile("acrel_dtsd1352")
    assert dt.register("energy.import").wrap_base(Fraction(600)) == 2**32 * 10 * 600
    assert load_profile("eastron_sdm630").register("energy.import").wrap_base() is None


def _tiny(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "tiny",
        "function_code": 3,
        "registers": [
            {"quantity": "power.l1", "address": 0, "type": "int16", "unit": "W"},
            {"quantity": "power.l2", "address": 1, "type": "int16", "unit": "W"},
        ],
        "derived": [{"quantity": "power", "sum_of": ["power.l1", "power.l2"]}],
    }
    d.update(over)
    return d


def test_derived_sum_and_garbage_detection() -> None:
    p = profile_from_dict(_tiny())
    out = p.decode([(ReadBlock(0, 2), [5, 0xFFFE])])
    assert [(d.quantity, d.value, d.unit) for d in out] == [
        ("power.l1", 5, "W"),
        ("power.l2", -2, "W"),
        ("power", 3, "W"),
    ]
    sdm = load_profile("eastron_sdm630")
    words = [0] * 0x4C
    words[0:2] = [0x7FC0, 0]  # NaN volts
    words[0x48:0x4A] = encode_value(-5.0, "float32", "big")  # negative energy counter
    with pytest.raises(GarbageError) as ei:
        sdm.decode([(ReadBlock(0, 0x4C), words)])
    assert len(ei.value.problems) == 2
    assert "voltage.l1 @0x0000" in str(ei.value) and "energy.import @0x0048" in str(ei.value)


def test_zero_ct_ratio_is_garbage() -> None:
    dt = load_profile("acrel_dtsd1352")
    image = dt.encode({"voltage.l1": 220_000}, {"pt": 1, "ct": 0})
    reads = [(b, [image.get(a, 0) for a in range(b.start, b.end)]) for b in dt.plan()]
    with pytest.raises(GarbageError, match="CT ratio"):
        dt.decode(reads)


@pytest.mark.parametrize(
    ("over", "msg"),
    [
        ({"function_code": 6}, "function_code"),
        ({"address_base": 2}, "address_base"),
        ({"colour": "red"}, "unknown keys"),
        ({"registers": []}, "at least one"),
        ({"registers": [{"quantity": "x", "address": 0, "type": "float16", "unit": "W"}]}, "type"),
        (
            {"registers": [{"quantity": "x", "address": 0, "type": "int16", "unit": "W", "ratio": "ct"}]},
            "ratios.ct",
        ),
        ({"registers": [{"quantity": "x", "address": 0, "type": "int16", "unit": "W", "scale": 0}]}, "scale"),
        (
            {
                "registers": [
                    {"quantity": "a", "address": 0, "type": "int32", "unit": "W"},
                    {"quantity": "b", "address": 1, "type": "int16", "unit": "W"},
                ]
            },
            "overlap",
        ),
        ({"derived": [{"quantity": "p", "sum_of": ["nope"]}]}, "sum_of"),
        (
            {"address_base": 1, "registers": [{"quantity": "x", "address": 0, "type": "int16", "unit": "W"}]},
            "outside",
        ),
    ],
)
def test_bad_profiles_are_rejected_with_a_reason(over: dict[str, Any], msg: str) -> None:
    d = _tiny(**over)
    if "registers" in over:
        d.pop("derived", None)
    with pytest.raises(ProfileError, match=msg):
        profile_from_dict(d)


def test_scale_accepts_decimal_and_fraction_strings() -> None:
    regs = [
        {"quantity": "a", "address": 0, "type": "int16", "unit": "W", "scale": "0.1"},
        {"quantity": "b", "address": 1, "type": "int16", "unit": "W", "scale": "1/8"},
        {"quantity": "c", "address": 2, "type": "int16", "unit": "W", "scale": 0.1},
    ]
    p = profile_from_dict({"name": "s", "function_code": 4, "registers": regs})
    assert [r.scale for r in p.registers] == [Fraction(1, 10), Fraction(1, 8), Fraction(1, 10)]


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="eastron_sdm630"):
        load_profile("no_such_meter")
