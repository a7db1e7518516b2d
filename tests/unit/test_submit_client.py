"""The submission client (node/submit.py): outcomes, failover and backoff on a fake clock and a seeded rng.

The endpoints here are fakes that answer from a script (what a node answers over HTTP, as ``NodeClient`` turns
it into dicts and ``CempError``s); no test sleeps: the clock's ``sleep`` only advances it and records the wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from node.errors import CempError, Code
from node.submit import Backoff, Status, SubmitClient, Unreachable, outcome_of

CHAIN = "test-chain"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return int(self.t * 1000)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


Answer = dict[str, Any] | BaseException | Callable[[], Any]


class FakeNode:
    """Answers each ``submit`` with the next scripted answer (a dict, or an exception to raise)."""

    def __init__(self, base: str, answers: list[Answer], *, chain: str = CHAIN, leader: str | None = "n1"):
        self._base = base
        self.answers = list(answers)
        self.chain = chain
        self.leader = leader
        self.submits: list[tuple[bytes, int]] = []
        self.down = False

    @property
    def base(self) -> str:
        return self._base

    def _next(self) -> Any:
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a

    async def submit(self, raw: bytes, *, wait: bool = False, timeout_ms: int = 30_000) -> dict[str, Any]:
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")
        self.submits.append((raw, timeout_ms))
        return self._next()  # type: ignore[no-any-return]

    async def submit_batch(
        self, raws: list[bytes], *, wait: bool = False, timeout_ms: int = 30_000
    ) -> list[dict[str, Any]]:
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")
        self.submits.extend((r, timeout_ms) for r in raws)
        return self._next()  # type: ignore[no-any-return]

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")
        if path == "/v1/status":
            return {"chain_id": self.chain, "leader": self.leader, "term": 3}
        if path.startswith("/v1/nonces/"):
            return {"nonce": 4, "next": 5}
        raise CempError(Code.NOT_FOUND, path)


def committed(ok: bool = True, height: int = 7) -> dict[str, Any]:
    return {
        "tx": "ab" * 32,
        "status": "committed",
        "height": height,
        "index": 0,
        "result": {"code": 0 if ok else 16, "ok": ok, "reason": "" if ok else "bad payload"},
    }


def client(*nodes: FakeNode, seed: int = 1, **kw: Any) -> tuple[SubmitClient, FakeClock]:
    clock = FakeClock()
    return SubmitClient(list(nodes), clock=clock, rng=random.Random(seed), **kw), clock


async def test_committed_first_time() -> None:
    n = FakeNode("http://a", [committed()])
    c, clock = client(n)
    out = await c.submit(b"tx")
    assert out.status == Status.COMMITTED and out.ok and out.height == 7 and out.node == "http://a"
    assert clock.slept == []
    assert c.chain_id == CHAIN


async def test_committed_invalid_is_final_and_not_retried() -> None:
    n = FakeNode("http://a", [committed(ok=False)])
    c, clock = client(n)
    out = await c.submit(b"tx")
    assert out.status == Status.COMMITTED and not out.ok and out.result_code == 16 and out.final
    assert len(n.submits) == 1 and clock.slept == []


async def test_refusal_is_final_with_its_reason() -> None:
    n = FakeNode("http://a", [CempError(Code.BAD_SIGNATURE, "signature does not verify")])
    c, clock = client(n)
    out = await c.submit(b"tx")
    assert out.status == Status.REFUSED and out.code == "bad_signature" and "verify" in out.message
    assert len(n.submits) == 1 and clock.slept == []
    err = out.error
    assert err is not None and err.code == Code.BAD_SIGNATURE


async def test_busy_node_is_retried_with_seeded_backoff_then_commits() -> None:
    busy = CempError(Code.MEMPOOL_FULL, "mempool is full")
    n = FakeNode("http://a", [busy, busy, busy, committed()])
    c, clock = client(n, seed=42, backoff_base_s=0.1, backoff_cap_s=10)
    out = await c.submit(b"tx", timeout_ms=1000, deadline_s=60)
    assert out.status == Status.COMMITTED
    # The same bytes every time, and the waits are exactly the seeded equal-jitter backoff.
    assert [r for r, _ in n.submits] == [b"tx"] * 4
    expect = Backoff(0.1, 10, random.Random(42))
    assert clock.slept == [expect.delay(0), expect.delay(1), expect.delay(2)]
    assert 0.05 <= clock.slept[0] <= 0.1 and 0.2 <= clock.slept[2] <= 0.4


async def test_same_seed_same_waits_other_seed_other_waits() -> None:
    def run(seed: int) -> list[float]:
        import asyncio

        busy = CempError(Code.UNAVAILABLE, "catching up")
        n = FakeNode("http://a", [busy] * 5 + [committed()])
        c, clock = client(n, seed=seed)
        asyncio.run(c.submit(b"tx", deadline_s=600))
        return clock.slept

    # asyncio.run inside a running loop is not allowed: run these in a worker thread.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        a, b, other = ex.submit(run, 3).result(), ex.submit(run, 3).result(), ex.submit(run, 4).result()
    assert a == b and a != other and len(a) == 5


async def test_deadline_returns_the_last_retryable_outcome() -> None:
    busy = CempError(Code.MEMPOOL_FULL, "mempool is full")
    n = FakeNode("http://a", [busy] * 100)
    c, clock = client(n, backoff_base_s=1, backoff_cap_s=1)
    out = await c.submit(b"tx", deadline_s=5.5)
    assert out.status == Status.RETRY_AFTER and out.code == "mempool_full" and not out.final
    assert clock.t - 1000.0 <= 5.5 and len(n.submits) >= 6  # waits of 0.5..1 s until 5.5 s


async def test_timeout_then_commit_resends_the_same_bytes() -> None:
    n = FakeNode("http://a", [CempError(Code.TIMEOUT, "not committed within 1.0 s"), committed()])
    c, clock = client(n)
    out = await c.submit(b"tx", timeout_ms=1000, deadline_s=30)
    assert out.status == Status.COMMITTED
    assert [r for r, _ in n.submits] == [b"tx", b"tx"] and len(clock.slept) == 1


async def test_timeout_without_leader_is_leader_unknown() -> None:
    n = FakeNode("http://a", [CempError(Code.TIMEOUT, "not committed within 1.0 s")], leader=None)
    c, _ = client(n)
    out = await c.submit_once(b"tx", timeout_ms=1000)
    assert out.status == Status.LEADER_UNKNOWN and "knows no leader" in out.message and not out.final
    n2 = FakeNode("http://b", [CempError(Code.TIMEOUT, "not committed within 1.0 s")], leader="n1")
    c2, _ = client(n2)
    assert (await c2.submit_once(b"tx", timeout_ms=1000)).status == Status.TIMEOUT


async def test_leader_unknown_moves_to_the_next_node() -> None:
    a = FakeNode("http://a", [CempError(Code.TIMEOUT, "t")], leader=None)
    b = FakeNode("http://b", [committed()])
    c, clock = client(a, b)
    out = await c.submit(b"tx", timeout_ms=1000, deadline_s=60)
    assert out.status == Status.COMMITTED and out.node == "http://b" and len(clock.slept) == 1


async def test_network_error_fails_over_at_once_and_sticks_to_the_node_that_answered() -> None:
    a = FakeNode("http://a", [])
    a.down = True
    b = FakeNode("http://b", [committed(), committed()])
    c, clock = client(a, b)
    assert (await c.submit(b"tx1")).node == "http://b"
    assert (await c.submit(b"tx2")).node == "http://b"
    assert clock.slept == [] and c.failovers == 1 and a.submits == []


async def test_all_nodes_down_is_retry_after_unreachable_and_backs_off_per_round() -> None:
    a, b = FakeNode("http://a", []), FakeNode("http://b", [])
    a.down = b.down = True
    c, clock = client(a, b, backoff_base_s=0.5, backoff_cap_s=4)
    out = await c.submit_once(b"tx")
    assert out.status == Status.RETRY_AFTER and out.code == "unreachable" and "http://a" in out.message
    out = await c.submit(b"tx", deadline_s=20)
    assert out.status == Status.RETRY_AFTER and out.code == "unreachable"
    assert clock.slept and all(0.25 <= s <= 4 for s in clock.slept)
    a.down = False
    a.answers = [committed()]
    assert (await c.submit(b"tx", deadline_s=20)).status == Status.COMMITTED
    assert c.failures == 0


async def test_node_of_another_chain_is_skipped() -> None:
    a = FakeNode("http://a", [committed()], chain="other")
    b = FakeNode("http://b", [committed()])
    c, _ = client(a, b, chain_id=CHAIN)
    out = await c.submit(b"tx")
    assert out.status == Status.COMMITTED and out.node == "http://b" and a.submits == []


async def test_batch_outcomes_one_per_tx() -> None:
    n = FakeNode(
        "http://a",
        [
            [
                committed(),
                {"tx": "cd" * 32, "status": "rejected", "code": "nonce_gap", "message": "expected 3"},
                {"tx": "ef" * 32, "status": "pending"},
                {"tx": "01" * 32, "status": "dropped", "code": "mempool_full", "message": "evicted"},
            ]
        ],
    )
    c, _ = client(n)
    outs = await c.submit_batch([b"1", b"2", b"3", b"4"], timeout_ms=500)
    assert [o.status for o in outs] == [Status.COMMITTED, Status.REFUSED, Status.TIMEOUT, Status.RETRY_AFTER]
    assert outs[1].code == "nonce_gap" and outs[1].tx == "cd" * 32
    assert n.submits == [(b"1", 500), (b"2", 500), (b"3", 500), (b"4", 500)]


async def test_batch_with_no_node_raises_unreachable() -> None:
    a = FakeNode("http://a", [])
    a.down = True
    c, _ = client(a)
    with pytest.raises(Unreachable):
        await c.submit_batch([b"1"])


def test_outcome_of_committed_body() -> None:
    o = outcome_of(committed(height=12), "http://x")
    assert o.status == Status.COMMITTED and o.height == 12 and o.node == "http://x" and o.error is None


def test_backoff_grows_to_its_cap() -> None:
    b = Backoff(0.2, 3.0, random.Random(0))
    ds = [b.delay(i) for i in range(10)]
    assert 0.1 <= ds[0] <= 0.2 and all(1.5 <= d <= 3.0 for d in ds[4:])
