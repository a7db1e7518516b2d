"""An asyncio event loop on virtual time: the whole-node simulator's fake clock.

``loop.time()`` is a number the loop advances itself: whenever nothing is ready to run, it jumps straight to
the earliest scheduled timer instead of sleeping. Everything the nodes do (ticks, timeouts, network delays,
fsync latencies) is a timer, so a simulated minute takes as long as the work in it. With no threads and no
real I/O, callbacks run in an order fixed by the program alone, so one seed gives one history.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

RESOLUTION = 1e-9


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is scheduled: every task waits for something that cannot happen."""


class _NoIOSelector(selectors.BaseSelector):
    """Accepts registrations (the loop's self-pipe) but never reports I/O; ``select`` advances virtual time."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(
            fileobj, fileobj if isinstance(fileobj, int) else fileobj.fileno(), events, data
        )
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.unregister(fileobj)
        return self.register(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("no task can make progress and no timer is scheduled")
        # Jump exactly onto the earliest timer when it is due (the loop fires timers up to one clock resolution
        # early): ``now + (when - now)`` can round to just below ``when``, and code that compares the clock
        # with its own deadline would then wait again, for a zero interval, forever.
        target = self._loop.now + max(timeout, 0.0)
        scheduled = self._loop._scheduled  # type: ignore[attr-defined]
        if scheduled and scheduled[0]._when <= target + RESOLUTION:
            target = max(target, scheduled[0]._when)
        self._loop.now = target
        return []

    def get_map(self) -> Any:
        return self._map

    def close(self) -> None:
        self._map.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        super().__init__(_NoIOSelector(self))  # type: ignore[arg-type]
        self._clock_resolution = RESOLUTION

    def time(self) -> float:
        return self.now


__all__ = ["Deadlock", "VirtualTimeLoop"]
