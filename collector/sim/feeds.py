"""What simulated devices measure: feeds map a model time to base-unit values per quantity.

A feed is a pure function of time (plus its own seeded constants), so a simulator can be asked "what does the
meter hold now" at any moment and the answer never depends on how often it was read. Counters come from
``collector.loadmodel.EnergyCounter`` and are exact integers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from collector.loadmodel import CELL_MS, EnergyCounter, HeatingSiteModel, mix64


class Clock(Protocol):
    def now_ms(self) -> int: ...


class Feed(Protocol):
    def values(self, ts_ms: int) -> dict[str, int]:
        """Base-unit integers by quantity (Wh, W, mV, mA, mHz, mdegC)."""
        ...


class StaticFeed:
    """Fixed values, changed only by ``set``: for tests that need exact numbers."""

    def __init__(self, values: Mapping[str, int] | None = None) -> None:
        self._values = dict(values or {})

    def set(self, values: Mapping[str, int]) -> None:
        self._values.update(values)

    def values(self, ts_ms: int) -> dict[str, int]:
        return dict(self._values)


class SubsystemMeterFeed:
    """A three-phase meter on one subsystem of the load model (``share`` of it, for sub-meters and fleets).

    Power splits over the phases with a fixed seeded imbalance and sums exactly to the total; voltage is 220 V
    phase-to-neutral ±1 %, current = P / (V × pf), frequency 50 Hz ±30 mHz, all varying per model minute.
    """

    def __init__(
        self,
        model: HeatingSiteModel,
        subsystem: str,
        start_ts_ms: int,
        start_wh: int = 0,
        *,
        share: float = 1.0,
        power_factor: float = 0.98,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.subsystem = subsystem
        self.share = share
        self.pf = power_factor
        self.seed = seed
        self.counter = EnergyCounter(model, subsystem, start_ts_ms, start_wh, share)
        u = [(mix64(seed * 3 + i) / 2**64 - 0.5) * 0.04 for i in range(3)]
        self._weights = [1 / 3 + x - sum(u) / 3 for x in u]

    def _noise(self, cell: int, ch: int) -> float:
        return mix64((self.seed << 36) ^ (cell << 3) ^ ch) / 2**63 - 1.0

    def values(self, ts_ms: int) -> dict[str, int]:
        cell = ts_ms // CELL_MS
        p = round(self.model.power_w(self.subsystem, ts_ms) * self.share)
        l1 = round(p * self._weights[0])
        l2 = round(p * self._weights[1])
        phases = (l1, l2, p - l1 - l2)
        out: dict[str, int] = {"power": p, "energy.import": self.counter.at(ts_ms), "energy.export": 0}
        out["energy.total"] = out["energy.import"]
        out["energy.combined"] = out["energy.import"]
        for i, pw in enumerate(phases, start=1):
            v = round(220_000 * (1 + 0.01 * self._noise(cell, i)))
            out[f"power.l{i}"] = pw
            out[f"voltage.l{i}"] = v
            out[f"current.l{i}"] = round(pw * 1_000_000 / (v * self.pf))
        out["frequency"] = round(50_000 + 30 * self._noise(cell, 7))
        return out


class HeatExchangerFeed:
    """The four plate-heat-exchanger temperatures of the load model."""

    def __init__(self, model: HeatingSiteModel) -> None:
        self.model = model

    def values(self, ts_ms: int) -> dict[str, int]:
        return dict(self.model.state(ts_ms).temps_mdegc)


class OutdoorTempFeed:
    """The outdoor air temperature of the load model (the Hohhot heating season's climate), in mdegC: the same
    temperature the model's heat demand follows, so the energy models can recover the heating response from it."""

    def __init__(self, model: HeatingSiteModel) -> None:
        self.model = model

    def values(self, ts_ms: int) -> dict[str, int]:
        return {"temp.outdoor": round(self.model.outdoor_c(ts_ms) * 1000)}


class HeatMeterFeed:
    """The plate heat exchanger's heat meter: heat delivered to the building (the load model's heat demand), its
    integral in Wh, secondary-side supply and return temperatures and the flow that carries the heat.

    flow (L/h) = P / (ρ·c·ΔT) with ρ·c = 4.186 kJ/(L·K); the heat counter integrates the cell-constant heat power
    exactly (integer W·ms), so it reads the same Wh whatever the polling pattern.
    """

    def __init__(self, model: HeatingSiteModel, start_ts_ms: int, start_wh: int = 0) -> None:
        self.model = model
        self.start_ts_ms = start_ts_ms
        self.start_wh = start_wh
        self._t = start_ts_ms
        self._wms = 0

    def _heat_wh(self, ts_ms: int) -> int:
        if ts_ms < self.start_ts_ms:
            return self.start_wh
        if ts_ms < self._t:
            self._t, self._wms = self.start_ts_ms, 0
        t = self._t
        while t < ts_ms:
            cell = t // CELL_MS
            end = min((cell + 1) * CELL_MS, ts_ms)
            self._wms += self.model.state(t).heat_demand_w * (end - t)
            t = end
        self._t = ts_ms
        return self.start_wh + self._wms // 3_600_000

    def values(self, ts_ms: int) -> dict[str, int]:
        st = self.model.state(ts_ms)
        sup = st.temps_mdegc["temp.secondary_supply"]
        ret = st.temps_mdegc["temp.secondary_return"]
        dt_mk = max(1, sup - ret)
        flow_lph = round(st.heat_demand_w * 3600 * 1000 / (4186 * dt_mk)) if st.heat_demand_w else 0
        return {
            "heat.energy": self._heat_wh(ts_ms),
            "heat.power": st.heat_demand_w,
            "flow": flow_lph,
            "temp.supply": sup,
            "temp.return": ret,
        }
