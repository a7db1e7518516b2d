"""Handle values as the chain stores them, and their Handle.Net v9 JSON form.

A handle record is a list of values ``(index, type, data{format, value}, ttl, timestamp, permissions,
references)`` as in Handle.Net v9. On chain every value's ``data`` is canonical bytes whose meaning depends on
``format``:

==========  =====================================================================================
format      ``data`` bytes
==========  =====================================================================================
string      UTF-8 text
base64      raw bytes (shown base64 in JSON)
hex         raw bytes (shown hex in JSON)
admin       ``encode(AdminRef)``: the admin ``index:handle`` and its 12-bit permission mask
vlist       ``encode(ValueList)``: the ``index:handle`` members of a group
site        canonical JSON of the HS_SITE object (sorted keys, no floats)
key         a raw 32-byte Ed25519 public key (shown as a JWK: kty OKP, crv Ed25519)
seckey      ``encode(SecretHash)``: HS_SECKEY is stored only as a salted scrypt hash, never in clear
==========  =====================================================================================

Invariants:
- every wire object here is a frozen, slotted dataclass (``node.codec``); ``validate_value`` accepts exactly the
  values whose ``data`` is the canonical encoding for their format, so two nodes never disagree on a value;
- value permissions are the 4-bit mask ``adminRead adminWrite publicRead publicWrite`` (``"1110"`` = 0b1110);
  HS_ADMIN permissions are the 12-bit mask read right to left (``int(s, 2)`` gives bit i = i-th char from the
  right);
- JSON in (``value_from_json``) is lenient where pyhandle needs it (bare-string ``data``, HS_ADMIN ``index`` as
  a string, missing ``timestamp``); JSON out (``value_to_json``) always carries ``timestamp`` and ``ttl``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from node import codec
from node.errors import CempError, Code
from node.types import Blob, Handle, Hash32, Height, ShortStr, Text, TimestampMs

# --- Handle.Net response codes (HandleNet v9 ``AbstractMessage.RC_*``) ----------------------------------------
RC_SUCCESS = 1
RC_ERROR = 2
RC_SERVER_BUSY = 3
RC_PROTOCOL_ERROR = 4
RC_NOT_SUPPORTED = 5
RC_HANDLE_NOT_FOUND = 100
RC_HANDLE_ALREADY_EXISTS = 101
RC_INVALID_HANDLE = 102
RC_VALUES_NOT_FOUND = 200
RC_VALUE_ALREADY_EXISTS = 201
RC_INVALID_VALUE = 202
RC_SERVER_NOT_RESP = 301
RC_AUTHENTICATION_NEEDED = 402
RC_INVALID_ADMIN = 400
RC_INSUFFICIENT_PERMISSIONS = 401
RC_AUTHENTICATION_FAILED = 403
RC_INVALID_CREDENTIAL = 404

# Ledger error code stored in a TxResult for each Handle response code (the reverse is ``rc_for_code``).
_CODE_OF_RC = {
    RC_HANDLE_NOT_FOUND: Code.NOT_FOUND,
    RC_VALUES_NOT_FOUND: Code.NOT_FOUND,
    RC_HANDLE_ALREADY_EXISTS: Code.ALREADY_EXISTS,
    RC_VALUE_ALREADY_EXISTS: Code.ALREADY_EXISTS,
    RC_INVALID_HANDLE: Code.INVALID_PAYLOAD,
    RC_INVALID_VALUE: Code.INVALID_PAYLOAD,
    RC_SERVER_NOT_RESP: Code.INVALID_PAYLOAD,
    RC_PROTOCOL_ERROR: Code.BAD_REQUEST,
    RC_INVALID_ADMIN: Code.NOT_AUTHORIZED,
    RC_INSUFFICIENT_PERMISSIONS: Code.NOT_AUTHORIZED,
    RC_AUTHENTICATION_FAILED: Code.NOT_AUTHORIZED,
    RC_INVALID_CREDENTIAL: Code.NOT_AUTHORIZED,
    RC_AUTHENTICATION_NEEDED: Code.NOT_AUTHORIZED,
}


class HandleError(CempError):
    """A refusal with a Handle.Net response code (``rc``) as well as the ledger's ``Code``."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(_CODE_OF_RC.get(rc, Code.INVALID_PAYLOAD), message)
        self.rc = rc


