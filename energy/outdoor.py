"""Outdoor temperature as a device of the site: which device it is, its hourly means from the chain, and a route.

A site's outdoor air sensor is the device its boundary lists with subsystem ``weather`` (carrier ``none``); it reads
``temp.outdoor`` in mdegC, signed by its own key like every other device (the demo's is a Modbus PT100 transmitter
fed by the load model's Hohhot climate). Hourly means come from the chain's hourly aggregates of that quantity, so
every figure built on them (degree-days, the expected-consumption models) rests on signed readings.

``GET /v1/sites/{site_id}/weather?from=YYYY-MM-DD&to=YYYY-MM-DD[&base=18]``: hourly means (site local time) and
daily means with heating degree-days over at most ``MAX_DAYS`` local days; 404 when the site has no outdoor sensor.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from accounting.sites import SITE_ID_RE, latest_boundary, load_site
from energy import weather
from node import codec, schema
from node.devices import load_device
from node.errors import CempError, Code
from node.types import HourlyAggregate

OUTDOOR_SUBSYSTEM = "weather"
OUTDOOR_QUANTITY = "temp.outdoor"
HOUR_MS = 3_600_000
MAX_DAYS = 400
_ERR = {"$ref": "#/components/responses/Error"}

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/sites/{site_id}/weather": {
        "get": {
            "summary": "Outdoor temperature of a site from its on-chain outdoor sensor: hourly and daily means, HDD",
            "parameters": [
                {"name": "site_id", "in": "path", "required": True, "schema": {"type": "string"}},
                *(
                    {
                        "name": f,
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": d,
                    }
                    for f, d in (
                        ("from", "first local date, YYYY-MM-DD"),
                        ("to", "last local date, YYYY-MM-DD"),
                    )
                ),
                {"name": "base", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "ok", "content": {"application/json": {}}},
                "400": _ERR,
                "404": _ERR,
            },
        }
    }
}


def outdoor_device(snap: Any, site_id: str) -> str | None:
    """The handle of the site's outdoor air sensor (its boundary's ``weather`` device), if it has one."""
    b = latest_boundary(snap, site_id)
    if b is None:
        return None
    return next((str(d.handle) for d in b.payload.devices if d.subsystem == OUTDOOR_SUBSYSTEM), None)


def hourly_outdoor_c(snap: Any, handle: str, start_ms: int, stop_ms: int) -> list[tuple[int, float]]:
    """(UTC hour start ms, mean °C) of every hour in ``[start_ms, stop_ms)`` that has readings on chain."""
    dev = load_device(snap, handle)
    if dev is None:
        return []
    lo, hi = schema.hourly_range(dev.devnum, OUTDOOR_QUANTITY, start_ms // HOUR_MS, -(-stop_ms // HOUR_MS))
    out = []
    for k, v in snap.iterate(lo, hi, limit=MAX_DAYS * 24 + 24):
        _, _, hour = schema.parse_hourly_key(k)
        a = codec.decode(HourlyAggregate, v)
        if a.count:
            out.append((hour * HOUR_MS, a.total / a.count / 1000))
    return out


def site_weather(snap: Any, site_id: str, first: date, last: date, base_c: float) -> dict[str, Any]:
    site = load_site(snap, site_id)
    if site is None:
        raise CempError(Code.NOT_FOUND, f"no site {site_id!r} on this chain")
    handle = outdoor_device(snap, site_id)
    if handle is None:
        raise CempError(
            Code.NOT_FOUND,
            f"site {site_id} has no outdoor temperature sensor: list one in its boundary with subsystem "
            f"'{OUTDOOR_SUBSYSTEM}' (carrier none) reading {OUTDOOR_QUANTITY}",
        )
    off = timedelta(minutes=site.payload.utc_offset_min)
    start = int((datetime.combine(first, datetime.min.time(), UTC) - off).timestamp() * 1000)
    stop = int(
        (datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC) - off).timestamp() * 1000
    )
    hours = [
        (datetime.fromtimestamp(h / 1000, UTC) + off, c)
        for h, c in hourly_outdoor_c(snap, handle, start, stop)
    ]
    means = weather.daily_means((t.replace(tzinfo=None), c) for t, c in hours)
    days = [
        {"date": d.isoformat(), "mean_c": round(m, 2), "hdd": round(weather.hdd(m, base_c), 2)}
        for d, m in means.items()
    ]
    return {
        "site_id": site_id,
        "device": handle,
        "quantity": OUTDOOR_QUANTITY,
        "base_c": base_c,
        "hours": [[t.strftime("%Y-%m-%dT%H:%M"), round(c, 2)] for t, c in hours],
        "days": days,
        "hdd_total": round(sum(weather.hdd(m, base_c) for m in means.values()), 2),
    }


def _date(request: web.Request, name: str) -> date:
    raw = request.query.get(name, "")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise CempError(
            Code.BAD_REQUEST, f"{name} must be a local date like 2026-01-15, got {raw[:20]!r}"
        ) from None


class WeatherAPI:
    def __init__(self, node: Any) -> None:
        self.node = node

    async def weather(self, request: web.Request) -> web.Response:
        sid = request.match_info["site_id"]
        if not SITE_ID_RE.fullmatch(sid):
            raise CempError(Code.BAD_REQUEST, f"site id {sid[:80]!r} is not a short lower-case id")
        first, last = _date(request, "from"), _date(request, "to")
        if last < first or (last - first).days >= MAX_DAYS:
            raise CempError(Code.BAD_REQUEST, f"from..to must be 1 to {MAX_DAYS} days, in order")
        try:
            base = float(request.query.get("base", weather.DEFAULT_BASE_C))
        except ValueError:
            raise CempError(Code.BAD_REQUEST, "base must be a temperature in °C, e.g. 18") from None
        if not -10 <= base <= 30:
            raise CempError(Code.BAD_REQUEST, "base must be between -10 and 30 °C")
        store = self.node.ledger.store

        def run() -> dict[str, Any]:
            snap = store.snapshot()
            try:
                return site_weather(snap, sid, first, last, base)
            finally:
                snap.release()

        return web.json_response(await asyncio.to_thread(run))


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of the site's outdoor temperature (listed by the composition root)."""
    return [web.get("/v1/sites/{site_id}/weather", WeatherAPI(node).weather)]


routes.openapi_paths = OPENAPI_PATHS  # type: ignore[attr-defined]
