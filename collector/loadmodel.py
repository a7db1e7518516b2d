"""Deterministic load model of the Hohhot case: 100,000 m² of electric central heating with night storage.

Everything here is a pure function of (seed, parameters, time): no wall clock, no global randomness, no I/O.
Two processes with the same seed agree on every watt, so simulators, tests and the demo can be checked against
each other. Model time is epoch milliseconds; local time is China Standard Time (UTC+8, no DST).

The model
- Heating season: 15 Oct 00:00 to 15 Apr 24:00 local (Hohhot's statutory period). Outside it the heating plant
  is off and only the control cabinet's standby load remains.
- Outdoor temperature = annual cycle (mean 6.5 °C, coldest around 15 Jan at −11 °C daily mean) + diurnal cycle
  (±6 K, coldest 04:00) + a seeded AR(1) day-to-day anomaly (σ 2.5 K, φ 0.7), interpolated between days so it
  never jumps at midnight. January nights reach the −17 °C design temperature.
- Heat demand = area × 50 W/m² design index × 0.6 (the measured loss coefficient is well below the design
  index, which carries safety margins) × (balance point − outdoor) / (18 − (−17)); the balance point is 16 °C
  (internal gains) and falls by up to 3 K around midday (sun). The season averages ≈ 17 W/m² of heat and
  ≈ 19 W/m² of electricity, well under half the design index.
- Storage: on each heating day the tank is planned to carry ``tank_share`` of the 07:00–23:00 heat, capped by its
  capacity. It charges evenly through the valley tariff window 23:00–07:00 (its own electric heaters, metered as
  ``storage_tank``) and discharges in proportion to the daytime load, so the core unit and pipe heater carry less
  by day. A day is charged only if both it and the evening before are in the season.
- Subsystems (electric power): ``core_unit`` (electric boilers up to ``core_capacity_w`` heat), ``pipe_heater``
  (in-line heater for what the core unit cannot carry), ``storage_tank``, ``pump_room`` (circulation + charging
  pump), ``controls`` (electrical control cabinet). Each carries ±1.5 % seeded noise per minute.
- Plate heat exchanger: weather-compensated secondary supply 35–55 °C; return and primary side follow the load.

Time is quantised in one-minute cells: ``state(t)`` is the state of the cell containing ``t`` and power is
constant within a cell, so ``EnergyCounter`` integrates exactly (integer W·ms) and gives the same Wh whatever
the polling pattern. ``ModelClock`` maps wall time to model time with a ``speed`` factor for demos.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from types import MappingProxyType

CST = timezone(timedelta(hours=8), "CST")
CELL_MS = 60_000
HOUR_MS = 3_600_000
WMS_PER_WH = 3_600_000  # W·ms in one Wh

SUBSYSTEMS = ("core_unit", "pipe_heater", "storage_tank", "pump_room", "controls")
TEMPERATURES = (
    "temp.primary_supply",
    "temp.primary_return",
    "temp.secondary_supply",
    "temp.secondary_return",
)

VALLEY_START_H = 23
VALLEY_END_H = 7
VALLEY_HOURS = 24 - VALLEY_START_H + VALLEY_END_H


@dataclass(frozen=True, slots=True)
class SiteParams:
    area_m2: int = 100_000
    design_index_w_per_m2: int = 50
    """Heat load index used to size the plant (GB 50736 style design figure)."""
    actual_to_design: float = 0.6
    """Measured heat-loss coefficient as a share of the design index."""
    indoor_c: float = 18.0
    design_outdoor_c: float = -17.0
    balance_c: float = 16.0
    """Outdoor temperature at which internal gains alone keep the building warm."""
    solar_k: float = 3.0
    annual_mean_c: float = 6.5
    annual_amplitude_c: float = 17.5
    coldest_day_of_year: int = 14  # 15 January, 0-based
    diurnal_amplitude_c: float = 6.0
    anomaly_sigma_c: float = 2.5
    anomaly_phi: float = 0.7
    season_start: tuple[int, int] = (10, 15)
    season_end: tuple[int, int] = (4, 15)
    heater_efficiency: float = 0.98
    core_capacity_w: int = 2_400_000
    """Heat the core unit can deliver; the pipe heater takes the rest."""
    pipe_capacity_w: int = 1_500_000
    tank_capacity_wh: int = 24_000_000
    tank_share: float = 0.5
    tank_loss: float = 0.03
    pump_base_w: int = 25_000
    pump_var_w: int = 35_000
    charge_pump_w: int = 8_000
    controls_w: int = 4_000
    controls_standby_w: int = 1_500
    noise: float = 0.015

    @property
    def design_heat_w(self) -> float:
        """Actual heat demand at the design outdoor temperature (no sun)."""
        return (
            self.area_m2
            * self.design_index_w_per_m2
            * self.actual_to_design
            * (self.balance_c - self.design_outdoor_c)
            / (self.indoor_c - self.design_outdoor_c)
        )


@dataclass(frozen=True, slots=True)
class SiteState:
    ts_ms: int
    """Start of the one-minute cell this state holds for."""
    in_season: bool
    valley: bool
    """Inside the 23:00–07:00 valley tariff window."""
    outdoor_mdegc: int
    heat_demand_w: int
    power_w: Mapping[str, int] = field(hash=False)
    """Electric power per subsystem (keys ``SUBSYSTEMS``); read-only, states are cached and shared."""
    temps_mdegc: Mapping[str, int] = field(hash=False)
    """Plate heat exchanger temperatures (keys ``TEMPERATURES``)."""

    @property
    def total_power_w(self) -> int:
        return sum(self.power_w.values())


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, stable hash for per-cell noise."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def local_time(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, CST)


def local_ms(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    """Epoch ms of a China Standard Time wall-clock moment."""
    return int(datetime(y, m, d, hh, mm, tzinfo=CST).timestamp() * 1000)


class HeatingSiteModel:
    """The Hohhot site: ``state(ts_ms)`` gives power per subsystem and temperatures for any instant."""

    def __init__(self, seed: int = 1, params: SiteParams | None = None) -> None:
        self.seed = seed
        self.p = params or SiteParams()
        self._cell = lru_cache(maxsize=200_000)(self._compute_cell)
        self._plan = lru_cache(maxsize=4096)(self._compute_plan)
        self._anomalies = lru_cache(maxsize=16)(self._compute_anomalies)

    # ------------------------------------------------------------------ calendar and weather

    def in_season_date(self, d: date) -> bool:
        md = (d.month, d.day)
        return md >= self.p.season_start or md <= self.p.season_end

    def in_season(self, ts_ms: int) -> bool:
        return self.in_season_date(local_time(ts_ms).date())

    def season_bounds(self, start_year: int) -> tuple[int, int]:
        """[first ms, first ms after] of the season that starts in ``start_year``."""
        sm, sd = self.p.season_start
        em, ed = self.p.season_end
        end = datetime(start_year + 1, em, ed, tzinfo=CST) + timedelta(days=1)
        return local_ms(start_year, sm, sd), int(end.timestamp() * 1000)

    def _compute_anomalies(self, season_year: int) -> tuple[float, ...]:
        """Daily weather anomaly for 1 Jul ``season_year`` .. 30 Jun next year (a season never straddles)."""
        rng = random.Random(f"cemp-weather:{self.seed}:{season_year}")
        phi, sigma = self.p.anomaly_phi, self.p.anomaly_sigma_c
        a = rng.gauss(0.0, sigma)
        out = []
        for _ in range(368):
            out.append(max(-3 * sigma, min(3 * sigma, a)))
            a = phi * a + sigma * math.sqrt(1 - phi * phi) * rng.gauss(0.0, 1.0)
        return tuple(out)

    def _anomaly(self, dt: datetime) -> float:
        sy = dt.year if dt.month >= 7 else dt.year - 1
        origin = datetime(sy, 7, 1, 12, tzinfo=CST)  # anomalies sit at local noon
        x = (dt - origin).total_seconds() / 86_400
        i = math.floor(x)
        f = x - i
        seq = self._anomalies(sy)
        lo = seq[i] if i >= 0 else self._anomalies(sy - 1)[365]  # before noon on 1 Jul
        hi = seq[i + 1]
        return lo + (hi - lo) * f

    def outdoor_c(self, ts_ms: int) -> float:
        dt = local_time(ts_ms)
        hour = dt.hour + dt.minute / 60
        doy = dt.timetuple().tm_yday - 1 + hour / 24
        p = self.p
        seasonal = p.annual_mean_c - p.annual_amplitude_c * math.cos(
            2 * math.pi * (doy - p.coldest_day_of_year) / 365.25
        )
        diurnal = -p.diurnal_amplitude_c * math.cos(2 * math.pi * (hour - 4) / 24)
        return seasonal + diurnal + self._anomaly(dt)

    # ------------------------------------------------------------------ heat and storage

    def heat_demand_w(self, ts_ms: int) -> float:
        dt = local_time(ts_ms)
        if not self.in_season_date(dt.date()):
            return 0.0
        hour = dt.hour + dt.minute / 60
        p = self.p
        solar = p.solar_k * max(0.0, math.sin(math.pi * (hour - 8) / 9)) if 8 < hour < 17 else 0.0
        dtk = max(0.0, p.balance_c - solar - self.outdoor_c(ts_ms))
        return (
            p.area_m2 * p.design_index_w_per_m2 * p.actual_to_design * dtk / (p.indoor_c - p.design_outdoor_c)
        )

    def _compute_plan(self, ordinal: int) -> tuple[float, float]:
        """(heat the tank carries that day, the day's 07–23 heat), both Wh, for the local date ``ordinal``."""
        d = date.fromordinal(ordinal)
        if not (self.in_season_date(d) and self.in_season_date(d - timedelta(days=1))):
            return 0.0, 0.0
        day_heat = sum(
            self.heat_demand_w(local_ms(d.year, d.month, d.day, h, 30))
            for h in range(VALLEY_END_H, VALLEY_START_H)
        )
        return min(self.p.tank_share * day_heat, float(self.p.tank_capacity_wh)), day_heat

    def tank_plan_wh(self, d: date) -> int:
        """Heat the storage tank is charged with for (and delivers on) local day ``d``."""
        return round(self._plan(d.toordinal())[0])

    # ------------------------------------------------------------------ state

    def _noise(self, cell: int, channel: int) -> float:
        h = mix64((self.seed << 40) ^ (cell << 4) ^ channel)
        return (h / 2**63) - 1.0  # uniform in [-1, 1)

    def _compute_cell(self, cell: int) -> SiteState:
        ts = cell * CELL_MS
        p = self.p
        dt = local_time(ts)
        season = self.in_season_date(dt.date())
        valley = dt.hour >= VALLEY_START_H or dt.hour < VALLEY_END_H
        outdoor = self.outdoor_c(ts)
        power = dict.fromkeys(SUBSYSTEMS, 0)
        if not season:
            power["controls"] = round(p.controls_standby_w * (1 + p.noise * self._noise(cell, 4)))
            idle = {t: round(24_000 + 300 * self._noise(cell, 8 + i)) for i, t in enumerate(TEMPERATURES)}
            return SiteState(
                ts, False, valley, round(outdoor * 1000), 0, MappingProxyType(power), MappingProxyType(idle)
            )

        heat = self.heat_demand_w(ts)
        eff = p.heater_efficiency
        if valley:
            cycle = dt.date() + timedelta(days=1) if dt.hour >= VALLEY_START_H else dt.date()
            stored, _ = self._plan(cycle.toordinal())
            charge_w = stored / VALLEY_HOURS / (1 - p.tank_loss) / eff
            heaters = heat
        else:
            stored, day_heat = self._plan(dt.date().toordinal())
            charge_w = 0.0
            heaters = heat - (heat * stored / day_heat if day_heat > 0 else 0.0)
        core = min(heaters, float(p.core_capacity_w))
        pipe = min(heaters - core, float(p.pipe_capacity_w))
        load = min(1.2, heat / p.design_heat_w)
        raw = {
            "core_unit": core / eff,
            "pipe_heater": pipe / eff,
            "storage_tank": charge_w,
            "pump_room": p.pump_base_w + p.pump_var_w * load + (p.charge_pump_w if charge_w > 0 else 0),
            "controls": float(p.controls_w),
        }
        for i, name in enumerate(SUBSYSTEMS):
            power[name] = max(0, round(raw[name] * (1 + p.noise * self._noise(cell, i))))

        comp = max(0.0, min(1.15, (p.indoor_c - outdoor) / (p.indoor_c - p.design_outdoor_c)))
        sec_supply = 35.0 + 17.0 * comp
        sec_return = sec_supply - (3.0 + 7.0 * load)
        prim_supply = sec_supply + 6.0 + 10.0 * load
        prim_return = sec_return + 3.0
        temps = {
            t: round(v * 1000 + 150 * self._noise(cell, 8 + i))
            for i, (t, v) in enumerate(
                zip(TEMPERATURES, (prim_supply, prim_return, sec_supply, sec_return), strict=True)
            )
        }
        return SiteState(
            ts,
            True,
            valley,
            round(outdoor * 1000),
            round(heat),
            MappingProxyType(power),
            MappingProxyType(temps),
        )

    def state(self, ts_ms: int) -> SiteState:
        return self._cell(ts_ms // CELL_MS)

    def power_w(self, subsystem: str, ts_ms: int) -> int:
        return self.state(ts_ms).power_w[subsystem]

    def energy_wms(self, subsystem: str, t0_ms: int, t1_ms: int, share: float = 1.0) -> int:
        """Exact integral of the (cell-constant) power of ``subsystem`` × ``share`` over [t0, t1), in W·ms."""
        if t1_ms < t0_ms:
            raise ValueError("t1 before t0")
        total = 0
        t = t0_ms
        while t < t1_ms:
            cell = t // CELL_MS
            end = min((cell + 1) * CELL_MS, t1_ms)
            total += round(self._cell(cell).power_w[subsystem] * share) * (end - t)
            t = end
        return total


class EnergyCounter:
    """A meter's energy register: ``start_wh`` at ``start_ts_ms`` plus the integral of the subsystem's power.

    Integer arithmetic throughout: the reading at ``t`` is ``start_wh + floor(W·ms / 3.6e6)`` whatever the order
    of earlier calls (stepping back in time recomputes from the start).
    """

    def __init__(
        self, model: HeatingSiteModel, subsystem: str, start_ts_ms: int, start_wh: int = 0, share: float = 1.0
    ) -> None:
        if subsystem not in SUBSYSTEMS:
            raise ValueError(f"unknown subsystem {subsystem!r}; known: {SUBSYSTEMS}")
        self.model = model
        self.subsystem = subsystem
        self.share = share
        self.start_ts_ms = start_ts_ms
        self.start_wh = start_wh
        self._t = start_ts_ms
        self._wms = 0

    def at(self, ts_ms: int) -> int:
        if ts_ms < self.start_ts_ms:
            return self.start_wh
        if ts_ms < self._t:
            self._t, self._wms = self.start_ts_ms, 0
        self._wms += self.model.energy_wms(self.subsystem, self._t, ts_ms, self.share)
        self._t = ts_ms
        return self.start_wh + self._wms // WMS_PER_WH


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ModelClock:
    """Model time from wall time: ``start_ms + (wall − wall at creation) × speed``."""

    def __init__(
        self, start_ms: int | None = None, speed: float = 1.0, wall: Callable[[], int] = wall_ms
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._wall = wall
        self._wall0 = wall()
        self.start_ms = self._wall0 if start_ms is None else start_ms
        self.speed = speed

    def now_ms(self) -> int:
        return self.start_ms + int((self._wall() - self._wall0) * self.speed)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start_ms: int) -> None:
        self.t = start_ms

    def now_ms(self) -> int:
        return self.t

    def advance(self, ms: int) -> int:
        self.t += ms
        return self.t
