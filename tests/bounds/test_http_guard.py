"""The node's listener under abuse: idle and trickling connections, connection floods from one address,
oversize chunked bodies, malformed requests and their log lines. Real sockets on a loopback port.

Findings of issue 8 reproduced here: idle connections were never closed (1,100 held connections stopped all
service); chunked uploads got around the 8 MiB body limit; malformed requests logged full tracebacks and a
malformed header logged the Basic credentials.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from node.api import MAX_BODY
from node.httpguard import LIMITER, GuardedRunner, HttpLimits, quiet_loop_errors
from tests.support.inproc import memory_node
from tests.support.testing import TestConsortium

LIMITS = HttpLimits(max_conns_per_ip=4, max_conns=64, idle_timeout_s=0.5, body_timeout_s=2)


@pytest_asyncio.fixture
async def port(consortium: TestConsortium) -> AsyncIterator[int]:
    node = memory_node(consortium)
    runner = GuardedRunner(node.web_app(), LIMITS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    LIMITER._state.clear()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True if the server closes the connection within ``seconds`` (reads until EOF)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        if not data:
            return True
    return False


async def _request(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split(b" ", 2)[1])
    length = next(
        (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0
    )
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return status, body


async def test_idle_and_trickling_connections_are_closed(port: int) -> None:
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
    slow_w.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # a request head that never completes
    await slow_w.drain()

    async def trickle() -> None:
        for _ in range(40):
            await asyncio.sleep(0.1)
            slow_w.write(b"X-A: b\r\n")

    t = asyncio.create_task(trickle())
    try:
        assert await _closed_within(idle_r, 10), "an idle connection was kept open"
        assert await _closed_within(slow_r, 10), "a trickled request head kept its connection"
    finally:
        t.cancel()
        idle_w.close()
        slow_w.close()
    # a keep-alive connection is closed once idle after its response
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    assert await _closed_within(reader, 10)
    writer.close()


async def test_connections_per_address_are_capped(port: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(LIMITS.max_conns_per_ip)]
    over_r, over_w = await asyncio.open_connection("127.0.0.1", port)
    assert await _closed_within(over_r, 5), "a connection over the per-address cap was accepted"
    over_w.close()
    for _, w in held:
        w.close()
    # once they are gone, service resumes
    deadline = time.monotonic() + 10
    while True:
        try:
            status, _ = await _request(
                port, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            break
        except (ConnectionError, asyncio.IncompleteReadError):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    assert status == 200


async def test_chunked_body_over_the_limit_is_refused_without_buffering_it(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/txs/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"\xc4" * (1 << 20)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    tracemalloc.start()
    sent = 0
    try:
        for _ in range(48):  # 48 MiB, six times the limit
            writer.write(frame)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    writer.close()
    assert head.split(b" ")[1] == b"413", head
    assert peak < MAX_BODY * 2.5, f"the server buffered {peak >> 20} MiB of a chunked body"


async def test_malformed_requests_get_json_and_one_quiet_line(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = b"c2VjcmV0OnBhc3N3b3Jk"
    bad = [
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + secret + b"\x01\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization Basic " + secret + b"\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    ] * 4
    for raw in bad:
        status, body = await _request(port, raw)
        assert 400 <= status < 500, (raw[:40], status, body)
        assert body.startswith(b"{") and b'"code"' in body, body
        assert secret not in body or b"Authorization" not in body
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines, "malformed requests were not logged at all"
    assert len(lines) <= LIMITER.per_window + 2, [r.getMessage() for r in lines]
    for r in caplog.records:
        assert r.exc_info is None, r.getMessage()
        assert secret.decode() not in r.getMessage()
        assert "Traceback" not in r.getMessage()


async def test_accept_errors_are_logged_rate_limited_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 8: 1,100 held connections made the log grow 252 MB of "Too many open files"."""
    caplog.set_level(logging.DEBUG)
    LIMITER._state.clear()
    loop = asyncio.get_running_loop()
    old = loop.get_exception_handler()
    quiet_loop_errors(loop)
    try:
        for _ in range(10_000):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                }
            )
    finally:
        loop.set_exception_handler(old)
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert 1 <= len(lines) <= LIMITER.per_window
    assert all(r.exc_info is None for r in lines)
