"""JSON routes of the energy models: the day-ahead charging plan (from given demand, or from a site's heat on chain)
and the expected-consumption model fit with its Guideline 14 errors and a forecast.

- ``GET /v1/energy/plan?date=D&demand=24 values|demand_kwh_th=X&capacity_kwh=&boiler_kw=…``: prices of D's local
  hours from the tariff version in force; the least-cost plan against flat charging (and a ``habit`` shape).
- ``GET /v1/sites/{site_id}/energy/plan?date=D&…``: the demand forecast is the site's mean heat per local hour over
  the 7 days before D (a persistence forecast, named as such; heat meters, else electricity × 0.98), and the habit
  is the site's electricity shape over last heating season (``sitehistory.season_habit``), else over the same 7
  days (``habit_source`` says which). Read from one snapshot of committed state.
- ``GET /v1/sites/{site_id}/energy/forecast?now=local time&grid_factor=``: the same forecast from the site's
  measured hours on chain (``energy.sitehistory``: boundary electricity meters against the outdoor sensor, the
  latest ``MAX_MODEL_HOURS`` hours before ``now`` within 400 days). Read gate: the site's ``sites`` data.
- ``POST /v1/energy/forecast`` with ``{"hours": [[local time, °C, kWh], …], "now": local time, "weather":
  [[YYYY-MM-DD, °C], …]}``: energy, cost and emissions for the rest of the day, month and heating season
  (``energy.forecast``), with the model's held-out error. Same bounds as the model route; nothing is stored.
- ``GET /v1/devices/{handle}/health?window_days=7&now=ms``: the device's health score, reasons and likely causes
  (``energy.health``) from one snapshot.
- ``POST /v1/energy/model`` with ``{"hours": [[local time, °C, kWh], …], "forecast": [[local time, °C], …]}``:
  fits the change-point and hourly models, reports CV(RMSE)/NMBE on fit and held-out hours, uses the hourly model
  only if it wins on held-out data, and predicts the forecast hours with the chosen model's held-out error.
  Bounded: at most ``MAX_MODEL_HOURS`` hours (a season and a half), ``MAX_FORECAST_HOURS`` forecast hours, a 2 MB
  body. Nothing is stored.

Bad input is a 400 JSON error naming the parameter; a demand the tank and boiler cannot meet is a 422.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from accounting import inventory as invm
from accounting import params as prm
from accounting import tariffs as tf
from accounting.api import require_site
from accounting.params import head_of
from accounting.periods import HOUR_MS
from accounting.sites import load_site
from energy import forecast as fc
from energy import health as hl
from energy import models, sitehistory, weather
from energy import plan as pl
from node.devices import load_device
from node.errors import CempError, Code

T = TypeVar("T")
MAX_MODEL_HOURS = 6600
MAX_FORECAST_HOURS = 24 * 31
MAX_BODY_BYTES = 2_000_000
HISTORY_DAYS = 7
_ERR = prm.ERROR_RESPONSE


def _q(name: str, desc: str, required: bool = False) -> dict[str, Any]:
    return prm.query(name, desc, required=required)


_TANK_Q = [
    _q("date", "local date of the plan, YYYY-MM-DD", required=True),
    _q("capacity_kwh", "tank capacity, kWh_th (default 20000)"),
    _q("boiler_kw", "electric boiler limit, kW_e (default 7000)"),
    _q("boiler_efficiency", "default 0.98"),
    _q("charge_efficiency", "default 0.98"),
    _q("discharge_efficiency", "default 0.98"),
    _q("standing_loss_per_h", "fraction of stored heat lost per hour (default 0.005)"),
    _q(
        "initial_kwh",
        "heat in the tank at 00:00, kWh_th; default: a steady-state day (the plan chooses it); the plan ends with "
        "at least as much",
    ),
    _q("grid_factor", "kgCO2/kWh for the emissions (default 0.6479, Inner Mongolia 2023)"),
]
_RESP = {
    "200": {"description": "ok", "content": {"application/json": {}}},
    "400": _ERR,
    "404": _ERR,
    "422": _ERR,
}
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/energy/plan": {
        "get": {
            "summary": "Day-ahead least-cost charging plan of the storage tank under the TOU tariff (LP, HiGHS), "
            "with cost and CO2 against charging flat and against a habit profile",
            "parameters": [
                *_TANK_Q,
                _q("demand", "24 comma-separated hourly heat demands, kWh_th"),
                _q("demand_kwh_th", "or: the day's heat demand, spread evenly over 24 hours"),
                _q("habit", "24 comma-separated weights: the habitual hourly electricity shape"),
            ],
            "responses": _RESP,
        }
    },
    "/v1/sites/{site_id}/energy/plan": {
        "get": {
            "summary": "Charging plan for a site: demand = mean heat per local hour of the 7 days before the date "
            "(persistence forecast), habit = the site's electricity shape over last heating season (else over "
            "those 7 days)",
            "parameters": [
                {"name": "site_id", "in": "path", "required": True, "schema": {"type": "string"}},
                *_TANK_Q,
            ],
            "responses": _RESP,
        }
    },
    "/v1/sites/{site_id}/energy/forecast": {
        "get": {
            "summary": "Energy, cost and emissions of a site for the rest of the day, month and heating season, "
            "from its measured hours on chain (boundary electricity meters against its outdoor sensor) and the "
            "model chosen on held-out weeks, with that model's held-out CV(RMSE) and NMBE",
            "parameters": [
                {"name": "site_id", "in": "path", "required": True, "schema": {"type": "string"}},
                _q("now", "local time of the forecast, like 2026-01-15T10:00 (default: the node's clock)"),
                _q("grid_factor", "kgCO2/kWh for the emissions (default 0.6479, Inner Mongolia 2023)"),
            ],
            "responses": _RESP,
        }
    },
    "/v1/energy/forecast": {
        "post": {
            "summary": "Energy, cost (TOU tariff) and emissions for the rest of the day, month and heating season "
            "from the measured hours so far and the model chosen on held-out weeks, with its held-out error",
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["hours", "now"],
                            "properties": {
                                "hours": {
                                    "type": "array",
                                    "description": "[local time, temp °C, kWh] rows, >= 4 weeks",
                                },
                                "now": {"type": "string", "description": "local time of the forecast"},
                                "weather": {
                                    "type": "array",
                                    "description": "[YYYY-MM-DD, daily mean °C] forecast rows",
                                },
                                "grid_factor": {"type": "number", "description": "kgCO2/kWh (0.6479)"},
                            },
                        }
                    }
                }
            },
            "responses": {**_RESP, "413": _ERR},
        }
    },
    "/v1/devices/{handle}/health": {
        "get": {
            "summary": "Device health: last contact, errors, quality-flag rates, completeness, drift against peers, "
            "open anomaly findings; a 0-100 score with its reasons and likely causes when signals agree",
            "parameters": [
                {"name": "handle", "in": "path", "required": True, "schema": {"type": "string"}},
                _q("window_days", "days looked at, 1..31 (default 7)"),
                _q("now", "evaluation time, Unix ms (default: the node's clock)"),
            ],
            "responses": _RESP,
        }
    },
    "/v1/energy/model": {
        "post": {
            "summary": "Fit the change-point and hourly expected-consumption models; ASHRAE G14 CV(RMSE) and NMBE "
            "on fit and held-out hours; forecast with the model that wins on held-out data",
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["hours"],
                            "properties": {
                                "hours": {"type": "array", "description": "[local time, temp °C, kWh] rows"},
                                "forecast": {"type": "array", "description": "[local time, temp °C] rows"},
                                "base_c": {"type": "number", "description": "HDD base (18)"},
                            },
                        }
                    }
                }
            },
            "responses": {**_RESP, "413": _ERR},
        }
    },
}


def _num(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
    return prm.number(request, name, float(default), float(lo), float(hi), float)


def _list24(request: web.Request, name: str) -> list[float] | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    parts = raw.split(",")
    if len(parts) != 24 or len(raw) > 24 * 24:
        raise CempError(Code.BAD_REQUEST, f"{name} needs 24 comma-separated numbers (hours 0..23)")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise CempError(Code.BAD_REQUEST, f"{name}: every one of the 24 values must be a number") from None
    if not all(math.isfinite(v) and 0 <= v <= 1e9 for v in vals):
        raise CempError(Code.BAD_REQUEST, f"{name}: values must be between 0 and 1e9")
    return vals


def _date(request: web.Request) -> date:
    raw = request.query.get("date", "")
    try:
        return date.fromisoformat(raw[:10]) if len(raw) == 10 else date.fromisoformat("x")
    except ValueError:
        raise CempError(
            Code.BAD_REQUEST, f"date={raw[:40]!r}: give the plan's local date as YYYY-MM-DD"
        ) from None


def tank_of(request: web.Request) -> tuple[pl.Tank, float]:
    cap = _num(request, "capacity_kwh", 20_000, 0, 1e8)
    tank = pl.Tank(
        capacity_kwh=cap,
        boiler_kw=_num(request, "boiler_kw", 7_000, 0, 1e8),
        boiler_efficiency=_num(request, "boiler_efficiency", 0.98, 0.05, 10),
        charge_efficiency=_num(request, "charge_efficiency", 0.98, 0.05, 1),
        discharge_efficiency=_num(request, "discharge_efficiency", 0.98, 0.05, 1),
        standing_loss_per_h=_num(request, "standing_loss_per_h", 0.005, 0, 0.5),
        initial_kwh=None
        if request.query.get("initial_kwh") in (None, "")
        else _num(request, "initial_kwh", 0, 0, cap),
    )
    return tank, _num(request, "grid_factor", pl.DEFAULT_GRID_KG_PER_KWH, 0, 5)


def run_plan(
    versions: list[tf.TariffVersion],
    day: date,
    demand: list[float],
    tank: pl.Tank,
    habit: list[float] | None,
    grid: float,
) -> dict[str, Any]:
    try:
        prices = pl.day_prices(versions, day)
    except ValueError as e:
        raise CempError(Code.BAD_REQUEST, str(e)) from None
    if habit is not None and sum(habit) <= 0:
        habit = None
    try:
        out = pl.plan(prices, demand, tank, habit, grid)
    except pl.Infeasible as e:
        raise CempError(
            Code.INVALID_PAYLOAD,
            f"{e}: {sum(demand):.0f} kWh_th with a {tank.boiler_kw:g} kW_e boiler and a {tank.capacity_kwh:g} kWh "
            "tank; raise boiler_kw or capacity_kwh",
        ) from None
    except ValueError as e:
        raise CempError(Code.BAD_REQUEST, str(e)) from None
    v = tf.version_on(versions, day)
    return {"date": day.isoformat(), "tariff": v.to_json() if v else None, **out}


def site_history(snap: Any, head: Any, site_id: str, day: date) -> tuple[list[float], list[float], str]:
    """Mean heat (kWh_th) and electricity (kWh_e) per local hour of the ``HISTORY_DAYS`` days before ``day``."""
    site = load_site(snap, site_id)
    if site is None:
        raise CempError(Code.NOT_FOUND, f"no site {site_id!r} on this chain")
    off_ms = site.payload.utc_offset_min * 60_000
    heat = [0.0] * 24
    elec = [0.0] * 24
    has_heat = False
    for i in range(1, HISTORY_DAYS + 1):
        d = day - timedelta(days=i)
        inv = invm.compute(snap, head, site_id, d.isoformat(), "hour")
        for hour, wh in inv["_site_hourly_wh"].items():
            elec[((hour * HOUR_MS + off_ms) // HOUR_MS) % 24] += wh / 1000 / HISTORY_DAYS
        for hour, wh in inv["_heat_hourly_wh"].items():
            has_heat = True
            heat[((hour * HOUR_MS + off_ms) // HOUR_MS) % 24] += wh / 1000 / HISTORY_DAYS
    if has_heat:
        return heat, elec, "heat meters"
    return [e * 0.98 for e in elec], elec, "electricity x 0.98 (no heat meter in the boundary)"


def _parse_time(raw: Any, what: str, i: int) -> datetime:
    if not isinstance(raw, str) or len(raw) > 32:
        raise CempError(Code.BAD_REQUEST, f"{what}[{i}][0] must be a local time like 2026-01-15T08:00")
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=None)
    except ValueError:
        raise CempError(
            Code.BAD_REQUEST, f"{what}[{i}][0]={raw!r} is not a local time like 2026-01-15T08:00"
        ) from None


def _parse_num(raw: Any, what: str, lo: float, hi: float) -> float:
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float)
        or not math.isfinite(raw)
        or not lo <= raw <= hi
    ):
        raise CempError(Code.BAD_REQUEST, f"{what} must be a number between {lo:g} and {hi:g}")
    return float(raw)


def fit_model(body: Any, versions: list[tf.TariffVersion]) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("hours"), list):
        raise CempError(Code.BAD_REQUEST, 'body must be {"hours": [[local time, temp °C, kWh], ...]}')
    rows, fc = body["hours"], body.get("forecast", [])
    if len(rows) > MAX_MODEL_HOURS:
        raise CempError(Code.BAD_REQUEST, f"{len(rows)} hours: at most {MAX_MODEL_HOURS} per fit")
    if not isinstance(fc, list) or len(fc) > MAX_FORECAST_HOURS:
        raise CempError(
            Code.BAD_REQUEST, f"forecast must be a list of at most {MAX_FORECAST_HOURS} [time, °C] rows"
        )
    base = _parse_num(body.get("base_c", weather.DEFAULT_BASE_C), "base_c", -10, 30)
    times, temps, kwh = [], [], []
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != 3:
            raise CempError(Code.BAD_REQUEST, f"hours[{i}] must be [local time, temp °C, kWh]")
        times.append(_parse_time(r[0], "hours", i))
        temps.append(_parse_num(r[1], f"hours[{i}][1] (°C)", weather.T_MIN_C, weather.T_MAX_C))
        kwh.append(_parse_num(r[2], f"hours[{i}][2] (kWh)", 0, 1e9))
    if len(set(times)) != len(times):
        raise CempError(Code.BAD_REQUEST, "hours: each local hour may appear once")
    order = sorted(range(len(times)), key=lambda k: times[k])
    times, temps, kwh = [times[k] for k in order], [temps[k] for k in order], [kwh[k] for k in order]
    f_times, f_temps = [], []
    for i, r in enumerate(fc):
        if not isinstance(r, list) or len(r) != 2:
            raise CempError(Code.BAD_REQUEST, f"forecast[{i}] must be [local time, temp °C]")
        f_times.append(_parse_time(r[0], "forecast", i))
        f_temps.append(_parse_num(r[1], f"forecast[{i}][1] (°C)", weather.T_MIN_C, weather.T_MAX_C))
    try:
        bands = _bands(versions, times)
        f_bands = _bands(versions, f_times)
        sel = models.select(times, temps, kwh, bands)
    except ValueError as e:
        raise CempError(Code.BAD_REQUEST, str(e)) from None
    fitted = sel.pop("_models")
    chosen = sel["chosen"]
    out: dict[str, Any] = {
        **sel,
        "hdd": {
            "base_c": base,
            "days": {
                d.isoformat(): round(weather.hdd(m, base), 2)
                for d, m in weather.daily_means(zip(times, temps, strict=True)).items()
            },
        },
    }
    if f_times:
        pred = models.predict(fitted[chosen], f_times, f_temps, f_bands)
        out["forecast"] = {
            "model": chosen,
            "held_out_error": sel[chosen]["held_out"],
            "hours": [[t.isoformat(), round(float(p), 3)] for t, p in zip(f_times, pred, strict=True)],
            "total_kwh": round(float(pred.sum()), 3),
        }
    return out


def run_forecast(body: Any, versions: list[tf.TariffVersion]) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("hours"), list):
        raise CempError(
            Code.BAD_REQUEST, 'body must be {"hours": [[local time, temp °C, kWh], ...], "now": local time}'
        )
    rows = body["hours"]
    if len(rows) > MAX_MODEL_HOURS:
        raise CempError(Code.BAD_REQUEST, f"{len(rows)} hours: at most {MAX_MODEL_HOURS} per forecast")
    wx = body.get("weather", [])
    if not isinstance(wx, list) or len(wx) > 400:
        raise CempError(Code.BAD_REQUEST, "weather must be a list of at most 400 [YYYY-MM-DD, °C] rows")
    raw_now = body.get("now")
    try:
        if not isinstance(raw_now, str) or len(raw_now) > 32:
            raise ValueError
        now = datetime.fromisoformat(raw_now).replace(tzinfo=None)
    except ValueError:
        raise CempError(
            Code.BAD_REQUEST, "now must be the forecast's local time, like 2026-01-15T10:00"
        ) from None
    grid = _parse_num(body.get("grid_factor", pl.DEFAULT_GRID_KG_PER_KWH), "grid_factor", 0, 5)
    hist = []
    for i, r in enumerate(rows):
        if not isinstance(r, list) or len(r) != 3:
            raise CempError(Code.BAD_REQUEST, f"hours[{i}] must be [local time, temp °C, kWh]")
        hist.append(
            (
                _parse_time(r[0], "hours", i),
                _parse_num(r[1], f"hours[{i}][1] (°C)", weather.T_MIN_C, weather.T_MAX_C),
                _parse_num(r[2], f"hours[{i}][2] (kWh)", 0, 1e9),
            )
        )
    daily: dict[date, float] = {}
    for i, r in enumerate(wx):
        if not isinstance(r, list) or len(r) != 2 or not isinstance(r[0], str) or len(r[0]) != 10:
            raise CempError(Code.BAD_REQUEST, f"weather[{i}] must be [YYYY-MM-DD, daily mean °C]")
        try:
            d = date.fromisoformat(r[0])
        except ValueError:
            raise CempError(Code.BAD_REQUEST, f"weather[{i}][0]={r[0]!r} is not YYYY-MM-DD") from None
        if d in daily:
            raise CempError(Code.BAD_REQUEST, f"weather: {d} appears twice")
        daily[d] = _parse_num(r[1], f"weather[{i}][1] (°C)", weather.T_MIN_C, weather.T_MAX_C)
    try:
        return fc.forecast(hist, now, versions, daily, grid)
    except ValueError as e:
        raise CempError(Code.BAD_REQUEST, str(e)) from None


def _bands(versions: list[tf.TariffVersion], times: list[datetime]) -> list[str]:
    """The tariff period (peak, flat, valley) of every local hour (``energy.forecast``'s table of them)."""
    return fc.tariff_hours(versions, times)[0]


class EnergyAPI:
    def __init__(self, node: Any, tariffs: list[tf.TariffVersion] | None = None) -> None:
        self.node = node
        self.tariffs = tariffs if tariffs is not None else tf.load()
        self._slots = asyncio.Semaphore(2)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/energy/plan", self.plan),
            web.get("/v1/sites/{site_id}/energy/plan", self.site_plan),
            web.post("/v1/energy/model", self.model),
            web.post("/v1/energy/forecast", self.forecast),
            web.get("/v1/sites/{site_id}/energy/forecast", self.site_forecast),
            web.get(r"/v1/devices/{handle:.+}/health", self.health),
        ]

    async def _work(self, fn: Callable[[], T]) -> T:
        async with self._slots:
            return await asyncio.to_thread(fn)

    async def plan(self, request: web.Request) -> web.Response:
        day = _date(request)
        tank, grid = tank_of(request)
        demand = _list24(request, "demand")
        if demand is None:
            total = _num(request, "demand_kwh_th", -1, 0, 1e9)
            if total < 0:
                raise CempError(
                    Code.BAD_REQUEST, "give demand (24 hourly kWh_th) or demand_kwh_th (the day's total)"
                )
            demand = [total / 24] * 24
        habit = _list24(request, "habit")
        out = await self._work(lambda: run_plan(self.tariffs, day, demand, tank, habit, grid))
        return web.json_response({**out, "demand_source": "given"})

    async def site_plan(self, request: web.Request) -> web.Response:
        sid = prm.site_id(request)
        day = _date(request)
        tank, grid = tank_of(request)

        def read(snap: Any, head: Any) -> tuple[Any, ...]:
            return (*site_history(snap, head, sid, day), sitehistory.season_habit(snap, sid, day))

        def fn() -> dict[str, Any]:
            head, (demand, elec, source, season) = self._site_read(request, sid, read)
            if sum(demand) <= 0:
                raise CempError(
                    Code.INVALID_PAYLOAD,
                    f"site {sid} has no metered heat or electricity in the {HISTORY_DAYS} days before {day}",
                )
            habit, habit_source = season or (
                elec,
                f"the site's electricity per local hour over the same {HISTORY_DAYS} days (the chain holds too "
                "little of last heating season)",
            )
            out = run_plan(self.tariffs, day, demand, tank, habit, grid)
            return {
                **out,
                "site_id": sid,
                "height": head.height,
                "demand_source": f"persistence forecast: mean per local hour of the {HISTORY_DAYS} days before "
                f"{day} ({source})",
                "habit_source": habit_source,
            }

        return web.json_response(await self._work(fn))

    def _site_read(self, request: web.Request, sid: str, read: Callable[[Any, Any], T]) -> tuple[Any, T]:
        """``read(snapshot, head)`` of one snapshot of committed state, once the read gate lets the caller see
        the site's figures (its metered history is its ``sites`` data); (head, what it read)."""
        snap = self.node.ledger.store.snapshot()
        try:
            head = head_of(snap)
            require_site(self.node, request, snap, sid)
            return head, read(snap, head)
        finally:
            snap.release()

    async def _body(self, request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise CempError(Code.TOO_LARGE, f"body larger than {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise CempError(Code.TOO_LARGE, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(raw)
        except ValueError:
            raise CempError(Code.BAD_REQUEST, "body is not JSON") from None

    async def model(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        return web.json_response(await self._work(lambda: fit_model(body, self.tariffs)))

    async def health(self, request: web.Request) -> web.Response:
        handle = request.match_info["handle"]
        if len(handle) > 255:
            raise CempError(Code.BAD_REQUEST, "a device handle is at most 255 characters")
        window = int(_num(request, "window_days", 7, 1, hl.MAX_WINDOW_DAYS))
        now = int(_num(request, "now", time.time() * 1000, 1_420_070_400_000, 4_102_444_800_000))
        store = self.node.ledger.store

        def fn() -> dict[str, Any]:
            snap = store.snapshot()
            try:
                dev = load_device(snap, handle)
                if dev is None:
                    raise CempError(Code.UNKNOWN_DEVICE, f"device {handle[:80]} is not registered")
                # derived from its readings: whoever may read those (``access``)
                self.node.reads.require(request, dev.org, "readings", device=dev.handle)
                head = head_of(snap)
                return {**hl.assess(hl.signals_from_chain(snap, dev, now, window)), "height": head.height}
            finally:
                snap.release()

        return web.json_response(await self._work(fn))

    async def site_forecast(self, request: web.Request) -> web.Response:
        sid = prm.site_id(request)
        grid = _num(request, "grid_factor", pl.DEFAULT_GRID_KG_PER_KWH, 0, 5)
        raw_now = request.query.get("now") or None
        now_local: datetime | None = None
        if raw_now is not None:
            try:
                if len(raw_now) > 32:
                    raise ValueError
                now_local = datetime.fromisoformat(raw_now).replace(tzinfo=None)
            except ValueError:
                raise CempError(
                    Code.BAD_REQUEST,
                    f"now={raw_now[:40]!r}: give the site's local time, like 2026-01-15T10:00",
                ) from None
            if not datetime(2015, 1, 1) <= now_local <= datetime(2100, 1, 1):
                raise CempError(Code.BAD_REQUEST, "now must be between 2015 and 2100")

        def read(snap: Any, _head: Any) -> tuple[datetime, dict[str, Any]]:
            site = load_site(snap, sid)
            if site is None:
                raise CempError(Code.NOT_FOUND, f"no site {sid!r} on this chain")
            now = now_local
            if now is None:
                now = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=site.payload.utc_offset_min)
            return now, sitehistory.site_hours(snap, sid, now, MAX_MODEL_HOURS)

        def fn() -> dict[str, Any]:
            head, (now, hist) = self._site_read(request, sid, read)
            rows = hist.pop("hours")
            if len(rows) < fc.MIN_HISTORY_HOURS:
                raise CempError(
                    Code.INVALID_PAYLOAD,
                    f"site {sid} has {len(rows)} measured hours (site electricity with an outdoor temperature) "
                    f"before {now:%Y-%m-%dT%H:%M}; the model needs at least {fc.MIN_HISTORY_HOURS} (4 weeks) to "
                    "be fitted and scored on held-out weeks",
                )
            try:
                out = fc.forecast(rows, now, self.tariffs, None, grid)
            except ValueError as e:
                raise CempError(Code.INVALID_PAYLOAD, str(e)) from None
            return {
                "site_id": sid,
                "height": head.height,
                "history": {
                    **hist,
                    "hours": len(rows),
                    "first": rows[0][0].isoformat(timespec="minutes"),
                    "last": rows[-1][0].isoformat(timespec="minutes"),
                },
                **out,
            }

        return web.json_response(await self._work(fn))

    async def forecast(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        return web.json_response(await self._work(lambda: run_forecast(body, self.tariffs)))


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of the energy models (listed by the composition root)."""
    return EnergyAPI(node).routes()


routes.openapi_paths = OPENAPI_PATHS  # type: ignore[attr-defined]
