"""The Hohhot site's field devices, simulated: one Modbus TCP gateway and one DL/T 645 gateway on loopback.

``run_site_sims`` starts, on free ports unless told otherwise:

======================  ========  ===================  ========  =========================================
key                     protocol  profile / meter      unit/addr what it measures
======================  ========  ===================  ========  =========================================
``core_unit``           modbus    schneider_pm5xxx     1         core heating unit (electric boilers)
``pipe_heater``         modbus    acrel_dtsd1352       2         pipe heating unit (CT 600, PT 1)
``storage_tank``        modbus    acrel_adl400         3         thermal storage tank heaters
``pump_room``           modbus    eastron_sdm630       4         circulation pumps
``hx_temps``            modbus    hx_temp_4ch          10        plate heat exchanger, 4 × PT100
``heat_meter``          modbus    heat_meter_modbus    11        plate heat exchanger's heat meter (secondary)
``outdoor``             modbus    outdoor_temp_1ch     12        outdoor air temperature (the model's climate)
``controls``            dlt645    DL/T 645-2007        nameplate electrical control cabinet
======================  ========  ===================  ========  =========================================

All values come from one ``HeatingSiteModel`` driven by one clock, so the devices agree with each other
(Σ subsystem meters = the model's total; the heat exchanger warms when the heaters run). ``SiteSims.sources``
builds the matching ``Source`` objects for the agent or the demo. ``main`` is ``cemp sim modbus`` (it lives here,
not in ``modbus_sim``, which this module imports: no import cycle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from collector.dlt645 import Dlt645Source
from collector.loadmodel import CST, HeatingSiteModel, ModelClock, local_ms
from collector.modbus import ModbusLink, ModbusSource
from collector.sim.dlt645_sim import Dlt645GatewaySim, SimDltMeter
from collector.sim.feeds import Clock, HeatExchangerFeed, HeatMeterFeed, OutdoorTempFeed, SubsystemMeterFeed
from collector.sim.modbus_sim import ModbusMeterSim, meter
from collector.sources import Source

DEFAULT_HANDLES: dict[str, str] = {
    "core_unit": "88.123.45/101.1.1",
    "pipe_heater": "88.123.45/102.1.1",
    "storage_tank": "88.123.45/103.1.1",
    "pump_room": "88.123.45/104.1.1",
    "controls": "88.123.45/105.1.1",
    "hx_temps": "88.123.45/106.1.1",
    "heat_meter": "88.123.45/106.2.1",
    "outdoor": "88.123.45/107.1.1",
}
"""A suggestion only: the agent's configuration decides the real handles."""

CONTROLS_NAMEPLATE = "210987654321"
HEAT_START_WH = 3_141_592_000
"""The heat meter's register when the simulation starts (a meter in service since earlier seasons)."""

# meter readings on the day the simulation starts (Wh), so counters look like meters that have been in service
_START_WH = {
    "core_unit": 1_234_567_890,
    "pipe_heater": 98_765_000,
    "storage_tank": 456_789_000,
    "pump_room": 123_456_000,
    "controls": 9_876_540,
}
COUNTER_START_WH = _START_WH
"""Each subsystem meter's register when its counters start (``counters_since_ms``): history written for the demo's
meters before the simulators run starts from the same values."""


@dataclass(frozen=True, slots=True)
class SimEndpoint:
    key: str
    protocol: Literal["modbus", "dlt645"]
    host: str
    port: int
    unit_id: int | None
    """Modbus unit id (``None`` for DL/T 645)."""
    nameplate: str | None
    """DL/T 645 meter address (``None`` for Modbus)."""
    profile: str | None
    subsystem: str | None
    """Load-model subsystem the device measures (``None`` for the temperature module)."""


