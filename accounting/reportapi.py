"""JSON routes of reports and the Parquet export: issued reports (list, get), a report of a period as its model
(JSON) or rendered (HTML, PDF, XLSX; download), and the export tables.

Everything is computed from one snapshot of committed state in a worker thread; bad sites, periods, formats,
languages and tables are 4xx JSON errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from accounting import export as exportm
from accounting import inventory as invm
from accounting import kpi as kpim
from accounting import params as prm
from accounting import render
from accounting.api import require_site
from accounting.inventory import Head
from accounting.params import PERIOD_Q, SITE_P
from accounting.report import build, list_reports, load_report, report_json
from node.errors import CempError, Code

T = TypeVar("T")
CTYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_SHA = re.compile(r"[0-9a-f]{64}")

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/reports": prm.get_op(
        "Issued reports (report txs), newest first", [prm.query("site", "only this site's reports")]
    ),
    "/v1/reports/{report_sha256}": prm.get_op(
        "One issued report: its anchored key figures, tx and height",
        [{"name": "report_sha256", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
    "/v1/sites/{site_id}/report": prm.get_op(
        "Inventory report of a period (ISO 14064-1 9.3.1, GHG Protocol dual Scope 2, public-building annex "
        "tables 1-3, verification tables): the model as JSON, or rendered as HTML, PDF or XLSX (download)",
        [
            SITE_P,
            PERIOD_Q,
            prm.query("format", "json (default), html, pdf or xlsx"),
            prm.query("lang", "zh (default) or en"),
        ],
    ),
    "/v1/sites/{site_id}/export/{table}.parquet": prm.get_op(
        "Open data: readings, hourly aggregates or inventory of a site and period as Parquet",
        [SITE_P, PERIOD_Q, {"name": "table", "in": "path", "required": True, "schema": {"type": "string"}}],
        "application/vnd.apache.parquet",
    ),
}


def report_model(snap: Any, head: Head, site_id: str, period: str) -> dict[str, Any]:
    """The report model of a site and period at the committed head (inventory + KPIs -> ``report.build``)."""
    raw = invm.compute(snap, head, site_id, period, txs=True)
    inv = invm.finish(raw)
    kp = kpim.compute_kpis({**raw, "digest": inv["digest"]})
    kp.pop("_baseline", None)
    return build(inv, kp)


class ReportAPI:
    def __init__(self, node: Any) -> None:
        self.node = node
        self._reads = prm.SnapshotReads(node)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/reports", self.reports),
            web.get("/v1/reports/{sha}", self.report),
            web.get("/v1/sites/{site_id}/report", self.site_report),
            web.get("/v1/sites/{site_id}/export/{table}.parquet", self.export),
        ]

    async def _read(self, fn: Callable[[Any, Head], T]) -> T:
        return await self._reads.read(fn)

    async def reports_json(self, site: str | None) -> dict[str, Any]:
        """``GET /v1/reports[?site=]``: issued reports, newest first."""

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            return {"reports": [report_json(r) for r in list_reports(snap, site)], "height": head.height}

        return await self._read(fn)

    async def report_record_json(self, sha: str) -> dict[str, Any]:
        """``GET /v1/reports/{sha}``: one issued report's anchored figures, tx and height."""
        if not _SHA.fullmatch(sha):
            raise CempError(
                Code.BAD_REQUEST, "a report is named by its SHA-256 in lower-case hex (64 digits)"
            )

        def fn(snap: Any, head: Head) -> dict[str, Any]:
            r = load_report(snap, sha)
            if r is None:
                raise CempError(Code.NOT_FOUND, f"no report {sha} was issued on this chain")
            return report_json(r)

        return await self._read(fn)

    async def site_report_out(self, sid: str, period: str, fmt: str = "json", lang: str = "zh") -> Any:
        """``GET /v1/sites/{sid}/report?period=&format=&lang=``: the model (json) or the rendered bytes."""

        def fn(snap: Any, head: Head) -> Any:
            model = report_model(snap, head, sid, period)
            return model if fmt == "json" else render.render(model, fmt, lang)

        return await self._read(fn)

    async def reports(self, request: web.Request) -> web.Response:
        return web.json_response(await self.reports_json(prm.site_query(request)))

    async def report(self, request: web.Request) -> web.Response:
        return web.json_response(await self.report_record_json(request.match_info["sha"]))

    async def site_report(self, request: web.Request) -> web.Response:
        sid, period = prm.site_id(request), prm.period(request)
        fmt = prm.choice(request, "format", tuple(CTYPES), "json")
        lang = prm.choice(request, "lang", render.LANGS, "zh")
        await self._read(lambda snap, head: require_site(self.node, request, snap, sid))  # ``sites`` data
        out = await self.site_report_out(sid, period, fmt, lang)
        if fmt == "json":
            return web.json_response(out)
        name = f"{sid}-{period.replace('/', '-')}-{lang}.{fmt}"
        return web.Response(
            body=out,
            content_type=CTYPES[fmt].split(";")[0],
            charset="utf-8" if fmt == "html" else None,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def export(self, request: web.Request) -> web.Response:
        sid, period = prm.site_id(request), prm.period(request)
        table = request.match_info["table"]
        if table not in exportm.TABLES:
            raise CempError(Code.BAD_REQUEST, f"table {table[:20]!r}: use readings, hourly or inventory")
        reads = self.node.reads

        def fn(snap: Any, head: Head) -> bytes:
            require_site(self.node, request, snap, sid)
            return exportm.table_bytes(
                snap,
                head,
                sid,
                period,
                table,
                check_device=lambda handle, org: reads.require(request, org, "readings", device=handle),
            )

        body = await self._read(fn)
        return web.Response(
            body=body,
            content_type="application/vnd.apache.parquet",
            headers={"Content-Disposition": f'attachment; filename="{sid}-{table}.parquet"'},
        )


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of reports and the export (listed by the composition root)."""
    return ReportAPI(node).routes()


routes.openapi_paths = OPENAPI_PATHS  # type: ignore[attr-defined]