def rc_for_code(code: int, creating: bool = False) -> int:
    """Best Handle response code for a ledger ``Code`` found in a committed tx's result."""
    if code == Code.ALREADY_EXISTS:
        return RC_HANDLE_ALREADY_EXISTS if creating else RC_VALUE_ALREADY_EXISTS
    if code == Code.NOT_FOUND:
        return RC_HANDLE_NOT_FOUND
    if code == Code.NOT_AUTHORIZED:
        return RC_INSUFFICIENT_PERMISSIONS
    if code in (Code.INVALID_PAYLOAD, Code.BAD_TYPE, Code.TOO_LARGE):
        return RC_INVALID_VALUE
    return RC_ERROR


# --- formats, standard types, limits -----------------------------------------------------------------------
FORMATS = ("string", "base64", "hex", "admin", "vlist", "site", "key", "seckey")
HS_ADMIN = "HS_ADMIN"
HS_VLIST = "HS_VLIST"
HS_SECKEY = "HS_SECKEY"
HS_PUBKEY = "HS_PUBKEY"
HS_SITE = "HS_SITE"
# The format a standard type must use (other types may use any format but admin/vlist/seckey/key).
REQUIRED_FORMAT = {HS_ADMIN: "admin", HS_VLIST: "vlist", HS_SECKEY: "seckey", HS_PUBKEY: "key"}
RESERVED_FORMATS = {"admin": HS_ADMIN, "vlist": HS_VLIST, "seckey": HS_SECKEY, "key": HS_PUBKEY}

PERM_ADMIN_READ = 0b1000
PERM_ADMIN_WRITE = 0b0100
PERM_PUBLIC_READ = 0b0010
PERM_PUBLIC_WRITE = 0b0001
DEFAULT_PERMS = 0b1110
SECKEY_PERMS = 0b1100

DEFAULT_TTL = 86_400
MAX_INDEX = (1 << 31) - 1
MAX_TTL = (1 << 31) - 1
MAX_TYPE_CHARS = 128
MAX_VALUE_BYTES = 16 * 1024
MAX_VALUES = 256
MAX_RECORD_BYTES = 48 * 1024
MAX_REFERENCES = 16
MAX_VLIST = 64

TYPE_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays and objects in a JSON value (site data, CEMP.CARBON, ...) or a REST body."""
MAX_JSON_INT = (1 << 63) - 1
"""Largest magnitude of a JSON integer in a handle value: a signed 64-bit integer."""
_JSON_STR_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")


# --- wire objects --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ValueRef:
    """``index:handle``: a reference to one value of a handle (HS_VLIST members, value references)."""

    handle: Handle
    index: int
    """0 in an admin or group reference means "any index of that handle"."""


@dataclass(frozen=True, slots=True)
class AdminRef:
    """Data of an HS_ADMIN value: who administers the handle, with which rights."""

    handle: Handle
    index: int
    permissions: int
    """12-bit mask, bit i = i-th character from the right of the Handle permission string (``AdminPerm``)."""


@dataclass(frozen=True, slots=True)
class ValueList:
    """Data of an HS_VLIST value: a group of ``index:handle`` identities (or other groups)."""

    members: tuple[ValueRef, ...]


@dataclass(frozen=True, slots=True)
class SecretHash:
    """Data of an HS_SECKEY value: ``scrypt(secret, salt, n, r, p)``; the secret itself never reaches the chain."""

    alg: ShortStr
    """Always ``scrypt``."""
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes
    """32 bytes."""


@dataclass(frozen=True, slots=True)
class HandleValue:
    """One handle value as a tx carries it (the chain adds the timestamp when it stores it)."""

    index: int
    """1 .. 2^31-1, unique within the record."""
    type: Text
    """Printable ASCII without spaces, at most 128 characters (``URL``, ``HS_ADMIN``, ``CEMP.CARBON`` ...)."""
    format: ShortStr
    """One of ``FORMATS``; HS_ADMIN, HS_VLIST, HS_SECKEY and HS_PUBKEY need admin, vlist, seckey and key."""
    data: Blob
    """Canonical bytes for ``format`` (see the module docstring); at most 16 KiB."""
    ttl: int
    """Seconds a resolver may cache the value (relative), or a Unix time in seconds if ``ttl_absolute``."""
    ttl_absolute: int
    """0 or 1."""
    permissions: int
    """4-bit mask ``adminRead adminWrite publicRead publicWrite``."""
    references: tuple[ValueRef, ...]


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A value in committed state, with where it was last set (for timestamps and proofs)."""

    value: HandleValue
    timestamp_ms: TimestampMs
    """Block time of the tx that last changed this value."""
    set_height: Height
    set_tx: Hash32
    """Hash of that tx; a proof for the value is this tx's inclusion proof."""


