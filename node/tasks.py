"""Stopping background tasks with a bound: every owner cancels *and awaits* its tasks, but never forever.

``cancel_and_wait`` cancels again while a task is still running (Python 3.11's ``asyncio.wait_for`` swallows a
cancel that arrives as its inner awaitable completes, so one cancel is not always enough) and gives up after
``timeout_s`` with a logged warning naming the tasks that would not stop, instead of hanging the shutdown (a
test's fixture teardown, a node's SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

RECANCEL_S = 0.5
"""Once the first grace (half the timeout) has passed, how often a task still running is cancelled again."""


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], timeout_s: float = 10.0) -> bool:
    """Cancel ``tasks`` and wait until all are done, at most ``timeout_s``; True if all stopped.

    Exceptions the tasks end with are retrieved (not re-raised): the caller is shutting down. If the calling
    task is itself cancelled while waiting, the tasks are cancelled once more and the cancel propagates.
    """
    every = list(tasks)
    pending = {t for t in every if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    # The first cancel gets half the time (a task's own cleanup may await, and a second cancel would cut it
    # short); a task still running after that has most likely lost its cancel, and is cancelled again.
    second = loop.time() + timeout_s / 2
    try:
        while pending:
            for t in pending:
                t.cancel()
            left = deadline - loop.time()
            if left <= 0:
                break
            now = loop.time()
            wait_s = second - now if now < second else min(RECANCEL_S, left)
            _, pending = await asyncio.wait(pending, timeout=max(wait_s, 0.001))
    except asyncio.CancelledError:
        for t in pending:
            t.cancel()
        raise
    finally:
        for t in every:
            if t.done() and not t.cancelled():
                t.exception()  # retrieved: no "exception was never retrieved" at garbage collection
    if pending:
        log.warning(
            "%d task(s) did not stop within %.1f s of being cancelled: %s",
            len(pending),
            timeout_s,
            ", ".join(sorted(t.get_name() if isinstance(t, asyncio.Task) else repr(t) for t in pending)),
        )
        return False
    return True
