"""HTTP/JSON source: polls a control system's API (pump-room constant-temperature control, electrical control).

One ``HttpSource`` reads one URL for one device handle and maps JSON fields to quantities::

    HttpSource("88.123.45/104.1.1", "http://10.0.0.5/api/v1/pump-room",
               [FieldMap("energy_wh", "energy.heat", "Wh"),
                FieldMap("supply_temp_c", "temp.supply", "mdegC", scale=1000)],
               auth_token="...", ts_path="ts")

Invariants:
- values become integers exactly: the JSON number is read as a ``Decimal`` from its text and multiplied by
  ``scale``, then rounded half-even (no binary-float surprises such as 55.2 × 1000 = 55199);
- every failure of a poll raises ``SourceError`` and returns nothing: connection refused, timeout, HTTP
  status other than 200 (401/403 named as an auth failure), a body that is not a JSON object, or none of
  the configured fields present. A field that is missing or not a number while others are fine is left
  out of that poll and logged (the quality rules then see the gap on that quantity);
- a sample's time is the device's own (``ts_path``) if configured, otherwise the agent's clock when the
  answer arrived; the secret token is never logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import aiohttp

from collector.sources import Sample, SourceError

log = logging.getLogger("cemp.collector.http")


@dataclass(frozen=True, slots=True)
class FieldMap:
    path: str
    """Dotted path into the JSON object, e.g. ``energy_wh`` or ``feeders.core_heating_wh``."""
    quantity: str
    unit: str
    scale: Decimal | int | str = 1
    """Multiplier from the JSON number to the integer ``unit`` (°C → mdegC: 1000)."""


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path (list items by index), or ``None``."""
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def to_int(value: Any, scale: Decimal | int | str) -> int | None:
    """``value × scale`` as an exact integer (half-even), or None if ``value`` is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        d = Decimal(str(value)) * Decimal(str(scale))
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    return int(d.to_integral_value(rounding=ROUND_HALF_EVEN))


class HttpSource:
    """``Source`` over one JSON endpoint (GET) with an auth header and a per-request timeout."""

    def __init__(
        self,
        device: str,
        url: str,
        fields: Sequence[FieldMap],
        *,
        auth_token: str | None = None,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 3.0,
        ts_path: str | None = None,
        ts_unit: str = "ms",
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not fields:
            raise ValueError(f"{device}: an HTTP source needs at least one field")
        if ts_unit not in ("ms", "s"):
            raise ValueError(f"{device}: ts_unit must be 'ms' or 's'")
        self.device = device
        self.url = url
        self.fields = list(fields)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.ts_path = ts_path
        self.ts_factor = 1000 if ts_unit == "s" else 1
        self.clock = clock
        self._headers = {"Accept": "application/json", **(headers or {})}
        if auth_token:
            self._headers[auth_header] = f"{auth_scheme} {auth_token}".strip() if auth_scheme else auth_token
        self._session = session
        self._own_session = session is None
        self._missing_logged: set[str] = set()
        self.polls = 0
        self.failures = 0

    async def poll(self) -> list[Sample]:
        self.polls += 1
        try:
            return await self._poll()
        except SourceError:
            self.failures += 1
            raise

    async def _poll(self) -> list[Sample]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(self.url, headers=self._headers, timeout=self.timeout) as r:
                body = await r.read()
                status = r.status
        except TimeoutError:
            raise SourceError(f"{self.url}: no answer within {self.timeout.total} s") from None
        except aiohttp.ClientError as e:
            raise SourceError(f"{self.url}: {type(e).__name__}: {e}") from None
        if status in (401, 403):
            raise SourceError(f"{self.url}: authentication refused (HTTP {status}); check the API token")
        if status != 200:
            raise SourceError(f"{self.url}: HTTP {status}: {body[:200]!r}")
        agent_ms = int(self.clock() * 1000)
        try:
            doc = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as e:
            raise SourceError(f"{self.url}: answer is not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise SourceError(f"{self.url}: answer is a JSON {type(doc).__name__}, not an object")
        ts = agent_ms
        if self.ts_path is not None:
            dev_ts = to_int(lookup(doc, self.ts_path), self.ts_factor)
            if dev_ts is None:
                raise SourceError(f"{self.url}: no device time at {self.ts_path!r}")
            ts = dev_ts
        out: list[Sample] = []
        for f in self.fields:
            v = to_int(lookup(doc, f.path), f.scale)
            if v is None:
                if f.path not in self._missing_logged:
                    self._missing_logged.add(f.path)
                    log.warning("%s: %s has no number at %r", self.device, self.url, f.path)
                continue
            out.append(Sample(f.quantity, v, f.unit, ts))
        if not out:
            raise SourceError(f"{self.url}: none of the fields {[f.path for f in self.fields]} is a number")
        return out

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
