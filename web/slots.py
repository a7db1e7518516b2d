"""Places where other packages add to the web UI, named by the composition root (nothing is discovered).

- ``NavLink``: an entry of the main menu (the carbon portrait, reports, the alarm inbox, sign-in ...);
- ``DevicePanel``: a section of the device page (alarms, health): a function of (node, device record, language)
  returning the section's HTML, already escaped, or None when it has nothing to show.

The device page shows "not provided on this node yet" for ``alarms`` and ``health`` until a panel with that
key is registered, so the page's layout does not change when they arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup


@dataclass(frozen=True)
class NavLink:
    key: str
    path: str
    en: str
    zh: str


@dataclass(frozen=True)
class DevicePanel:
    key: str
    """``alarms`` | ``health`` | another section name."""
    en: str
    zh: str
    render: Callable[[Any, Any, str], Markup | None]
    keep_s: int = 0
    """0: render on every view. Else a rendering is shown for this many seconds, then replaced in the background
    (``WebUI._panels``): for panels that read days of readings and change slowly (health)."""


NAV: list[NavLink] = []
DEVICE_PANELS: list[DevicePanel] = []
DEVICE_SLOTS = ("alarms", "health")


def add_nav(link: NavLink) -> None:
    if any(x.key == link.key for x in NAV):
        raise ValueError(f"nav link {link.key!r} added twice")
    NAV.append(link)


def add_device_panel(panel: DevicePanel) -> None:
    if any(x.key == panel.key for x in DEVICE_PANELS):
        raise ValueError(f"device panel {panel.key!r} added twice")
    DEVICE_PANELS.append(panel)
