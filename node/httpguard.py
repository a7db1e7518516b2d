"""HTTP hardening shared by every listener of a node: connection caps, idle and header timeouts, bounded bodies,
JSON answers for malformed requests, and logs that cannot be flooded or carry credentials.

Invariants:
- a client address holds at most ``HttpLimits.max_conns_per_ip`` connections and the listener at most
  ``max_conns`` (kept below the process's descriptor limit); a connection over either cap is closed at once;
- a connection that has not sent a complete request head within ``idle_timeout_s`` of connecting or of its last
  response is closed (aiohttp's keep-alive timer runs from ``connection_made``), so idle and slowly-trickled
  connections cannot pile up;
- ``read_body`` reads at most ``limit`` bytes whatever the framing (Content-Length or chunked) and gives up after
  ``body_timeout_s``; the app-wide ``client_max_size`` is the small public limit, and only the routes that need
  more (peer messages) read past it, through ``read_body``;
- a request aiohttp cannot parse gets a 4xx JSON body and ONE warning line (client address, status, error class;
  never a header value, never a traceback), at most ``LogLimiter.per_window`` lines per window per kind.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from node.errors import CempError, Code

log = logging.getLogger(__name__)

CLIENT_KEEPALIVE_S = 5.0
"""How long this node's own clients (peer transport, catch-up fetcher) keep an idle connection to another node.
It must stay below the server's ``idle_timeout_s``: a client that outlives the server's timeout may send on a
connection the server is closing, and that request fails (``[api] idle_timeout_s`` must be more than twice
this)."""


@dataclass(frozen=True)
class HttpLimits:
    max_conns_per_ip: int = 64
    """Connections one client address may hold open on one listener."""
    max_conns: int = 4096
    """Connections one listener holds; lowered at start to leave descriptors for the store and peers."""
    idle_timeout_s: float = 15.0
    """A connection with no request in progress and no complete request head for this long is closed."""
    body_timeout_s: float = 60.0
    """A request body must arrive within this long."""
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64


class LogLimiter:
    """At most ``per_window`` lines per ``window_s`` for each key; the next line says how many were dropped."""

    def __init__(self, per_window: int = 5, window_s: float = 60.0) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._state: dict[str, tuple[float, int, int]] = {}  # key -> (window start, lines, suppressed)

    def allow(self, key: str) -> tuple[bool, int]:
        """(may log now, lines suppressed since the last one that was logged)."""
        now = time.monotonic()
        start, lines, suppressed = self._state.get(key, (now, 0, 0))
        if now - start >= self.window_s:
            start, lines = now, 0
        if lines >= self.per_window:
            self._state[key] = (start, lines, suppressed + 1)
            return False, 0
        self._state[key] = (start, lines + 1, 0)
        return True, suppressed

    def warning(self, logger: logging.Logger, key: str, msg: str, *args: object) -> None:
        ok, dropped = self.allow(key)
        if ok:
            if dropped:
                msg += f" ({dropped} similar lines suppressed)"
            logger.warning(msg, *args)


LIMITER = LogLimiter()


def _code_for(status: int) -> str:
    return {400: "bad_request", 408: "timeout", 413: "too_large", 431: "too_large"}.get(
        status, "bad_request" if status < 500 else "internal"
    )


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, answering what it cannot parse with a JSON 4xx and one quiet log line."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        LIMITER.warning(
            log,
            f"http-{status}",
            "malformed HTTP request from %s: %d %s",
            request.remote,
            status,
            type(exc).__name__ if exc is not None else HTTPStatus(status).phrase,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        if status >= 500:
            text = "internal error; see the node log"
        else:
            # aiohttp's message quotes the offending line (which may hold credentials) after the first line
            detail = str(getattr(exc, "message", None) or message or HTTPStatus(status).phrase)
            text = f"malformed HTTP request: {detail.split(chr(10), 1)[0].rstrip(':')[:120]}"
        resp = web.json_response({"code": _code_for(status), "message": text}, status=status)
        resp.force_close()
        return resp


class GuardedServer(web.Server):
    """Protocol factory with per-address and total connection caps."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.per_ip: dict[str, int] = {}
        self.total = 0
        self._ip_of: dict[RequestHandler, str] = {}
        self.refused = 0

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        n = self.per_ip.get(ip, 0)
        if n >= self.limits.max_conns_per_ip or self.total >= self.limits.max_conns:
            self.refused += 1
            LIMITER.warning(
                log,
                "conn-cap",
                "refused a connection from %s: %d open from that address, %d in all (caps %d, %d)",
                ip,
                n,
                self.total,
                self.limits.max_conns_per_ip,
                self.limits.max_conns,
            )
            transport.abort()
            return
        self.per_ip[ip] = n + 1
        self.total += 1
        self._ip_of[handler] = ip

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        ip = self._ip_of.pop(handler, None)
        if ip is not None:
            self.total -= 1
            left = self.per_ip[ip] - 1
            if left:
                self.per_ip[ip] = left
            else:
                del self.per_ip[ip]
        super().connection_lost(handler, exc)


class GuardedRunner(web.AppRunner):
    """``AppRunner`` whose server is a ``GuardedServer`` with ``limits``."""

    def __init__(self, app: web.Application, limits: HttpLimits, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        super().__init__(
            app,
            keepalive_timeout=limits.idle_timeout_s,
            max_line_size=limits.max_line_size,
            max_field_size=limits.max_field_size,
            max_headers=limits.max_headers,
            **kwargs,
        )
        self.limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=self.limits,
            **plain._kwargs,
        )


async def read_body(request: web.Request, limit: int, timeout_s: float = 60.0) -> bytes:
    """The request body, at most ``limit`` bytes whether sent with Content-Length or chunked."""
    if request.content_length is not None and request.content_length > limit:
        raise CempError(
            Code.TOO_LARGE, f"request body of {request.content_length} bytes; the limit is {limit}"
        )
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                data += chunk
                if len(data) > limit:
                    raise CempError(Code.TOO_LARGE, f"request body over {limit} bytes")
    except TimeoutError:
        raise CempError(Code.BAD_REQUEST, f"request body not received within {timeout_s:.0f} s") from None
    except ConnectionError as e:  # the client reset or closed the connection mid-body: nothing to answer
        LIMITER.warning(
            log,
            "body-lost",
            "%s %s: connection lost after %d of %s body bytes (%s)",
            request.method,
            request.path[:100],
            len(data),
            request.content_length if request.content_length is not None else "?",
            type(e).__name__,
        )
        raise CempError(Code.BAD_REQUEST, "connection lost before the whole body arrived") from None
    return bytes(data)


def raise_descriptor_limit(listeners: int, reserve: int = 256) -> int:
    """Raise the soft descriptor limit to the hard one; returns how many connections a listener may hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, (soft - reserve) // max(1, listeners))


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log event-loop errors (e.g. ``accept()`` failing with EMFILE) as rate-limited warnings without tracebacks."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        msg = str(context.get("message", "event loop error"))
        exc = context.get("exception")
        LIMITER.warning(log, f"loop-{msg}", "%s: %s", msg, f"{type(exc).__name__}: {exc}" if exc else "")

    loop.set_exception_handler(handler)
