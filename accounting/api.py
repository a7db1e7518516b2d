"""JSON routes of the accounting: sites, inventories, KPIs, baselines, ratings (with QR labels) and factor sets.

Every read comes from one snapshot of committed state; the answer names the height, block hash and app hash it
was computed at. Bad periods, sites, grains or parameters are 4xx JSON errors. Inventories run in a worker thread,
two at a time; their cost is bounded (a period is at most a year or a season, an hourly breakdown at most a month,
``inventory.MAX_DEVICE_HOURS`` boundary-device-hours per request).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

from aiohttp import web

from accounting import factors as fx
from accounting import inventory as invm
from accounting import kpi as kpim
from accounting import params as prm
from accounting import tariffs as tf
from accounting.baseline import BoilerParams, baseline, baseline_json, design_heat_gj
from accounting.inventory import Head
from accounting.rating import (
    BENCHMARKS,
    ZHEJIANG_THRESHOLDS_E3,
    compute_rating,
    label,
    load_rating,
    rating_value,
)
from accounting.sites import boundaries, boundary_json, list_sites, load_site, site_json
from node import schema
from node.errors import CempError, Code

T = TypeVar("T")
PERIOD_Q, SITE_P = prm.PERIOD_Q, prm.SITE_P


_BOILER_Q = [
    prm.query("coal_efficiency", "coal boiler efficiency (default 0.78)"),
    prm.query("gas_efficiency", "gas boiler efficiency (default 0.85)"),
    prm.query("electric_efficiency", "electric boiler efficiency or heat-pump COP (default 0.98)"),
]
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/sites": prm.get_op("Sites recorded on chain", []),
    "/v1/sites/{site_id}": prm.get_op("A site: current version, history, boundaries and ratings", [SITE_P]),
    "/v1/sites/{site_id}/inventory": prm.get_op(
        "Inventory: E = AD x EF per device, subsystem and site, location- and market-based Scope 2, "
        "reconciliation and data quality; every figure names its factor and on-chain data",
        [
            SITE_P,
            PERIOD_Q,
            prm.query("grain", "breakdown: hour (periods up to a month), day, month, quarter or year"),
            prm.query(
                "txs", "1: also name the signed readings txs behind each device's aggregates (provenance)"
            ),
        ],
    ),
    "/v1/sites/{site_id}/inventory/txs": prm.get_op(
        "Every signed readings tx behind one boundary device's aggregates in a period, with their Merkle root",
        [SITE_P, PERIOD_Q, {**prm.query("device", "the device's handle"), "required": True}],
    ),
    "/v1/sites/{site_id}/kpis": prm.get_op(
        "Heating KPIs: W/m2 average and peak vs 50 W/m2, kWh/m2, HDD-normalised intensity, TOU cost per m2 vs "
        "coal and gas, baselines, avoided emissions, unmetered remainder",
        [SITE_P, PERIOD_Q, *_BOILER_Q],
    ),
    "/v1/sites/{site_id}/baseline": prm.get_op(
        "Coal- and gas-boiler baselines for the site's delivered heat in a period",
        [SITE_P, PERIOD_Q, *_BOILER_Q],
    ),
    "/v1/sites/{site_id}/rating": prm.get_op(
        "Carbon-efficiency grade (碳效码): K computed now (location and market) and the rating recorded on chain",
        [SITE_P, PERIOD_Q, prm.query("benchmark", "gas (default), coal, or a fixed kgCO2/m2")],
    ),
    "/v1/sites/{site_id}/rating/label.svg": prm.get_op(
        "QR label of the recorded rating (resolves to the building handle)",
        [SITE_P, PERIOD_Q],
        "image/svg+xml",
    ),
    "/v1/sites/{site_id}/rating/label.png": prm.get_op("QR label as PNG", [SITE_P, PERIOD_Q], "image/png"),
    "/v1/baseline": prm.get_op(
        "Design-load boiler baselines (the case study's assumption): area x load x hours x days",
        [
            prm.query("area", "m2"),
            prm.query("load", "W/m2"),
            prm.query("hours", "hours per day (24)"),
            prm.query("days", "heating days"),
            *_BOILER_Q,
            prm.query("grid_factor", "tCO2/MWh for the electric side (0)"),
        ],
    ),
    "/v1/factors": prm.get_op("Factor sets recorded on chain, by data year", []),
    "/v1/factors/{set_id}": prm.get_op(
        "One factor set with every factor, its unit, year and source",
        [{"name": "set_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
}


def boiler_params(request: web.Request) -> BoilerParams:
    def frac(name: str, default: str, lo: str, hi: str) -> Fraction:
        return prm.number(request, name, Fraction(default), Fraction(lo), Fraction(hi), Fraction)

    return BoilerParams(
        coal_efficiency=frac("coal_efficiency", "0.78", "0.05", "1"),
        gas_efficiency=frac("gas_efficiency", "0.85", "0.05", "1.1"),
        electric_efficiency=frac("electric_efficiency", "0.98", "0.05", "10"),
    )


def require_site(node: Any, request: web.Request, snap: Any, site_id: str) -> None:
    """A site's figures (inventory, KPIs, baselines, reports, exports) are ``sites`` data of its org: whoever the
    node's read gate (``access``) lets read them. An unknown site passes here and is refused as not found."""
    site = load_site(snap, site_id)
    if site is not None:
        node.reads.require(request, site.org, "sites", site=site_id)


