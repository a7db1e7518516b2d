"""Abuse of the login door: failed logins and new sessions are rate-limited (429 + Retry-After) per address and
per identity; scrypt and proofs run in a bounded worker pool, not on the event loop; unauthenticated sessions
cannot push out authenticated ones; failed logins look the same whichever identity was tried; credentials never
reach the logs."""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from node.crypto import KeyPair
from resolver import credentials as cred
from resolver import proof
from resolver.api import Resolver, ResolverConfig
from resolver.bootstrap import bootstrap_puts
from resolver.credentials import sign_challenge
from tests.resolver.conftest import ADMIN, ADMIN_SECRET, basic, submit
from tests.resolver.test_auth import _app_with
from tests.support.inproc import memory_node
from tests.support.testing import TestConsortium

BODY = {"values": [{"index": 1, "type": "URL", "data": "https://example.org"}]}
ED_KEY = KeyPair.from_seed(b"\x07" * 32)


@pytest_asyncio.fixture
async def make(consortium: TestConsortium) -> AsyncIterator[object]:
    """make(**config) -> (resolver, client) for a fresh bootstrapped node with that resolver config."""
    clients: list[TestClient] = []

    async def _make(**cfg: object) -> tuple[Resolver, TestClient]:
        node = memory_node(consortium)
        r = Resolver(node, ResolverConfig(**cfg))  # type: ignore[arg-type]
        client = TestClient(TestServer(_app_with(node, r)))
        await client.start_server()
        clients.append(client)
        consortium.admin_nonce.clear()
        for p in bootstrap_puts("88.123.45", consortium.admins["owner"].public, ADMIN_SECRET, ED_KEY.public):
            await submit(client, consortium.admin_tx("owner", "handle.put", p))
        return r, client

    yield _make
    for c in clients:
        await c.close()


async def test_failed_basic_logins_get_429_with_retry_after_per_identity(make) -> None:  # type: ignore[no-untyped-def]
    r, client = await make()
    statuses = []
    for _ in range(8):
        resp = await client.put("/api/handles/88.123.45/x", json=BODY, headers=basic(ADMIN, b"guess" * 4))
        statuses.append(resp.status)
    assert statuses[:5] == [403] * 5 and statuses[5:] == [429] * 3, statuses
    body = await resp.json()
    assert int(resp.headers["Retry-After"]) >= 1 and body["responseCode"] == 3 and "retry" in body["message"]
    # The throttled attempt did no scrypt: the worker pool saw 5 checks, not 8.
    assert r.throttled == 3
    # A client that has not logged in lately waits like the guesser (a client that has is let in: next test).
    resp = await client.put("/api/handles/88.123.45/x", json=BODY, headers=basic())
    assert resp.status == 429


async def test_a_client_that_logged_in_is_not_locked_out_by_guessers(make) -> None:  # type: ignore[no-untyped-def]
    _, client = await make()
    assert (await client.put("/api/handles/88.123.45/a", json=BODY, headers=basic())).status == 200
    for _ in range(10):
        await client.put("/api/handles/88.123.45/x", json=BODY, headers=basic(ADMIN, b"wrong-secret-guess"))
    assert (await client.put("/api/handles/88.123.45/b", json=BODY, headers=basic())).status == 200


async def test_failed_logins_are_limited_per_address_across_identities(make) -> None:  # type: ignore[no-untyped-def]
    _, client = await make(failed_logins_per_identity=cred.Rate(1000, 1000))
    statuses = []
    for i in range(12):
        resp = await client.put(
            "/api/handles/88.123.45/x", json=BODY, headers=basic(f"300:88.123.45/user{i}", b"x" * 20)
        )
        statuses.append(resp.status)
    assert statuses[:10] == [403] * 10 and statuses[10:] == [429, 429], statuses


async def test_failed_challenge_answers_are_limited_per_address_only(make) -> None:  # type: ignore[no-untyped-def]
    """An Ed25519 signature cannot be guessed, so failed answers only cost CPU: limited per address, and a
    guesser elsewhere cannot lock the key's holder out."""
    _, client = await make()

    async def answer(key: KeyPair) -> int:
        s = await (await client.post("/api/sessions")).json()
        cnonce = os.urandom(16)
        sig = sign_challenge(key, base64.b64decode(s["nonce"]), cnonce)
        hdr = {
            "Authorization": f'Handle sessionId="{s["sessionId"]}", id="301:88.123.45/admin", type="HS_PUBKEY", '
            f'cnonce="{base64.b64encode(cnonce).decode()}", signature="{base64.b64encode(sig).decode()}"'
        }
        return (await client.put("/api/sessions/this", headers=hdr)).status

    statuses = [await answer(KeyPair.generate()) for _ in range(12)]
    assert statuses == [403] * 10 + [429] * 2
    assert await answer(ED_KEY) == 429  # same address: throttled too


async def test_new_sessions_are_limited_per_address(make) -> None:  # type: ignore[no-untyped-def]
    _, client = await make(sessions_per_address=cred.Rate(5, 0.001))
    got = [(await client.post("/api/sessions")).status for _ in range(5)]
    resp = await client.post("/api/sessions")
    assert got == [201] * 5 and resp.status == 429 and int(resp.headers["Retry-After"]) > 1
    # The 401 challenge of an unauthenticated write is a new session too.
    resp = await client.put("/api/handles/88.123.45/x", json=BODY)
    assert resp.status == 429 and "WWW-Authenticate" not in resp.headers


