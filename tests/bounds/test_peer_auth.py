"""Peer routes are for member nodes only, and nothing a member sent can be delivered twice.

Issue 8: peer envelopes replayed (20 of 20 accepted again); ``/v1/statesync`` served the whole state to anyone
and its 8 slots could be held to block real catch-up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensus.messages import TimeoutNow
from node.api import errors_middleware
from node.catchup import HttpFetcher
from node.config import ConfigError, load_config
from node.crypto import KeyPair
from node.httpguard import CLIENT_KEEPALIVE_S, GuardedRunner, HttpLimits
from node.peer import PEER_HEADER, PeerGate, RequestSigner, Sequencer, request_header, seal
from node.server import Node
from node.statesync import MAX_SESSIONS, SESSIONS_PER_MEMBER
from node.transport import PEER_PATH, Transport
from node.types import PublicKey
from tests.support.inproc import memory_node
from tests.support.testing import TestConsortium
from tests.unit.test_api import registered

GH = b"\x07" * 32


class Peers:
    def __init__(self) -> None:
        self.keys = {n: KeyPair.from_seed(bytes([i + 1]) * 32) for i, n in enumerate(["n1", "n2", "n3"])}
        self.members: dict[str, PublicKey] = {n: k.public for n, k in self.keys.items()}
        self.delivered: list[tuple[str, list[object]]] = []
        self.transport = Transport(
            "c", "n1", self.keys["n1"], self.members, {}, lambda s, m: self.delivered.append((s, m)), GH
        )
        self.seqs = {n: Sequencer() for n in self.keys}

    def request(self, sender: str, msgs: list[object], gh: bytes = GH) -> tuple[bytes, dict[str, str]]:
        body = seal(gh, "c", sender, "n1", msgs, self.keys[sender], self.seqs[sender])
        return body, self.header(sender, body)

    def header(self, sender: str, body: bytes) -> dict[str, str]:
        return request_header(
            self.keys[sender], GH, sender, "n1", "POST", PEER_PATH, len(body), self.seqs[sender]
        )


@pytest_asyncio.fixture
async def peers() -> AsyncIterator[tuple[Peers, TestClient]]:
    p = Peers()
    app = web.Application(middlewares=[errors_middleware])
    app.add_routes(p.transport.routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield p, client
    finally:
        await client.close()


async def test_replayed_envelopes_are_refused(peers: tuple[Peers, TestClient]) -> None:
    p, client = peers
    sent = []
    for i in range(20):
        body, hdr = p.request("n2", [TimeoutNow(term=i + 1, from_="n2", to="n1")])  # type: ignore[arg-type]
        r = await client.post(PEER_PATH, data=body, headers=hdr)
        assert r.status == 204, await r.text()
        sent.append((body, hdr))
    assert len(p.delivered) == 20
    # the captured requests, replayed as they were
    for body, hdr in sent:
        r = await client.post(PEER_PATH, data=body, headers=hdr)
        assert r.status == 400 and (await r.json())["code"] == "replayed"
    # the captured envelopes under a fresh, validly signed request header
    for body, _ in sent:
        r = await client.post(PEER_PATH, data=body, headers=p.header("n2", body))
        assert r.status == 400 and (await r.json())["code"] == "replayed"
    assert len(p.delivered) == 20
    assert p.transport.dropped["replayed"] == 40
    # an envelope signed for another genesis does not verify here
    body, hdr = p.request("n3", [TimeoutNow(term=1, from_="n3", to="n1")], gh=b"\x08" * 32)  # type: ignore[arg-type]
    r = await client.post(PEER_PATH, data=body, headers=hdr)
    assert r.status == 401 and (await r.json())["code"] == "bad_signature"


async def test_old_and_future_envelopes_are_refused() -> None:
    p = Peers()
    gate = PeerGate(GH, "n1", lambda: p.members, clock_ms=lambda: 10_000_000)
    seqs = Sequencer()
    for skew in (-61_000, 61_000):
        hdr = request_header(p.keys["n2"], GH, "n2", "n1", "GET", "/x", 0, seqs, now_ms=10_000_000 + skew)
        try:
            gate.check("GET", "/x", 0, hdr[PEER_HEADER])
        except Exception as e:
            assert getattr(e, "reason", "") == "stale"
        else:
            raise AssertionError("a request far from our clock was accepted")
    ok = request_header(p.keys["n2"], GH, "n2", "n1", "GET", "/x", 0, seqs, now_ms=10_000_000 - 30_000)
    assert gate.check("GET", "/x", 0, ok[PEER_HEADER]) == "n2"


async def test_non_members_are_refused_before_the_body_is_read(peers: tuple[Peers, TestClient]) -> None:
    p, client = peers
    outsider = KeyPair.generate()
    for headers in (
        {},
        {PEER_HEADER: "n9 1 2 3 " + "00" * 64},
        request_header(outsider, GH, "n2", "n1", "POST", PEER_PATH, 10, Sequencer()),
    ):
        r = await client.post(PEER_PATH, data=b"x" * 10, headers=headers)
        assert r.status in (400, 401), r.status
    # a 64 MiB claim with no body at all is answered at once (the server does not wait to read it)
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST {PEER_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {64 << 20}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.split(b" ")[1] == b"401"
    writer.close()
    assert p.delivered == []


async def test_statesync_only_for_members_and_no_one_holds_every_slot(
    consortium: TestConsortium, node_client: tuple[Node, TestClient]
) -> None:
    node, client = node_client
    await registered(consortium, client)
    r = await client.post("/v1/statesync")
    assert r.status == 403, "state sync served a request without a member's signature"
    nid = node.node_id
    key = consortium.node_keys[nid]
    seqs = Sequencer()

    def sign(method: str, path: str) -> dict[str, str]:
        return request_header(key, node.ledger.genesis_hash, nid, nid, method, path, 0, seqs)

    sids = []
    for _ in range(MAX_SESSIONS + 3):
        r = await client.post("/v1/statesync", headers=sign("POST", "/v1/statesync"))
        assert r.status == 200, await r.text()
        sids.append((await r.json())["session"])
    assert len(node.statesync.sessions) == SESSIONS_PER_MEMBER
    path = f"/v1/statesync/{sids[-1]}?after=&limit=10"
    r = await client.get(path, headers=sign("GET", path))
    assert r.status == 200
    r = await client.get(path)
    assert r.status == 403
    hdr = sign("GET", path)
    assert (await client.get(path, headers=hdr)).status == 200
    assert (await client.get(path, headers=hdr)).status == 403, "a signed request was accepted twice"


async def test_peer_routes_can_live_on_their_own_listener(consortium: TestConsortium, tmp_path: Path) -> None:
    node = memory_node(consortium)
    public = TestClient(TestServer(node.web_app(with_peer_routes=False)))
    peer = TestClient(TestServer(node.peer_app()))
    await public.start_server()
    await peer.start_server()
    try:
        assert (await public.post("/v1/statesync")).status == 404
        assert (await peer.post("/v1/statesync")).status == 403  # there, but for members only
        # Only what members read of each other is there: the block read (catch-up) and the status (the
        # explorer's consortium page); the API's other routes are not.
        assert (await peer.get("/v1/status")).status == 200
        assert (await peer.get("/v1/devices")).status == 404
        assert (await peer.get("/consortium")).status == 404
    finally:
        await public.close()
        await peer.close()
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        'node_id = "a"\ndata_dir = "d"\nkey_file = "k"\ngenesis = "g"\n'
        '[api]\nport = 7001\npeer_host = "10.0.0.5"\npeer_port = 7101\nmax_conns_per_ip = 8\n'
    )
    c = load_config(cfg, env={})
    assert (c.peer_host, c.peer_port, c.max_conns_per_ip) == ("10.0.0.5", 7101, 8)
    cfg.write_text('node_id = "a"\ndata_dir = "d"\nkey_file = "k"\ngenesis = "g"\n[api]\npeer_port = "x"\n')
    with pytest.raises(ConfigError):
        load_config(cfg, env={})


async def test_a_reset_mid_body_is_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A member's connection reset halfway through an envelope: one warning line, no traceback, nothing delivered
    (it logged an "unhandled error" with a full traceback)."""
    caplog.set_level(logging.DEBUG)
    p = Peers()
    app = web.Application(middlewares=[errors_middleware])
    app.add_routes(p.transport.routes())
    runner = GuardedRunner(app, HttpLimits())  # the node's own listener
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await _reset_mid_body(p, runner.addresses[0][1], caplog)
    finally:
        await runner.cleanup()


