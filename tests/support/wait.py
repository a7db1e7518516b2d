"""Waiting for a condition with a deadline: the one way tests synchronise with nodes, agents and brokers.

A fixed sleep is either too short on a loaded machine (the test fails by chance) or too long everywhere (the suite
is slow); ``wait_until`` polls a predicate until it holds and fails with what it was waiting for, and the last
value seen, when the deadline passes. The deadline is generous (it costs nothing when the condition holds early).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline."""


async def wait_until(
    pred: Callable[[], T | Awaitable[T]],
    timeout: float = 20.0,
    what: str = "the condition",
    interval: float = 0.02,
) -> T:
    """Await ``pred()`` (a plain or async callable) until it returns a truthy value, and return that value.

    Raises ``WaitTimeout`` naming ``what`` and the last value after ``timeout`` seconds. An exception raised by
    ``pred`` propagates at once (a failing check is not retried).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)


def wait_until_sync(
    pred: Callable[[], T], timeout: float = 20.0, what: str = "the condition", interval: float = 0.02
) -> T:
    """``wait_until`` for code outside an event loop (threads, subprocess tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
        time.sleep(interval)
