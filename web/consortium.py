"""Consortium status for the explorer: each node's role, term, leader, applied height, lag and last contact.

This node answers for itself from memory; every other member is asked for its ``/v1/status`` at its genesis
address (its peer listener when it has one; HTTPS with the node's TLS context in a TLS consortium) with a
short timeout, all at once. Answers are cached for ``TTL_S`` so a busy page cannot turn into a flood of
requests to the peers; a peer that does not answer keeps its last answer and the time it was heard from.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TTL_S = 3.0
TIMEOUT_S = 1.5


@dataclass
class NodeStatus:
    node_id: str
    org: str
    address: str
    active: bool
    is_self: bool = False
    reachable: bool = False
    role: str = ""
    term: int | None = None
    leader: str = ""
    height: int | None = None
    app_hash: str = ""
    last_contact_ms: int = 0
    lag: int | None = None
    error: str = ""


@dataclass
class ConsortiumStatus:
    node: Any
    _cache: list[NodeStatus] = field(default_factory=list)
    _at: float = 0.0
    _contact: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def local(self) -> dict[str, Any]:
        n = self.node
        led = n.ledger
        extra: dict[str, Any] = {"term": 0, "leader": n.node_id, "role": "leader"}
        api = getattr(n, "api", None)
        if api is not None and getattr(api, "status_extra", None) is not None:
            extra = api.status_extra()
        return {
            "node_id": n.node_id,
            "height": led.height,
            "app_hash": led.app_hash.hex(),
            "last_block_time_ms": led.last_time_ms,
            **extra,
        }

    async def _fetch(self, session: aiohttp.ClientSession, address: str) -> dict[str, Any]:
        scheme = "https" if getattr(self.node, "tls", None) is not None else "http"
        url = address if address.startswith("http") else f"{scheme}://{address}"
        async with session.get(f"{url}/v1/status") as r:
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")
            body: dict[str, Any] = await r.json()
            return body

    async def nodes(self) -> list[NodeStatus]:
        async with self._lock:
            if self._cache and time.monotonic() - self._at < TTL_S:
                return self._cache
            led = self.node.ledger
            me = self.node.node_id
            infos = sorted(led.nodes.values(), key=lambda i: i.node_id)
            others = [i for i in infos if i.node_id != me]
            now_ms = int(time.time() * 1000)
            answers: dict[str, dict[str, Any] | BaseException] = {}
            if others:
                timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
                # In a TLS consortium the members are reached as the node reaches them: verified against the
                # consortium CA, showing this node's certificate (a peer listener may ask for one).
                tls = getattr(self.node, "tls", None)
                conn = aiohttp.TCPConnector(ssl=tls if tls is not None else True)
                async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
                    got = await asyncio.gather(
                        *(self._fetch(s, str(i.address)) for i in others), return_exceptions=True
                    )
                answers = {i.node_id: g for i, g in zip(others, got, strict=True)}
            out = []
            for i in infos:
                st = NodeStatus(str(i.node_id), str(i.org), str(i.address), i.node_id in led.active)
                if i.node_id == me:
                    st.is_self = True
                    body: dict[str, Any] | None = self.local()
                    self._contact[me] = (now_ms, body or {})
                else:
                    a = answers.get(i.node_id)
                    if isinstance(a, dict):
                        self._contact[i.node_id] = (now_ms, a)
                        body = a
                    else:
                        st.error = type(a).__name__ if a is not None else ""
                        body = None
                st.reachable = body is not None
                seen = self._contact.get(i.node_id)
                if seen is not None:
                    st.last_contact_ms, last = seen
                    st.role = str(last.get("role", ""))
                    st.term = last.get("term")
                    st.leader = str(last.get("leader") or "")
                    st.height = last.get("height")
                    st.app_hash = str(last.get("app_hash", ""))
                out.append(st)
            top = max((x.height for x in out if x.height is not None), default=0)
            for x in out:
                x.lag = None if x.height is None else top - x.height
            self._cache, self._at = out, time.monotonic()
            return out
