"""Pages for people over the accounting: a site's carbon portrait, and reports (list, preview, download, verify
against the chain).

Every figure comes from the accounting's and the energy models' JSON routes — the ``AccountingAPI`` /
``ReportAPI`` methods that answer ``/v1/sites/{id}/inventory``, ``/kpis``, ``/rating``, ``/report`` and
``/v1/reports``, and the ``EnergyAPI`` handlers of ``/v1/sites/{id}/energy/forecast`` and ``.../energy/plan``
(called with a clone of the page's request pointed at the route's URL, so the same parameters, read gate and
bounds apply) — and is only formatted here, never recomputed: a page and the route it names always agree. Pages work without JavaScript (tables and CSS
bars); ``static/app.js`` draws the breakdown chart with uPlot from the same JSON embedded in the page.

Routes: ``/carbon`` (sites), ``/carbon/{site_id}?period=&grain=``, ``/reports[?site=]``,
``/reports/{site_id}/preview?period=``, ``/reports/verify?sha=`` (an issued report's anchored figures against the
chain now) and ``POST /reports/verify`` (a report file, checked as ``cemp report verify`` does).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from yarl import URL

from accounting import params as prm
from accounting import render
from accounting.api import AccountingAPI
from accounting.report import report_sha256
from accounting.reportapi import ReportAPI
from energy.api import EnergyAPI
from node.errors import CempError, Code
from web.app import PageError, WebUI

MAX_UPLOAD = 20 * 1024 * 1024
"""A report file to verify (a season PDF is ~100 KB; a season HTML with its tx list ~1 MB)."""
GRAINS = ("", "day", "month", "quarter")


def default_period(site: dict[str, Any], now_ms: int) -> str:
    """The heating season holding ``now`` in the site's local time, else the last one that ended."""
    local = datetime.fromtimestamp(now_ms / 1000, UTC) + timedelta(minutes=int(site["utc_offset_min"]))
    d = local.date()
    sm, sd = (int(x) for x in str(site["season_start"]).split("-"))
    start_year = d.year if (d.month, d.day) >= (sm, sd) else d.year - 1
    return f"{start_year}/{(start_year + 1) % 100:02d}-season"


def presets(site: dict[str, Any], now_ms: int) -> list[tuple[str, str]]:
    """(label, period) shortcuts: this season, the last one, this month, last month, this year."""
    season = default_period(site, now_ms)
    y = int(season[:4])
    local = (
        datetime.fromtimestamp(now_ms / 1000, UTC) + timedelta(minutes=int(site["utc_offset_min"]))
    ).date()
    last_month = local.replace(day=1) - timedelta(days=1)
    return [
        ("season", season),
        ("prev_season", f"{y - 1}/{y % 100:02d}-season"),
        ("this_month", f"{local.year}-{local.month:02d}"),
        ("last_month", f"{last_month.year}-{last_month.month:02d}"),
        ("this_year", str(local.year)),
    ]


def tonnes(ug: int) -> Decimal:
    return Decimal(ug) / Decimal(10**12)


