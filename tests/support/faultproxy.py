"""A userspace TCP proxy for one directed peer link, controlled by tests: pass, blackhole, delay, drop.

Used by the real-process cluster tests and benchmarks (there is no ``tc netem`` on the test machines).
Invariants: ``blackhole()`` closes every open connection and refuses new ones' data (connections are accepted
and then held silent, like a partition); ``heal()`` restores pass-through for new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


class LinkProxy:
    def __init__(self, target_host: str, target_port: int, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.blackholed = False
        self.delay_ms = 0.0
        self.jitter_ms = 0.0
        self.drop_p = 0.0
        self.rng = random.Random(seed)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self._close_all()
        for t in list(self._handlers):
            t.cancel()
        for t in list(self._handlers):
            with contextlib.suppress(BaseException):
                await t
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def blackhole(self) -> None:
        self.blackholed = True
        self._close_all()

    def heal(self) -> None:
        self.blackholed = False
        self.delay_ms = self.jitter_ms = self.drop_p = 0.0

    def delay(self, ms: float, jitter_ms: float = 0.0) -> None:
        self.delay_ms, self.jitter_ms = ms, jitter_ms

    def drop(self, p: float) -> None:
        """Each chunk of traffic kills its connection with probability ``p`` (a lost message)."""
        self.drop_p = p

    def _close_all(self) -> None:
        for w in list(self._conns):
            w.close()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blackholed:
            # Hold the connection open and silent, as a partitioned network would.
            self._conns.add(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            writer.close()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns.add(writer)
        self._conns.add(uw)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data or self.blackholed:
                        break
                    if self.drop_p and self.rng.random() < self.drop_p:
                        break
                    if self.delay_ms:
                        await asyncio.sleep((self.delay_ms + self.rng.uniform(0, self.jitter_ms)) / 1000)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, uw), pump(ur, writer))
        self._conns.discard(writer)
        self._conns.discard(uw)
