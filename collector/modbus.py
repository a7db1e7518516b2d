"""Modbus TCP source: polls one device (unit id) through pymodbus 3.16 and returns integer samples.

``ModbusSource`` reads the blocks its profile plans (``Profile.plan``: as few requests as the device allows),
decodes them with the profile's codec and stamps every sample of one poll with one agent-clock time taken when
the last block arrived.

Failure rules (the ``Source`` contract: never drop data silently, never invent it):
- connect failure, no response within ``timeout``, exception response (codes named in the message), a response
  with fewer registers than asked for, or garbage values (NaN/inf/outside the profile's plausible range, see
  ``collector.profiles``) → ``SourceError`` for the whole poll; no partial sample list is ever returned.
- After a transport failure (connect, timeout, short or mismatched answer) the TCP connection is dropped and the
  next poll opens a fresh one, so a late answer to an old request can never be taken for a new one. Exception
  responses and garbage keep the connection (the device spoke the protocol correctly).
- pymodbus's own background reconnect is disabled (``reconnect_delay=0``): reconnecting is the next poll's job,
  which keeps every task owned by the caller.

Several sources can share one ``ModbusLink`` (one TCP connection to a gateway with many unit ids behind it, as
RS-485 meters usually are); requests on a link are serialised, as on the bus.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from collector.profiles import GarbageError, Profile, ReadBlock, load_profile
from collector.sources import Sample, SharedLink, SourceError

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ModbusLink(SharedLink):
    """One Modbus TCP connection (to a meter or a gateway), opened on demand and dropped after transport errors."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()
        self.connects = 0
        """How many TCP connections this link has opened (1 + reconnects)."""
        self.users = 0
        """Sources attached; the last one to ``release`` closes the connection."""

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.drop()
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout, retries=0, reconnect_delay=0
        )
        ok = await client.connect()
        if not ok:
            client.close()
            raise SourceError(f"modbus {self.where}: cannot connect within {self.timeout:g} s")
        self._client = client
        self.connects += 1
        return client

    def drop(self) -> None:
        """Close the connection; the next read opens a new one."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, function_code: int, block: ReadBlock, unit_id: int) -> list[int]:
        """Read ``block`` with FC03/FC04; exactly ``block.count`` words or ``SourceError``."""
        what = f"modbus {self.where} unit {unit_id} FC{function_code:02d} 0x{block.start:04X}+{block.count}"
        async with self._lock:
            client = await self._connected()
            call = client.read_holding_registers if function_code == 3 else client.read_input_registers
            try:
                # pymodbus enforces `timeout` per request; the outer bound only guards against a hang inside it.
                rr: Any = await asyncio.wait_for(
                    call(block.start, count=block.count, device_id=unit_id), self.timeout + 1.0
                )
            except asyncio.CancelledError:
                self.drop()  # the request is still in flight: its answer must not meet the next request
                raise
            except (TimeoutError, ModbusException, OSError) as exc:
                self.drop()
                if "No response" in str(exc) or isinstance(exc, TimeoutError):
                    raise SourceError(f"{what}: no response within {self.timeout:g} s") from exc
                raise SourceError(f"{what}: {exc}") from exc
            if rr.isError():
                code = getattr(rr, "exception_code", None)
                name = EXCEPTION_NAMES.get(code, "unknown exception") if isinstance(code, int) else "error"
                raise SourceError(f"{what}: exception response {code} ({name})")
            regs = list(getattr(rr, "registers", None) or [])
            if len(regs) != block.count:
                self.drop()
                raise SourceError(f"{what}: short response, {len(regs)} of {block.count} registers")
            return regs


class ModbusSource:
    """``Source`` for one Modbus TCP device (or one unit id behind a gateway) described by a profile."""

    def __init__(
        self,
        device_handle: str,
        host: str,
        port: int,
        unit_id: int,
        profile: Profile | str,
        timeout: float = 2.0,
        *,
        link: ModbusLink | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if not 0 <= unit_id <= 255:
            raise ValueError(f"unit id {unit_id} is outside 0..255")
        self.device = device_handle
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.unit_id = unit_id
        if link is not None and (link.host, link.port) != (host, port):
            raise ValueError(f"link goes to {link.where}, not {host}:{port}")
        self.link = link if link is not None else ModbusLink(host, port, timeout)
        self.link.attach()
        self._closed = False
        self._plan = self.profile.plan()
        self._clock = clock
        self.polls = 0
        self.failures = 0

    async def poll(self) -> list[Sample]:
        self.polls += 1
        try:
            reads: list[tuple[ReadBlock, list[int]]] = []
            for block in self._plan:
                reads.append((block, await self.link.read(self.profile.function_code, block, self.unit_id)))
            ts = self._clock()
            try:
                decoded = self.profile.decode(reads)
            except GarbageError as exc:
                raise SourceError(
                    f"modbus {self.link.where} unit {self.unit_id} ({self.profile.name}): garbage values: {exc}"
                ) from exc
        except SourceError:
            self.failures += 1
            raise
        return [Sample(d.quantity, d.value, d.unit, ts) for d in decoded]

    async def close(self) -> None:
        """Detach from the link; the connection closes when its last source is closed."""
        if not self._closed:
            self._closed = True
            await self.link.release()
