"""Handle values: JSON in and out, lenient where pyhandle needs it, exact round trips, canonical data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import codec
from resolver.values import (
    AdminRef,
    HandleError,
    HandleValue,
    StoredValue,
    ValueList,
    ValueRef,
    validate_value,
    value_from_json,
    value_to_json,
)

HANDLES = st.sampled_from(["0.NA/88.123.45", "88.123.45/admin", "88.123.46/x.y-z", "88.123.47/a/b"])
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x7f"), max_size=60
)


@st.composite
def values(draw: st.DrawFn) -> HandleValue:
    fmt = draw(st.sampled_from(["string", "base64", "hex", "admin", "vlist", "key"]))
    typ = {"admin": "HS_ADMIN", "vlist": "HS_VLIST", "key": "HS_PUBKEY"}.get(
        fmt, draw(st.sampled_from(["URL", "EMAIL", "CEMP.LOCATION", "10320/LOC", "NOTE"]))
    )
    if fmt == "string":
        data = draw(TEXT).encode()
    elif fmt in ("base64", "hex"):
        data = draw(st.binary(max_size=40))
    elif fmt == "admin":
        data = codec.encode(AdminRef(draw(HANDLES), draw(st.integers(0, 1000)), draw(st.integers(0, 4095))))  # type: ignore[arg-type]
    elif fmt == "vlist":
        refs = draw(st.lists(st.builds(ValueRef, HANDLES, st.integers(0, 1000)), min_size=1, max_size=4))
        data = codec.encode(ValueList(tuple(refs)))
    else:
        data = draw(st.binary(min_size=32, max_size=32))
    refs = tuple(draw(st.lists(st.builds(ValueRef, HANDLES, st.integers(0, 9)), max_size=2)))
    return HandleValue(
        draw(st.integers(1, (1 << 31) - 1)),
        typ,  # type: ignore[arg-type]
        fmt,  # type: ignore[arg-type]
        data,  # type: ignore[arg-type]
        draw(st.integers(0, 1 << 30)),
        draw(st.integers(0, 1)),
        draw(st.integers(0, 15)),
        refs,
    )


@settings(max_examples=300, deadline=None)
@given(values())
def test_json_round_trip_is_exact(v: HandleValue) -> None:
    validate_value(v)
    out = value_to_json(StoredValue(v, 1_760_000_000_000, 1, b"\x00" * 32))  # type: ignore[arg-type]
    assert out["timestamp"] == "2025-10-09T08:53:20Z"
    back = value_from_json(json.loads(json.dumps(out)))
    assert back.value == v and back.secret is None


def test_pyhandle_shapes_are_accepted() -> None:
    admin = value_from_json(
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "value": {"index": "200", "handle": "0.NA/88.123.45", "permissions": "011111110011"},
                "format": "admin",
            },
        }
    ).value
    assert codec.decode(AdminRef, admin.data) == AdminRef("0.NA/88.123.45", 200, 0b011111110011)  # type: ignore[arg-type]
    url = value_from_json({"index": "1", "type": "URL", "data": "https://x", "ttl": 3600}).value
    assert (url.format, bytes(url.data), url.ttl, url.permissions) == ("string", b"https://x", 3600, 0b1110)
    short = value_from_json(
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {"format": "admin", "value": {"handle": "0.NA/1.2", "index": 200, "permissions": "0111"}},
        }
    ).value
    assert codec.decode(AdminRef, short.data).permissions == 0b011100000000  # missing bits are zero
    sec = value_from_json({"index": 300, "type": "HS_SECKEY", "data": "pw"})
    assert sec.secret == b"pw" and sec.value.permissions == 0b1100 and sec.value.format == "seckey"


@pytest.mark.parametrize(
    "bad",
    [
        HandleValue(1, "URL", "admin", b"", 1, 0, 14, ()),  # admin format on a URL
        HandleValue(1, "HS_ADMIN", "string", b"x", 1, 0, 14, ()),
        HandleValue(1, "URL", "string", b"\xff", 1, 0, 14, ()),  # not UTF-8
        HandleValue(1, "URL", "site", b'{"b":1, "a":2}', 1, 0, 14, ()),  # not canonical JSON
        HandleValue(1, "HS_PUBKEY", "key", b"\x00" * 31, 1, 0, 14, ()),
        HandleValue(1, "HS_SECKEY", "seckey", b"\x90", 1, 0, 12, ()),
        HandleValue(1, "URL", "string", b"x", 1, 2, 14, ()),  # ttl_absolute not 0/1
        HandleValue(1, "URL", "string", b"x", 1, 0, 16, ()),  # 5 permission bits
    ],
)
def test_validate_refuses_non_canonical_values(bad: HandleValue) -> None:
    with pytest.raises(HandleError) as e:
        validate_value(bad)
    assert e.value.rc == 202
