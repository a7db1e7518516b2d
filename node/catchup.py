"""Catch-up: bring a node that is behind a compacted Raft log up to the snapshot's block, from its peers.

A Raft snapshot names a block (``SnapshotRef``: height and hash); blocks are never pruned. The driver hands
such a snapshot to ``CatchUp.restore``, which either
- ``"blocks"`` (default): fetches every missing block from the peers and fully re-verifies it through the
  ledger's one apply path (``Ledger.apply_block``), or
- ``"state"``: installs a chunked state snapshot checked against a certified app hash
  (``Ledger.install_snapshot``), then fetches any blocks still missing.
Afterwards the node's applied Raft index is the snapshot's.

A node configured with a halt height (a coordinated upgrade, ``halt_height`` / ``CEMP_HALT_HEIGHT``) catches up
to that height and no further, like the driver's own apply loop: no fetched block above it is applied, a state
snapshot above it is not installed (blocks are fetched up to the halt instead), and the snapshot's Raft index is
not recorded as applied, so the next release (started without the halt) catches up the rest.

Peers are reached through a ``BlockFetcher`` seam: ``HttpFetcher`` asks their HTTP API (``GET /v1/blocks``,
``/v1/statesync``); the whole-node simulator reads the other simulated nodes over its fake network. The same
seam serves any other "get me a good copy of this block" need (a follower refetching a damaged replicated block
by its hash uses ``block_raw(peer, hash)``).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp

from consensus.messages import Snapshot
from node import codec
from node.chain import ChainError, Ledger
from node.errors import CempError
from node.httpguard import CLIENT_KEEPALIVE_S
from node.peer import RequestSigner
from node.raftstore import RAFT_APPLIED, SnapshotRef
from node.seams import Clock, Offload
from node.statesync import fetch_state
from node.tls import scheme
from node.transport import MAX_PEER_BODY
from node.types import Block, CommitSig, TxResult

log = logging.getLogger(__name__)

StateSnapshot = tuple[Block, tuple[TxResult, ...], tuple[CommitSig, ...], list[tuple[bytes, bytes]]]


class FetchError(Exception):
    """A peer could not serve what was asked (unreachable, refused, or sent something that does not decode)."""


class BlockFetcher(Protocol):
    def peers(self) -> list[str]:
        """Peers to ask, in a stable order."""
        ...

    async def block_raw(self, peer: str, ref: int | bytes) -> bytes | None:
        """The encoded block at height ``ref`` (an int) or with header hash ``ref`` (bytes) from ``peer``'s block
        store; None if the peer does not have it. Raises ``FetchError`` if the peer cannot be asked."""
        ...

    async def state(self, peer: str, min_height: int) -> StateSnapshot:
        """A state snapshot at a height >= ``min_height`` (``node.statesync``). Raises ``FetchError`` or
        ``ChainError``."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class HttpFetcher:
    """Fetches from the peers' HTTP APIs (one aiohttp session, opened by ``start``).

    Blocks come from ``api_addresses``; state sync is a peer route for members only, so it goes to the peer's
    transport address in ``peer_addresses`` (its own listener when it has one; a live mapping, kept current by
    membership changes), each request signed by ``signer``."""

    def __init__(
        self,
        node_id: str,
        api_addresses: Mapping[str, str],
        signer: RequestSigner,
        peer_addresses: Mapping[str, str] | None = None,
        timeout_s: float = 30,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls
        """Fetch over HTTPS, verified with this context, when set (a TLS consortium, ``node.tls``)."""
        self.node_id = node_id
        self.api_addresses = api_addresses
        """A live mapping: the driver keeps it to the current members (``ConsensusDriver._sync_api_addresses``)."""
        self.peer_addresses: Mapping[str, str] = peer_addresses if peer_addresses is not None else {}
        self.signer = signer
        self.timeout_s = timeout_s
        self._http: aiohttp.ClientSession | None = None

    def peers(self) -> list[str]:
        return [p for p in self.api_addresses if p != self.node_id]

    async def start(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(ssl=self.tls or True, keepalive_timeout=CLIENT_KEEPALIVE_S),
            )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise FetchError("the fetcher is not started")
        return self._http

    async def block_raw(self, peer: str, ref: int | bytes) -> bytes | None:
        addr = self.api_addresses.get(peer)
        if addr is None:
            raise FetchError(f"no API address for {peer}")
        path = str(ref) if isinstance(ref, int) else ref.hex()
        url_path = f"/v1/blocks/{path}?format=msgpack"
        try:  # signed: a block carries payloads that only members and granted viewers may read
            async with self._session().get(
                f"{scheme(self.tls)}://{addr}{url_path}", headers=self.signer.header(peer, "GET", url_path, 0)
            ) as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise FetchError(f"{peer} answered {r.status} for block {path}")
                if not 0 < (r.content_length or 0) <= MAX_PEER_BODY:
                    raise FetchError(f"{peer} offers a block of {r.content_length} bytes")
                return await r.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise FetchError(f"{peer}: {e}") from None

    async def state(self, peer: str, min_height: int) -> StateSnapshot:
        addr = self.peer_addresses.get(peer) or self.api_addresses.get(peer)
        if addr is None:
            raise FetchError(f"no address for {peer}")

        def sign(method: str, path: str, body_len: int) -> dict[str, str]:
            return self.signer.header(peer, method, path, body_len)

        try:
            return await fetch_state(self._session(), addr, min_height, sign, scheme=scheme(self.tls))
        except (aiohttp.ClientError, TimeoutError) as e:
            raise FetchError(f"{peer}: {e}") from None


class CatchUp:
    """Restores a node to a Raft snapshot's block. ``on_block`` is called after each fetched block is applied
    (the driver signs its vote on the new head and tells the mempool)."""

    def __init__(
        self,
        node_id: str,
        ledger: Ledger,
        fetcher: BlockFetcher,
        clock: Clock,
        offload: Offload,
        *,
        mode: str = "blocks",
        on_block: Callable[[Block], None] = lambda _b: None,
        retry_s: float = 0.2,
        halt_height: int | None = None,
    ) -> None:
        if mode not in ("blocks", "state"):
            raise ValueError(f"catch-up mode must be 'blocks' or 'state', not {mode!r}")
        self.node_id = node_id
        self.ledger = ledger
        self.fetcher = fetcher
        self.clock = clock
        self.offload = offload
        self.mode = mode
        self.on_block = on_block
        self.retry_s = retry_s
        self.restored = 0
        self.halt_height = halt_height
        """Apply no block above this height (``node.config.NodeConfig.halt_height``); None: no halt."""

    def halted(self) -> bool:
        return self.halt_height is not None and self.ledger.height >= self.halt_height

    async def restore(self, snap: Snapshot) -> bool:
        """Catch up to ``snap``'s block; returns True once the ledger is there and the applied index is recorded,
        False if the halt height stopped it first (nothing above the halt applied, the index not recorded)."""
        led = self.ledger
        if not snap.data:
            return True  # the genesis prefix: nothing to fetch
        ref = codec.decode(SnapshotRef, snap.data)
        self.restored += 1
        log.info(
            "%s: restoring snapshot at height %d (have %d): fetching blocks",
            self.node_id,
            ref.height,
            led.height,
        )
        past_halt = self.halt_height is not None and ref.height > self.halt_height
        if self.mode == "state" and led.height < ref.height and not past_halt:
            await self._install_state(int(ref.height))
        while led.height < ref.height:
            if self.halted():
                log.warning(
                    "%s: catch-up stops at the halt height %d (the snapshot is at %d)",
                    self.node_id,
                    self.halt_height,
                    ref.height,
                )
                return False
            if not await self.fetch_next():
                await self.clock.sleep(self.retry_s)  # no peer had it (yet): back off, ask again
        if self.mode != "state" and led.height == ref.height and led.last_hash != ref.block_hash:
            raise ChainError("snapshot block hash differs from the chain this node verified")
        led.store.write({RAFT_APPLIED: snap.meta.index.to_bytes(8, "big")}, sync=True)
        return True

    async def _install_state(self, min_height: int) -> None:
        led = self.ledger
        for peer in self.fetcher.peers():
            try:
                block, results, cert, pairs = await self.fetcher.state(peer, min_height)
                await self.offload(led.install_snapshot, block, results, cert, pairs)
                log.info("%s: installed state snapshot at height %d from %s", self.node_id, led.height, peer)
                return
            except (FetchError, CempError, ChainError) as err:
                log.warning("state sync from %s failed: %s", peer, err)

    async def fetch_next(self) -> bool:
        """Fetch, verify and apply the block after the head from the first peer that has a good one; False if
        none had it, or the head is at the halt height."""
        led = self.ledger
        if self.halted():
            return False
        for peer in self.fetcher.peers():
            try:
                raw = await self.fetcher.block_raw(peer, led.height + 1)
                if raw is None:
                    continue
                block = codec.decode(Block, raw)
                await self.offload(led.apply_block, block, (), {})
            except (FetchError, CempError, ChainError) as err:
                log.warning("catch-up from %s failed: %s", peer, err)
                continue
            self.on_block(block)
            return True
        return False


__all__ = ["RAFT_APPLIED", "BlockFetcher", "CatchUp", "FetchError", "HttpFetcher", "SnapshotRef"]