@dataclass(frozen=True, slots=True)
class HandleRecord:
    """State of one handle (``schema.handle_record``), kept as a tombstone after deletion."""

    handle: Handle
    """The handle as it was first written (lookups are ASCII case-insensitive)."""
    values: tuple[StoredValue, ...]
    """Ascending by index; empty iff ``deleted``."""
    created_height: Height
    version: int
    """Number of changes applied so far; the change log holds entries 1..version."""
    last_tx: Hash32
    last_height: Height
    deleted: int
    """1 after ``handle.delete`` of the whole handle (it resolves as not found and may be created again)."""


@dataclass(frozen=True, slots=True)
class HandleChange:
    """One entry of a handle's change log (``schema.handle_change``), for history pages and audits."""

    version: int
    height: Height
    time_ms: TimestampMs
    tx: Hash32
    kind: ShortStr
    """``handle.put``, ``handle.delete`` or ``device.register``."""
    actor: Text
    """Who was authorised, e.g. ``300:88.123.45/admin (seckey via node owner-1)`` or ``owner admin key``."""
    indices: tuple[int, ...]
    """Indices added, changed or removed."""
    deleted: int


def norm(handle: str) -> str:
    """Lookup form of a handle: ASCII upper case (Handle.Net resolves case-insensitively)."""
    return handle.upper()


# --- validation (deterministic: used by the tx kinds on every node) -------------------------------------------
def _bad(msg: str) -> HandleError:
    return HandleError(RC_INVALID_VALUE, msg)


def decode_admin(data: bytes) -> AdminRef:
    return codec.decode(AdminRef, data)


def decode_vlist(data: bytes) -> ValueList:
    return codec.decode(ValueList, data)


def decode_secret(data: bytes) -> SecretHash:
    return codec.decode(SecretHash, data)


def check_ref_handle(h: str, where: str) -> None:
    if not h or len(h) > 255 or "/" not in h or _CONTROL_RE.search(h) or not h.isascii() or " " in h:
        raise _bad(f"{where}: {h!r} is not a handle (PREFIX/SUFFIX in printable ASCII)")