async def _reset_mid_body(p: Peers, port: int, caplog: pytest.LogCaptureFixture) -> None:
    body, _ = p.request("n2", [TimeoutNow(term=1, from_="n2", to="n1")])  # type: ignore[arg-type]
    body = body + b"\x00" * 200_000  # long enough that the server is still reading when the reset comes
    hdr = p.header("n2", body)
    head = f"POST {PEER_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in hdr.items()) + "\r\n"
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head.encode() + body[:1000])
    deadline = time.monotonic() + 20
    while not p.transport.gate.replay._seen:  # the header passed the gate: the server is now reading the body
        assert time.monotonic() < deadline, "the server did not take the request"
        await asyncio.sleep(0.01)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, not FIN
    while not any(r.levelno >= logging.WARNING for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # anything the server would log after the first line (a fixed grace, not a sync)
    assert p.delivered == []
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None] == []
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage(), [r.getMessage() for r in lines]


async def test_clients_close_idle_connections_before_the_server_does(tmp_path: Path) -> None:
    """The peer transport kept idle connections 60 s against a server idle timeout of 15 s, so it could send on a
    connection the server was closing; now every node-to-node client keeps them CLIENT_KEEPALIVE_S, and a node
    refuses an idle timeout that is not well above that."""
    p = Peers()
    fetcher = HttpFetcher("n1", {}, RequestSigner(p.keys["n1"], GH, "n1"))
    await p.transport.start()
    await fetcher.start()
    try:
        for session in (p.transport._session, fetcher._http):
            assert session is not None
            assert session.connector._keepalive_timeout == CLIENT_KEEPALIVE_S  # type: ignore[union-attr]
    finally:
        await p.transport.stop()
        await fetcher.close()
    assert HttpLimits().idle_timeout_s > 2 * CLIENT_KEEPALIVE_S
    cfg = tmp_path / "n.toml"
    base = 'node_id = "a"\ndata_dir = "d"\nkey_file = "k"\ngenesis = "g"\n[api]\n'
    cfg.write_text(base)
    assert load_config(cfg, env={}).idle_timeout_s > 2 * CLIENT_KEEPALIVE_S
    cfg.write_text(base + f"idle_timeout_s = {CLIENT_KEEPALIVE_S}\n")
    with pytest.raises(ConfigError, match="idle_timeout_s must be more than"):
        load_config(cfg, env={})
