"""Many simulated meters at once, for benchmarks: N Modbus meters spread over a few endpoints, plus their sources.

Meter ``i`` measures a share of load-model subsystem ``SUBSYSTEMS[i % 5]`` (the shares of one subsystem add up
to the whole), so the fleet's total equals the site's. Endpoints serve up to ``per_server`` unit ids each (a
gateway per RS-485 line); with ``share_links`` all sources of an endpoint share one TCP connection.

Measured on the 2-core test machine (``python -m collector.sim.bench``, other work running alongside): 1,000
meters on 5 endpoints start in < 0.1 s, and one process serving and polling all of them (one 76-register read +
decode per poll) manages ≈1,300–2,000 polls/s at ≈55–75 MB RSS; 1,000 endpoints of one meter each start in
≈0.4 s and poll at ≈1,200/s; 5,000 meters on 21 endpoints ≈1,450 polls/s at 122 MB.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from collector.loadmodel import SUBSYSTEMS, HeatingSiteModel, ModelClock, local_ms
from collector.modbus import ModbusLink, ModbusSource
from collector.profiles import load_profile
from collector.sim.feeds import SubsystemMeterFeed
from collector.sim.modbus_sim import ModbusMeterSim, SimMeter
from collector.sources import Sample, Source


class MeterFleet:
    def __init__(
        self,
        count: int,
        *,
        per_server: int = 200,
        profile: str = "eastron_sdm630",
        seed: int = 1,
        start_ms: int | None = None,
        speed: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        if count < 1 or not 1 <= per_server <= 247:
            raise ValueError("need count >= 1 and 1 <= per_server <= 247")
        self.count = count
        self.per_server = per_server
        self.profile = load_profile(profile)
        self.model = HeatingSiteModel(seed=seed)
        self.clock = ModelClock(start_ms if start_ms is not None else local_ms(2025, 1, 15, 8, 0), speed)
        self.host = host
        self.sims: list[ModbusMeterSim] = []

    def endpoint_of(self, i: int) -> tuple[int, int]:
        """(endpoint index, unit id) of meter ``i``."""
        return i // self.per_server, i % self.per_server + 1

    async def start(self) -> list[tuple[str, int, int]]:
        """Start every endpoint; returns (host, port, unit id) per meter."""
        t0 = self.clock.now_ms()
        per_sub = [len(range(k, self.count, len(SUBSYSTEMS))) for k in range(len(SUBSYSTEMS))]
        try:
            for s in range(math.ceil(self.count / self.per_server)):
                meters = []
                for i in range(s * self.per_server, min(self.count, (s + 1) * self.per_server)):
                    k = i % len(SUBSYSTEMS)
                    feed = SubsystemMeterFeed(
                        self.model, SUBSYSTEMS[k], t0, 1_000_000 * (i + 1), share=1 / per_sub[k], seed=i
                    )
                    meters.append(SimMeter(self.endpoint_of(i)[1], self.profile, feed))
                self.sims.append(await ModbusMeterSim(meters, host=self.host, clock=self.clock).start())
        except BaseException:
            await self.close()
            raise
        return [(self.host, self.sims[e].port, uid) for e, uid in map(self.endpoint_of, range(self.count))]

    def sources(
        self, handles: Sequence[str], *, timeout: float = 5.0, share_links: bool = True
    ) -> list[ModbusSource]:
        if len(handles) != self.count or not self.sims:
            raise ValueError("start() first, with one handle per meter")
        links = [ModbusLink(self.host, s.port, timeout) for s in self.sims] if share_links else None
        out = []
        for i, h in enumerate(handles):
            e, uid = self.endpoint_of(i)
            out.append(
                ModbusSource(
                    h,
                    self.host,
                    self.sims[e].port,
                    uid,
                    self.profile,
                    timeout,
                    link=links[e] if links else None,
                )
            )
        return out

    async def close(self) -> None:
        for s in self.sims:
            await s.stop()
        self.sims = []


class _Deferred:
    """A source whose real source exists once the fleet has started (for callers that cannot await)."""

    def __init__(self, device: str, ready: asyncio.Task[list[ModbusSource]], index: int) -> None:
        self.device = device
        self._ready = ready
        self._index = index

    async def poll(self) -> list[Sample]:
        return await (await asyncio.shield(self._ready))[self._index].poll()

    async def close(self) -> None:
        if self._ready.done() and not self._ready.cancelled() and self._ready.exception() is None:
            await self._ready.result()[self._index].close()


def bench_sources(
    handles: Sequence[str], **fleet_args: Any
) -> tuple[list[Source], Callable[[], Awaitable[None]]]:
    """Sources for ``handles`` backed by a ``MeterFleet`` (call from inside a running event loop).

    The fleet starts in a task owned by the returned ``close``; polls wait for it. ``close()`` closes the sources
    and stops the simulators.
    """
    fleet = MeterFleet(len(handles), **fleet_args)

    async def start() -> list[ModbusSource]:
        await fleet.start()
        return fleet.sources(handles)

    ready = asyncio.get_running_loop().create_task(start())
    deferred: list[Source] = [_Deferred(h, ready, i) for i, h in enumerate(handles)]

    async def close() -> None:
        if not ready.done():
            ready.cancel()
        try:
            sources = await ready
        except (asyncio.CancelledError, Exception):
            sources = []
        for s in sources:
            await s.close()
        await fleet.close()

    return deferred, close