def validate_value(v: HandleValue, where: str = "value") -> None:
    """Raise HandleError (rc 202) unless ``v`` is well-formed and its data canonical for its format."""
    where = f"{where} {v.index}" if where == "value" else where
    if not 1 <= v.index <= MAX_INDEX:
        raise _bad(f"{where}: index must be between 1 and {MAX_INDEX}")
    if not TYPE_RE.match(v.type):
        raise _bad(
            f"{where}: type {v.type[:40]!r} must be 1-{MAX_TYPE_CHARS} printable ASCII characters without spaces"
        )
    if v.format not in FORMATS:
        raise _bad(f"{where}: format {v.format!r} is not one of {', '.join(FORMATS)}")
    need = REQUIRED_FORMAT.get(v.type)
    if need is not None and v.format != need:
        raise _bad(f"{where}: a {v.type} value must have format {need!r}, not {v.format!r}")
    reserved_for = RESERVED_FORMATS.get(v.format)
    if reserved_for is not None and v.type != reserved_for:
        raise _bad(f"{where}: format {v.format!r} is only for {reserved_for} values")
    if len(v.data) > MAX_VALUE_BYTES:
        raise _bad(f"{where}: data of {len(v.data)} bytes exceeds the limit of {MAX_VALUE_BYTES}")
    if not 0 <= v.ttl <= MAX_TTL or v.ttl_absolute not in (0, 1):
        raise _bad(f"{where}: ttl must be between 0 and {MAX_TTL} seconds")
    if not 0 <= v.permissions <= 0b1111:
        raise _bad(f"{where}: permissions must be 4 bits (adminRead adminWrite publicRead publicWrite)")
    if len(v.references) > MAX_REFERENCES:
        raise _bad(f"{where}: at most {MAX_REFERENCES} references")
    for r in v.references:
        check_ref_handle(r.handle, f"{where} reference")
        if not 0 <= r.index <= MAX_INDEX:
            raise _bad(f"{where}: reference index out of range")
    try:
        _validate_data(v)
    except CempError as e:
        if isinstance(e, HandleError):
            raise
        raise _bad(f"{where}: {v.format} data is not canonical: {e.message}") from None


def _validate_data(v: HandleValue) -> None:
    f, d = v.format, bytes(v.data)
    if f == "string":
        try:
            s = d.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"value {v.index}: string data is not valid UTF-8") from None
        if _CONTROL_RE.search(s):
            raise _bad(f"value {v.index}: string data holds control characters")
    elif f == "admin":
        a = decode_admin(d)
        check_ref_handle(a.handle, f"value {v.index} admin")
        if not 0 <= a.index <= MAX_INDEX or not 0 <= a.permissions < 1 << 12:
            raise _bad(f"value {v.index}: admin index or permissions out of range")
    elif f == "vlist":
        vl = decode_vlist(d)
        if not vl.members or len(vl.members) > MAX_VLIST:
            raise _bad(f"value {v.index}: a value list holds 1 to {MAX_VLIST} members")
        for m in vl.members:
            check_ref_handle(m.handle, f"value {v.index} member")
            if not 0 <= m.index <= MAX_INDEX:
                raise _bad(f"value {v.index}: member index out of range")
    elif f == "key":
        if len(d) != 32:
            raise _bad(f"value {v.index}: an HS_PUBKEY must be a 32-byte Ed25519 public key")
    elif f == "seckey":
        sh = decode_secret(d)
        if sh.alg != "scrypt" or not (1 << 10 <= sh.n <= 1 << 20 and sh.n & (sh.n - 1) == 0):
            raise _bad(
                f"value {v.index}: HS_SECKEY must be a scrypt hash with n a power of two in [2^10, 2^20]"
            )
        if not (1 <= sh.r <= 32 and 1 <= sh.p <= 16 and 16 <= len(sh.salt) <= 64 and len(sh.digest) == 32):
            raise _bad(f"value {v.index}: HS_SECKEY scrypt parameters, salt or digest out of range")
    elif f == "site":
        try:
            text = d.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"value {v.index}: site data is not UTF-8") from None
        obj = load_json(text, f"value {v.index}: site data")
        if canonical_json(obj) != d:
            raise _bad(f"value {v.index}: site data is not canonical JSON (sorted keys, no spaces)")


def _no_float(s: str) -> Any:
    raise ValueError(f"floats are not allowed ({s})")


def _bounded_int(s: str) -> int:
    if len(s) > 20:
        raise ValueError(f"integer {s[:12]}... ({len(s)} digits) does not fit in 64 bits")
    v = int(s)
    if not -MAX_JSON_INT - 1 <= v <= MAX_JSON_INT:
        raise ValueError(f"integer {s} does not fit in 64 bits")
    return v


