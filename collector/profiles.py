"""Modbus device profiles: register maps kept as data (``collector/device_profiles/*.toml``) and their codec.

A profile says which function code a device answers, how its documented addresses map to protocol addresses,
and for each quantity: address, data type, word order, scale to the base unit, unit, and an optional CT/PT
multiplier read from the device itself. This module turns register words into integer samples and back (the
simulators use the same tables, so "what the device holds" and "what the source reads" cannot drift apart). It
does no I/O.

Invariants
- Every decoded value is an ``int`` in a base unit (Wh, W, mV, mA, mHz, mdegC). ``raw × scale × ratio`` is
  computed exactly with ``Fraction`` (a float32 register is first widened to its exact binary value) and then
  rounded half to even, so the same words always give the same integer on every machine.
- Protocol address = documented address − ``address_base`` (0 or 1); registers of one profile never overlap.
- Bytes inside a register are big-endian on the wire unless a register says ``byte_order = "little"`` (the
  BADC/DCBA devices pymodbus cannot decode); ``word_order = "little"`` puts the least significant word first.
- ``plan()`` groups registers into as few reads as possible: a gap of at most ``max_gap`` undefined registers is
  read through (only for devices that tolerate it) and no read exceeds ``max_block`` registers (≤ 125).
- A value that cannot be a measurement (NaN, ±inf, outside the register's plausible range in base units, a CT/PT
  ratio ≤ 0) is *garbage*: ``decode`` raises ``GarbageError`` naming every such register and its raw words. The
  bounds are deliberately wide (they catch wrong word order, uninitialised or sensor-fault registers); judging
  plausible-but-wrong values is ``collector.quality``'s job.
"""

from __future__ import annotations

import itertools
import math
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

PROFILE_DIR = Path(__file__).with_name("device_profiles")

Order = Literal["big", "little"]
Ratio = Literal["", "pt", "ct", "ptct"]

# data type -> (struct code, number of 16-bit words)
DATA_TYPES: dict[str, tuple[str, int]] = {
    "uint16": ("H", 1),
    "int16": ("h", 1),
    "uint32": ("I", 2),
    "int32": ("i", 2),
    "float32": ("f", 2),
    "uint64": ("Q", 4),
    "int64": ("q", 4),
    "float64": ("d", 4),
}

# Plausible range per base unit when a register gives none: wide enough for any building plant, narrow enough
# to catch NaN-like patterns, wrong word order (1e23 and such) and int16 sensor-fault codes (±3276.8 °C).
DEFAULT_BOUNDS: dict[str, tuple[int, int]] = {
    "Wh": (0, 10**15),  # counters: 1 TWh
    "W": (-(10**10), 10**10),  # 10 GW
    "mV": (0, 10**9),  # 1 MV
    "mA": (-(10**8), 10**8),  # 100 kA
    "mHz": (0, 10**6),
    "mdegC": (-273_150, 1_000_000),
}
UNBOUNDED = (-(2**63), 2**63 - 1)

MAX_READ = 125  # Modbus limit for FC03/FC04


class ProfileError(ValueError):
    """A profile file is malformed (the message names the file and the field)."""


