"""What aiohttp logs about requests it could not parse, made safe: one WARNING line, no bytes of the request.

aiohttp's HTTP parser refuses a malformed request with an exception whose text quotes the offending line, and
its server logs that exception with a traceback ("Error handling request from ..."). The quoted line can be an
``Authorization`` header, so Basic credentials ended up in the node log. ``RedactMalformedRequests``, a filter on
the ``aiohttp.server`` logger, turns each such record into one WARNING line naming the client and the kind of
error only (the first line of the parser's message, which never holds request bytes), and lets at most
``burst`` of them through at once, then ``per_s`` per second, counting the ones it drops.

Invariant: no record that passes this filter carries request bytes from a parse error.
"""

from __future__ import annotations

import logging
import re
import time

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"
_KIND_RE = re.compile(r"[A-Za-z][A-Za-z -]{0,60}")


class RedactMalformedRequests(logging.Filter):
    def __init__(self, burst: float = 10, per_s: float = 1.0) -> None:
        super().__init__()
        self.burst = burst
        self.per_s = per_s
        self.tokens = burst
        self.t = time.monotonic()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.per_s)
        self.t = now
        if self.tokens < 1:
            self.dropped += 1
            return False
        self.tokens -= 1
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        first = (exc.message or "").strip().split("\n", 1)[0]
        m = _KIND_RE.match(first)  # the words before any quoted bytes ("Bad status line 'PUT /?pw=...'")
        kind = m.group(0).strip() if m else ""
        record.msg = "malformed request from %s: %s %s%s"
        record.args = (
            peer,
            type(exc).__name__,
            kind[:80],
            f" ({self.dropped} more dropped)" if self.dropped else "",
        )
        self.dropped = 0
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    """Attach the filter to aiohttp's server logger (once per process)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, RedactMalformedRequests) for f in logger.filters):
        logger.addFilter(RedactMalformedRequests())
