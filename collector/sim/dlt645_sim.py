"""A simulated serial-to-TCP gateway with DL/T 645-2007 meters on its RS-485 line.

An asyncio TCP server: every request frame received on a connection is answered (or not) by the meter it
addresses, exactly as on a shared bus: unknown addresses stay silent, ``AA×6`` is answered only when a single
meter is on the line, an unknown data identifier gets error reply 0xD1 with "no requested data". Values come
from the meter's feed at the clock's current model time, encoded with ``collector.dlt645.encode_value`` (the
same table the source decodes with).

Faults per meter, for the next ``times`` requests or until cleared: ``NO_RESPONSE`` (silence), ``BAD_CHECKSUM``,
``ERROR_REPLY`` (0xD1 with ``error_code``), ``GARBAGE`` (non-BCD digits in the value), ``PARTIAL`` (half a frame,
then silence), ``WRONG_ADDRESS`` (another meter's address in the reply). ``split_replies`` sends each reply in two
TCP segments to exercise client-side reassembly.

Every connection handler task is owned by the simulator; ``stop`` closes its connection and awaits it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any

from collector import dlt645
from collector.loadmodel import ModelClock
from collector.sim.faults import Countdown
from collector.sim.feeds import Clock, Feed, StaticFeed


class DltFault(Enum):
    NO_RESPONSE = "no_response"
    BAD_CHECKSUM = "bad_checksum"
    ERROR_REPLY = "error_reply"
    GARBAGE = "garbage"
    PARTIAL = "partial"
    WRONG_ADDRESS = "wrong_address"


@dataclass
class _Fault(Countdown):
    kind: DltFault
    times: int | None
    error_code: int


@dataclass
class SimDltMeter:
    nameplate: str
    """12-digit address as printed on the meter."""
    feed: Feed = field(default_factory=StaticFeed)
    overrides: dict[str, int] = field(default_factory=dict)
    fault: _Fault | None = None
    requests: int = 0

    @property
    def address(self) -> bytes:
        return dlt645.address_from_nameplate(self.nameplate)


class Dlt645GatewaySim:
    def __init__(
        self,
        meters: Sequence[SimDltMeter],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        preamble: bool = True,
        split_replies: bool = False,
    ) -> None:
        self.meters: dict[bytes, SimDltMeter] = {m.address: m for m in meters}
        if len(self.meters) != len(meters):
            raise ValueError("meter addresses must be distinct")
        self.host = host
        self.port = port
        self.clock: Clock = clock if clock is not None else ModelClock()
        self.preamble = preamble
        self.split_replies = split_replies
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self.frames_in = 0

    async def start(self) -> Dlt645GatewaySim:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing a connection's transport makes its handler read EOF and return on its own; cancelling the
        # handler instead would make asyncio's stream callback log the CancelledError.
        for w in self._conns.values():
            w.transport.abort()
        tasks = list(self._conns)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=2.0)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Dlt645GatewaySim:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # ----------------------------------------------------------------------------- serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        buf = b""
        try:
            while True:
                chunk = await reader.read(512)
                if not chunk:
                    return
                buf += chunk
                while True:
                    try:
                        frame, used = dlt645.parse_frame(buf)
                    except dlt645.FrameError:
                        buf = b""  # a meter ignores a corrupt frame
                        break
                    buf = buf[used:]
                    if frame is None:
                        break
                    self.frames_in += 1
                    reply = self._answer(frame)
                    if reply:
                        if self.split_replies and len(reply) > 4:
                            writer.write(reply[:5])
                            await writer.drain()
                            await asyncio.sleep(0.01)
                            reply = reply[5:]
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.pop(task, None)
            writer.close()

    def _answer(self, frame: dlt645.Frame) -> bytes | None:
        if frame.control != dlt645.CTRL_READ or len(frame.data) < 4:
            return None
        if frame.address == dlt645.WILDCARD:
            if len(self.meters) != 1:
                return None  # every meter would answer at once: a collision, nothing readable
            m = next(iter(self.meters.values()))
        else:
            found = self.meters.get(frame.address)
            if found is None:
                return None
            m = found
        m.requests += 1
        reply_addr = m.address
        di_code = int.from_bytes(frame.data[:4], "little")
        pre = self.preamble
        kind = m.fault.kind if m.fault is not None and m.fault.consume() else None
        if kind == DltFault.NO_RESPONSE:
            return None
        if kind == DltFault.ERROR_REPLY:
            assert m.fault is not None
            return dlt645.error_reply(reply_addr, m.fault.error_code, preamble=pre)
        if kind == DltFault.WRONG_ADDRESS:
            reply_addr = bytes((b + 1) & 0xFF for b in reply_addr)
        di = dlt645.DATA_IDS.get(di_code)
        if di is None:
            return dlt645.error_reply(reply_addr, 0x02, preamble=pre)
        values = m.feed.values(self.clock.now_ms())
        values.update(m.overrides)
        value = dlt645.encode_value(di, values.get(di.quantity, 0))
        if kind == DltFault.GARBAGE:
            value = b"\xab" * len(value)
        reply = dlt645.read_reply(reply_addr, di_code, value, preamble=pre)
        if kind == DltFault.BAD_CHECKSUM:
            reply = reply[:-2] + bytes([(reply[-2] + 1) & 0xFF]) + reply[-1:]
        if kind == DltFault.PARTIAL:
            reply = reply[: len(reply) // 2]
        return reply

    # ----------------------------------------------------------------------------- test controls

    def _meter(self, nameplate: str) -> SimDltMeter:
        return self.meters[dlt645.address_from_nameplate(nameplate)]

    def inject(
        self, nameplate: str, fault: DltFault, *, times: int | None = None, error_code: int = 0x02
    ) -> None:
        self._meter(nameplate).fault = _Fault(fault, times, error_code)

    def clear_faults(self) -> None:
        for m in self.meters.values():
            m.fault = None

    def set_values(self, nameplate: str, values: Mapping[str, int]) -> None:
        self._meter(nameplate).overrides.update(values)
