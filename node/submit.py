"""The one way a program submits txs to the consortium: typed outcomes, failover, backoff on an injected clock.

Every writer uses it: the collector agent (batches from its outbox), the bill and ledger scanner, the ``cemp``
commands that sign a tx (membership, factors, sites, ratings, handle bootstrap, the demo) and the resolver's
Handle REST writes (in process, through ``LocalEndpoint``: the same admission path, in arrival order, as an HTTP
``POST /v1/txs``).

An answer is one of five ``Status``es:

- ``COMMITTED``: in a block; ``ok``/``result_code``/``reason`` say whether the chain applied it or marked it invalid
  (that is final: resending the same bytes answers the same).
- ``REFUSED``: admission said no (``code`` names why: ``nonce_gap``, ``bad_signature``, ``unknown_device``...) and
  nothing was written. Some refusals pass later (a registration still pending, a lagging node); whether to retry
  them is the caller's policy, not the transport's.
- ``RETRY_AFTER``: the node is busy or away (``mempool_full``, ``unavailable``, no node reachable);
  ``retry_after_s`` is when to try again.
- ``TIMEOUT``: admitted but not committed in time; it may still commit, and resending the same bytes is safe (the
  node answers with the pending or committed tx, never a second copy).
- ``LEADER_UNKNOWN``: a timeout on a node that knows no leader (an election, a partition); try another node later.

Invariants: the client never signs or re-signs anything (the bytes it is given are the bytes it sends, so every
retry is idempotent); it never sleeps on its own clock (``Clock.sleep`` is injected, so tests run on a fake clock);
its jitter comes from the ``random.Random`` it is given.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from node.chain import ChainRef
from node.client import NodeClient
from node.errors import CempError, Code
from node.seams import Clock, SystemClock

log = logging.getLogger("cemp.submit")

NET_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)
"""Failures of the connection itself: the node may not have seen the request (failover and resend)."""

BUSY_CODES = frozenset({Code.MEMPOOL_FULL, Code.UNAVAILABLE})
"""Refusals that say nothing about the tx: the node cannot take it now."""


class Status(enum.StrEnum):
    COMMITTED = "committed"
    REFUSED = "refused"
    RETRY_AFTER = "retry_after"
    TIMEOUT = "timeout"
    LEADER_UNKNOWN = "leader_unknown"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one tx on one attempt (or, from ``SubmitClient.submit``, of the last attempt)."""

    status: Status
    tx: str = ""
    """The tx hash in hex, when the node named it."""
    code: str = ""
    """Refused / retry: the node's error code (``nonce_gap``, ``mempool_full``, ``unreachable``...)."""
    message: str = ""
    height: int | None = None
    index: int | None = None
    ok: bool = False
    """Committed: the chain applied it (False: committed but marked invalid, with ``result_code``/``reason``)."""
    result_code: int = 0
    reason: str = ""
    retry_after_s: float | None = None
    node: str = ""
    """The node that answered (its base URL), or the last one tried."""
    body: dict[str, Any] = field(default_factory=dict)
    """The node's JSON answer for this tx, as it came."""

    @property
    def final(self) -> bool:
        """Committed or refused: resending the same bytes to the same chain cannot change the answer now."""
        return self.status in (Status.COMMITTED, Status.REFUSED)

    @property
    def error(self) -> CempError | None:
        """A refusal or retry as a ``CempError`` (for callers that raise it)."""
        if self.status == Status.COMMITTED:
            return None
        try:
            c = Code[self.code.upper()]
        except KeyError:
            c = Code.UNAVAILABLE
        return CempError(c, self.message or self.code)


def code_name(code: object) -> str:
    """A result or error code (an int or a name) as the API names it (``nonce_gap``)."""
    if isinstance(code, int):
        try:
            return Code(code).name.lower()
        except ValueError:
            return str(code)
    return str(code or "unknown")