class GarbageError(ValueError):
    """Decoded registers cannot be measurements; ``problems`` has one line per register."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    quantity: str
    """Sample quantity, e.g. ``energy.import``, ``power``, ``voltage.l1``, ``temp.primary_supply``."""
    address: int
    """Protocol (0-based) address of the first word."""
    dtype: str
    """Key of ``DATA_TYPES``."""
    word_order: Order
    byte_order: Order
    scale: Fraction
    """Multiply the raw register value by this to get ``unit`` (before any CT/PT ratio)."""
    unit: str
    ratio: Ratio
    """Which device-held multiplier applies: voltage × PT, current × CT, power/energy × PT × CT."""
    counter: bool
    """A monotonically increasing total (energy); integer counters wrap at 2**bits × scale × ratio."""
    minimum: int
    maximum: int

    @property
    def words(self) -> int:
        return DATA_TYPES[self.dtype][1]

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")

    def wrap_base(self, ratio: Fraction = Fraction(1)) -> int | None:
        """Base-unit value at which this counter rolls over to 0, or ``None`` (floats, signed, gauges)."""
        if not self.counter or not self.dtype.startswith("uint"):
            return None
        return int(2 ** (16 * self.words) * self.scale * ratio)


@dataclass(frozen=True, slots=True)
class RatioSpec:
    name: Literal["pt", "ct"]
    address: int
    dtype: str
    word_order: Order
    byte_order: Order

    @property
    def words(self) -> int:
        return DATA_TYPES[self.dtype][1]


@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """A quantity computed from others of the same poll (only sums; e.g. total power from three phases)."""

    quantity: str
    unit: str
    sum_of: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadBlock:
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class Decoded:
    quantity: str
    value: int
    unit: str


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    function_code: Literal[3, 4]
    address_base: Literal[0, 1]
    max_gap: int
    max_block: int
    registers: tuple[RegisterSpec, ...]
    ratios: tuple[RatioSpec, ...]
    derived: tuple[DerivedSpec, ...]
    source: str
    """Where the map comes from, and whether it was checked against the vendor's document."""

    def register(self, quantity: str) -> RegisterSpec:
        for r in self.registers:
            if r.quantity == quantity:
                return r
        raise KeyError(f"profile {self.name} has no register for {quantity!r}")

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(r.quantity for r in self.registers) + tuple(d.quantity for d in self.derived)

    def spans(self) -> list[tuple[int, int]]:
        """(address, words) of every register the device must be read for, sorted."""
        s = [(r.address, r.words) for r in self.registers] + [(r.address, r.words) for r in self.ratios]
        return sorted(s)

    def plan(self) -> tuple[ReadBlock, ...]:
        """Fewest reads that cover every register, reading through gaps of at most ``max_gap``."""
        blocks: list[ReadBlock] = []
        for addr, n in self.spans():
            if blocks:
                b = blocks[-1]
                if addr - b.end <= self.max_gap and addr + n - b.start <= self.max_block:
                    blocks[-1] = ReadBlock(b.start, max(b.end, addr + n) - b.start)
                    continue
            blocks.append(ReadBlock(addr, n))
        return tuple(blocks)

    def decode(self, reads: Sequence[tuple[ReadBlock, Sequence[int]]]) -> list[Decoded]:
        """Turn the words of ``plan()``'s reads into samples; raise ``GarbageError`` if any value is garbage."""
        words = _WordMap(reads)
        problems: list[str] = []
        ratio_values: dict[str, Fraction] = {}
        for rs in self.ratios:
            regs = words.get(rs.address, rs.words)
            raw = decode_words(regs, rs.dtype, rs.word_order, rs.byte_order)
            if (isinstance(raw, float) and not math.isfinite(raw)) or raw <= 0:
                problems.append(f"{rs.name.upper()} ratio @0x{rs.address:04X} = {raw!r} ({_hex(regs)})")
                continue
            ratio_values[rs.name] = Fraction(raw)
        out: list[Decoded] = []
        for r in self.registers:
            regs = words.get(r.address, r.words)
            raw = decode_words(regs, r.dtype, r.word_order, r.byte_order)
            try:
                mult = ratio_multiplier(r.ratio, ratio_values)
            except KeyError:
                continue  # the ratio itself was garbage and is already reported
            value = to_base(raw, r.scale * mult)
            if value is None or not r.minimum <= value <= r.maximum:
                shown = "non-finite" if value is None else f"{value} {r.unit}"
                problems.append(
                    f"{r.quantity} @0x{r.address:04X} {r.dtype} words {_hex(regs)} -> {raw!r} ({shown}; "
                    f"plausible {r.minimum}..{r.maximum} {r.unit})"
                )
                continue
            out.append(Decoded(r.quantity, value, r.unit))
        if problems:
            raise GarbageError(problems)
        by_q = {d.quantity: d.value for d in out}
        for d in self.derived:
            out.append(Decoded(d.quantity, sum(by_q[q] for q in d.sum_of), d.unit))
        return out

    def encode(self, values: Mapping[str, int], ratios: Mapping[str, int]) -> dict[int, int]:
        """Register image (address -> word) a device holding ``values`` (base units) would serve.

        The inverse of ``decode`` up to the device's resolution; counters on unsigned registers wrap like the
        real device, other integers saturate at their type's limits. Quantities not given read as 0.
        """
        image: dict[int, int] = {}
        for rs in self.ratios:
            w = encode_value(ratios.get(rs.name, 1), rs.dtype, rs.word_order, rs.byte_order, wrap=False)
            image.update(zip(range(rs.address, rs.address + rs.words), w, strict=True))
        mults = {k: Fraction(v) for k, v in ratios.items()}
        for r in self.registers:
            mult = ratio_multiplier(r.ratio, mults, default=1) or Fraction(1)  # CT = 0: a broken device
            raw = Fraction(values.get(r.quantity, 0)) / (r.scale * mult)
            w = encode_value(raw, r.dtype, r.word_order, r.byte_order, wrap=r.counter)
            image.update(zip(range(r.address, r.address + r.words), w, strict=True))
        return image