class CarbonPages:
    """Handlers over one node; rendering, errors and language come from the explorer's ``WebUI``."""

    def __init__(self, node: Any) -> None:
        self.ui = WebUI(node)
        self.acc = AccountingAPI(node)
        self.rep = ReportAPI(node)
        self.energy = EnergyAPI(node)

    def routes(self) -> list[web.RouteDef]:
        p = self.ui.page
        return [
            web.get("/carbon", p(self.sites)),
            web.get("/carbon/{site_id}", p(self.portrait)),
            web.get("/reports", p(self.reports)),
            web.get("/reports/verify", p(self.verify_issued)),
            web.post("/reports/verify", p(self.verify_file)),
            web.get("/reports/{site_id}/preview", p(self.preview)),
        ]

    async def _site(self, request: web.Request, sid: str) -> tuple[dict[str, Any], int]:
        """The site, once this viewer may read its figures (``sites`` data of its org, as the JSON routes ask the
        node's read gate); a members-only site answers 401 signed out and 403 to a member without a grant."""
        data = await self.acc.sites_json()
        for s in data["sites"]:
            if s["site_id"] == sid:
                self.ui.require_site(request, str(s["org"]), sid)
                return s, int(data["time_ms"])
        raise PageError(404, "no_site", sid)

    def _visible(self, request: web.Request, sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Lists leave out the sites whose figures this viewer may not read."""
        return [s for s in sites if self.ui.may_read_site(request, str(s["org"]), str(s["site_id"]))]

    async def _energy_route(
        self, request: web.Request, sid: str, name: str, query: dict[str, str]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """``GET /v1/sites/{sid}/energy/{name}`` answered by the route's own handler: (JSON, None), or (None, the
        route's refusal) -- a site without enough history gets the route's reason, not a broken page."""
        handler = getattr(self.energy, f"site_{name}", None)
        if handler is None:
            return None, f"/v1/sites/{sid}/energy/{name} is not served by this node's version"
        sub = request.clone(rel_url=URL.build(path=f"/v1/sites/{sid}/energy/{name}", query=query))
        try:
            resp = await handler(sub)
        except CempError as e:
            return None, e.message
        return json.loads(resp.text), None

    # --- carbon portrait ----------------------------------------------------------------------------------------

    async def sites(self, request: web.Request) -> web.StreamResponse:
        data = await self.acc.sites_json()
        return self.ui.render(request, "carbon_sites.html", sites=self._visible(request, data["sites"]))

    async def portrait(self, request: web.Request) -> web.StreamResponse:
        sid = prm.site_id(request)
        site, now_ms = await self._site(request, sid)
        period = request.query.get("period") or default_period(site, now_ms or 1)
        grain = prm.choice(request, "grain", GRAINS, "")
        local_now = datetime.fromtimestamp((now_ms or 1) / 1000, UTC) + timedelta(
            minutes=int(site["utc_offset_min"])
        )
        fc_now = request.query.get("fc_now", "")[:40]
        plan_date = request.query.get("plan_date", "") or (local_now.date() + timedelta(days=1)).isoformat()
        inv, kp, rating, (fc, fc_error), (plan, plan_error) = await asyncio.gather(
            self.acc.inventory_json(sid, period, grain or None),
            self.acc.kpis_json(sid, period),
            self.acc.rating_json(sid, period),
            self._energy_route(request, sid, "forecast", {"now": fc_now} if fc_now else {}),
            self._energy_route(request, sid, "plan", {"date": plan_date[:40]}),
        )
        plan_chart = None
        if plan is not None:
            hours = plan["plan"]["hours"]
            plan_chart = {
                "labels": [f"{h['hour']:02d}:00" for h in hours],
                "power_kw": [h["power_kw"] for h in hours],
                "stored_kwh": [h["stored_kwh_end"] for h in hours],
                "price": [h["price_yuan_per_kwh"] for h in hours],
            }
        rows = inv["breakdown"]
        chart = {
            "labels": [r["label"] for r in rows],
            "energy_mwh": [r["energy_wh"] / 1e6 for r in rows],
            "co2_location_t": [float(r["co2_location_t"]) for r in rows],
            "co2_market_t": [float(r["co2_market_t"]) for r in rows],
        }
        tot = inv["site_total"]
        base = kp["baseline"]
        compare = [
            ("actual_location", float(tot["co2_location_t"])),
            ("actual_market", float(tot["co2_market_t"])),
            ("coal_boiler", float(base["coal_tco2"])),
            ("gas_boiler", float(base["gas_tco2"])),
        ]
        subs = inv["subsystems"]
        elec_devices = [d for d in inv["devices"] if d["carrier"] == "electricity"]
        power = kp["power"]
        # the bars' scale leaves room beyond the larger of the figures and the 50 W/m² reference line
        wm2_max = 1.15 * max(
            [
                50.0,
                *(
                    float(power[k] or 0)
                    for k in power
                    if k.endswith("w_per_m2") and k != "reference_w_per_m2"
                ),
            ]
        )
        q = {"period": period}
        url = self.ui.ctx(request)["url"]
        return self.ui.render(
            request,
            "carbon.html",
            site=site,
            period=period,
            grain=grain,
            grains=GRAINS[1:],
            presets=presets(site, now_ms or 1),
            inv=inv,
            kp=kp,
            rating=rating,
            tot=tot,
            subs=subs,
            sub_max=max([1, *(s["energy_wh"] for s in subs)]),
            devices=inv["devices"],
            dev_max=max([1, *(d["energy_wh"] for d in elec_devices)]),
            compare=compare,
            compare_max=max([1e-9, *(v for _, v in compare)]),
            wm2_max=wm2_max,
            chart_json=json.dumps(chart).replace("</", "<\\/"),
            fc=fc,
            fc_error=fc_error,
            plan=plan,
            plan_error=plan_error,
            plan_date=plan_date[:40],
            plan_chart_json=json.dumps(plan_chart).replace("</", "<\\/") if plan_chart else None,
            tonnes=tonnes,
            dec=Decimal,
            routes={
                "inventory": url(f"/v1/sites/{sid}/inventory", grain=grain, **q),
                "kpis": url(f"/v1/sites/{sid}/kpis", **q),
                "rating": url(f"/v1/sites/{sid}/rating", **q),
                "forecast": url(f"/v1/sites/{sid}/energy/forecast", now=fc_now),
                "plan": url(f"/v1/sites/{sid}/energy/plan", date=plan_date[:40]),
            },
        )

    # --- reports ------------------------------------------------------------------------------------------------

    async def reports(self, request: web.Request) -> web.StreamResponse:
        site = prm.site_query(request)
        data, sites = await asyncio.gather(self.rep.reports_json(site), self.acc.sites_json())
        visible = self._visible(request, sites["sites"])
        shown = {s["site_id"] for s in visible}
        default = {s["site_id"]: default_period(s, int(sites["time_ms"]) or 1) for s in visible}
        return self.ui.render(
            request,
            "reports.html",
            reports=[r for r in data["reports"] if r["site"] in shown],
            sites=visible,
            site_filter=site or "",
            default_period=default,
            tonnes_g=lambda g: Decimal(g) / Decimal(10**6),
        )

    async def preview(self, request: web.Request) -> web.StreamResponse:
        sid = prm.site_id(request)
        site, now_ms = await self._site(request, sid)
        period = request.query.get("period") or default_period(site, now_ms or 1)
        model = await self.rep.site_report_out(sid, period, "json")
        li = 0 if self.ui.ctx(request)["lang"] == "zh" else 1
        issued = [
            r
            for r in (await self.rep.reports_json(sid))["reports"]
            if r["period"] == model["period"]["label"]
        ]
        return self.ui.render(
            request,
            "report_preview.html",
            site=site,
            period=period,
            model=model,
            li=li,
            text=render.text,
            num=render.num,
            summary=[(render.SUMMARY_LABELS[k][li], model["display"][k]) for k in render.SUMMARY_KEYS],
            title=render.TITLE[li],
            sha=report_sha256(model),
            issued=issued,
        )

    async def verify_issued(self, request: web.Request) -> web.StreamResponse:
        """An issued report's anchored figures against the same figures derived from the chain now."""
        sha = request.query.get("sha", "")
        rec = await self.rep.report_record_json(sha)
        await self._site(request, str(rec["site"]))
        model = await self.rep.site_report_out(rec["site"], rec["period"], "json")
        kf = model["key_figures"]
        now = {
            "energy_wh": kf["energy_wh"],
            "heat_wh": kf["heat_wh"],
            "co2e_g": kf["co2_location_ug"] // 10**6,
            "co2e_market_g": kf["co2_market_ug"] // 10**6,
            "aggregates_root": kf["aggregates_root"],
            "readings_txs_root": kf.get("readings_txs_root"),
        }
        rows = [(k, rec.get(k), v, rec.get(k) == v) for k, v in now.items()]
        return self.ui.render(
            request,
            "report_verify.html",
            rec=rec,
            rows=rows,
            match=all(ok for *_, ok in rows),
            now_height=model["as_of"]["height"],
            result=None,
        )

    async def verify_file(self, request: web.Request) -> web.StreamResponse:
        """A report file (PDF, XLSX or HTML) re-checked against the chain, as ``cemp report verify`` does."""
        if request.content_length is not None and request.content_length > MAX_UPLOAD:
            raise PageError(413, "too_large", f"at most {MAX_UPLOAD // 2**20} MB")
        try:
            form = await request.post()
        except ValueError:
            raise PageError(400, "bad_param", "the form could not be read") from None
        field = form.get("file")
        if not isinstance(field, web.FileField):
            raise PageError(400, "bad_param", "choose a report file (PDF, XLSX or HTML) to verify")
        data = field.file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise PageError(413, "too_large", f"at most {MAX_UPLOAD // 2**20} MB")
        try:
            _, model, _ = await asyncio.to_thread(render.extract, data)
            sid, period = str(model["site"]["site_id"]), str(model["period"]["label"])
        except CempError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise CempError(Code.BAD_REQUEST, f"not a CEMP report file: {e}") from None
        prm.check_site_id(sid)
        await self._site(request, sid)
        sha = report_sha256(model)
        inv = await self.acc.inventory_json(sid, period, txs=True)
        try:
            anchored: dict[str, Any] | None = await self.rep.report_record_json(sha)
        except CempError as e:
            if e.code != Code.NOT_FOUND:
                raise
            anchored = None
        out = await asyncio.to_thread(render.verify, data, lambda s, p: inv, lambda s: anchored)
        return self.ui.render(
            request,
            "report_verify.html",
            rec=anchored,
            rows=[],
            match=out["match"],
            now_height=out["chain_height"],
            result=out,
            filename=field.filename,
        )


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of the carbon pages (listed by the composition root)."""
    return CarbonPages(node).routes()
