"""The one place that says what a CEMP chain executes and what a CEMP node serves.

- ``kinds()``: the tx kinds of the chain. The core's (``device.register``, ``readings``, ``membership``,
  ``document``) with the resolver's hook inside ``device.register`` (the device's handle record is written in
  the same tx), plus the resolver's ``handle.put`` and ``handle.delete``. A node and ``cemp verify`` both use
  this: a regulator's re-check replays the same kinds and hooks, so it reaches the same app hash.
- ``ROUTES``: the read routes a node serves besides the core API (sign-in, people, grants and the audit trail, whose
  provider carries the node's read gate: who may read what, ``access.reads``; documents, the Handle.Net REST API,
  and the web UI for people: explorer, device and handle pages, consortium status).
- the energy models' routes (day-ahead charging plan, expected-consumption model fit and forecast, device health,
  a site's outdoor temperature from its on-chain sensor) and the device page's ``health`` panel (``web.slots``): no
  kinds.
- the maintenance kinds (``alarm``, ``workorder``: anomaly alarms and inspection work orders, each step signed).
- the access kinds (``person.put``, ``person.revoke``, ``grant``, ``grant.revoke``, ``data.policy``) and the
  chain's authorizer: what each person's role may write, checked on admission and on apply (``access.policy``).
- the accounting's kinds (``site``, ``boundary``, ``factors``, ``rating``, ``report``) and routes (sites, inventories,
  KPIs, baselines, ratings, factor sets; reports and the Parquet export), and its pages for people (``web.carbon``:
  the carbon portrait and the reports pages, with their menu entries ``NAV_LINKS``).

- the web UI's alarm inbox and work-order board (``web.maint``), its menu entries and the device page's alarms
  panel (``web.slots``).

``collector`` adds no kinds, hooks or routes today; when it does, they are listed here and nowhere else. Nothing is
found by name at run time.
"""

from __future__ import annotations

from access import ChainAuthorizer, access_kinds, policy_for
from access.api import routes as access_routes
from accounting import accounting_kinds
from accounting.api import routes as accounting_routes
from accounting.reportapi import routes as report_routes
from energy.api import routes as energy_routes
from energy.outdoor import routes as weather_routes
from energy.webpanel import render_health
from maintenance import maintenance_kinds
from maintenance.api import routes as maintenance_routes
from node.corekinds import core_kinds
from node.documents import documents_routes
from node.server import DocumentedRoutes, RouteProvider
from node.txkinds import KindRegistry
from resolver.api import routes as resolver_routes
from resolver.kinds import REGISTER_HOOKS as RESOLVER_REGISTER_HOOKS
from resolver.kinds import handle_kinds
from resolver.openapi import PATHS as RESOLVER_OPENAPI
from web import slots
from web.app import routes as web_routes
from web.carbon import routes as carbon_routes
from web.maint import device_alarms_panel
from web.maint import routes as web_maint_routes


def kinds() -> KindRegistry:
    """A fresh registry of every tx kind of a CEMP chain (the same content on every call), with the authorizer that
    decides which person may send which kind for their org (``access.policy``)."""
    app = [*handle_kinds(), *accounting_kinds(), *maintenance_kinds(), *access_kinds()]
    return KindRegistry(
        [*core_kinds(RESOLVER_REGISTER_HOOKS), *app], authorizer=ChainAuthorizer(policy_for(app))
    )


ROUTES: tuple[RouteProvider, ...] = (
    access_routes,
    documents_routes,
    DocumentedRoutes(resolver_routes, RESOLVER_OPENAPI),
    accounting_routes,
    energy_routes,
    weather_routes,
    report_routes,
    carbon_routes,
    maintenance_routes,
    web_maint_routes,
    web_routes,
)
"""Extra read routes of every node, matched before the core API's."""

NAV_LINKS = (
    slots.NavLink("carbon", "/carbon", "Carbon", "碳画像"),
    slots.NavLink("reports", "/reports", "Reports", "报告"),
    slots.NavLink("alarms", "/alarms", "Alarms", "告警"),
    slots.NavLink("workorders", "/workorders", "Work orders", "工单"),
)
"""Menu entries of the web UI beyond the explorer's (the accounting's pages, the alarm inbox and work-order board)."""
DEVICE_PANELS = (
    slots.DevicePanel("alarms", "Alarms", "告警", device_alarms_panel),
    # a week of readings per rendering (~300 ms for a 1-minute meter): shown a minute, then refreshed in the background
    slots.DevicePanel("health", "Device health", "设备健康", render_health, keep_s=60),
)
"""Sections of the device page besides its own."""
for _link in NAV_LINKS:
    if not any(x.key == _link.key for x in slots.NAV):  # importing twice (tests reload) adds it once
        slots.add_nav(_link)
for _panel in DEVICE_PANELS:
    if not any(x.key == _panel.key for x in slots.DEVICE_PANELS):
        slots.add_device_panel(_panel)