class AccountingAPI:
    def __init__(self, node: Any, tariffs: list[tf.TariffVersion] | None = None) -> None:
        self.node = node
        self.tariffs = tariffs if tariffs is not None else tf.load()
        self._reads = prm.SnapshotReads(node)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/sites", self.sites),
            web.get("/v1/sites/{site_id}", self.site),
            web.get("/v1/sites/{site_id}/inventory", self.inventory),
            web.get("/v1/sites/{site_id}/inventory/txs", self.inventory_txs),
            web.get("/v1/sites/{site_id}/kpis", self.kpis),
            web.get("/v1/sites/{site_id}/baseline", self.site_baseline),
            web.get("/v1/sites/{site_id}/rating", self.rating),
            web.get("/v1/sites/{site_id}/rating/label.{fmt}", self.rating_label),
            web.get("/v1/baseline", self.design_baseline),
            web.get("/v1/factors", self.factor_sets),
            web.get("/v1/factors/{set_id}", self.factor_set),
        ]

    async def _read(self, fn: Callable[[Any, Head], T]) -> T:
        """Run ``fn(snapshot, head)`` on one snapshot of committed state, in a worker thread (two at a time)."""
        return await self._reads.read(fn)

    _site_id = staticmethod(prm.site_id)
    _period = staticmethod(prm.period)

    async def sites_json(self) -> dict[str, Any]:
        """``GET /v1/sites``."""

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            return {
                "sites": [
                    {**site_json(r.payload), "org": r.org, "tx": r.tx_hash.hex()} for r in list_sites(snap)
                ],
                "height": head.height,
                "time_ms": head.time_ms,
            }

        return await self._read(fn)

    async def sites(self, request: web.Request) -> web.Response:
        return web.json_response(await self.sites_json())

    async def site(self, request: web.Request) -> web.Response:
        sid = self._site_id(request)

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            rec = load_site(snap, sid)
            if rec is None:
                raise CempError(Code.NOT_FOUND, f"no site {sid!r} on this chain")
            history = []
            for v in range(1, rec.payload.version + 1):
                old = load_site(snap, sid, v)
                if old is not None:
                    history.append({"version": v, "tx": old.tx_hash.hex(), "height": old.height})
            p = schema.rating_prefix(sid)
            ratings = [
                {**rating_value(r.payload, r.tx_hash), "height": r.height}
                for r in (
                    load_rating(snap, sid, k[len(p) :].decode()) for k, _ in snap.iterate(p, p + b"\xff")
                )
                if r is not None
            ]
            return {
                **site_json(rec.payload),
                "org": rec.org,
                "tx": rec.tx_hash.hex(),
                "height": rec.height,
                "history": history,
                "boundaries": [
                    {**boundary_json(b.payload), "tx": b.tx_hash.hex(), "height": b.height}
                    for b in boundaries(snap, sid)
                ],
                "ratings": ratings,
                "as_of_height": head.height,
            }

        return web.json_response(await self._read(fn))

    # The JSON of each route comes from one method taking parsed parameters, so pages for people (``web/``) show
    # exactly what the route answers without computing it again.

    async def inventory_json(
        self, sid: str, period: str, grain: str | None = None, txs: bool = False
    ) -> dict[str, Any]:
        """``GET /v1/sites/{sid}/inventory?period=&grain=&txs=``."""
        return await self._read(
            lambda snap, head: invm.finish(invm.compute(snap, head, sid, period, grain, txs=txs))
        )

    async def kpis_json(self, sid: str, period: str, params: BoilerParams | None = None) -> dict[str, Any]:
        """``GET /v1/sites/{sid}/kpis?period=`` (default boiler parameters unless given)."""
        return kpim.public(await self._read(self._kpis_fn(sid, period, params or BoilerParams())))

    async def rating_json(
        self, sid: str, period: str, bench: str = "gas", params: BoilerParams | None = None
    ) -> dict[str, Any]:
        """``GET /v1/sites/{sid}/rating?period=&benchmark=``: K computed now and the rating on chain."""
        p = params or BoilerParams()

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            raw = invm.compute(snap, head, sid, period)
            inv = invm.finish(raw)
            k = kpim.compute_kpis({**raw, "digest": inv["digest"]}, p, self.tariffs)
            computed = compute_rating(inv, k, bench, ZHEJIANG_THRESHOLDS_E3, p)
            rec = load_rating(snap, sid, period)
            recorded = None
            if rec is not None:
                recorded = {
                    **rating_value(rec.payload, rec.tx_hash),
                    "height": rec.height,
                    "org": rec.org,
                    "benchmark": rec.payload.benchmark,
                    "thresholds_e3": list(rec.payload.thresholds_e3),
                }
            return {"computed": computed, "recorded": recorded}

        return await self._read(fn)

    async def require_site(self, request: web.Request) -> None:
        """The site's figures are ``sites`` data of its org (``require_site``): checked before computing them."""
        sid = self._site_id(request)
        await self._read(lambda snap, head: require_site(self.node, request, snap, sid))

    async def inventory(self, request: web.Request) -> web.Response:
        await self.require_site(request)
        sid, period = self._site_id(request), self._period(request)
        grain = request.query.get("grain") or None
        txs = prm.choice(request, "txs", ("0", "1"), "0")
        return web.json_response(await self.inventory_json(sid, period, grain, txs == "1"))

    async def inventory_txs(self, request: web.Request) -> web.Response:
        await self.require_site(request)
        sid, period = self._site_id(request), self._period(request)
        device = request.query.get("device", "")
        if not device or len(device) > 128:
            raise CempError(
                Code.BAD_REQUEST, "device is required: a boundary device's handle, e.g. 88.123.45/101.1.1"
            )

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            return {**invm.device_txs(snap, sid, period, device), "height": head.height}

        return web.json_response(await self._read(fn))

    def _kpis(self, request: web.Request) -> Callable[[Any, Head], dict[str, Any]]:
        return self._kpis_fn(self._site_id(request), self._period(request), boiler_params(request))

    def _kpis_fn(self, sid: str, period: str, params: BoilerParams) -> Callable[[Any, Head], dict[str, Any]]:
        def fn(snap: Any, head: Head) -> dict[str, Any]:
            raw = invm.compute(snap, head, sid, period)
            digest = invm.finish(raw)["digest"]
            return kpim.compute_kpis({**raw, "digest": digest}, params, self.tariffs)

        return fn

    async def kpis(self, request: web.Request) -> web.Response:
        await self.require_site(request)
        return web.json_response(kpim.public(await self._read(self._kpis(request))))

    async def site_baseline(self, request: web.Request) -> web.Response:
        await self.require_site(request)
        k = await self._read(self._kpis(request))
        keys = (
            "site_id",
            "period",
            "heat_source",
            "heat_gj",
            "baseline",
            "avoided_tco2",
            "co2_location_t",
            "co2_market_t",
            "inventory_digest",
        )
        return web.json_response({key: k[key] for key in keys})

    async def rating(self, request: web.Request) -> web.Response:
        sid, period = self._site_id(request), self._period(request)
        bench = request.query.get("benchmark") or "gas"
        if bench not in BENCHMARKS:
            prm.number(request, "benchmark", Fraction(1), Fraction(1, 10**6), Fraction(10**6), Fraction)
        return web.json_response(await self.rating_json(sid, period, bench, boiler_params(request)))

    async def rating_label(self, request: web.Request) -> web.Response:
        sid, period = self._site_id(request), self._period(request)
        fmt = request.match_info["fmt"]
        if fmt not in ("svg", "png"):
            raise CempError(Code.BAD_REQUEST, f"label.{fmt[:10]}: use label.svg or label.png")

        def fn(snap: Any, head: Head) -> tuple[str, str]:
            site = load_site(snap, sid)
            if site is None:
                raise CempError(Code.NOT_FOUND, f"no site {sid!r} on this chain")
            rec = load_rating(snap, sid, period)
            if rec is None:
                raise CempError(
                    Code.NOT_FOUND, f"no rating of {sid} for {period} on chain; issue one with cemp rating"
                )
            g = rec.payload.grade_location
            return site.payload.building, f"{site.payload.name}: grade {g} ({rec.payload.scheme}, {period})"

        building, title = await self._read(fn)
        url = f"{request.scheme}://{request.host}/api/handles/{building}"
        body = label(url, fmt, title)
        return web.Response(body=body, content_type="image/svg+xml" if fmt == "svg" else "image/png")

    async def design_baseline(self, request: web.Request) -> web.Response:
        area = prm.number(request, "area", Fraction(-1), Fraction(1), Fraction(10**9), Fraction)
        load = prm.number(request, "load", Fraction(-1), Fraction(1), Fraction(1000), Fraction)
        days = prm.number(request, "days", Fraction(-1), Fraction(1), Fraction(366), Fraction)
        if min(area, load, days) < 0:
            raise CempError(Code.BAD_REQUEST, "area (m2), load (W/m2) and days are required")
        hours = prm.number(request, "hours", Fraction(24), Fraction(1, 60), Fraction(24), Fraction)
        p = boiler_params(request)
        grid = prm.number(request, "grid_factor", Fraction(0), Fraction(0), Fraction(2), Fraction)
        p = BoilerParams(
            p.coal_efficiency,
            p.gas_efficiency,
            electric_efficiency=p.electric_efficiency,
            grid_factor_tco2_per_mwh=grid,
        )
        b = baseline(design_heat_gj(area, load, hours, days), p)
        return web.json_response(baseline_json(b, p))

    async def factor_sets(self, request: web.Request) -> web.Response:
        def fn(snap: Any, head: Head) -> dict[str, Any]:
            return {
                "sets": [fx.set_json(r, with_factors=False) for r in fx.list_sets(snap)],
                "height": head.height,
            }

        return web.json_response(await self._read(fn))

    async def factor_set(self, request: web.Request) -> web.Response:
        set_id = request.match_info["set_id"]
        if not fx.KEY_RE.fullmatch(set_id) or len(set_id) > 64:
            raise CempError(
                Code.BAD_REQUEST, f"set id {set_id[:80]!r} is not a factor set id like cn-mee-2023"
            )

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            rec = fx.load_set(snap, set_id)
            if rec is None:
                raise CempError(Code.NOT_FOUND, f"no factor set {set_id!r} on this chain")
            return fx.set_json(rec)

        return web.json_response(await self._read(fn))


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of the accounting (listed by the composition root)."""
    return AccountingAPI(node).routes()


routes.openapi_paths = OPENAPI_PATHS  # type: ignore[attr-defined]
