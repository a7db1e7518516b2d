"""Simulators that imitate the site's field devices, for tests and the demo.

- ``ModbusMeterSim``: Modbus TCP meters/modules (pymodbus ``SimDevice`` + ``ModbusTcpServer``) serving the
  register maps in ``collector/device_profiles``, with fault injection.
- ``Dlt645GatewaySim``: a serial-to-TCP gateway with DL/T 645-2007 meters behind it, with fault injection.
- ``run_site_sims``: the Hohhot case's devices, all driven by one ``collector.loadmodel.HeatingSiteModel``.
- ``MeterFleet`` / ``bench_sources``: hundreds or thousands of meters for benchmarks (``collector.sim.bench``).

Simulators bind 127.0.0.1 and port 0 (a free port, exposed as ``.port``) unless told otherwise.
"""

from collector.sim.dlt645_sim import Dlt645GatewaySim, DltFault, SimDltMeter
from collector.sim.feeds import Clock, Feed, HeatExchangerFeed, StaticFeed, SubsystemMeterFeed
from collector.sim.fleet import MeterFleet, bench_sources
from collector.sim.modbus_sim import Fault, ModbusMeterSim, SimMeter, meter
from collector.sim.site import DEFAULT_HANDLES, SimEndpoint, SiteSims, run_site_sims

__all__ = [
    "DEFAULT_HANDLES",
    "Clock",
    "Dlt645GatewaySim",
    "DltFault",
    "Fault",
    "Feed",
    "HeatExchangerFeed",
    "MeterFleet",
    "ModbusMeterSim",
    "SimDltMeter",
    "SimEndpoint",
    "SimMeter",
    "SiteSims",
    "StaticFeed",
    "SubsystemMeterFeed",
    "bench_sources",
    "meter",
    "run_site_sims",
]