def outcome_of(body: dict[str, Any], node: str = "") -> Outcome:
    """One tx's answer (``POST /v1/txs`` body or one ``/v1/txs/batch`` result) as an ``Outcome``."""
    status = body.get("status")
    tx = str(body.get("tx", ""))
    if status == "committed":
        res = body.get("result") or {}
        return Outcome(
            Status.COMMITTED,
            tx,
            height=int(body["height"]),
            index=int(body["index"]),
            ok=bool(res.get("ok")),
            result_code=int(res.get("code", 0)),
            reason=str(res.get("reason", "")),
            node=node,
            body=body,
        )
    if status == "pending":
        return Outcome(Status.TIMEOUT, tx, "timeout", "admitted, not committed yet", node=node, body=body)
    code = str(body.get("code", "unknown"))
    return refusal(code, str(body.get("message", "")), tx=tx, node=node, body=body)


def refusal(
    code: str, message: str, *, tx: str = "", node: str = "", body: dict[str, Any] | None = None
) -> Outcome:
    """A node's refusal (``code`` as the API names it) classified: busy -> retry, timeout, else refused."""
    try:
        c: Code | None = Code[code.upper()]
    except KeyError:
        c = None
    if c == Code.TIMEOUT:
        status = Status.TIMEOUT
    elif c in BUSY_CODES:
        status = Status.RETRY_AFTER
    else:
        status = Status.REFUSED
    return Outcome(status, tx, code, message, node=node, body=body or {})


class Endpoint(Protocol):
    """One node as the client sees it: ``NodeClient`` over HTTP, or ``LocalEndpoint`` inside a node."""

    @property
    def base(self) -> str: ...

    async def submit(self, raw: bytes, *, wait: bool = False, timeout_ms: int = 30_000) -> dict[str, Any]: ...

    async def submit_batch(
        self, raws: list[bytes], *, wait: bool = False, timeout_ms: int = 30_000
    ) -> list[dict[str, Any]]: ...

    async def get(self, path: str, **params: Any) -> dict[str, Any]: ...


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with equal jitter: attempt n waits uniformly in [c/2, c], c = min(cap, base * 2**n)."""

    base_s: float = 0.2
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        c = min(self.cap_s, self.base_s * 2 ** min(max(attempt, 0), 30))
        return self.rng.uniform(c / 2, c)


@dataclass(slots=True)
class _Node:
    endpoint: Endpoint
    checked: bool = False


class Unreachable(CempError):
    """No node answered (every one failed on the network, answered for another chain, or was busy)."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.UNAVAILABLE, message)


