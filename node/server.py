"""A node process: wires store, ledger, mempool, consensus driver, API and metrics.

What the chain executes (its ``KindRegistry``) and which extra read routes it serves (``RouteProvider``s) are
given by the caller; the composition root that decides them for the ``cemp`` command is ``cemp.wiring``.

Every background task is owned by the ``Node`` and cancelled *and awaited* on shutdown; the store is
closed last, after the driver has stopped writing. One node or several, blocks are cut by the consensus driver
(a one-node consortium is a one-voter Raft cluster). ``seams`` replaces the driver's clock, transport, randomness,
block fetching and threads (the whole-node simulator in ``tests/sim`` runs several ``Node``s in one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client as prom
from aiohttp import web

from node import httplog, logs
from node.api import MAX_BODY, NodeAPI, errors_middleware
from node.backup import admin_routes, socket_path
from node.chain import DecodedTx, Ledger
from node.config import NodeConfig
from node.crypto import KeyFileError, KeyPair, read_key_file
from node.driver import ConsensusDriver
from node.genesis import read_genesis
from node.httpguard import GuardedRunner, HttpLimits, quiet_loop_errors, raise_descriptor_limit
from node.integrity import check_head, check_raft_log
from node.mempool import Mempool
from node.metrics import NodeMetrics, ScrapeCollector
from node.migrations import migrate
from node.readgate import OpenReads, ReadGate
from node.seams import Seams
from node.statesync import StateSyncServer
from node.store import LevelDBStore, Store
from node.tasks import cancel_and_wait
from node.tls import TlsFiles, client_context, server_context
from node.txkinds import KindRegistry
from node.types import Block, Genesis
from node.watermark import Watermark, path_beside

log = logging.getLogger(__name__)

SHUTDOWN_S = 10.0
"""How long the node's background tasks get to stop once cancelled (``node.tasks.cancel_and_wait``)."""

RouteProvider = Callable[["Node"], list[web.RouteDef]]
"""Extra routes of a node (documents, the resolver, ...): called once per app; matched before the core's. A provider
may carry an ``openapi_paths`` attribute (OpenAPI path items), which ``/openapi.json`` then lists too, and a
``read_gate`` attribute (a ``node.readgate.ReadGateFactory``): the node then asks that gate who may read what
(at most one provider may carry one; without any, everyone reads everything)."""


@dataclass(frozen=True)
class DocumentedRoutes:
    """A ``RouteProvider`` together with the OpenAPI path items that describe its routes (for a provider whose
    module does not set ``openapi_paths`` on it itself)."""

    provider: RouteProvider
    openapi_paths: dict[str, Any]

    def __call__(self, node: Node) -> list[web.RouteDef]:
        return self.provider(node)


