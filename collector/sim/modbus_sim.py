"""Simulated Modbus TCP meters: pymodbus 3.16 ``SimDevice``/``SimData`` served by ``ModbusTcpServer``.

One ``ModbusMeterSim`` is one TCP endpoint (a meter, or a gateway with up to 247 unit ids behind it). Each unit id
serves a profile's register map. Registers are filled lazily: the device's ``action`` hook runs on every read,
asks the meter's feed for the values at the clock's current model time and writes the profile's encoding of
them into the register block (``Profile.encode`` — the very tables the source decodes with). Nothing runs between
reads, which is why a thousand idle meters cost almost nothing.

Fault injection per unit id, for the next ``times`` requests or until ``clear_faults``:
- ``EXCEPTION``: a Modbus exception response with ``exception_code``;
- ``NO_RESPONSE``: the answer is held back ``delay_s`` (longer than the client's timeout);
- ``GARBAGE``: floats read NaN, signed integers their largest value (the int16 "sensor open" code), unsigned
  all ones;
- ``SHORT``: the response carries one register fewer than asked for.
Counter events: ``replace_meter`` (a new meter: counters restart at ``start_wh``) and ``preset_rollover`` (put
an integer counter just below its wrap point so it rolls over on its own).

Unit ids nobody configured answer exception 0x0B (gateway target failed to respond), as a real gateway does,
within the address range the served profiles use.
Invariant: ``presented(unit)`` is exactly what a correct client decodes from the most recent read of that unit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from types import TracebackType
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from collector.loadmodel import ModelClock
from collector.profiles import Profile, ReadBlock, encode_value, load_profile, ratio_multiplier
from collector.sim.faults import Countdown
from collector.sim.feeds import Clock, Feed, StaticFeed


class Fault(Enum):
    EXCEPTION = "exception"
    NO_RESPONSE = "no_response"
    GARBAGE = "garbage"
    SHORT = "short"


@dataclass
class _ActiveFault(Countdown):
    kind: Fault
    times: int | None
    exception_code: int
    delay_s: float


@dataclass
class SimMeter:
    """One simulated device behind the endpoint."""

    unit_id: int
    profile: Profile
    feed: Feed = field(default_factory=StaticFeed)
    ratios: dict[str, int] = field(default_factory=dict)
    """PT/CT values the device stores in its ratio registers (profiles without ratios ignore them)."""
    overrides: dict[str, int] = field(default_factory=dict)
    counter_offset_wh: dict[str, int] = field(default_factory=dict)
    fault: _ActiveFault | None = None
    reads: int = 0
    last_values: dict[str, int] = field(default_factory=dict)
    last_image: dict[int, int] = field(default_factory=dict)

    def values_at(self, ts_ms: int) -> dict[str, int]:
        v = self.feed.values(ts_ms)
        v.update(self.overrides)
        for q, off in self.counter_offset_wh.items():
            v[q] = v.get(q, 0) + off
        return v


def meter(unit_id: int, profile: Profile | str, feed: Feed | None = None, **ratios: int) -> SimMeter:
    """Shorthand: ``meter(2, "acrel_dtsd1352", feed, ct=600, pt=1)``."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    return SimMeter(unit_id, prof, feed if feed is not None else StaticFeed(), dict(ratios))