class SubmitClient:
    """Submits to any of several nodes: sticks to the one that last answered and fails over in order.

    ``chain_id``, ``genesis_hash`` (hex): the chain every node must serve (what a tx signature is bound to,
    ``ChainRef``); learned from the first node that answers when not given. A node serving another chain is
    skipped like an unreachable one (checked once per connection, through ``/v1/status``).
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        chain_id: str | None = None,
        genesis_hash: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 30.0,
        check_chain: bool = True,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one node is needed")
        self._nodes = [_Node(e, checked=not check_chain) for e in endpoints]
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.clock: Clock = clock or SystemClock()
        self.backoff = Backoff(backoff_base_s, backoff_cap_s, rng or random.Random())
        self.current = 0
        self.failures = 0
        """Consecutive failed contacts (reset by any answer)."""
        self.failovers = 0
        self.attempts = 0

    @classmethod
    def over_http(
        cls,
        urls: Sequence[str],
        session: aiohttp.ClientSession,
        **kw: Any,
    ) -> SubmitClient:
        return cls([NodeClient(u, session) for u in urls], **kw)

    @classmethod
    def of(cls, client: Endpoint | SubmitClient, **kw: Any) -> SubmitClient:
        """``client`` itself, or a client over that one node (for helpers handed a ``NodeClient``)."""
        return client if isinstance(client, SubmitClient) else cls([client], **kw)

    @property
    def endpoint(self) -> Endpoint:
        return self._nodes[self.current].endpoint

    @property
    def urls(self) -> list[str]:
        return [n.endpoint.base for n in self._nodes]

    # --- nodes ----------------------------------------------------------------------------------
    async def _check(self, node: _Node) -> None:
        if node.checked:
            return
        try:
            st = await node.endpoint.get("/v1/status")
        except CempError as e:  # not a CEMP node, or one that cannot read its own state: use another
            raise CempError(Code.WRONG_CHAIN, f"{node.endpoint.base} gave no status: {e.message}") from None
        chain, gh = str(st.get("chain_id")), str(st.get("genesis_hash"))
        if self.chain_id is None:
            self.chain_id = chain
        elif chain != self.chain_id:
            raise CempError(
                Code.WRONG_CHAIN, f"{node.endpoint.base} serves chain {chain}, not {self.chain_id}"
            )
        if self.genesis_hash is None:
            self.genesis_hash = gh
        elif gh != self.genesis_hash:
            raise CempError(
                Code.WRONG_CHAIN,
                f"{node.endpoint.base} serves genesis {gh[:16]}..., not {self.genesis_hash[:16]}...",
            )
        node.checked = True

    def _failed(self, node: _Node, err: BaseException) -> None:
        self.failures += 1
        node.checked = False
        if len(self._nodes) > 1:
            self.current = (self._nodes.index(node) + 1) % len(self._nodes)
            self.failovers += 1
        if self.failures == 1 or self.failures % 10 == 0:
            log.warning(
                "node %s failed (%s); %d failures in a row, next %s",
                node.endpoint.base,
                err,
                self.failures,
                self.endpoint.base,
            )

    def retry_delay(self) -> float:
        """Immediate failover while untried nodes remain; then backoff by rounds over all nodes."""
        n = len(self._nodes)
        if self.failures % n != 0:
            return 0.0
        return self.backoff.delay(self.failures // n)

    async def call(self, fn: Any, *, retry_busy: bool = True) -> Any:
        """``await fn(endpoint)`` on the current node, failing over once round all nodes on network errors,
        a wrong chain, and (``retry_busy``) busy answers. Raises ``Unreachable`` when none answered, or the
        node's ``CempError``."""
        last: BaseException | None = None
        for _ in range(len(self._nodes)):
            node = self._nodes[self.current]
            try:
                await self._check(node)
                res = await fn(node.endpoint)
            except NET_ERRORS as e:
                last = e
            except CempError as e:
                if not (e.code == Code.WRONG_CHAIN or (retry_busy and e.code in BUSY_CODES)):
                    self.failures = 0
                    raise
                last = e
            else:
                self.failures = 0
                return res
            self._failed(node, last)
        raise Unreachable(f"no node answered ({', '.join(self.urls)}): {last}")

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        """A read from the current node, with failover."""
        res: dict[str, Any] = await self.call(lambda e: e.get(path, **params))
        return res

    async def status(self) -> dict[str, Any]:
        return await self.get("/v1/status")

    async def chain(self) -> ChainRef:
        """The chain every node is checked against, as txs are signed for it (learned from a node if not given).

        A client made with ``check_chain=False`` (one trusted endpoint) takes it from that node's status."""
        if self.chain_id is None or self.genesis_hash is None:
            st = await self.status()  # a node's check learns what is missing
            if self.chain_id is None or self.genesis_hash is None:
                self.chain_id, self.genesis_hash = str(st["chain_id"]), str(st["genesis_hash"])
        return ChainRef(self.chain_id, bytes.fromhex(self.genesis_hash))

    async def next_nonce(self, pubkey: bytes) -> int:
        """The next nonce the node accepts from ``pubkey`` (its pending txs counted)."""
        return int((await self.get(f"/v1/nonces/{pubkey.hex()}"))["next"])

    # --- submitting -----------------------------------------------------------------------------
    async def submit_once(self, raw: bytes, *, timeout_ms: int = 30_000) -> Outcome:
        """One attempt (failing over between nodes on network errors), waiting for the commit."""
        self.attempts += 1
        node = ""
        try:

            async def one(e: Endpoint) -> dict[str, Any]:
                nonlocal node
                node = e.base
                return await e.submit(raw, wait=True, timeout_ms=timeout_ms)

            body = await self.call(one, retry_busy=False)
        except Unreachable as e:
            return Outcome(Status.RETRY_AFTER, code="unreachable", message=e.message, node=node)
        except CempError as e:
            out = refusal(e.code.name.lower(), e.message, node=node)
            if out.status == Status.TIMEOUT:
                return await self._timeout_kind(out)
            return out
        out = outcome_of(body, node)
        if out.status == Status.TIMEOUT:
            return await self._timeout_kind(out)
        return out

    async def _timeout_kind(self, out: Outcome) -> Outcome:
        """A timeout on a node that knows no leader is ``LEADER_UNKNOWN``."""
        try:
            st = await self.endpoint.get("/v1/status")
        except CempError:
            return out
        except NET_ERRORS:
            return out
        if st.get("leader"):
            return out
        return Outcome(
            Status.LEADER_UNKNOWN,
            out.tx,
            "leader_unknown",
            f"{out.message}; {self.endpoint.base} knows no leader (term {st.get('term')})",
            node=out.node,
        )

    async def submit(
        self, raw: bytes, *, timeout_ms: int = 30_000, deadline_s: float | None = None
    ) -> Outcome:
        """Submit until the answer is final (committed or refused) or ``deadline_s`` seconds have passed on the
        client's clock; returns the last outcome (``TIMEOUT``, ``LEADER_UNKNOWN`` or ``RETRY_AFTER`` when the
        deadline came first). Resending is safe: the bytes never change."""
        start = self.clock.monotonic()
        limit = start + (deadline_s if deadline_s is not None else 3 * timeout_ms / 1000)
        attempt = 0
        while True:
            out = await self.submit_once(raw, timeout_ms=timeout_ms)
            if out.final:
                return out
            wait = out.retry_after_s if out.retry_after_s is not None else self.backoff.delay(attempt)
            attempt += 1
            now = self.clock.monotonic()
            if now + wait >= limit:
                return out
            log.info("tx %s: %s (%s); again in %.2f s", out.tx[:16] or "?", out.status, out.code, wait)
            if out.status == Status.LEADER_UNKNOWN and len(self._nodes) > 1:
                self.current = (self.current + 1) % len(self._nodes)
            await self.clock.sleep(wait)

    async def submit_batch(self, raws: list[bytes], *, timeout_ms: int = 30_000) -> list[Outcome]:
        """One request with ``raws`` (in order), waiting for their commits: one outcome per tx. Raises
        ``Unreachable`` when no node took the request (nothing is known of the txs then)."""
        self.attempts += 1
        node = ""

        async def one(e: Endpoint) -> list[dict[str, Any]]:
            nonlocal node
            node = e.base
            return await e.submit_batch(raws, wait=True, timeout_ms=timeout_ms)

        bodies: list[dict[str, Any]] = await self.call(one)
        if len(bodies) != len(raws):
            raise CempError(Code.UNAVAILABLE, f"{node} answered {len(bodies)} outcomes for {len(raws)} txs")
        return [outcome_of(b, node) for b in bodies]

    async def submit_signed(self, raw: bytes, *, timeout_ms: int = 30_000) -> Outcome:
        """``submit`` for a command line: raises ``CempError`` unless the tx committed (applied or invalid)."""
        out = await self.submit(raw, timeout_ms=timeout_ms)
        if out.status != Status.COMMITTED:
            err = out.error
            assert err is not None
            raise err
        return out


