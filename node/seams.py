"""The consensus driver's seams: what it is given instead of reaching for the clock, the network or threads.

A real node passes the defaults here (system clock, aiohttp transport, worker threads, an rng seeded from its key
and the time); the whole-node simulator (``tests/sim``) passes a virtual clock, an in-memory seeded network,
inline execution and a seeded rng, so one seed fixes a whole run of several complete nodes.

- ``Clock``: monotonic seconds for deadlines and wall-clock milliseconds for block times. The driver waits on
  its events with ``asyncio`` timeouts, so a clock must agree with the event loop's ``time()``: the system clock
  does (asyncio uses ``time.monotonic``), and the simulator runs a loop whose ``time()`` is its virtual clock.
- ``PeerTransport``: fire-and-forget, unordered, lossy delivery of peer messages (Raft retransmits); a transport
  is built by a factory that is handed the driver's ``deliver`` callback.
- ``Offload``: run a blocking function (block execution, a synced write) without stopping the event loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from node.crypto import KeyPair
from node.types import PublicKey

if TYPE_CHECKING:
    from node.catchup import BlockFetcher

Deliver = Callable[[str, list[Any]], None]
"""Called by a transport with (sender node id, messages) for every envelope that checked out."""

Offload = Callable[..., Awaitable[Any]]
"""``asyncio.to_thread``'s shape: ``await offload(fn, *args, **kwargs)`` returns ``fn(*args, **kwargs)``."""


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (the event loop's ``time()``)."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds since the epoch, for block times (the ledger keeps them strictly increasing)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class PeerTransport(Protocol):
    @property
    def reachable(self) -> Mapping[str, bool]:
        """Whether the last attempt to reach each peer succeeded (``/v1/status``)."""
        ...

    @property
    def dropped(self) -> Mapping[str, int]:
        """Messages and envelopes dropped, by reason (``/v1/status``)."""
        ...

    def send(self, to: str, msg: Any) -> None:
        """Queue ``msg`` for ``to``; never blocks, may be lost."""
        ...

    def set_peers(self, members: dict[str, PublicKey], addresses: dict[str, str]) -> None: ...

    def set_keys(self, key: KeyPair, accept: dict[str, tuple[bytes, ...]]) -> None:
        """Sign with ``key`` from now on; also accept from each peer named in ``accept`` any of those keys (a key
        rotation in progress, ``node.keyrotation``); other peers are checked against ``members``."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes that receive this transport's envelopes (none for an in-memory transport)."""
        ...


TransportFactory = Callable[[Deliver, dict[str, PublicKey]], PeerTransport]
"""Builds a node's transport from its ``deliver`` callback and the current members (id -> node key)."""


class InlineExecutor(Executor):
    """Runs each submitted function at once in the caller's thread (deterministic; for the simulator)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except Exception as e:
            f.set_exception(e)
        return f


async def run_inline(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """An ``Offload`` that runs ``fn`` on the event loop's thread (deterministic; for the simulator)."""
    return fn(*args, **kwargs)


@dataclass
class Seams:
    """What a ``node.server.Node`` hands its driver instead of the real-process defaults (None: the default)."""

    clock: Clock | None = None
    rng: random.Random | None = None
    transport: TransportFactory | None = None
    fetcher: BlockFetcher | None = None
    offload: Offload = asyncio.to_thread
    preverify: Executor | None = None
    """Where replicated blocks' tx signatures are checked ahead of apply (default: one worker thread)."""


__all__ = [
    "Clock",
    "Deliver",
    "InlineExecutor",
    "Offload",
    "PeerTransport",
    "Seams",
    "SystemClock",
    "TransportFactory",
    "run_inline",
]
