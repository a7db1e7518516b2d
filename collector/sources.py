"""The seam between where data comes from and the signing agent.

A ``Source`` belongs to one device handle and, when polled, returns ``Sample``s: integer values in base
units with the time they were taken. Sources never sign and never drop data: a device that answers with an
error raises ``SourceError`` (the agent records it as a flagged gap), a value that looks wrong is still
returned, with quality flags set by ``collector.quality``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Sample:
    quantity: str
    """e.g. ``energy.import`` (counter), ``power``, ``voltage.l1``, ``temp.supply``."""
    value: int
    """Integer in ``unit`` (Wh, W, mV, mA, mdegC, mHz, L/h, fen ...)."""
    unit: str
    ts_ms: int
    """When the value was taken (the agent's clock unless the device time-stamps it)."""
    flags: int = 0
    """``node.readings.Flag`` bits."""


class SourceError(Exception):
    """The device could not be read this time (timeout, exception response, garbage)."""


class Source(Protocol):
    device: str
    """Handle of the device this source reads, e.g. ``88.123.45/101.1.1``."""

    async def poll(self) -> list[Sample]: ...

    async def close(self) -> None: ...


class SharedLink:
    """A connection several sources share (meters behind one gateway); closed when its last user releases it.

    Subclasses set ``_lock`` (an ``asyncio.Lock`` serialising requests) and ``users``, and implement ``drop()``.
    """

    _lock: asyncio.Lock
    users: int

    def drop(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        async with self._lock:
            self.drop()

    def attach(self) -> None:
        self.users += 1

    async def release(self) -> None:
        self.users = max(0, self.users - 1)
        if self.users == 0:
            await self.close()
