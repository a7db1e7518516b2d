"""DL/T 645-2007 meter protocol: the frame codec (pure, no I/O) and a source that reads meters through a
serial-to-TCP gateway.

Frame: ``[FE FE FE FE] 68 A0..A5 68 C L DATA CS 16``.
- The address is 6 BCD bytes, least significant (A0) first on the wire; a nameplate number ``123456781012`` is
  sent as ``12 10 78 56 34 12``. ``AA×6`` is the wildcard a single meter on a line answers to.
- Control: 0x11 read, 0x91 normal reply, 0xB1 reply with more frames to follow, 0xD1 error reply (1 error byte).
- DATA = DI0..DI3 (low byte first) then the value; every DATA byte travels +0x33 (mod 256).
- CS = sum of every byte from the first 0x68 to the end of DATA, mod 256.

Values are packed BCD, low byte first. Signed items (current, power) keep the sign in bit 7 of the most
significant byte. Every value is converted to an integer in a base unit: ``XXXXXX.XX kWh`` ×10 → Wh (exact),
``XXX.X V`` ×100 → mV, ``XXX.XXX A`` → mA, ``XX.XXXX kW`` ÷10 → W rounded half to even (the meter's 0.1 W digit
is below the base unit).

Invariants: ``parse_frame`` never returns a frame whose checksum or end byte is wrong, and never guesses past
the bytes it has; the source treats checksum errors, timeouts, wrong addresses/DIs, error replies and non-BCD
digits as ``SourceError`` and drops the TCP connection after anything that could leave stale bytes in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from collector.sources import Sample, SharedLink, SourceError

PREAMBLE = b"\xfe\xfe\xfe\xfe"
START = 0x68
END = 0x16
OFFSET = 0x33
WILDCARD = b"\xaa" * 6

CTRL_READ = 0x11
CTRL_READ_REPLY = 0x91
CTRL_READ_REPLY_MORE = 0xB1
CTRL_READ_ERROR = 0xD1

ERROR_BITS = {
    0x01: "other error",
    0x02: "no requested data",
    0x04: "password error / unauthorised",
    0x08: "baud rate cannot be changed",
    0x10: "annual time zone count exceeded",
    0x20: "daily time slot count exceeded",
    0x40: "tariff count exceeded",
}


class FrameError(ValueError):
    """Bytes that cannot be a valid DL/T 645 frame (bad checksum, end byte, length or layout)."""


class ValueFormatError(ValueError):
    """A value field that is not valid BCD for its data identifier."""


@dataclass(frozen=True, slots=True)
class Frame:
    address: bytes
    """6 bytes, wire order (A0 first)."""
    control: int
    data: bytes
    """DATA with the +0x33 offset already removed."""


@dataclass(frozen=True, slots=True)
class DataId:
    di: int
    """e.g. 0x00010000; sent low byte first."""
    quantity: str
    unit: str
    nbytes: int
    factor: Fraction
    """BCD integer × factor = base unit."""
    signed: bool
    name: str


DATA_IDS: dict[int, DataId] = {
    d.di: d
    for d in (
        DataId(
            0x00000000,
            "energy.combined",
            "Wh",
            4,
            Fraction(10),
            False,
            "combined active total, XXXXXX.XX kWh",
        ),
        DataId(
            0x00010000, "energy.import", "Wh", 4, Fraction(10), False, "forward active total, XXXXXX.XX kWh"
        ),
        DataId(
            0x00020000, "energy.export", "Wh", 4, Fraction(10), False, "reverse active total, XXXXXX.XX kWh"
        ),
        DataId(0x02010100, "voltage.l1", "mV", 2, Fraction(100), False, "phase A voltage, XXX.X V"),
        DataId(0x02010200, "voltage.l2", "mV", 2, Fraction(100), False, "phase B voltage, XXX.X V"),
        DataId(0x02010300, "voltage.l3", "mV", 2, Fraction(100), False, "phase C voltage, XXX.X V"),
        DataId(0x02020100, "current.l1", "mA", 3, Fraction(1), True, "phase A current, XXX.XXX A"),
        DataId(0x02020200, "current.l2", "mA", 3, Fraction(1), True, "phase B current, XXX.XXX A"),
        DataId(0x02020300, "current.l3", "mA", 3, Fraction(1), True, "phase C current, XXX.XXX A"),
        DataId(0x02030000, "power", "W", 3, Fraction(1, 10), True, "total active power, XX.XXXX kW"),
    )
}
DEFAULT_DIS = (0x00010000, 0x02010100, 0x02020100, 0x02030000)


# ------------------------------------------------------------------------------------------ addresses


def address_from_nameplate(number: str) -> bytes:
    """``"123456781012"`` (12 digits as printed on the meter) → wire bytes ``12 10 78 56 34 12``."""
    digits = number.strip()
    if len(digits) != 12 or not digits.isdigit():
        raise ValueError(f"a DL/T 645 address has 12 decimal digits, not {number!r}")
    msb_first = bytes(int(digits[i : i + 2], 16) for i in range(0, 12, 2))
    return msb_first[::-1]


def nameplate_from_address(address: bytes) -> str:
    return address[::-1].hex().upper()


# ------------------------------------------------------------------------------------------ frames


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode_frame(frame: Frame, *, preamble: bool = True) -> bytes:
    if len(frame.address) != 6:
        raise ValueError("address must be 6 bytes")
    if len(frame.data) > 200:
        raise ValueError("DATA longer than 200 bytes")
    data = bytes((b + OFFSET) & 0xFF for b in frame.data)
    body = bytes([START]) + frame.address + bytes([START, frame.control, len(data)]) + data
    return (PREAMBLE if preamble else b"") + body + bytes([checksum(body), END])


def read_request(address: bytes, di: int, *, preamble: bool = True) -> bytes:
    return encode_frame(Frame(address, CTRL_READ, di.to_bytes(4, "little")), preamble=preamble)


def parse_frame(buf: bytes) -> tuple[Frame | None, int]:
    """Find the first frame in ``buf``: ``(frame, bytes consumed)`` or ``(None, bytes safe to discard)``.

    Leading FE preamble bytes and any noise before a plausible ``68 …… 68`` header are skipped. Raises
    ``FrameError`` when a complete frame is present but its checksum or end byte is wrong.
    """
    i = 0
    n = len(buf)
    while i < n:
        if buf[i] != START:
            i += 1
            continue
        if n - i < 10:
            return None, i  # header incomplete: keep from here
        if buf[i + 7] != START:
            i += 1  # a 0x68 inside noise, not a header
            continue
        length = buf[i + 9]
        total = 12 + length
        if n - i < total:
            return None, i
        body = buf[i : i + 10 + length]
        cs, end = buf[i + 10 + length], buf[i + 11 + length]
        if end != END:
            raise FrameError(f"frame end byte is 0x{end:02X}, not 0x16")
        if checksum(body) != cs:
            raise FrameError(f"checksum 0x{cs:02X} does not match computed 0x{checksum(body):02X}")
        data = bytes((b - OFFSET) & 0xFF for b in body[10:])
        return Frame(bytes(body[1:7]), body[8], data), i + total
    return None, n


def read_reply(address: bytes, di: int, value: bytes, *, preamble: bool = True) -> bytes:
    return encode_frame(Frame(address, CTRL_READ_REPLY, di.to_bytes(4, "little") + value), preamble=preamble)


def error_reply(address: bytes, code: int, *, preamble: bool = True) -> bytes:
    return encode_frame(Frame(address, CTRL_READ_ERROR, bytes([code])), preamble=preamble)


def describe_error(code: int) -> str:
    names = [name for bit, name in ERROR_BITS.items() if code & bit]
    return ", ".join(names) or f"error 0x{code:02X}"


# ------------------------------------------------------------------------------------------ values


def decode_value(di: DataId, raw: bytes) -> int:
    """BCD (low byte first, optional sign in bit 7 of the top byte) → integer in ``di.unit``."""
    if len(raw) != di.nbytes:
        raise ValueFormatError(f"DI {di.di:08X} value has {len(raw)} bytes, expected {di.nbytes}")
    b = bytearray(raw)
    negative = False
    if di.signed and b[-1] & 0x80:
        negative = True
        b[-1] &= 0x7F
    digits = bytes(b[::-1]).hex()
    if not digits.isdigit():
        raise ValueFormatError(f"DI {di.di:08X} value {raw.hex(' ').upper()} is not BCD")
    v = round(int(digits) * di.factor)
    return -v if negative else v


def encode_value(di: DataId, value: int) -> bytes:
    """Inverse of ``decode_value`` (the simulators use it); saturates at the field's largest BCD number."""
    mag = round(Fraction(abs(value)) / di.factor)
    digits = 2 * di.nbytes
    top = 10**digits - 1
    if di.signed:
        top = 8 * 10 ** (digits - 1) - 1  # bit 7 of the top byte is the sign
    mag = min(mag, top)
    b = bytearray(bytes.fromhex(f"{mag:0{digits}d}")[::-1])
    if di.signed and value < 0 and mag:
        b[-1] |= 0x80
    return bytes(b)