class SiteSims:
    def __init__(
        self,
        model: HeatingSiteModel,
        clock: Clock,
        modbus: ModbusMeterSim,
        dlt: Dlt645GatewaySim,
        endpoints: dict[str, SimEndpoint],
    ) -> None:
        self.model = model
        self.clock = clock
        self.modbus = modbus
        self.dlt645 = dlt
        self.endpoints = endpoints

    def sources(
        self, handles: Mapping[str, str] | None = None, *, timeout: float = 2.0, share_link: bool = True
    ) -> dict[str, Source]:
        """One source per device, keyed like ``endpoints``; samples are stamped with the simulation clock.

        With ``share_link`` the Modbus devices share one TCP connection to the gateway, as they would in the field.
        """
        names = {**DEFAULT_HANDLES, **(handles or {})}
        out: dict[str, Source] = {}
        link = ModbusLink(self.modbus.host, self.modbus.port, timeout) if share_link else None
        for key, ep in self.endpoints.items():
            if ep.protocol == "modbus":
                assert ep.unit_id is not None and ep.profile is not None
                out[key] = ModbusSource(
                    names[key],
                    ep.host,
                    ep.port,
                    ep.unit_id,
                    ep.profile,
                    timeout,
                    link=link,
                    clock=self.clock.now_ms,
                )
            else:
                assert ep.nameplate is not None
                out[key] = Dlt645Source(
                    names[key], ep.host, ep.port, ep.nameplate, timeout, clock=self.clock.now_ms
                )
        return out

    async def close(self) -> None:
        await self.modbus.stop()
        await self.dlt645.stop()

    async def __aenter__(self) -> SiteSims:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def run_site_sims(
    *,
    seed: int = 1,
    start_ms: int | None = None,
    speed: float = 1.0,
    clock: Clock | None = None,
    host: str = "127.0.0.1",
    modbus_port: int = 0,
    dlt645_port: int = 0,
    counters_since_ms: int | None = None,
) -> SiteSims:
    """Start the site's simulated devices; ``close()`` (or ``async with``) stops them.

    Model time starts at ``start_ms`` (default: 15 Jan 2025 08:00 CST, a cold heating day) and runs ``speed``
    times faster than the wall clock, unless a ``clock`` is given (tests pass a ``ManualClock``).

    The meters' energy registers held their commissioning readings at model time ``counters_since_ms`` (default:
    the start) and have counted the load model's energy since, as real meters do while nobody reads them. A
    simulation restarted with the same ``counters_since_ms`` therefore continues every counter, never goes back.
    """
    model = HeatingSiteModel(seed=seed)
    t0 = start_ms if start_ms is not None else local_ms(2025, 1, 15, 8, 0)
    clk: Clock = clock if clock is not None else ModelClock(t0, speed)
    t0 = clk.now_ms()
    since = t0 if counters_since_ms is None else min(counters_since_ms, t0)

    def feed(sub: str, i: int) -> SubsystemMeterFeed:
        return SubsystemMeterFeed(model, sub, since, _START_WH[sub], seed=seed * 100 + i, power_factor=0.98)

    modbus_plan = [
        ("core_unit", 1, "schneider_pm5xxx", {}),
        ("pipe_heater", 2, "acrel_dtsd1352", {"ct": 600, "pt": 1}),
        ("storage_tank", 3, "acrel_adl400", {}),
        ("pump_room", 4, "eastron_sdm630", {}),
    ]
    meters = [meter(uid, prof, feed(key, uid), **ratios) for key, uid, prof, ratios in modbus_plan]
    meters.append(meter(10, "hx_temp_4ch", HeatExchangerFeed(model)))
    meters.append(meter(11, "heat_meter_modbus", HeatMeterFeed(model, since, HEAT_START_WH)))
    meters.append(meter(12, "outdoor_temp_1ch", OutdoorTempFeed(model)))
    msim = ModbusMeterSim(meters, host=host, port=modbus_port, clock=clk)
    dsim = Dlt645GatewaySim(
        [SimDltMeter(CONTROLS_NAMEPLATE, feed("controls", 5))], host=host, port=dlt645_port, clock=clk
    )
    await msim.start()
    try:
        await dsim.start()
    except BaseException:
        await msim.stop()
        raise
    eps: dict[str, SimEndpoint] = {
        key: SimEndpoint(
            key, "modbus", host, msim.port, unit_id=uid, nameplate=None, profile=prof, subsystem=key
        )
        for key, uid, prof, _ in modbus_plan
    }
    eps["hx_temps"] = SimEndpoint(
        "hx_temps",
        "modbus",
        host,
        msim.port,
        unit_id=10,
        nameplate=None,
        profile="hx_temp_4ch",
        subsystem=None,
    )
    eps["heat_meter"] = SimEndpoint(
        "heat_meter",
        "modbus",
        host,
        msim.port,
        unit_id=11,
        nameplate=None,
        profile="heat_meter_modbus",
        subsystem=None,
    )
    eps["outdoor"] = SimEndpoint(
        "outdoor",
        "modbus",
        host,
        msim.port,
        unit_id=12,
        nameplate=None,
        profile="outdoor_temp_1ch",
        subsystem=None,
    )
    eps["controls"] = SimEndpoint(
        "controls",
        "dlt645",
        host,
        dsim.port,
        unit_id=None,
        nameplate=CONTROLS_NAMEPLATE,
        profile=None,
        subsystem="controls",
    )
    return SiteSims(model, clk, msim, dsim, eps)


# --------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``cemp sim modbus``: run the site's simulated devices (Modbus gateway + DL/T 645 gateway) until stopped.

    Prints one JSON line with every device's endpoint, then serves until Ctrl-C or ``--duration`` seconds.
    """
    p = argparse.ArgumentParser(prog="cemp sim modbus", description=main.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5020, help="Modbus TCP port (0 = any free port)")
    p.add_argument("--dlt645-port", type=int, default=0, help="DL/T 645 gateway port (0 = any free port)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed", type=float, default=1.0, help="model seconds per wall second")
    p.add_argument("--start", default="2025-01-15T08:00", help="model start, local time (CST)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    rest = list(sys.argv[1:] if argv is None else argv)
    if rest[:1] == ["--"]:
        rest = rest[1:]  # `cemp sim modbus -- --port 0`: argparse REMAINDER keeps the separator
    args = p.parse_args(rest)
    start = datetime.fromisoformat(args.start).replace(tzinfo=CST)

    async def serve() -> None:
        site = await run_site_sims(
            seed=args.seed,
            start_ms=int(start.timestamp() * 1000),
            speed=args.speed,
            host=args.host,
            modbus_port=args.port,
            dlt645_port=args.dlt645_port,
        )
        async with site:
            devices = {
                k: {key: val for key, val in vars_of(ep).items() if val is not None}
                for k, ep in site.endpoints.items()
            }
            print(
                json.dumps(
                    {
                        "modbus": list(site.modbus.address),
                        "dlt645": list(site.dlt645.address),
                        "devices": devices,
                    }
                )
            )
            sys.stdout.flush()
            if args.duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(args.duration)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}