def _no_constant(s: str) -> Any:
    raise ValueError(f"{s} is not JSON")


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in ``text`` outside strings (linear time, no recursion)."""
    brackets = _NOT_BRACKET_RE.sub("", _JSON_STR_RE.sub("", text))
    depth = best = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
        else:
            depth -= 1
    return best


def load_json(text: str, what: str, *, floats: bool = False, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON with bounded cost and bounded results, or raise rc 202 naming ``what``.

    Nesting deeper than ``max_depth`` is refused before parsing (the parser would recurse); integers must fit
    in 64 bits (``10**400`` is refused: no page, sum or report has to cope with it); NaN/Infinity are refused;
    floats only when ``floats``.
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise _bad(f"{what}: JSON nested {depth} deep; the limit is {max_depth}")
    try:
        return json.loads(
            text,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
            parse_float=float if floats else _no_float,
        )
    except (ValueError, RecursionError) as e:
        raise _bad(f"{what}: not acceptable JSON: {e}") from None


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def validate_values(values: tuple[HandleValue, ...]) -> None:
    if len(values) > MAX_VALUES:
        raise _bad(f"a record holds at most {MAX_VALUES} values; got {len(values)}")
    seen: set[int] = set()
    for v in values:
        validate_value(v)
        if v.index in seen:
            raise _bad(f"index {v.index} appears twice")
        seen.add(v.index)


# --- JSON in -------------------------------------------------------------------------------------------------
def _int(x: object, what: str) -> int:
    if isinstance(x, bool):
        raise _bad(f"{what} must be an integer")
    if isinstance(x, int):
        return x
    if isinstance(x, str) and re.fullmatch(r"[0-9]{1,10}", x):
        return int(x)
    raise _bad(f"{what} must be an integer (or a string of digits), got {x!r}")


def _perm_string(s: object, bits: int, what: str) -> int:
    if not isinstance(s, str) or not re.fullmatch(rf"[01]{{1,{bits}}}", s):
        raise _bad(f"{what} must be a string of up to {bits} characters 0 or 1")
    if bits == 12 and len(s) < 12:
        s = s + "0" * (12 - len(s))  # pyhandle: "if not all twelve bits are set, the remaining ones are zero"
    return int(s.ljust(bits, "0"), 2) if bits == 4 else int(s, 2)


def _ref(obj: object, what: str) -> ValueRef:
    if not isinstance(obj, dict):
        raise _bad(f"{what} must be an object with handle and index")
    h = obj.get("handle")
    if not isinstance(h, str):
        raise _bad(f"{what}: handle must be a string")
    check_ref_handle(h, what)
    return ValueRef(Handle(h), _int(obj.get("index", 0), f"{what} index"))


def jwk_to_key(obj: object, where: str) -> bytes:
    if not isinstance(obj, dict) or obj.get("kty") != "OKP" or obj.get("crv") != "Ed25519":
        raise _bad(f"{where}: a key value must be an Ed25519 JWK {{kty: OKP, crv: Ed25519, x: ...}}")
    x = obj.get("x")
    raw = _b64(x, where, urlsafe=True) if isinstance(x, str) else b""
    if len(raw) != 32:
        raise _bad(f"{where}: JWK x must be 32 bytes, base64url")
    return raw


def key_to_jwk(raw: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def _b64(s: object, where: str, urlsafe: bool = False) -> bytes:
    if not isinstance(s, str):
        raise _bad(f"{where}: base64 value must be a string")
    t = s.strip()
    t += "=" * (-len(t) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(t.encode())
        return base64.b64decode(t.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"{where}: not valid base64") from None


def _clean_str(s: str, where: str) -> str:
    if _CONTROL_RE.search(s):
        raise _bad(f"{where}: text holds control characters")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{where}: text is not valid Unicode (lone surrogate)") from None
    return s


def _parse_ttl(raw: object, where: str) -> tuple[int, int]:
    if raw is None:
        return DEFAULT_TTL, 0
    if isinstance(raw, str) and not raw.isdigit():
        try:
            t = time.strptime(raw.replace("Z", "+0000") if raw.endswith("Z") else raw, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            raise _bad(f"{where}: ttl must be seconds or an ISO time YYYY-MM-DDThh:mm:ssZ") from None
        import calendar

        return calendar.timegm(t), 1
    ttl = _int(raw, f"{where} ttl")
    if not 0 <= ttl <= MAX_TTL:
        raise _bad(f"{where}: ttl out of range")
    return ttl, 0


@dataclass(frozen=True, slots=True)
class ParsedValue:
    """A value from JSON; an HS_SECKEY's ``data`` is still empty (the node makes the secret and its hash)."""

    value: HandleValue


