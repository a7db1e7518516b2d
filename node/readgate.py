"""The read seam: who may read which data, asked by every read route that shows an org's data.

The core does not know people, grants or tokens; an application supplies a ``ReadGate`` (for a CEMP node,
``access.reads.AccessGate``, given by the composition root ``cemp.wiring``). A route names what it is about to show
(the org that owns it, a data kind such as ``readings`` or ``documents``, the device handle or site id) and the gate
answers for this request. ``OpenReads``, the default, lets everyone read everything (a library user, core tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from node.devices import load_device
from node.errors import CempError
from node.state import StateView
from node.store import Store

if TYPE_CHECKING:
    from node.server import Node


class ReadGate(Protocol):
    def allows(
        self, request: web.Request, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> bool:
        """True if this request may see it (lists leave out what it may not)."""
        ...

    def require(
        self, request: web.Request, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> None:
        """Raise ``CempError`` (401 signed out, 403 not allowed) unless this request may see it."""
        ...


class OpenReads:
    """Everyone reads everything."""

    def allows(
        self, request: web.Request, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> bool:
        return True

    def require(
        self, request: web.Request, org: str, data: str, device: str | None = None, site: str | None = None
    ) -> None:
        return None


def readings_check(reads: ReadGate, request: web.Request, store: Store) -> Callable[[str], bool]:
    """Whether ``request`` may read a device's readings, by handle, asked once per device: for lists of items
    about devices (alarms, work orders) that show only what the device's readings rule lets the request see. An
    empty handle or an unknown device is not withheld; a gate that raises counts as a refusal."""
    seen: dict[str, bool] = {}

    def may_read(handle: str) -> bool:
        if not handle:
            return True
        if handle not in seen:
            dev = load_device(StateView(store), handle)
            try:
                seen[handle] = dev is None or reads.allows(request, str(dev.org), "readings", device=handle)
            except CempError:
                seen[handle] = False
        return seen[handle]

    return may_read


ReadGateFactory = Callable[["Node"], ReadGate]
"""Builds a node's gate once, from the node (its store, genesis, id and data directory)."""