class LocalEndpoint:
    """A node's own API as an ``Endpoint``: what an in-process writer (the resolver) submits through. The tx
    takes exactly the path of ``POST /v1/txs?wait=commit``: arrival order, the nonce-gap hold, the mempool,
    forwarding to the leader."""

    def __init__(self, api: Any, base: str = "local") -> None:
        self.api = api
        self._base = base

    @property
    def base(self) -> str:
        return self._base

    async def submit(self, raw: bytes, *, wait: bool = False, timeout_ms: int = 30_000) -> dict[str, Any]:
        body: dict[str, Any] = await self.api.submit_raw(raw, wait=wait, timeout_s=timeout_ms / 1000)
        return body

    async def submit_batch(
        self, raws: list[bytes], *, wait: bool = False, timeout_ms: int = 30_000
    ) -> list[dict[str, Any]]:
        return [await self.submit(r, wait=wait, timeout_ms=timeout_ms) for r in raws]

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        if path == "/v1/status":
            st: dict[str, Any] = self.api.status_json()
            return st
        raise CempError(Code.NOT_FOUND, f"the local endpoint reads only /v1/status, not {path}")


__all__ = [
    "BUSY_CODES",
    "Backoff",
    "Endpoint",
    "LocalEndpoint",
    "Outcome",
    "Status",
    "SubmitClient",
    "Unreachable",
    "code_name",
    "outcome_of",
    "refusal",
]