class _WordMap:
    def __init__(self, reads: Sequence[tuple[ReadBlock, Sequence[int]]]) -> None:
        self._reads = reads

    def get(self, address: int, n: int) -> list[int]:
        for block, regs in self._reads:
            if block.start <= address and address + n <= block.end:
                off = address - block.start
                return list(regs[off : off + n])
        raise KeyError(f"no read covers 0x{address:04X}+{n}")


def _hex(regs: Sequence[int]) -> str:
    return " ".join(f"{w:04X}" for w in regs)


def ratio_multiplier(which: Ratio, ratios: Mapping[str, Fraction], default: int | None = None) -> Fraction:
    """PT for voltages, CT for currents, PT × CT for power and energy; 1 when the register has no ratio."""
    if not which:
        return Fraction(1)

    def get(name: str) -> Fraction:
        if name in ratios:
            return ratios[name]
        if default is not None:
            return Fraction(default)
        raise KeyError(name)

    if which == "ptct":
        return get("pt") * get("ct")
    return get(which)


def to_base(raw: int | float, factor: Fraction) -> int | None:
    """``raw × factor`` rounded half to even, exactly; ``None`` for NaN/inf."""
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    return round(Fraction(raw) * factor)


def decode_words(
    regs: Sequence[int], dtype: str, word_order: Order, byte_order: Order = "big"
) -> int | float:
    code, n = DATA_TYPES[dtype]
    if len(regs) != n:
        raise ValueError(f"{dtype} needs {n} registers, got {len(regs)}")
    ws = list(regs) if word_order == "big" else list(reversed(regs))
    raw = b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in ws)
    value: int | float = struct.unpack(">" + code, raw)[0]
    return value


def encode_value(
    raw: Fraction | int | float,
    dtype: str,
    word_order: Order,
    byte_order: Order = "big",
    *,
    wrap: bool = False,
) -> list[int]:
    """Words for a raw (device-unit) value: floats to nearest, integers rounded half-even then wrapped or clamped."""
    code, n = DATA_TYPES[dtype]
    if dtype.startswith("float"):
        packed = struct.pack(">" + code, float(raw))
    else:
        v = round(Fraction(raw))
        bits = 16 * n
        lo, hi = (0, 2**bits - 1) if dtype.startswith("uint") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if wrap:
            v = (v - lo) % 2**bits + lo
        v = min(hi, max(lo, v))
        packed = struct.pack(">" + code, v)
    ws = [
        int.from_bytes(packed[i : i + 2], "big" if byte_order == "big" else "little")
        for i in range(0, len(packed), 2)
    ]
    return ws if word_order == "big" else list(reversed(ws))


# --------------------------------------------------------------------------------------------- loading


def parse_scale(v: object, where: str) -> Fraction:
    """TOML scale: an integer, a decimal string ("0.1"), a fraction string ("1/10") or a float (read as decimal)."""
    try:
        if isinstance(v, bool):
            raise TypeError
        if isinstance(v, int):
            f = Fraction(v)
        elif isinstance(v, float):
            f = Fraction(repr(v))
        elif isinstance(v, str):
            f = Fraction(v.strip())
        else:
            raise TypeError
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ProfileError(f"{where}: scale {v!r} is not a number") from exc
    if f == 0:
        raise ProfileError(f"{where}: scale must not be 0")
    return f


