"""Malformed requests (aiohttp parse errors) are logged as one WARNING line without the request's bytes, so an
``Authorization`` header in a broken request never reaches the log; a flood of them is rate-limited."""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from aiohttp.test_utils import TestServer

from cemp import wiring
from node.httplog import RedactMalformedRequests
from node.server import Node
from node.store import MemoryStore
from tests.support.testing import TestConsortium

SECRET = b"TOP-SECRET-VALUE-42"
CRED = base64.b64encode(b"300%3A88.123.45/admin:" + SECRET).decode()
BROKEN = [
    f"PUT /api/handles/88.123.45/x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic {CRED}\x01\r\n\r\n",
    f"PUT /api/handles/88.123.45/x HTTP/1.1\r\nHost: a\r\nAuthorization : Basic {CRED}\r\n\r\n",
    f"PUT /api/handles/88.123.45/x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic {CRED}\r\nBad line {CRED}\r\n\r\n",
    f"PUT /api/handles/88.123.45/x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic {CRED}\r\n X: folded\r\n\r\n",
    f"PUT /?secret={SECRET.decode()} HTTP/1.1 {CRED}\r\n\r\n",
    f"P\x01T /{CRED} HTTP/1.1\r\n\r\n",
]


async def test_parse_errors_log_one_line_without_credentials(caplog: pytest.LogCaptureFixture) -> None:
    c = TestConsortium.create(n_nodes=1)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    srv = TestServer(node.web_app())
    await srv.start_server()
    caplog.set_level(logging.DEBUG)
    try:
        for req in BROKEN:
            rd, wr = await asyncio.open_connection("127.0.0.1", srv.port)
            wr.write(req.encode("latin-1"))
            await wr.drain()
            status = await asyncio.wait_for(rd.readline(), 10)
            assert status.startswith(b"HTTP/1.") and b" 400 " in status, status
            wr.close()
    finally:
        await srv.close()
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server) == len(BROKEN), [r.getMessage() for r in server]
    for r in server:
        assert (
            r.levelno == logging.WARNING and r.exc_info is None and "malformed request from" in r.getMessage()
        )
    text = "\n".join(r.getMessage() + (caplog.text or "") for r in caplog.records)
    assert SECRET.decode() not in text and CRED[:24] not in text


def test_a_flood_of_parse_errors_is_rate_limited() -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    f = RedactMalformedRequests(burst=3, per_s=1e-9)
    passed = 0
    for _ in range(10):
        rec = logging.LogRecord(
            "aiohttp.server", logging.ERROR, "x", 1, "Error handling request from %s", ("1.2.3.4",), None
        )
        try:
            raise BadHttpMessage("Invalid header token:\n\n  b'Authorization: Basic abc'")
        except BadHttpMessage as e:
            rec.exc_info = (type(e), e, e.__traceback__)
        passed += f.filter(rec)
    assert passed == 3 and f.dropped == 7