class Node:
    def __init__(
        self,
        genesis: Genesis,
        store: Store,
        node_id: str,
        key: KeyPair,
        mempool_max: int = 100_000,
        peer_addresses: dict[str, str] | None = None,
        raft_compact_every: int = 5000,
        raft_catchup: str = "blocks",
        *,
        kinds: KindRegistry,
        routes: Sequence[RouteProvider] = (),
        watermark: Watermark | None = None,
        data_dir: Path | None = None,
        seams: Seams | None = None,
        tls: ssl.SSLContext | None = None,
        halt_height: int | None = None,
        key_loader: Callable[[bytes], KeyPair | None] | None = None,
    ) -> None:
        """``tls``: the client context the node reaches its peers with (``node.tls.client_context``); peers
        are then addressed over HTTPS. ``key``: the node key; ``key_loader`` finds another of this node's keys
        by public key (a rotation's new key, ``node.keyrotation``)."""
        info = next((n for n in genesis.nodes if n.node_id == node_id), None)
        if info is None and len(genesis.nodes) == 1:
            raise ValueError(f"node id {node_id!r} is not in the genesis")
        # A node not in the genesis joins a running consortium once a membership tx adds it.
        self.genesis = genesis
        self.store = store
        self.node_id = node_id
        self.tls = tls
        """The client TLS context peers are reached with (None: plain HTTP)."""
        self.routes = tuple(routes)
        self.ledger = Ledger(store, genesis, kinds, watermark)
        want = self.ledger.node_key(node_id, self.ledger.height + 1)
        if want is not None and want != key.public:
            other = key_loader(want) if key_loader is not None else None
            if other is None or other.public != want:
                raise ValueError(
                    f"the key file does not hold node {node_id}'s current key {want.hex()[:16]}… (from the genesis "
                    "or its last rotation on chain): after a rotation, the new key file replaces the old one"
                )
            key = other
        # Before anything is served or replicated: the head, and the Raft log against the blocks it carries.
        check_head(self.ledger)
        check_raft_log(store, self.ledger, self.ledger.mark)
        self.mempool = Mempool(self.ledger, mempool_max)
        self.metrics = NodeMetrics()
        self.metrics.height.set(self.ledger.height)
        self.data_dir = data_dir
        # One node or several: Raft orders the blocks (``node.driver``); one node is a one-voter cluster.
        sm = seams or Seams()
        addresses: dict[str, str] = {str(n.node_id): str(n.address) for n in genesis.nodes}
        addresses.update(peer_addresses or {})
        self.driver = ConsensusDriver(
            node_id,
            key,
            self.ledger,
            self.mempool,
            addresses,
            compact_every=raft_compact_every,
            catchup=raft_catchup,
            clock=sm.clock,
            rng=sm.rng,
            transport=sm.transport,
            fetcher=sm.fetcher,
            offload=sm.offload,
            preverify=sm.preverify,
            tls=tls,
            halt_height=halt_height,
            key_loader=key_loader,
        )
        self.driver.on_block = self._on_block
        self.driver.on_halt = self._on_halt
        self.halted = asyncio.Event()
        """Set when the node has reached its halt height (``serve`` then drains and exits)."""
        gates = [g for g in (getattr(p, "read_gate", None) for p in self.routes) if g is not None]
        if len(gates) > 1:
            raise ValueError("more than one route provider carries a read gate")
        self.reads: ReadGate = gates[0](self) if gates else OpenReads()
        """Who may read which data (``node.readgate``), asked by every read route that shows an org's data."""
        self.api = NodeAPI(
            self.ledger,
            self.mempool,
            node_id,
            status_extra=self.driver.status,
            after_admit=self._admitted,
            wall_ms=self.driver.wall_ms,
            next_apply=self.driver.next_apply,
            behind_wait_s=min(1.0, 5 * genesis.params.tick_ms / 1000),
            reads=self.reads,
        )
        for provider in self.routes:
            self.api.openapi_paths.update(getattr(provider, "openapi_paths", {}))
        self._tasks: list[asyncio.Task[None]] = []
        self.statesync = StateSyncServer(self.ledger, node_id, accept=lambda: self.driver.peer_accept)
        self.api.member_of = lambda r: self.statesync.member(r, "a signed block fetch")
        self.metrics.registry.register(
            ScrapeCollector(self._scrape_status, lambda: dict(self.api.refused_by), data_dir)
        )

    def _on_halt(self, height: int) -> None:
        self.api.halted = (
            f"node {self.node_id} has stopped at its halt height {self.driver.halt_height} (height {height}) for "
            "a coordinated upgrade; send txs again once the consortium runs the new release"
        )
        self.halted.set()

    def _admitted(self, txs: list[DecodedTx]) -> None:
        self.metrics.admitted([d.hash for d in txs])
        self.driver.forward(txs)

    def _scrape_status(self) -> dict[str, Any]:
        st: dict[str, Any] = dict(self.api.status_extra())
        self.metrics.leader_seen(st.get("leader"))
        rs = self.driver.raft.status()
        st["peer_match"] = {str(p.node): int(p.match) for p in rs.progress if str(p.node) != self.node_id}
        return st

    def _on_block(self, block: Block) -> None:
        m = self.metrics
        m.height.set(block.header.height)
        m.blocks.inc()
        m.committed(block.txs)
        m.leader_seen(self.driver.leader)
        if block.header.height % 100 == 0:
            m.forget(lambda h: self.mempool.contains(h))
        res = self.ledger.results(block.header.height)
        ok = sum(1 for r in res if r.code == 0)
        m.txs.labels("applied").inc(ok)
        m.txs.labels("invalid").inc(len(res) - ok)
        m.mempool.set(len(self.mempool))

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.mempool.set(len(self.mempool))
        return web.Response(body=prom.generate_latest(self.metrics.registry), content_type="text/plain")

    def peer_routes(self) -> list[web.RouteDef]:
        """Routes for member nodes only (signed requests): peer messages and state sync."""
        return [*self.statesync.routes(), *self.driver.transport.routes()]

    def web_app(self, with_peer_routes: bool = True) -> web.Application:
        """The public app; the peer routes too unless they get their own listener (``peer_app``)."""
        httplog.install()  # parse errors are logged without the request's bytes (credentials)
        # Every body is held to MAX_BODY (chunked or not); the peer transport reads its larger envelopes itself,
        # up to node.transport.MAX_PEER_BODY, through node.httpguard.read_body.
        app = web.Application(
            middlewares=[logs.request_id_middleware, errors_middleware], client_max_size=MAX_BODY
        )
        logs.install(app)
        for provider in self.routes:
            app.add_routes(provider(self))
        app.add_routes(self.api.routes())
        if with_peer_routes:
            app.add_routes(self.peer_routes())
        app.router.add_get("/metrics", self._metrics)
        app.cleanup_ctx.append(self._background)
        return app

    def peer_app(self) -> web.Application:
        """The peer routes alone, for a separate listener (``[api] peer_port``), plus the block read that
        catch-up uses (``node.catchup.HttpFetcher`` asks the address in genesis, which then names this listener;
        blocks are public data, served on the public listener as well)."""
        app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
        app.add_routes(self.peer_routes())
        app.router.add_get("/v1/blocks/{ref}", self.api.get_block)
        # The explorer's consortium page asks each member's genesis address for its status (public data too).
        app.router.add_get("/v1/status", self.api.status)
        return app

    async def _background(self, app: web.Application) -> AsyncIterator[None]:
        self._tasks.append(asyncio.create_task(self._guard(self.driver.run()), name="block-loop"))
        yield
        await cancel_and_wait(self._tasks, SHUTDOWN_S)
        self.api.verifier.shutdown(wait=True)

    async def _guard(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("block loop failed; stopping the node")
            os.kill(os.getpid(), signal.SIGTERM)

    def close(self) -> None:
        self.statesync.close()
        self.store.close()
        if self.ledger.watermark is not None:
            self.ledger.watermark.close()


def tls_files(cfg: NodeConfig) -> TlsFiles | None:
    if cfg.tls_cert is None or cfg.tls_key is None:
        return None
    return TlsFiles(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)


def tls_client(cfg: NodeConfig) -> ssl.SSLContext | None:
    files = tls_files(cfg)
    return client_context(files) if files is not None else None


def open_node(cfg: NodeConfig, kinds: KindRegistry, routes: Sequence[RouteProvider] = ()) -> Node:
    genesis = read_genesis(cfg.genesis)
    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    key = read_key_file(cfg.key_file, passphrase)

    def key_loader(public: bytes) -> KeyPair | None:
        """A rotated node key: ``<key_file>.next`` (read when a rotation names a key this node lacks)."""
        nxt = cfg.key_file.with_name(cfg.key_file.name + ".next")
        try:
            k = read_key_file(nxt, passphrase)
        except KeyFileError:
            return None
        return k if k.public == public else None

    path = cfg.data_dir / "ledger"
    store = LevelDBStore(path)
    try:
        migrate(store, log.info)
        return Node(
            genesis,
            store,
            cfg.node_id,
            key,
            cfg.mempool_max,
            cfg.peer_addresses,
            cfg.raft_compact_every,
            cfg.raft_catchup,
            kinds=kinds,
            routes=routes,
            watermark=Watermark(path_beside(path)),
            data_dir=cfg.data_dir,
            tls=tls_client(cfg),
            halt_height=cfg.halt_height,
            key_loader=key_loader,
        )
    except Exception:
        store.close()
        raise


async def _serve_admin(node: Node, data_dir: Path) -> web.AppRunner | None:
    """The admin app (online backup, ``node.backup``) on a unix socket in the data directory, mode 0600."""
    sock = socket_path(data_dir)
    if len(os.fsencode(sock)) > 107:  # sun_path holds 108 bytes with the NUL
        log.warning("no admin socket: the path %s is too long for a unix socket; online backup is off", sock)
        return None
    app = web.Application(middlewares=[logs.request_id_middleware])
    logs.install(app)
    app.add_routes(admin_routes(node))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock.unlink(missing_ok=True)  # left by a node that was killed; the LevelDB lock says none is running now
    old = os.umask(0o177)
    try:
        await web.UnixSite(runner, str(sock)).start()
    finally:
        os.umask(old)
    return runner


HALT_DRAIN_S = 5.0
"""After reaching its halt height a node keeps talking Raft this long before it exits, so that the followers
learn that the last block is committed (and apply it) rather than being left one block short."""


async def _drain_after_halt(node: Node, stop: asyncio.Event) -> None:
    await node.halted.wait()
    drain = max(HALT_DRAIN_S, 10 * node.genesis.params.election_ticks * node.genesis.params.tick_ms / 1000)
    await asyncio.sleep(drain)
    stop.set()


async def serve(
    cfg: NodeConfig,
    kinds: KindRegistry,
    routes: Sequence[RouteProvider] = (),
    ready: asyncio.Event | None = None,
) -> None:
    node = open_node(cfg, kinds, routes)
    quiet_loop_errors(asyncio.get_running_loop())
    separate = cfg.peer_port is not None
    limits = HttpLimits(
        max_conns_per_ip=cfg.max_conns_per_ip,
        max_conns=raise_descriptor_limit(listeners=2 if separate else 1),
        idle_timeout_s=cfg.idle_timeout_s,
    )
    runner = GuardedRunner(node.web_app(with_peer_routes=not separate), limits)
    await runner.setup()
    files = tls_files(cfg)
    ssl_ctx = server_context(files) if files is not None else None
    peer_runner: GuardedRunner | None = None
    if cfg.peer_port is not None:
        # Peers hold a few long-lived connections each; the public listener's floods cannot reach this one.
        # With a [tls] ca it is mutual TLS: a client must show a certificate from the consortium CA as well.
        peer_ssl = (
            server_context(files, require_client_cert=files.ca is not None) if files is not None else None
        )
        peer_runner = GuardedRunner(node.peer_app(), limits)
        await peer_runner.setup()
        await web.TCPSite(peer_runner, cfg.peer_host, cfg.peer_port, ssl_context=peer_ssl).start()
        print(
            f"node {cfg.node_id} peer routes on {'https' if peer_ssl else 'http'}://{cfg.peer_host}:{cfg.peer_port}"
            + (" (mutual TLS)" if files is not None and files.ca is not None else ""),
            flush=True,
        )
    site = web.TCPSite(runner, cfg.api_host, cfg.api_port, ssl_context=ssl_ctx)
    await site.start()
    log.info(
        "node %s serving on %s://%s:%d (height %d)",
        cfg.node_id,
        "https" if ssl_ctx else "http",
        cfg.api_host,
        cfg.api_port,
        node.ledger.height,
    )
    print(
        f"node {cfg.node_id} listening on {'https' if ssl_ctx else 'http'}://{cfg.api_host}:{cfg.api_port}"
        f"  data {cfg.data_dir}",
        flush=True,
    )
    admin = await _serve_admin(node, cfg.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    halted = asyncio.create_task(_drain_after_halt(node, stop), name="halt")
    try:
        await stop.wait()
    finally:
        halted.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await halted
        if peer_runner is not None:
            await peer_runner.cleanup()
        if admin is not None:
            await admin.cleanup()
            socket_path(cfg.data_dir).unlink(missing_ok=True)
        await runner.cleanup()
        # A block being applied or a read in a worker thread (asyncio.to_thread) outlives its cancelled task:
        # closing LevelDB under it crashes the process (SIGSEGV). Wait for those threads, within a bound; if one
        # is still running, leave the store open (the OS closes it; LevelDB replays its log at the next start).
        try:
            await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), SHUTDOWN_S)
        except TimeoutError:
            log.warning(
                "a worker thread still runs %.0f s after stop; exiting without closing the store", SHUTDOWN_S
            )
        else:
            node.close()
        log.info("node %s stopped at height %d", cfg.node_id, node.ledger.height)
        if node.driver.halted_at is not None:
            print(
                f"node {cfg.node_id} halted at height {node.ledger.height} (halt_height {cfg.halt_height}): "
                "stopped cleanly for a coordinated upgrade. Install the new release, remove halt_height "
                "(CEMP_HALT_HEIGHT) and start the node; do the same on every node.",
                flush=True,
            )
