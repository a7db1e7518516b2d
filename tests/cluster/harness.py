"""Real-process cluster harness: N ``cemp node`` processes on loopback behind per-link fault proxies.

Each directed link's proxy draws its drops and jitter from ``random.Random(link_seed(seed, a, b))``; ``seed`` is
``CEMP_PROXY_SEED`` or 0, and is printed, so a failing fault schedule replays with the same value.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.client import NodeClient
from tests.support.faultproxy import LinkProxy
from tests.support.testing import TestConsortium, free_port, start_node_process, write_tls

SEED_ENV = "CEMP_PROXY_SEED"


def link_seed(seed: int, a: str, b: str) -> int:
    """A directed link's proxy seed: the same on every run and machine (``hash()`` of a str is not)."""
    return zlib.crc32(f"{seed}:{a}->{b}".encode())


@dataclass
class Cluster:
    base: Path
    consortium: TestConsortium
    ids: list[str]
    ports: dict[str, int]
    proxies: dict[tuple[str, str], LinkProxy] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)
    tls_ca: Path | None = None
    """The consortium CA when the cluster runs over TLS (``create(tls=True)``)."""

    @classmethod
    async def create(
        cls,
        base: Path,
        n: int = 3,
        proxies: bool = True,
        compact_every: int | None = None,
        catchup: str = "blocks",
        seed: int | None = None,
        tls: bool = False,
        **params: int,
    ) -> Cluster:
        """``tls``: a consortium CA and per-node certificates (``[tls]`` in every config); every link is HTTPS."""
        ports = [free_port() for _ in range(n)]
        params.setdefault("tick_ms", 50)
        params.setdefault("election_ticks", 10)
        params.setdefault("block_interval_ms", 10)
        c = TestConsortium.create(n_nodes=n, ports=ports, **params)
        ids = [str(x.node_id) for x in c.genesis.nodes]
        cl = cls(base, c, ids, dict(zip(ids, ports, strict=True)))
        if seed is None:
            seed = int(os.environ.get(SEED_ENV, "0"))
        if proxies:
            print(f"cluster link proxies seeded with {seed} (replay: {SEED_ENV}={seed})", flush=True)
        for a in ids:
            for b in ids:
                if a != b and proxies:
                    p = LinkProxy("127.0.0.1", cl.ports[b], seed=link_seed(seed, a, b))
                    await p.start()
                    cl.proxies[(a, b)] = p
        if tls:
            cl.tls_ca = write_tls(base / "tls", ids)
        for a in ids:
            cfg = c.write_files(base / a, a, cl.ports[a])
            if tls:
                t = base / "tls"
                cfg.write_text(
                    cfg.read_text()
                    + f'\n[tls]\ncert = "{t / a}.crt"\nkey = "{t / a}.key"\nca = "{t}/ca.crt"\n'
                )
            if compact_every is not None:
                cfg.write_text(
                    cfg.read_text() + f'\n[raft]\ncompact_every = {compact_every}\ncatchup = "{catchup}"\n'
                )
            if proxies:
                peers = "\n".join(f'"{b}" = "127.0.0.1:{cl.proxies[(a, b)].port}"' for b in ids if b != a)
                cfg.write_text(cfg.read_text() + f"\n[peers]\n{peers}\n")
            cl.configs[a] = cfg
        return cl

    def url(self, nid: str) -> str:
        return f"{'https' if self.tls_ca else 'http'}://127.0.0.1:{self.ports[nid]}"

    def client(self, nid: str, timeout_s: float = 60) -> NodeClient:
        """A client of ``nid``'s API (trusting the cluster's CA when it runs over TLS)."""
        ctx = ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else None
        return NodeClient(self.url(nid), timeout_s=timeout_s, ssl_context=ctx)

    async def start(self, nid: str, module: str = "cemp.cli", env: dict[str, str] | None = None) -> None:
        """Start ``nid`` (``module``: which release's command line; ``env``: extra environment)."""
        self.procs[nid] = await asyncio.to_thread(
            lambda: start_node_process(
                self.configs[nid], self.base / nid / "node.log", self.ports[nid], module=module, env=env
            )
        )

    async def start_all(self) -> None:
        await asyncio.gather(*(self.start(n) for n in self.ids))

    def kill(self, nid: str) -> None:
        p = self.procs.pop(nid)
        p.kill()
        p.wait()

    def pause(self, nid: str) -> None:
        os.kill(self.procs[nid].pid, signal.SIGSTOP)

    def resume(self, nid: str) -> None:
        os.kill(self.procs[nid].pid, signal.SIGCONT)

    def isolate(self, nid: str) -> None:
        for (a, b), p in self.proxies.items():
            if nid in (a, b):
                p.blackhole()

    def heal(self) -> None:
        for p in self.proxies.values():
            p.heal()

    async def stop(self) -> None:
        for nid in list(self.procs):
            p = self.procs.pop(nid)
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.terminate()
            try:
                await asyncio.to_thread(p.wait, 15)
            except subprocess.TimeoutExpired:
                p.kill()
        for p in self.proxies.values():
            await p.stop()

    async def status(self, nid: str) -> dict[str, Any]:
        async with self.client(nid, timeout_s=3) as c:
            return await c.status()

    async def leader(self, timeout: float = 15) -> str:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            for nid in list(self.procs):
                try:
                    st = await self.status(nid)
                except Exception:
                    continue
                if st.get("role") == "leader" and st.get("leader") == nid:
                    return nid
            await asyncio.sleep(0.1)
        raise TimeoutError("no leader elected")