def _order(v: object, where: str) -> Order:
    if v == "big":
        return "big"
    if v == "little":
        return "little"
    raise ProfileError(f"{where}: order must be 'big' or 'little', not {v!r}")


def _int(d: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    v = d.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProfileError(f"{where}: {key} must be an integer, not {v!r}")
    return v


def _str(d: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise ProfileError(f"{where}: {key} must be a string, not {v!r}")
    return v


_REG_KEYS = {
    "quantity",
    "address",
    "type",
    "word_order",
    "byte_order",
    "scale",
    "unit",
    "ratio",
    "counter",
    "min",
    "max",
}
_TOP_KEYS = {
    "name",
    "description",
    "extends",
    "function_code",
    "address_base",
    "word_order",
    "byte_order",
    "max_gap",
    "max_block",
    "source",
    "registers",
    "ratios",
    "derived",
}


def profile_from_dict(d: Mapping[str, Any], origin: str = "<dict>") -> Profile:
    """Validate one profile table (after ``extends`` was resolved)."""
    unknown = set(d) - _TOP_KEYS
    if unknown:
        raise ProfileError(f"{origin}: unknown keys {sorted(unknown)}")
    name = _str(d, "name", origin)
    where = f"{origin} ({name})"
    fc = _int(d, "function_code", where)
    if fc not in (3, 4):
        raise ProfileError(f"{where}: function_code must be 3 or 4, not {fc}")
    base = _int(d, "address_base", where, 0)
    if base not in (0, 1):
        raise ProfileError(f"{where}: address_base must be 0 or 1, not {base}")
    wo = _order(d.get("word_order", "big"), where)
    bo = _order(d.get("byte_order", "big"), where)
    max_gap = _int(d, "max_gap", where, 0)
    max_block = _int(d, "max_block", where, MAX_READ)
    if not 0 <= max_gap <= MAX_READ or not 1 <= max_block <= MAX_READ:
        raise ProfileError(f"{where}: need 0 <= max_gap <= 125 and 1 <= max_block <= 125")

    def proto_address(raw: object, w: str) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ProfileError(f"{w}: address must be an integer")
        a = raw - base
        if not 0 <= a <= 0xFFFF:
            raise ProfileError(f"{w}: address {raw} is outside the register space (base {base})")
        return a

    def dtype_of(t: object, w: str) -> str:
        if t not in DATA_TYPES:
            raise ProfileError(f"{w}: type {t!r} is not one of {sorted(DATA_TYPES)}")
        return str(t)

    ratios: list[RatioSpec] = []
    raw_ratios = d.get("ratios", {})
    if not isinstance(raw_ratios, dict):
        raise ProfileError(f"{where}: [ratios] must be a table")
    for rname, rt in raw_ratios.items():
        w = f"{where} ratios.{rname}"
        if rname not in ("pt", "ct") or not isinstance(rt, dict):
            raise ProfileError(f"{w}: only [ratios.pt] and [ratios.ct] tables are allowed")
        ratios.append(
            RatioSpec(
                "pt" if rname == "pt" else "ct",
                proto_address(rt.get("address"), w),
                dtype_of(rt.get("type", "uint16"), w),
                _order(rt.get("word_order", wo), w),
                _order(rt.get("byte_order", bo), w),
            )
        )
    regs: list[RegisterSpec] = []
    raw_regs = d.get("registers")
    if not isinstance(raw_regs, list) or not raw_regs:
        raise ProfileError(f"{where}: at least one [[registers]] entry is required")
    seen: set[str] = set()
    for i, rt in enumerate(raw_regs):
        w = f"{where} registers[{i}]"
        if not isinstance(rt, dict):
            raise ProfileError(f"{w}: must be a table")
        unknown = set(rt) - _REG_KEYS
        if unknown:
            raise ProfileError(f"{w}: unknown keys {sorted(unknown)}")
        q = _str(rt, "quantity", w)
        w = f"{where} register {q}"
        if q in seen:
            raise ProfileError(f"{w}: quantity appears twice")
        seen.add(q)
        unit = _str(rt, "unit", w)
        ratio = rt.get("ratio", "")
        if ratio not in ("", "pt", "ct", "ptct"):
            raise ProfileError(f"{w}: ratio must be '', 'pt', 'ct' or 'ptct'")
        for needed in ("pt", "ct"):
            if needed in ratio and not any(r.name == needed for r in ratios):
                raise ProfileError(f"{w}: uses ratio {ratio!r} but the profile has no [ratios.{needed}]")
        lo, hi = DEFAULT_BOUNDS.get(unit, UNBOUNDED)
        counter = rt.get("counter", q.startswith("energy."))
        if not isinstance(counter, bool):
            raise ProfileError(f"{w}: counter must be true or false")
        regs.append(
            RegisterSpec(
                quantity=q,
                address=proto_address(rt.get("address"), w),
                dtype=dtype_of(rt.get("type"), w),
                word_order=_order(rt.get("word_order", wo), w),
                byte_order=_order(rt.get("byte_order", bo), w),
                scale=parse_scale(rt.get("scale", 1), w),
                unit=unit,
                ratio=ratio,
                counter=counter,
                minimum=_int(rt, "min", w, lo),
                maximum=_int(rt, "max", w, hi),
            )
        )
    derived: list[DerivedSpec] = []
    for i, dt in enumerate(d.get("derived", [])):
        w = f"{where} derived[{i}]"
        if not isinstance(dt, dict) or not isinstance(dt.get("sum_of"), list):
            raise ProfileError(f"{w}: needs quantity, unit and sum_of = [...]")
        parts = tuple(str(x) for x in dt["sum_of"])
        units = {r.unit for r in regs if r.quantity in parts}
        if set(parts) - seen or len(units) != 1:
            raise ProfileError(f"{w}: sum_of must name registers of this profile that share one unit")
        dq = _str(dt, "quantity", w)
        if dq in seen:
            raise ProfileError(f"{w}: {dq} is already a register")
        derived.append(DerivedSpec(dq, _str(dt, "unit", w, units.pop()), parts))

    spans = sorted(
        [(r.address, r.words, r.quantity) for r in regs] + [(r.address, r.words, r.name) for r in ratios]
    )
    for (a1, n1, q1), (a2, _n2, q2) in itertools.pairwise(spans):
        if a1 + n1 > a2:
            raise ProfileError(f"{where}: registers {q1} and {q2} overlap at 0x{a2:04X}")
    for a, n, q in spans:
        if a + n - 1 > 0xFFFF or n > max_block:
            raise ProfileError(f"{where}: register {q} does not fit the register space or max_block")
    return Profile(
        name=name,
        description=_str(d, "description", where, ""),
        function_code=3 if fc == 3 else 4,
        address_base=0 if base == 0 else 1,
        max_gap=max_gap,
        max_block=max_block,
        registers=tuple(regs),
        ratios=tuple(ratios),
        derived=tuple(derived),
        source=_str(d, "source", where, ""),
    )


def _read_table(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: {exc}") from exc


def _resolve(path: Path, directory: Path, depth: int = 0) -> dict[str, Any]:
    table = _read_table(path)
    parent = table.get("extends")
    if parent is None:
        return table
    if depth > 4 or not isinstance(parent, str):
        raise ProfileError(f"{path}: extends must name another profile (at most 4 levels)")
    base_path = directory / f"{parent}.toml"
    if not base_path.is_file():
        raise ProfileError(f"{path}: extends unknown profile {parent!r}")
    merged = dict(_resolve(base_path, directory, depth + 1))
    merged.update({k: v for k, v in table.items() if k != "extends"})
    return merged


def load_profile(name_or_path: str | Path, directory: Path = PROFILE_DIR) -> Profile:
    """A shipped profile by name (``eastron_sdm630``) or any ``.toml`` file; ``extends`` is resolved first.

    An inheriting profile takes every top-level key of its parent and overrides the ones it sets; a parent's
    register-level ``word_order`` is kept only where the parent spelled it out per register.
    """
    p = Path(name_or_path)
    path = p if p.suffix == ".toml" else directory / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(list_profiles(directory)))
        raise ProfileError(f"no profile {name_or_path!r} (known: {known})")
    return profile_from_dict(_resolve(path, path.parent), str(path.name))


def list_profiles(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_profiles(directory: Path = PROFILE_DIR) -> dict[str, Profile]:
    return {n: load_profile(n, directory) for n in list_profiles(directory)}