class ModbusMeterSim:
    """A Modbus TCP endpoint serving ``meters`` (distinct unit ids 1..247) on ``host:port`` (0 = pick a free port)."""

    def __init__(
        self,
        meters: Sequence[SimMeter],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        ids = [m.unit_id for m in meters]
        if not ids or len(set(ids)) != len(ids) or not all(1 <= i <= 247 for i in ids):
            raise ValueError(f"need at least one meter; unit ids distinct and within 1..247, got {ids}")
        self.meters: dict[int, SimMeter] = {m.unit_id: m for m in meters}
        self.host = host
        self.port = port
        self.clock: Clock = clock if clock is not None else ModelClock()
        self._server: ModbusTcpServer | None = None
        self._closing = asyncio.Event()
        self.requests = 0

    # ----------------------------------------------------------------------------- lifecycle

    def _devices(self) -> list[SimDevice]:
        devices = []
        for m in self.meters.values():
            simdata = [
                SimData(b.start, count=b.count, values=0, datatype=DataType.REGISTERS)
                for b in m.profile.plan()
            ]
            devices.append(SimDevice(m.unit_id, simdata=simdata, action=self._action_for(m)))
        # Id 0 catches every unit id nobody configured. It spans only the addresses the served profiles use
        # (a 64 K-register catch-all costs ~1 MB per endpoint); reads elsewhere get exception 02 instead.
        blocks = [b for m in self.meters.values() for b in m.profile.plan()]
        lo, hi = min(b.start for b in blocks), max(b.end for b in blocks)
        catch_all = SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)
        devices.append(SimDevice(0, simdata=[catch_all], action=_no_target))
        return devices

    async def start(self) -> ModbusMeterSim:
        if self._server is not None:
            raise RuntimeError("already started")
        self._closing.clear()
        server = ModbusTcpServer(self._devices(), address=(self.host, self.port), trace_pdu=self._trace_pdu)
        await server.serve_forever(background=True)
        self._server = server
        if self.port == 0:
            listener: Any = server.transport  # an asyncio.Server once listening
            self.port = listener.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._closing.set()  # releases requests held back by NO_RESPONSE
        if self._server is not None:
            server: Any = self._server
            await server.shutdown()
            self._server = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> ModbusMeterSim:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # ----------------------------------------------------------------------------- serving

    def _action_for(self, m: SimMeter) -> Any:
        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return await self._serve(m, function_code, start_address, address, count, registers, set_values)

        return action

    async def _serve(
        self,
        m: SimMeter,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # meters here are read-only
        if function_code != m.profile.function_code:
            return ExcCodes.ILLEGAL_FUNCTION
        f = m.fault
        if f is not None and f.kind in (Fault.EXCEPTION, Fault.NO_RESPONSE) and f.consume():
            if f.kind == Fault.EXCEPTION:
                return ExcCodes(f.exception_code)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(f.delay_s):  # not wait_for: on 3.11 it can swallow a cancel
                    await self._closing.wait()
            return ExcCodes.DEVICE_BUSY  # only ever sent after the client gave up
        m.reads += 1
        values = m.values_at(self.clock.now_ms())
        image = m.profile.encode(values, m.ratios)
        m.last_values, m.last_image = values, image
        for a, w in image.items():
            registers[a - start_address] = w
        if f is not None and f.kind == Fault.GARBAGE and f.consume():
            for a, w in _garbage_image(m.profile).items():
                if address <= a < address + count:
                    registers[a - start_address] = w
        return None

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            return pdu
        m = self.meters.get(getattr(pdu, "dev_id", -1))
        regs = getattr(pdu, "registers", None)
        if (
            m is not None
            and m.fault is not None
            and m.fault.kind == Fault.SHORT
            and regs
            and m.fault.consume()
        ):
            pdu.registers = regs[:-1]
        return pdu

    # ----------------------------------------------------------------------------- test controls

    def inject(
        self,
        unit_id: int,
        fault: Fault,
        *,
        times: int | None = None,
        exception_code: int = int(ExcCodes.DEVICE_FAILURE),
        delay_s: float = 5.0,
    ) -> None:
        """Make ``unit_id`` misbehave for the next ``times`` requests (``None``: until ``clear_faults``)."""
        ExcCodes(exception_code)  # validates
        self.meters[unit_id].fault = _ActiveFault(fault, times, exception_code, delay_s)

    def clear_faults(self, unit_id: int | None = None) -> None:
        for m in self.meters.values() if unit_id is None else [self.meters[unit_id]]:
            m.fault = None

    def set_values(self, unit_id: int, values: Mapping[str, int]) -> None:
        """Pin quantities to fixed base-unit values (overriding the feed) until ``clear_values``."""
        m = self.meters[unit_id]
        unknown = set(values) - set(m.profile.quantities)
        if unknown:
            raise KeyError(f"profile {m.profile.name} has no {sorted(unknown)}")
        m.overrides.update(values)

    def clear_values(self, unit_id: int) -> None:
        self.meters[unit_id].overrides.clear()

    def replace_meter(self, unit_id: int, start_wh: int = 0) -> None:
        """A new meter is fitted: every counter now reads ``start_wh`` and counts on from there."""
        m = self.meters[unit_id]
        raw = m.feed.values(self.clock.now_ms())
        for r in m.profile.registers:
            if r.counter:
                m.counter_offset_wh[r.quantity] = start_wh - raw.get(r.quantity, 0)

    def preset_rollover(self, unit_id: int, quantity: str = "energy.import", below_wh: int = 1_000) -> int:
        """Set an unsigned integer counter ``below_wh`` under its wrap point; returns the wrap value (Wh)."""
        m = self.meters[unit_id]
        spec = m.profile.register(quantity)
        ratio = ratio_multiplier(spec.ratio, {k: Fraction(v) for k, v in m.ratios.items()}, default=1)
        wrap = spec.wrap_base(ratio)
        if wrap is None:
            raise ValueError(f"{m.profile.name} {quantity} is not an unsigned integer counter")
        raw = m.feed.values(self.clock.now_ms()).get(quantity, 0)
        m.counter_offset_wh[quantity] = wrap - below_wh - raw
        return wrap

    def presented(self, unit_id: int) -> dict[str, int]:
        """Values (base units) a correct client decodes from the latest read of ``unit_id``."""
        m = self.meters[unit_id]
        reads: list[tuple[ReadBlock, list[int]]] = [
            (b, [m.last_image.get(a, 0) for a in range(b.start, b.end)]) for b in m.profile.plan()
        ]
        return {d.quantity: d.value for d in m.profile.decode(reads)}


async def _no_target(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _garbage_image(profile: Profile) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in profile.registers:
        bits = 16 * r.words
        raw: float | int
        if r.is_float:
            raw = float("nan")
        elif r.dtype.startswith("int"):
            raw = 2 ** (bits - 1) - 1  # e.g. 0x7FFF: +3276.7 degC, the "probe open" code of PT100 modules
        else:
            raw = 2**bits - 1
        words = encode_value(raw, r.dtype, r.word_order, r.byte_order)
        out.update(zip(range(r.address, r.address + r.words), words, strict=True))
    return out
