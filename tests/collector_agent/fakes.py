"""Small deterministic sources for the agent tests (and the ``python`` source type in crash tests)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from collector.sources import Sample, SourceError


class CounterSource:
    """An energy counter rising by ``step`` Wh per poll, plus power; can be told to fail."""

    def __init__(
        self, device: str, start: int = 1000, step: int = 7, clock: Callable[[], float] = time.time
    ) -> None:
        self.device = device
        self.value = start
        self.step = step
        self.clock = clock
        self.fail = 0
        self.polls = 0
        self.closed = False

    async def poll(self) -> list[Sample]:
        self.polls += 1
        if self.fail > 0:
            self.fail -= 1
            raise SourceError("simulated timeout")
        self.value += self.step
        ts = int(self.clock() * 1000)
        return [Sample("energy.import", self.value, "Wh", ts), Sample("power", 1500, "W", ts)]

    async def close(self) -> None:
        self.closed = True


class ScriptedSource:
    """Returns the scripted polls in order: a list of samples, or an exception to raise."""

    def __init__(self, device: str, script: list[list[Sample] | Exception]) -> None:
        self.device = device
        self.script = list(script)
        self.stored: list[Sample] = []
        self.backfill_calls: list[tuple[int, int]] = []

    async def poll(self) -> list[Sample]:
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        pass


class BackfillingSource(ScriptedSource):
    """A scripted meter that also keeps its counter history (``stored``) and hands it out on request."""

    async def backfill(self, since_ms: int, until_ms: int) -> list[Sample]:
        self.backfill_calls.append((since_ms, until_ms))
        return [s for s in self.stored if since_ms < s.ts_ms < until_ms]


class MonotonicSource:
    """Value = microseconds since the epoch: unique and rising across agent restarts (crash tests)."""

    def __init__(self, device: str) -> None:
        self.device = device

    async def poll(self) -> list[Sample]:
        now_us = time.time_ns() // 1000
        return [Sample("energy.import", now_us, "Wh", now_us // 1000)]

    async def close(self) -> None:
        pass


def make_monotonic(handle: str, table: Mapping[str, Any], base: Path) -> MonotonicSource:
    return MonotonicSource(handle)
