"""Shutdowns are bounded: a cancelled loop stops even when its cancel arrives as its event is set.

On Python 3.11 ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives in the same loop
iteration as the inner awaitable completes; a ``while True`` loop around it then runs on, and whoever awaits it
(a fixture's teardown, a node's SIGTERM path) hangs. These tests fail with the old code and pass with the fix.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from node.tasks import cancel_and_wait
from tests.support.inproc import memory_node
from tests.support.testing import TestConsortium


async def _loop_over_wait_for(ev: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(ev.wait(), 1.0)
        except TimeoutError:
            pass
        ev.clear()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for no longer swallows a cancel from 3.12 on")
async def test_wait_for_swallows_a_cancel_on_311() -> None:
    """The premise: one cancel is not enough for such a loop on this Python."""
    ev = asyncio.Event()
    t = asyncio.create_task(_loop_over_wait_for(ev))
    await asyncio.sleep(0.01)
    ev.set()
    t.cancel()
    done, _ = await asyncio.wait({t}, timeout=1.5)
    assert not done, "one cancel stopped the loop: the premise of cancel_and_wait's re-cancel is gone"
    t.cancel()
    await asyncio.wait({t}, timeout=5)
    assert t.done()


async def test_cancel_and_wait_cancels_again() -> None:
    ev = asyncio.Event()
    t = asyncio.create_task(_loop_over_wait_for(ev))
    await asyncio.sleep(0.01)
    ev.set()
    assert await cancel_and_wait([t], timeout_s=4.0)
    assert t.cancelled()


async def test_cancel_and_wait_gives_up_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    t = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with caplog.at_level(logging.WARNING, logger="node.tasks"):
        assert not await cancel_and_wait([t], timeout_s=1.0)
    assert loop.time() - start < 3.0
    assert "stubborn" in caplog.text
    release.set()
    t.cancel()
    await asyncio.wait({t}, timeout=5)


async def test_block_loop_stops_when_cancelled_as_it_wakes() -> None:
    """The driver's loop, cancelled in the same iteration as its wake event is set, stops at once."""
    node = memory_node(TestConsortium.create(n_nodes=1, block_interval_ms=5))
    stopped = 0
    for _ in range(20):
        t = asyncio.create_task(node.driver.run())
        await asyncio.sleep(0.02)
        node.driver.wake.set()
        t.cancel()
        done, _ = await asyncio.wait({t}, timeout=2.0)
        assert done, "the block loop ran on after its cancel"
        stopped += 1
        node.driver.wake.clear()
    assert stopped == 20
    node.close()