# ------------------------------------------------------------------------------------------ the source


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Dlt645Link(SharedLink):
    """One TCP connection to a serial-to-TCP gateway; requests are serialised (it is one RS-485 line)."""

    def __init__(self, host: str, port: int, timeout: float = 2.0, *, preamble: bool = True) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.preamble = preamble
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.connects = 0
        self.users = 0
        """Sources attached; the last one to ``release`` closes the connection."""

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def _connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None and not self._writer.is_closing():
            return self._reader, self._writer
        self.drop()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
        except (TimeoutError, OSError) as exc:
            raise SourceError(f"dlt645 {self.where}: cannot connect: {exc or 'timeout'}") from exc
        self._reader, self._writer = reader, writer
        self.connects += 1
        return reader, writer

    def drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, address: bytes, di: int) -> Frame:
        """Send one read and return the meter's reply frame (any control code; the caller checks it)."""
        what = f"dlt645 {self.where} meter {nameplate_from_address(address)} DI {di:08X}"
        async with self._lock:
            reader, writer = await self._connected()
            try:
                writer.write(read_request(address, di, preamble=self.preamble))
                await writer.drain()
                buf = b""
                deadline = asyncio.get_running_loop().time() + self.timeout
                while True:
                    frame, used = parse_frame(buf)
                    buf = buf[used:]
                    if frame is not None:
                        if frame.control == CTRL_READ:
                            continue  # our own request echoed by a half-duplex converter
                        return frame
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        raise TimeoutError
                    chunk = await asyncio.wait_for(reader.read(512), left)
                    if not chunk:
                        raise SourceError(f"{what}: gateway closed the connection")
                    buf += chunk
            except asyncio.CancelledError:
                self.drop()  # the reply may still arrive: never let it meet the next request
                raise
            except TimeoutError as exc:
                self.drop()
                raise SourceError(f"{what}: no complete reply within {self.timeout:g} s") from exc
            except FrameError as exc:
                self.drop()
                raise SourceError(f"{what}: bad reply frame: {exc}") from exc
            except OSError as exc:
                self.drop()
                raise SourceError(f"{what}: {exc}") from exc
            except SourceError:
                self.drop()
                raise


