"""Process logging for the ``cemp`` commands, and the request id every HTTP request carries.

- ``configure(level, fmt)``: ``text`` (one human line per record) or ``json`` (one JSON object per line with
  ``ts``, ``level``, ``logger``, ``msg``, ``request_id`` when the record was logged while serving a request, and
  ``exc`` for a traceback). Chosen by ``[log] format`` in the node's TOML or ``CEMP_LOG_FORMAT``; called by the
  command line only, never at import time.
- ``request_id_middleware``: every request gets an id (the client's ``X-Request-Id`` when it is 1-64 characters of
  ``[A-Za-z0-9._:-]``, else a fresh random one); it is echoed in the ``X-Request-Id`` response header, on errors
  too, and attached to every log record written while the request is handled. One access line per request is
  logged on ``cemp.access`` (INFO; DEBUG for peer traffic and scrapes, which are many per second).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

FORMATS = ("text", "json")
HEADER = "X-Request-Id"
_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_QUIET_PREFIXES = ("/peer/", "/metrics", "/v1/statesync", "/v1/status")

REQUEST_KEY = web.RequestKey("request_id", str)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cemp_request_id", default=None)
access = logging.getLogger("cemp.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            doc["request_id"] = rid
        for key in ("method", "path", "status", "ms"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _TextWithId(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = request_id.get()
        return f"{line} [req {rid}]" if rid else line


def configure(level: str = "info", fmt: str = "text") -> None:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextWithId("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())


def new_id() -> str:
    return secrets.token_hex(8)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` signal: the id goes out in a header on every response, streamed ones too."""
    rid = request.get(REQUEST_KEY)
    if rid:
        response.headers[HEADER] = rid


def install(app: web.Application) -> None:
    """Give ``app`` request ids (the middleware must already be first in its middleware list)."""
    app.on_response_prepare.append(echo_request_id)


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    given = request.headers.get(HEADER, "")
    rid = given if _ID_RE.fullmatch(given) else new_id()
    request[REQUEST_KEY] = rid
    token = request_id.set(rid)
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        quiet = request.path.startswith(_QUIET_PREFIXES)
        ms = round((time.perf_counter() - t0) * 1000, 1)
        access.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s %d %.1f ms",
            request.method,
            request.path,
            status,
            ms,
            extra={
                "method": request.method,
                "path": request.path,
                "status": status,
                "ms": ms,
                "request_id": rid,
            },
        )
        request_id.reset(token)
