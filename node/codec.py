"""The one canonical encoding of every wire object: msgpack arrays in dataclass field order.

Invariants:
- ``encode(x)`` is deterministic: arrays only (no maps), smallest integer forms, str as msgpack str and
  bytes as msgpack bin, no floats, no extension types; booleans, ``IntEnum`` (as int) and ``X | None``
  (nil) are allowed where a field is declared so (consensus messages use them);
- ``decode(cls, b)`` accepts only bytes that ``encode`` would produce: it unpacks, re-packs the raw
  structure and refuses any difference (``NonCanonical``), then checks every field's type and size.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from node import types as t
from node.errors import CempError, Code

T = TypeVar("T")

UINT64_MAX = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

# Size limits by domain type: (python type, exact or max length, signed?).
_FIXED_BYTES: dict[Any, int] = {t.Hash32: 32, t.PublicKey: 32, t.Signature: 64}
_MAX_STR: dict[Any, int] = {t.Handle: 255, t.ShortStr: 64, t.Text: 1024}
_MAX_BYTES: dict[Any, int] = {t.Blob: 1 << 20}
DEFAULT_MAX_STR = 4096
MAX_ENCODED = 64 << 20
DEFAULT_MAX_BYTES = MAX_ENCODED
"""Plain ``bytes`` fields (Raft entries carrying whole blocks, peer frames) are bounded by the object's size only;
fields that carry a tx or its payload are ``Blob`` (1 MiB)."""


class DecodeError(CempError):
    """Bytes that are not a valid canonical encoding of the expected object."""

    def __init__(self, message: str, code: Code = Code.MALFORMED) -> None:
        super().__init__(code, message)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def to_wire(obj: object) -> object:
    """Dataclass tree -> nested lists of primitives, in field order."""
    enc = _ENCODERS.get(type(obj))
    if enc is not None:
        return enc(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _class_encoder(type(obj))(obj)
    if isinstance(obj, tuple | list):
        return [to_wire(x) for x in obj]
    if isinstance(obj, enum.IntEnum):
        return int(obj)
    if isinstance(obj, float):
        raise TypeError(f"{type(obj).__name__} is not a wire type")
    return obj


_ENCODERS: dict[type, Callable[[Any], object]] = {}


def _class_encoder(cls: type) -> Callable[[Any], object]:
    """Compile ``cls`` -> list encoder once: primitive fields are copied, nested ones recurse."""
    hints = typing.get_type_hints(cls)
    plain: list[bool] = []
    for f in _fields(cls):
        tp = hints[f.name]
        sup = getattr(tp, "__supertype__", tp)
        plain.append(sup in (int, str, bytes) and not (isinstance(sup, type) and issubclass(sup, enum.Enum)))
    names = [f.name for f in _fields(cls)]
    if all(plain):
        getter = operator.attrgetter(*names)

        def enc(obj: Any) -> object:
            v = getter(obj)
            out = list(v) if len(names) > 1 else [v]
            for x in out:
                if type(x) in (bool, float) or x is None:
                    raise TypeError(f"{type(x).__name__} is not a wire type")
            return out

    else:
        pairs = list(zip(names, plain, strict=True))

        def enc(obj: Any) -> object:
            out = []
            for n, is_plain in pairs:
                v = getattr(obj, n)
                if is_plain:
                    if type(v) in (bool, float) or v is None:
                        raise TypeError(f"{type(v).__name__} is not a wire type")
                    out.append(v)
                else:
                    out.append(to_wire(v))
            return out

    _ENCODERS[cls] = enc
    return enc


def encode(obj: object) -> bytes:
    return _pack(to_wire(obj))


MAX_ITEMS = 65_536
"""Longest msgpack array any wire object holds (blocks hold <= block_max_txs txs, batches <= 5000, envelopes
<= 4096 items, state-sync chunks <= 20,000 pairs)."""
MAX_DEPTH = 32
"""Deepest nesting of any wire object (the deepest, an envelope item inside a block entry, is < 10)."""
WALK_ABOVE = 64 << 10
"""Inputs up to this size are unpacked directly (worst case ~32 bytes of objects per input byte: 2 MiB);
larger ones are walked first so that their object count is bounded before anything is allocated."""
BYTES_PER_OBJECT = 64
OBJECT_FLOOR = 100_000

# msgpack type byte -> how the walker steps over it: >= 0 a fixed number of bytes after the type byte; -1, -2,
# -4 a length-prefixed payload with a 1/2/4-byte length; -10 a fixarray; -12/-14 array16/32; -99 refused
# (maps, ext, floats: no wire object has them).
_SKIP = [-99] * 256
for _b in (*range(0x00, 0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3):
    _SKIP[_b] = 0
for _b in range(0xA0, 0xC0):
    _SKIP[_b] = _b - 0xA0  # fixstr
for _b, _w in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8), (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
    _SKIP[_b] = _w
for _b, _w in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
    _SKIP[_b] = -_w
for _b in range(0x90, 0xA0):
    _SKIP[_b] = -10
_SKIP[0xDC] = -12
_SKIP[0xDD] = -14


def _walk(data: bytes | bytearray | memoryview, budget: int) -> None:
    """Check the shape of one msgpack value without building it: only the types the codec uses, arrays of at
    most ``MAX_ITEMS``, nesting of at most ``MAX_DEPTH``, at most ``budget`` objects. Raises DecodeError."""
    buf = bytes(data)
    n = len(buf)
    pos = 0
    objects = 0
    stack: list[int] = []
    left = 1  # values still expected at the current level
    skip = _SKIP
    while True:
        while left == 0:
            if not stack:
                if pos > n:
                    raise DecodeError("msgpack value is truncated")
                return
            left = stack.pop()
        left -= 1
        objects += 1
        if pos >= n or objects > budget:
            if pos >= n:
                raise DecodeError("msgpack value is truncated")
            raise DecodeError(
                f"more than {budget} msgpack objects in {n} bytes; refused before unpacking", Code.TOO_LARGE
            )
        b = buf[pos]
        k = skip[b]
        if k >= 0:
            pos += 1 + k
        elif k == -1:
            pos += 2 + buf[pos + 1] if pos + 1 < n else n + 1
        elif k > -10:
            w = -k
            pos += 1 + w + int.from_bytes(buf[pos + 1 : pos + 1 + w], "big")
        elif k == -99:
            raise DecodeError(f"msgpack type byte 0x{b:02x} at offset {pos} has no place in a wire object")
        else:
            if k == -10:
                count = b - 0x90
                pos += 1
            else:
                w = 2 if k == -12 else 4
                count = int.from_bytes(buf[pos + 1 : pos + 1 + w], "big")
                pos += 1 + w
            if count > MAX_ITEMS:
                raise DecodeError(f"array of {count} items; the limit is {MAX_ITEMS}", Code.TOO_LARGE)
            if count:
                if len(stack) >= MAX_DEPTH:
                    raise DecodeError(f"msgpack nested deeper than {MAX_DEPTH} levels")
                stack.append(left)
                left = count


def _no_maps(pairs: object) -> object:
    raise ValueError("maps have no place in a wire object")


def unpack_bounded(data: bytes, max_items: int = MAX_ITEMS, max_objects: int | None = None) -> object:
    """Unpack one msgpack value with every cost bounded before it is paid.

    Maps and ext types are refused (no wire object has them), arrays hold at most ``max_items`` items, str and
    bin at most the input's length; an input over ``WALK_ABOVE`` bytes is first walked without allocating and
    refused if it holds more than one object per ``BYTES_PER_OBJECT`` bytes (at least ``OBJECT_FLOOR``) or
    nests deeper than ``MAX_DEPTH``. So the memory an input can cost is a small multiple of its size, which
    every route bounds. ``max_objects`` lowers the walk's budget where the caller knows the shape (a batch is
    one array of bins), so a hostile input is refused after that many steps. No canonical check (see
    ``unpack_raw``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    if len(data) > MAX_ENCODED:
        raise DecodeError(f"encoded object is {len(data)} bytes; the limit is {MAX_ENCODED}", Code.TOO_LARGE)
    top = data[0] if len(data) else 0
    if top in (0xDC, 0xDD):
        count = int.from_bytes(data[1 : 3 if top == 0xDC else 5], "big")
        if count > max_items:
            raise DecodeError(f"array of {count} items; the limit is {max_items}", Code.TOO_LARGE)
    if len(data) > WALK_ABOVE:
        budget = max(OBJECT_FLOOR, len(data) // BYTES_PER_OBJECT)
        _walk(data, budget if max_objects is None else min(budget, max_objects))
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_bin_len=len(data),
            max_str_len=len(data),
            max_array_len=min(max_items, MAX_ITEMS),
            max_map_len=0,
            max_ext_len=0,
            object_pairs_hook=_no_maps,
        )
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the msgpack object") from None
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as e:
        raise DecodeError(f"not valid msgpack: {e or 'nested too deeply'}") from None


def unpack_raw(data: bytes) -> object:
    """Unpack one canonical msgpack value; raises DecodeError on malformed or non-canonical bytes."""
    raw = unpack_bounded(data)
    try:
        again = _pack(raw)
    except (TypeError, ValueError, OverflowError) as e:
        raise DecodeError(f"contains values that have no canonical form: {e}") from None
    if again != bytes(data):
        raise DecodeError("msgpack is not in canonical form (re-encoding differs)", Code.NON_CANONICAL)
    return raw


def decode(cls: type[T], data: bytes) -> T:
    """Canonical bytes -> typed object of ``cls``."""
    raw = unpack_raw(data)
    return _run(_decoder(cls), raw, cls.__name__)  # type: ignore[return-value]


def from_wire(cls: type[T], raw: object) -> T:
    """Typed object from an already-unpacked raw structure (no canonical check)."""
    return _run(_decoder(cls), raw, cls.__name__)  # type: ignore[return-value]


# --- decoders, compiled once per class -------------------------------------------------------
# A decoder takes a raw value and returns the typed one. On failure it raises _FieldError carrying the
# path inside the object; the path string is only built on the error path, never on success.

Decoder = Callable[[object], object]
_DECODERS: dict[Any, Decoder] = {}
_FIELDS: dict[type, tuple[dataclasses.Field[Any], ...]] = {}


class _FieldError(Exception):
    def __init__(self, msg: str) -> None:
        self.msg = msg
        self.path: list[str] = []


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    f = _FIELDS.get(cls)
    if f is None:
        f = _FIELDS[cls] = dataclasses.fields(cls)
    return f


def _int_decoder(lo: int, hi: int) -> Decoder:
    def dec(v: object) -> object:
        if type(v) is not int:
            raise _FieldError(f"expected an integer, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise _FieldError(f"integer {v} out of range [{lo}, {hi}]")
        return v

    _INLINE[dec] = ("int", lo, hi)
    return dec


def _str_decoder(max_len: int) -> Decoder:
    def dec(v: object) -> object:
        if type(v) is not str:
            raise _FieldError(f"expected a string, got {type(v).__name__}")
        if len(v) > max_len:
            raise _FieldError(f"string of {len(v)} chars exceeds {max_len}")
        return v

    _INLINE[dec] = ("str", None, max_len)
    return dec


def _bytes_decoder(exact: int | None, max_len: int) -> Decoder:
    def dec(v: object) -> object:
        if type(v) is not bytes:
            raise _FieldError(f"expected bytes, got {type(v).__name__}")
        if exact is not None and len(v) != exact:
            raise _FieldError(f"expected exactly {exact} bytes, got {len(v)}")
        if len(v) > max_len:
            raise _FieldError(f"{len(v)} bytes exceeds {max_len}")
        return v

    _INLINE[dec] = ("bytes", exact, max_len)
    return dec


def _bool_decoder(v: object) -> object:
    if type(v) is not bool:
        raise _FieldError(f"expected a boolean, got {type(v).__name__}")
    return v


def _enum_decoder(cls: type[enum.IntEnum]) -> Decoder:
    def dec(v: object) -> object:
        if type(v) is not int:
            raise _FieldError(f"expected an integer {cls.__name__}, got {type(v).__name__}")
        try:
            return cls(v)
        except ValueError:
            raise _FieldError(f"{v} is not a valid {cls.__name__}") from None

    return dec


def _optional_decoder(inner: Decoder) -> Decoder:
    def dec(v: object) -> object:
        return None if v is None else inner(v)

    return dec


def _tuple_decoder(item: Decoder) -> Decoder:
    def dec(v: object) -> object:
        if type(v) is not tuple:
            raise _FieldError(f"expected an array, got {type(v).__name__}")
        try:
            return tuple([item(x) for x in v])
        except _FieldError as e:
            for i, x in enumerate(v):  # find the index only on the error path
                try:
                    item(x)
                except _FieldError:
                    e.path.append(f"[{i}]")
                    break
            raise

    return dec


def _class_decoder(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in _fields(cls)]
    subs = [_decoder(hints[n]) for n in names]
    n_fields = len(names)

    def slow(v: object) -> object:
        """Field by field, naming the field that fails (also the error path of the fast decoder)."""
        if type(v) is not tuple:
            raise _FieldError(f"expected an array of {n_fields} fields, got {type(v).__name__}")
        if len(v) != n_fields:
            raise _FieldError(f"expected {n_fields} fields ({', '.join(names)}), got {len(v)}")
        args = []
        for name, sub, x in zip(names, subs, v, strict=True):
            try:
                args.append(sub(x))
            except _FieldError as e:
                e.path.append("." + name)
                raise
        return cls(*args)

    # Fast path, generated once per class: primitive checks inlined, one constructor call. Any failure
    # falls back to ``slow`` so that the error names the field.
    env: dict[str, Any] = {
        "cls": cls,
        "slow": slow,
        "_T": tuple,
        "_int": int,
        "_str": str,
        "_bytes": bytes,
        "_FieldError": _FieldError,
    }
    checks, args = [], []
    for i, sub in enumerate(subs):
        env[f"s{i}"] = sub
        inline = _INLINE.get(sub)
        x = f"v[{i}]"
        if inline is None:
            args.append(f"s{i}({x})")
            continue
        kind, a, b = inline
        env[f"a{i}"], env[f"b{i}"] = a, b
        if kind == "int":
            checks.append(f"type({x}) is not _int or not a{i} <= {x} <= b{i}")
        elif kind == "str":
            checks.append(f"type({x}) is not _str or len({x}) > b{i}")
        else:
            exact = f" or len({x}) != a{i}" if a is not None else ""
            checks.append(f"type({x}) is not _bytes or len({x}) > b{i}{exact}")
        args.append(x)
    cond = " or ".join(checks) or "False"
    src = (
        "def dec(v):\n"
        f"    if type(v) is not _T or len(v) != {n_fields} or {cond}:\n"
        "        return slow(v)\n"
        "    try:\n"
        f"        return cls({', '.join(args)})\n"
        "    except _FieldError:\n"
        "        return slow(v)\n"
    )
    exec(compile(src, f"<codec decoder for {cls.__name__}>", "exec"), env)
    dec: Decoder = env["dec"]
    return dec


_INLINE: dict[Decoder, tuple[str, Any, Any]] = {}
"""Primitive decoders whose checks the class decoders inline: kind, then (lo, hi) or (exact, max)."""


def _run(dec: Decoder, raw: object, root: str) -> object:
    try:
        return dec(raw)
    except _FieldError as e:
        raise DecodeError(f"{root}{''.join(reversed(e.path))}: {e.msg}", Code.BAD_TYPE) from None


def _decoder(tp: Any) -> Decoder:
    d = _DECODERS.get(tp)
    if d is not None:
        return d
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        d = _class_decoder(tp)  # type: ignore[arg-type]
    elif tp is bool:
        d = _bool_decoder
    elif isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        d = _enum_decoder(tp)
    elif origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) != 1 or len(typing.get_args(tp)) != 2:
            raise TypeError(f"only X | None unions are wire types: {tp}")
        d = _optional_decoder(_decoder(inner[0]))
    elif tp in _FIXED_BYTES:
        d = _bytes_decoder(_FIXED_BYTES[tp], _FIXED_BYTES[tp])
    elif tp in _MAX_BYTES:
        d = _bytes_decoder(None, _MAX_BYTES[tp])
    elif tp in _MAX_STR:
        d = _str_decoder(_MAX_STR[tp])
    elif tp is t.SignedInt:
        d = _int_decoder(INT64_MIN, INT64_MAX)
    elif tp is int or getattr(tp, "__supertype__", None) is int:
        d = _int_decoder(0, UINT64_MAX)
    elif tp is str or getattr(tp, "__supertype__", None) is str:
        d = _str_decoder(DEFAULT_MAX_STR)
    elif tp is bytes or getattr(tp, "__supertype__", None) is bytes:
        d = _bytes_decoder(None, DEFAULT_MAX_BYTES)
    elif typing.get_origin(tp) is tuple:
        targs = typing.get_args(tp)
        if len(targs) != 2 or targs[1] is not Ellipsis:
            raise TypeError(f"only homogeneous tuples are wire types: {tp}")
        d = _tuple_decoder(_decoder(targs[0]))
    else:
        raise TypeError(f"not a wire type: {tp!r}")
    _DECODERS[tp] = d
    return d
