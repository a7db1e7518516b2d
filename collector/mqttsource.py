"""MQTT source for devices that push Alibaba-Alink-style property posts (the Chinese IoT-platform convention).

Topic ``/sys/{productKey}/{deviceName}/thing/event/property/post``, payload::

    {"id": "123", "version": "1.0", "method": "thing.event.property.post",
     "params": {"Energy": 1234.56, "Power": {"value": 1.2, "time": 1700000000000}}}

A parameter is a bare number or ``{"value", "time"}`` (device time, ms). One ``AlinkHub`` keeps one MQTT
connection (``aiomqtt``) with one wildcard subscription and hands each message to the ``MqttSource`` of
its (productKey, deviceName); ``MqttSource.poll()`` returns what arrived since the last poll, so the agent
treats a pushing device like a polled one.

Invariants:
- values become exact integers (the JSON number's text × ``scale``, half-even), as in ``collector.httpsource``;
- a message is never dropped silently: one that cannot be parsed is counted (``AlinkHub.bad_messages``) and
  logged; if a source's buffer exceeds ``max_buffered`` (agent stopped polling) the oldest samples go and
  ``MqttSource.overflowed`` counts them;
- ``poll()`` raises ``SourceError`` when nothing arrived and the broker connection is down (after a
  ``connect_grace_s`` for the very first connection), so the quality rules see the outage as source errors;
- the hub reconnects with exponential backoff; with a fixed ``client_id`` the session is persistent
  (``clean_session=False``), so QoS 1 posts sent while the agent was away are delivered on reconnect;
- optional Alink replies (``reply=True``) go to ``…/property/post_reply`` with ``code`` 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiomqtt

from collector.httpsource import to_int
from collector.sources import Sample, SourceError

log = logging.getLogger("cemp.collector.mqtt")

POST_TOPIC = "/sys/{pk}/{dn}/thing/event/property/post"
WILDCARD = "/sys/+/+/thing/event/property/post"


@dataclass(frozen=True, slots=True)
class PropertyMap:
    identifier: str
    """Alink property identifier, e.g. ``Energy`` or ``SupplyTemp``."""
    quantity: str
    unit: str
    scale: Decimal | int | str = 1


def parse_alink(payload: bytes) -> tuple[str, dict[str, Any]]:
    """(message id, params) of an Alink property post; raises ``ValueError`` if it is not one."""
    doc = json.loads(payload, parse_float=Decimal)
    if not isinstance(doc, dict) or not isinstance(doc.get("params"), dict):
        raise ValueError("not an Alink post: no params object")
    method = doc.get("method", "thing.event.property.post")
    if method != "thing.event.property.post":
        raise ValueError(f"method {method!r} is not thing.event.property.post")
    return str(doc.get("id", "")), doc["params"]


class MqttSource:
    """``Source`` for one Alink device; created by ``AlinkHub.source``."""

    def __init__(
        self,
        hub: AlinkHub,
        device: str,
        product_key: str,
        device_name: str,
        properties: list[PropertyMap],
        max_buffered: int,
    ) -> None:
        self.hub = hub
        self.device = device
        self.product_key = product_key
        self.device_name = device_name
        self.properties = {p.identifier: p for p in properties}
        self._buf: deque[Sample] = deque()
        self.max_buffered = max_buffered
        self.messages = 0
        self.overflowed = 0
        self._closed = False

    def _take(self, params: Mapping[str, Any], received_ms: int) -> None:
        self.messages += 1
        for ident, raw in params.items():
            p = self.properties.get(ident)
            if p is None:
                continue
            ts = received_ms
            value = raw
            if isinstance(raw, dict):
                value = raw.get("value")
                t = to_int(raw.get("time"), 1)
                if t is not None:
                    ts = t
            v = to_int(value, p.scale)
            if v is None:
                log.warning("%s: property %s is not a number: %r", self.device, ident, value)
                continue
            self._buf.append(Sample(p.quantity, v, p.unit, ts))
        while len(self._buf) > self.max_buffered:
            self._buf.popleft()
            self.overflowed += 1

    async def poll(self) -> list[Sample]:
        await self.hub.start()
        if not self._buf:
            if not self.hub.connected and not self.hub.connecting():
                raise SourceError(f"MQTT broker {self.hub.where}: not connected ({self.hub.last_error})")
            return []
        out = list(self._buf)
        self._buf.clear()
        return out

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.hub.release(self)


class AlinkHub:
    """One MQTT connection serving many ``MqttSource``s."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        reply: bool = False,
        qos: int = 1,
        max_buffered: int = 100_000,
        clock: Callable[[], float] = time.time,
        retry_base_s: float = 0.2,
        retry_max_s: float = 30.0,
        connect_grace_s: float = 5.0,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.client_id = client_id
        self.reply = reply
        self.qos = qos
        self.max_buffered = max_buffered
        self.clock = clock
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s
        self.connect_grace_s = connect_grace_s
        self._started_at: float | None = None
        self._ever_connected = False
        self.sources: dict[tuple[str, str], MqttSource] = {}
        self.connected = False
        self.last_error = "not started"
        self.bad_messages = 0
        self.unknown_devices = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def source(
        self, device: str, product_key: str, device_name: str, properties: list[PropertyMap]
    ) -> MqttSource:
        key = (product_key, device_name)
        if key in self.sources:
            raise ValueError(f"Alink device {product_key}/{device_name} already has a source")
        src = MqttSource(self, device, product_key, device_name, properties, self.max_buffered)
        self.sources[key] = src
        return src

    def connecting(self) -> bool:
        """Still within the grace period of the first connection attempt (not an outage yet)."""
        return (
            not self._ever_connected
            and self._started_at is not None
            and time.monotonic() - self._started_at < self.connect_grace_s
        )

    async def start(self) -> None:
        if self._task is None:
            self._started_at = time.monotonic()
            self._task = asyncio.create_task(self._run(), name=f"mqtt {self.where}")

    async def wait_subscribed(self, timeout_s: float = 5.0) -> None:
        await self.start()
        await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    async def release(self, src: MqttSource) -> None:
        self.sources.pop((src.product_key, src.device_name), None)
        if not self.sources:
            await self.close()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self.username,
                    password=self.password,
                    identifier=self.client_id,
                    clean_session=False if self.client_id else None,
                    keepalive=30,
                ) as client:
                    await client.subscribe(WILDCARD, qos=self.qos)
                    self.connected = self._ever_connected = True
                    self._subscribed.set()
                    attempt = 0
                    log.info("MQTT %s: subscribed to %s", self.where, WILDCARD)
                    async for msg in client.messages:
                        raw = msg.payload
                        body = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()
                        await self._dispatch(client, str(msg.topic), body)
            except aiomqtt.MqttError as e:
                self.connected = False
                self._subscribed.clear()
                self.last_error = str(e)
                attempt += 1
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(attempt, 20))
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("MQTT %s: %s; reconnecting (attempt %d)", self.where, e, attempt)
                await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _dispatch(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        # ['', 'sys', pk, dn, 'thing', 'event', 'property', 'post']
        if len(parts) != 8:
            return
        src = self.sources.get((parts[2], parts[3]))
        if src is None:
            self.unknown_devices += 1
            return
        try:
            msg_id, params = parse_alink(payload)
        except (ValueError, UnicodeDecodeError) as e:
            self.bad_messages += 1
            log.warning("MQTT %s: bad post on %s: %s", self.where, topic, e)
            return
        src._take(params, int(self.clock() * 1000))
        if self.reply:
            body = {
                "id": msg_id,
                "code": 200,
                "data": {},
                "message": "success",
                "method": "thing.event.property.post",
                "version": "1.0",
            }
            await client.publish(topic + "_reply", json.dumps(body).encode(), qos=0)
