"""Request parameters of the JSON routes of ``accounting/`` and ``energy/``, parsed in one place.

Every bad value is a 400 ``CempError`` that names the parameter and says what would be accepted, before any work
is done; numbers are length-capped before they are parsed (a 32-character cap keeps ``Fraction`` and ``float``
cheap). Also the OpenAPI fragments those routes describe their parameters with, and ``SnapshotReads``: running a
read on one snapshot of committed state in a worker thread, a bounded number at a time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

from aiohttp import web

from accounting.inventory import Head
from accounting.sites import SITE_ID_RE
from node import codec, schema
from node.errors import CempError, Code
from node.statehash import StateHash
from node.types import Block

T = TypeVar("T")
N = TypeVar("N", Fraction, float)
MAX_NUMBER_CHARS = 32
PERIODS = "2026-01-15, 2026-01, 2026-Q1, 2026 or 2025/26-season"


def number(request: web.Request, name: str, default: N, lo: N, hi: N, parse: Callable[[str], N]) -> N:
    """Query parameter ``name`` as a number in [lo, hi] (``parse`` is ``Fraction`` or ``float``); absent or
    empty: ``default``."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        if len(raw) > MAX_NUMBER_CHARS:
            raise ValueError
        v = parse(raw)
    except (ValueError, ZeroDivisionError):
        raise CempError(Code.BAD_REQUEST, f"{name}={raw[:40]!r} is not a number") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise CempError(Code.BAD_REQUEST, f"{name}={raw[:40]!r} is not a finite number")
    if not lo <= v <= hi:
        raise CempError(Code.BAD_REQUEST, f"{name}={raw} must be between {_show(lo)} and {_show(hi)}")
    return v


def _show(v: Fraction | float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    """Query parameter ``name``, one of ``allowed`` (absent: ``default``)."""
    v = request.query.get(name, default)
    if v not in allowed:
        raise CempError(
            Code.BAD_REQUEST, f"{name} {v[:20]!r}: use {', '.join(allowed[:-1])} or {allowed[-1]}"
        )
    return v


def site_id(request: web.Request) -> str:
    """The ``{site_id}`` of the route's path."""
    return check_site_id(request.match_info["site_id"])


def site_query(request: web.Request, name: str = "site") -> str | None:
    """An optional site id in the query (absent or empty: ``None``)."""
    v = request.query.get(name) or None
    return None if v is None else check_site_id(v)


def check_site_id(sid: str) -> str:
    if not SITE_ID_RE.fullmatch(sid):
        raise CempError(Code.BAD_REQUEST, f"site id {sid[:80]!r} is not a short lower-case id")
    return sid


def period(request: web.Request) -> str:
    """The required ``period`` label (parsed against the site's calendar later, where the site is known)."""
    p = request.query.get("period")
    if not p:
        raise CempError(Code.BAD_REQUEST, f"period is required: {PERIODS}")
    return p


# --- OpenAPI fragments ------------------------------------------------------------------------------------------

ERROR_RESPONSE = {"$ref": "#/components/responses/Error"}
PERIOD_Q = {
    "name": "period",
    "in": "query",
    "required": True,
    "schema": {"type": "string"},
    "description": f"{PERIODS} (site local time)",
}
SITE_P = {"name": "site_id", "in": "path", "required": True, "schema": {"type": "string"}}


def query(name: str, desc: str, typ: str = "string", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": typ}}


def get_op(summary: str, params: list[dict[str, Any]], ctype: str = "application/json") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "ok", "content": {ctype: {}}},
                "400": ERROR_RESPONSE,
                "404": ERROR_RESPONSE,
            },
        }
    }


# --- reads on committed state -----------------------------------------------------------------------------------


def head_of(snap: Any) -> Head:
    """The committed head recorded inside a snapshot (height, block hash, app hash, block time)."""
    raw_h = snap.get(schema.META_HEIGHT)
    height = int.from_bytes(raw_h, "big") if raw_h else 0
    last = snap.get(schema.META_LAST_HASH) or b""
    acc = snap.get(schema.META_STATE_ACC)
    app = StateHash.from_bytes(acc).digest() if acc else b""
    time_ms = 0
    if height:
        raw = snap.get(schema.block(height))
        if raw is not None:
            time_ms = codec.decode(Block, raw).header.time_ms
    return Head(height, last, app, time_ms)


class SnapshotReads:
    """Runs ``fn(snapshot, head)`` on one snapshot of a node's committed state in a worker thread, at most
    ``slots`` at a time (an inventory can hold a core for about a second)."""

    def __init__(self, node: Any, slots: int = 2) -> None:
        self.node = node
        self._slots = asyncio.Semaphore(slots)

    async def read(self, fn: Callable[[Any, Head], T]) -> T:
        store = self.node.ledger.store

        def run() -> T:
            snap = store.snapshot()
            try:
                return fn(snap, head_of(snap))
            finally:
                snap.release()

        async with self._slots:
            return await asyncio.to_thread(run)