class Dlt645Source:
    """``Source`` for one DL/T 645-2007 meter behind a serial-to-TCP gateway.

    ``address`` is the nameplate number (12 digits), 6 wire-order bytes, or ``"AAAAAAAAAAAA"`` for the only
    meter on a line. Each poll reads ``dis`` one after another; any failure fails the whole poll.
    """

    def __init__(
        self,
        device_handle: str,
        host: str,
        port: int,
        address: str | bytes,
        timeout: float = 2.0,
        *,
        dis: Sequence[int] = DEFAULT_DIS,
        link: Dlt645Link | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.device = device_handle
        if isinstance(address, bytes):
            if len(address) != 6:
                raise ValueError("address must be 6 bytes")
            self.address = address
        elif address.upper() == "AAAAAAAAAAAA":
            self.address = WILDCARD
        else:
            self.address = address_from_nameplate(address)
        unknown = [f"{d:08X}" for d in dis if d not in DATA_IDS]
        if unknown:
            raise ValueError(
                f"unsupported data identifiers {unknown}; known: {[f'{d:08X}' for d in DATA_IDS]}"
            )
        self.dis = tuple(DATA_IDS[d] for d in dis)
        if link is not None and (link.host, link.port) != (host, port):
            raise ValueError(f"link goes to {link.where}, not {host}:{port}")
        self.link = link if link is not None else Dlt645Link(host, port, timeout)
        self.link.attach()
        self._closed = False
        self._clock = clock
        self.polls = 0
        self.failures = 0

    async def _read(self, di: DataId) -> int:
        what = f"dlt645 {self.link.where} meter {nameplate_from_address(self.address)} DI {di.di:08X}"
        frame = await self.link.request(self.address, di.di)
        if self.address != WILDCARD and frame.address != self.address:
            self.link.drop()
            raise SourceError(f"{what}: reply from meter {nameplate_from_address(frame.address)}")
        if frame.control == CTRL_READ_ERROR:
            code = frame.data[0] if frame.data else 0
            raise SourceError(f"{what}: error reply 0x{code:02X} ({describe_error(code)})")
        if frame.control not in (CTRL_READ_REPLY, CTRL_READ_REPLY_MORE):
            raise SourceError(f"{what}: unexpected control code 0x{frame.control:02X}")
        if len(frame.data) < 4 or int.from_bytes(frame.data[:4], "little") != di.di:
            self.link.drop()  # an answer to some other request: the line is out of step
            raise SourceError(f"{what}: reply carries DI {frame.data[:4][::-1].hex().upper()}")
        try:
            return decode_value(di, frame.data[4:])
        except ValueFormatError as exc:
            raise SourceError(f"{what}: garbage value: {exc}") from exc

    async def poll(self) -> list[Sample]:
        self.polls += 1
        try:
            values = [(di, await self._read(di)) for di in self.dis]
        except SourceError:
            self.failures += 1
            raise
        ts = self._clock()
        return [Sample(di.quantity, v, di.unit, ts) for di, v in values]

    async def close(self) -> None:
        """Detach from the link; the connection closes when its last source is closed."""
        if not self._closed:
            self._closed = True
            await self.link.release()