def value_from_json(obj: object, where: str = "value") -> ParsedValue:
    """Handle.Net JSON value -> HandleValue. Raises HandleError(202) with a message on anything wrong."""
    if not isinstance(obj, dict):
        raise _bad(f"{where} must be a JSON object with index, type and data")
    if "index" not in obj:
        raise _bad(f"{where}: missing index")
    index = _int(obj["index"], f"{where} index")
    where = f"value {index}"
    typ = obj.get("type")
    if not isinstance(typ, str) or not TYPE_RE.match(typ):
        raise _bad(f"{where}: type must be 1-{MAX_TYPE_CHARS} printable ASCII characters without spaces")
    ttl, ttl_abs = _parse_ttl(obj.get("ttl"), where)
    perms_raw = obj.get("permissions")
    default = SECKEY_PERMS if typ == HS_SECKEY else DEFAULT_PERMS
    perms = default if perms_raw is None else _perm_string(perms_raw, 4, f"{where} permissions")
    refs_raw = obj.get("references") or []
    if not isinstance(refs_raw, list):
        raise _bad(f"{where}: references must be a list")
    refs = tuple(_ref(r, f"{where} reference") for r in refs_raw)
    if "data" not in obj:
        raise _bad(f"{where}: missing data")
    data = obj["data"]
    if isinstance(data, dict):
        fmt = data.get("format", "string")
        val = data.get("value")
        if not isinstance(fmt, str):
            raise _bad(f"{where}: data.format must be a string")
    else:
        fmt, val = "string", data
    if typ == HS_SECKEY:
        # Secrets are made by the node (resolver.credentials.new_secret), never chosen by a client: their scrypt
        # hash is on the public chain, and only a secret of >= 128 random bits cannot be guessed from it.
        if (fmt, val) not in (("string", ""), ("string", None)):
            raise _bad(
                f"{where}: HS_SECKEY secrets are generated by the node (192 random bits), because their hash is "
                'public on the chain; send "data": "" and read the new secret from the reply\'s "secrets"'
            )
        return ParsedValue(
            HandleValue(index, Text(typ), ShortStr("seckey"), Blob(b""), ttl, ttl_abs, perms, refs)
        )
    if typ == HS_PUBKEY:
        raw = _pubkey(fmt, val, where)
        return ParsedValue(
            HandleValue(index, Text(typ), ShortStr("key"), Blob(raw), ttl, ttl_abs, perms, refs)
        )
    if fmt == "string":
        if not isinstance(val, str):
            raise _bad(f"{where}: string data must be a JSON string")
        raw = _clean_str(val, where).encode()
    elif fmt == "base64":
        raw = _b64(val, where)
    elif fmt == "hex":
        if not isinstance(val, str):
            raise _bad(f"{where}: hex data must be a string")
        raw = _hex(val, where)
    elif fmt == "admin":
        if not isinstance(val, dict):
            raise _bad(f"{where}: admin data must be an object {{handle, index, permissions}}")
        h = val.get("handle")
        if not isinstance(h, str):
            raise _bad(f"{where}: admin handle must be a string")
        check_ref_handle(h, f"{where} admin")
        perms12 = _perm_string(val.get("permissions", "011111110011"), 12, f"{where} admin permissions")
        raw = codec.encode(AdminRef(Handle(h), _int(val.get("index", 0), f"{where} admin index"), perms12))
    elif fmt == "vlist":
        if not isinstance(val, list) or not val:
            raise _bad(f"{where}: vlist data must be a non-empty list of {{handle, index}}")
        if len(val) > MAX_VLIST:
            raise _bad(f"{where}: a value list holds at most {MAX_VLIST} members")
        raw = codec.encode(ValueList(tuple(_ref(m, f"{where} member") for m in val)))
    elif fmt == "site":
        try:
            raw = canonical_json(json.loads(json.dumps(val), parse_float=_no_float))
        except (TypeError, ValueError) as e:
            raise _bad(f"{where}: site data must be JSON without floats: {e}") from None
    elif fmt == "key":
        raise _bad(f"{where}: format 'key' is only for HS_PUBKEY values")
    else:
        raise _bad(
            f"{where}: unknown data format {fmt!r}; use one of string, base64, hex, admin, vlist, site"
        )
    if len(raw) > MAX_VALUE_BYTES:
        raise _bad(f"{where}: data of {len(raw)} bytes exceeds the limit of {MAX_VALUE_BYTES}")
    v = HandleValue(index, Text(typ), ShortStr(fmt), Blob(raw), ttl, ttl_abs, perms, refs)
    validate_value(v)
    return ParsedValue(v)


