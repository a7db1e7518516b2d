"""JSON routes of alarms and work orders, read from one snapshot of committed state (readable by every org).

- ``GET /v1/alarms?state=&device=&limit=``: newest first; ``state`` ``open`` (not closed), ``closed`` or one state;
- ``GET /v1/alarms/{n}``: the alarm, its history (every step with its signer, tx, block and time), its work orders;
- ``GET /v1/workorders?state=&device=&limit=``, ``GET /v1/workorders/{n}``: the same for work orders;
- ``GET /v1/alarms/{n}/history``, ``GET /v1/workorders/{n}/history``: the steps alone;
- ``GET /v1/calibrations``: each meter's latest calibration and next due date (overdue flagged), and the
  registered meters that have none on chain;
- ``GET /v1/maintenance/flow``: the state machines and who may take each step.

Lists look at no more than ``MAX_SCAN`` records per request; bad numbers or filters are 400, unknown ones 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from maintenance import workflow as wf
from maintenance.alarms import alarm_history, alarm_json, list_alarms, load_alarm, step_json
from maintenance.workorders import (
    calibration_json,
    list_calibrations,
    list_orders,
    load_order,
    order_history,
    order_json,
)
from node import codec, schema
from node.devices import load_device
from node.errors import CempError, Code
from node.readgate import readings_check
from node.state import StateView
from node.store import prefix_stop
from node.types import DeviceRecord

T = TypeVar("T")
MAX_SCAN = 20_000
MAX_LIMIT = 500
_ERR = {"$ref": "#/components/responses/Error"}


def _get(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "ok", "content": {"application/json": {}}},
                "400": _ERR,
                "404": _ERR,
            },
        }
    }


def _q(name: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": desc, "schema": {"type": "string"}}


_N = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer"}}
_LIST_Q = [
    _q("state", "open (every state but closed), closed, or one state"),
    _q("device", "only this device handle"),
    _q("limit", f"at most this many (default 100, at most {MAX_LIMIT})"),
]
OPENAPI_PATHS: dict[str, Any] = {
    "/v1/alarms": _get("Alarms on chain, newest first", _LIST_Q),
    "/v1/alarms/{n}": _get("An alarm: what was expected and observed, since when, evidence, history", [_N]),
    "/v1/alarms/{n}/history": _get("Every step of an alarm with its signer and tx", [_N]),
    "/v1/workorders": _get("Inspection work orders, newest first", _LIST_Q),
    "/v1/workorders/{n}": _get("A work order with its history and the alarm it came from", [_N]),
    "/v1/workorders/{n}/history": _get("Every step of a work order with its signer and tx", [_N]),
    "/v1/calibrations": _get("Meters' calibration due dates", []),
    "/v1/maintenance/flow": _get("The alarm and work-order state machines and who may take each step", []),
}


def flow_json() -> dict[str, Any]:
    def one(flow: dict[str, wf.Transition]) -> list[dict[str, Any]]:
        return [
            {
                "action": t.action,
                "from": [s for s in t.moves if s],
                "to": sorted(set(t.moves.values())),
                "roles": sorted(t.roles),
                "who": wf.who(t.roles),
                "help": t.help,
            }
            for t in flow.values()
        ]

    return {
        "alarm": {"states": list(wf.ALARM_STATES), "steps": one(wf.ALARM_FLOW)},
        "workorder": {"states": list(wf.WORKORDER_STATES), "steps": one(wf.WORKORDER_FLOW)},
        "signed_by": "each step is a tx signed by the acting org's admin key",
    }


def parse_number(raw: str, what: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 2**32 - 1:
        raise CempError(Code.BAD_REQUEST, f"{what} {raw[:20]!r} is not a number like 7")
    return int(raw)


def list_filter(request: web.Request, states: tuple[str, ...]) -> tuple[str, str, int]:
    state = request.query.get("state", "")
    if state and state != "open" and state not in states:
        raise CempError(
            Code.BAD_REQUEST, f"state {state[:20]!r}: use open, {', '.join(states)} or leave it out"
        )
    device = request.query.get("device", "")[:256]
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise CempError(Code.BAD_REQUEST, f"limit must be 1..{MAX_LIMIT}")
    return state, device, int(raw)


def matches(state: str, device: str, rec_state: str, rec_device: str) -> bool:
    if state == "open" and rec_state == "closed":
        return False
    if state and state != "open" and rec_state != state:
        return False
    return not device or rec_device == device


def alarm_detail(snap: Any, n: int) -> dict[str, Any]:
    a = load_alarm(snap, n)
    if a is None:
        raise CempError(Code.NOT_FOUND, f"no alarm {n} on this chain")
    orders = [order_json(w) for w in (load_order(snap, x) for x in a.workorders) if w is not None]
    return {**alarm_json(a), "history": [step_json(s) for s in alarm_history(snap, n)], "orders": orders}


def order_detail(snap: Any, n: int) -> dict[str, Any]:
    w = load_order(snap, n)
    if w is None:
        raise CempError(Code.NOT_FOUND, f"no work order {n} on this chain")
    a = load_alarm(snap, w.opened.alarm) if w.opened.alarm else None
    return {
        **order_json(w),
        "history": [step_json(s) for s in order_history(snap, n)],
        "alarm_detail": alarm_json(a) if a is not None else None,
    }


def alarms_list(snap: Any, state: str, device: str, limit: int) -> list[dict[str, Any]]:
    return [
        alarm_json(a)
        for a in list_alarms(snap, limit=MAX_SCAN)
        if matches(state, device, a.state, a.raised.device)
    ][:limit]


def orders_list(snap: Any, state: str, device: str, limit: int) -> list[dict[str, Any]]:
    return [
        order_json(w)
        for w in list_orders(snap, limit=MAX_SCAN)
        if matches(state, device, w.state, w.opened.device)
    ][:limit]


def calibrations(snap: Any, now_ms: int) -> dict[str, Any]:
    cals = [calibration_json(c, now_ms) for c in list_calibrations(snap)]
    known = {c["device"] for c in cals}
    without = []
    p = schema.DEVICE_PREFIX
    for _, raw in snap.iterate(p, prefix_stop(p), limit=MAX_SCAN):
        d = codec.decode(DeviceRecord, raw)
        if d.kind.startswith("meter.") and d.handle not in known:
            without.append(d.handle)
    return {"meters": sorted(cals, key=lambda c: c["due_ms"]), "without_calibration": without}


class MaintenanceAPI:
    def __init__(self, node: Any) -> None:
        self.node = node

    def routes(self) -> list[web.RouteDef]:
        out = []
        for path, what, key, states, listing, detail in (
            ("/v1/alarms", "alarm", "alarms", wf.ALARM_STATES, alarms_list, alarm_detail),
            ("/v1/workorders", "work order", "workorders", wf.WORKORDER_STATES, orders_list, order_detail),
        ):
            out += [
                web.get(path, self._lister(key, states, listing)),
                web.get(path + "/{n}", self._detail(what, detail, None)),
                web.get(path + "/{n}/history", self._detail(what, detail, key.rstrip("s"))),
            ]
        return [
            *out,
            web.get("/v1/calibrations", self.calibrations),
            web.get("/v1/maintenance/flow", self.flow),
        ]

    async def _read(self, fn: Callable[[Any], T]) -> T:
        store = self.node.ledger.store

        def run() -> T:
            snap = store.snapshot()
            try:
                return fn(snap)
            finally:
                snap.release()

        return await asyncio.to_thread(run)

    def _lister(
        self, key: str, states: tuple[str, ...], listing: Callable[[Any, str, str, int], list[dict[str, Any]]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``GET /v1/alarms`` (or work orders): the filtered list."""

        async def handler(request: web.Request) -> web.Response:
            state, device, limit = list_filter(request, states)
            items = await self._read(lambda s: listing(s, state, device, MAX_SCAN))
            may_read = readings_check(self.node.reads, request, self.node.ledger.store)
            shown = [i for i in items if may_read(str(i.get("device") or ""))]
            return web.json_response({key: shown[:limit], "withheld": len(items) - len(shown)})

        return handler

    def _detail(
        self, what: str, detail: Callable[[Any, int], dict[str, Any]], history_of: str | None
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``GET /v1/alarms/{n}`` with history and orders, or (``history_of``) only ``{"alarm": n, "history"}``."""

        async def handler(request: web.Request) -> web.Response:
            n = parse_number(request.match_info["n"], what)
            d = await self._read(lambda s: detail(s, n))
            handle = str(d.get("device") or "")
            dev = load_device(StateView(self.node.ledger.store), handle) if handle else None
            if dev is not None:  # an alarm or order tells about a device's readings: the same rule
                self.node.reads.require(request, str(dev.org), "readings", device=handle)
            return web.json_response(d if history_of is None else {history_of: n, "history": d["history"]})

        return handler

    async def calibrations(self, request: web.Request) -> web.Response:
        now = int(time.time() * 1000)
        return web.json_response(await self._read(lambda s: calibrations(s, now)))

    async def flow(self, request: web.Request) -> web.Response:
        return web.json_response(flow_json())


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of the maintenance kinds (listed by the composition root)."""
    return MaintenanceAPI(node).routes()


routes.openapi_paths = OPENAPI_PATHS  # type: ignore[attr-defined]