async def test_unauthenticated_sessions_never_evict_an_authenticated_one(make) -> None:  # type: ignore[no-untyped-def]
    r, client = await make(max_sessions=100, sessions_per_address=cred.Rate(10**6, 10**6))
    s = await (await client.post("/api/sessions")).json()
    cnonce = os.urandom(16)
    sig = sign_challenge(ED_KEY, base64.b64decode(s["nonce"]), cnonce)
    hdr = {
        "Authorization": f'Handle sessionId="{s["sessionId"]}", id="301:88.123.45/admin", type="HS_PUBKEY", '
        f'cnonce="{base64.b64encode(cnonce).decode()}", signature="{base64.b64encode(sig).decode()}"'
    }
    assert (await client.put("/api/sessions/this", headers=hdr)).status == 200
    for _ in range(101 * 2):  # twice the table of unauthenticated sessions
        assert (await client.post("/api/sessions")).status == 201
    assert len(r.sessions.pending) == 100
    only_sid = {"Authorization": f'Handle sessionId="{s["sessionId"]}"'}
    assert (await client.put("/api/handles/88.123.45/still-in", json=BODY, headers=only_sid)).status == 200


async def test_every_failed_login_looks_the_same(make, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, client = await make(
        failed_logins_per_identity=cred.Rate(1000, 1000), failed_logins_per_address=cred.Rate(1000, 1000)
    )
    scrypts: list[bytes] = []
    real = cred.check_secret

    def counting(stored: cred.SecretHash, secret: bytes) -> bool:
        scrypts.append(secret)
        return real(stored, secret)

    monkeypatch.setattr(cred, "check_secret", counting)
    answers = []
    for user in (
        ADMIN,
        "300:88.123.45/nobody",
        "100:88.123.45/admin",
        "999:88.123.45/admin",
        "300:0.NA/88.123.45",
    ):
        resp = await client.put("/api/handles/88.123.45/x", json=BODY, headers=basic(user, b"w" * 20))
        body = await resp.json()
        answers.append((resp.status, body["responseCode"], body["message"]))
    assert len(set(answers)) == 1, answers
    assert answers[0] == (403, 403, cred.AUTH_FAILED)
    assert len(scrypts) == 5  # one scrypt each: a missing identity costs what a wrong secret costs
    # Challenge answers: missing identity, not an HS_PUBKEY, wrong key: one answer.
    msgs = set()
    for ident in ("301:88.123.45/admin", "301:88.123.45/nobody", "100:88.123.45/admin"):
        s = await (await client.post("/api/sessions")).json()
        cnonce = os.urandom(16)
        sig = sign_challenge(KeyPair.generate(), base64.b64decode(s["nonce"]), cnonce)
        hdr = {
            "Authorization": f'Handle sessionId="{s["sessionId"]}", id="{ident}", type="HS_PUBKEY", '
            f'cnonce="{base64.b64encode(cnonce).decode()}", signature="{base64.b64encode(sig).decode()}"'
        }
        resp = await client.put("/api/sessions/this", headers=hdr)
        msgs.add((resp.status, (await resp.json())["message"]))
    assert msgs == {(403, cred.CHALLENGE_FAILED)}


async def test_scrypt_and_proofs_run_in_the_worker_pool(make, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _, client = await make()
    threads: list[str] = []
    real_check, real_build = cred.check_secret, proof.build

    def check(stored: cred.SecretHash, secret: bytes) -> bool:
        threads.append(threading.current_thread().name)
        return real_check(stored, secret)

    def build(*a: object) -> object:
        threads.append(threading.current_thread().name)
        return real_build(*a)  # type: ignore[arg-type]

    monkeypatch.setattr(cred, "check_secret", check)
    monkeypatch.setattr(proof, "build", build)
    assert (await client.put("/api/handles/88.123.45/p", json=BODY, headers=basic())).status == 200
    assert (await client.get("/api/handles/88.123.45/p?proof=true")).status == 200
    assert len(threads) == 2 and all(t.startswith("resolver-crypto") for t in threads), threads


async def test_a_full_worker_queue_answers_503(make) -> None:  # type: ignore[no-untyped-def]
    r, client = await make()
    r.pool_jobs = r.config.crypto_workers + r.config.crypto_queue  # as if that many jobs were in flight
    resp = await client.put("/api/handles/88.123.45/x", json=BODY, headers=basic(ADMIN, b"q" * 20))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    resp = await client.get("/api/handles/88.123.45/admin?proof=true")
    assert resp.status == 503
    r.pool_jobs = 0
    assert (await client.get("/api/handles/88.123.45/admin?proof=true")).status == 200


async def test_credentials_never_reach_the_logs(make, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    _, client = await make()
    caplog.set_level(logging.DEBUG)
    marker = b"SECRET-MARKER-0123456789"
    tries = [
        basic(ADMIN, marker),
        basic("300:88.123.45/nobody", marker),
        {"Authorization": "Basic " + base64.b64encode(b"300%ZZ88.123.45/admin:" + marker).decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:" + marker).decode()},
        {"Authorization": "Basic " + base64.b64encode(marker).decode()},
        {"Authorization": "Basic " + marker.decode() + "!!"},
    ]
    for hdr in tries:
        await client.put("/api/handles/88.123.45/x", json=BODY, headers=hdr)
        await client.get("/api/handles/88.123.45/admin?publicOnly=false", headers=hdr)
        await client.put("/api/handles/88.123.45/x", data=b"{not json", headers=hdr)
    text = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
    assert marker.decode() not in text
    assert base64.b64encode(marker).decode()[:16] not in text