def _hex(s: str, where: str) -> bytes:
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise _bad(f"{where}: not valid hex") from None


def _pubkey(fmt: str, val: object, where: str) -> bytes:
    if fmt == "key":
        return jwk_to_key(val, where)
    if fmt == "base64":
        raw = _b64(val, where)
    elif fmt in ("hex", "string") and isinstance(val, str):
        raw = _hex(val, where)
    else:
        raw = b""
    if len(raw) != 32:
        raise _bad(f"{where}: HS_PUBKEY must be an Ed25519 public key (JWK, or 32 bytes base64/hex)")
    return raw


# --- JSON out ------------------------------------------------------------------------------------------------
def iso_utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def data_to_json(v: HandleValue) -> dict[str, Any]:
    f, d = v.format, bytes(v.data)
    value: Any
    if f == "string":
        value = d.decode("utf-8")
    elif f == "base64":
        value = base64.b64encode(d).decode()
    elif f == "hex":
        value = d.hex().upper()
    elif f == "admin":
        a = decode_admin(d)
        value = {"handle": a.handle, "index": a.index, "permissions": format(a.permissions, "012b")}
    elif f == "vlist":
        value = [{"handle": m.handle, "index": m.index} for m in decode_vlist(d).members]
    elif f == "key":
        value = key_to_jwk(d)
    elif f == "site":
        try:
            value = json.loads(d.decode("utf-8"))
        except (ValueError, RecursionError):  # stored before the JSON limits: shown as text, never a 500
            value = d.decode("utf-8", errors="replace")
    else:  # seckey: never shown
        value = ""
    return {"format": f, "value": value}


def value_to_json(sv: StoredValue) -> dict[str, Any]:
    v = sv.value
    out: dict[str, Any] = {"index": v.index, "type": v.type, "data": data_to_json(v)}
    if v.permissions != DEFAULT_PERMS:
        out["permissions"] = format(v.permissions, "04b")
    out["ttl"] = iso_utc(v.ttl * 1000) if v.ttl_absolute else v.ttl
    out["timestamp"] = iso_utc(sv.timestamp_ms)
    if v.references:
        out["references"] = [{"handle": r.handle, "index": r.index} for r in v.references]
    return out


def publicly_readable(v: HandleValue) -> bool:
    return bool(v.permissions & PERM_PUBLIC_READ) and v.type != HS_SECKEY


def value_text(v: HandleValue) -> str:
    """Short human text of a value's data (pages, search)."""
    if v.format == "string":
        return bytes(v.data).decode("utf-8")
    d = data_to_json(v)["value"]
    return d if isinstance(d, str) else json.dumps(d, ensure_ascii=False)


def is_finite_number(x: object) -> bool:
    return isinstance(x, int) or (isinstance(x, float) and math.isfinite(x))
