"""Mempool: admitted txs waiting for a block, with the pending small-state they imply.

Invariants:
- a tx is admitted only if it would pass ``check`` on committed state plus every earlier admitted tx, so a
  device or admin can pipeline several txs (nonce n, n+1, ...) without waiting for each commit;
- after a block commits, the pending view is rebuilt from the remaining txs against the new head; a tx that no
  longer fits is dropped and its waiters get the reason;
- waiters are resolved with the tx's committed location exactly once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace

from node import schema
from node.adminkeys import refuse_retired
from node.chain import DecodedTx, Ledger
from node.errors import CempError, Code
from node.state import StateView
from node.store import Store
from node.txkinds import Env
from node.types import Hash32, Height, TimestampMs, TxLocation

MAX_BLOCK_BYTES = 8 << 20
"""A block carries at most this many bytes of txs, so a Raft message with a few blocks stays well within the peer
transport's body limit (``node.server.MAX_PEER_BODY``)."""


class PendingView(StateView):
    def __init__(self, store: Store, overlay: dict[bytes, bytes]) -> None:
        super().__init__(store)
        self.overlay = overlay

    def get(self, key: bytes) -> bytes | None:
        v = self.overlay.get(key)
        return v if v is not None else self.store.get(key)


class Mempool:
    def __init__(self, ledger: Ledger, max_size: int = 100_000) -> None:
        self.ledger = ledger
        self.max_size = max_size
        self.pending: OrderedDict[Hash32, DecodedTx] = OrderedDict()
        self.inflight: dict[Hash32, DecodedTx] = {}
        self.overlay: dict[bytes, bytes] = {}
        self.waiters: dict[Hash32, list[asyncio.Future[TxLocation]]] = {}
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.pending)

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self.pending or tx_hash in self.inflight

    def _admit_checked(self, d: DecodedTx, now_ms: int) -> None:
        view = PendingView(self.ledger.store, self.overlay)
        admins = self.ledger.admin_keys()
        refuse_retired(
            admins, d.tx.sender
        )  # first: whatever its nonce, a former admin key's tx will not pass
        self.ledger.check_nonce(view, d)
        env = Env(self.ledger.genesis, Height(admins.height), TimestampMs(now_ms), d.hash, 0, admins=admins)
        authorizer = self.ledger.kinds.authorizer
        if authorizer is not None:  # checked again, on block time and state, when the block applies
            env = replace(env, actor=authorizer.authorize(view, env, d.tx, d.payload))
        effects = d.kind.admit(view, env, d.tx, d.payload)
        self.overlay.update(effects)
        self.overlay[schema.nonce(d.tx.sender)] = d.tx.nonce.to_bytes(8, "big")

    def admit(self, d: DecodedTx, now_ms: int) -> None:
        """Admit a decoded tx whose signature was checked. Raises CempError if it cannot go in a block."""
        if len(self.pending) >= self.max_size:
            raise CempError(Code.MEMPOOL_FULL, f"mempool holds {self.max_size} txs; retry after a few blocks")
        self._admit_checked(d, now_ms)
        self.pending[d.hash] = d
        self.changed.set()

    def take(self, n: int, max_bytes: int = MAX_BLOCK_BYTES) -> list[DecodedTx]:
        """The oldest txs for a block: at most ``n`` of them and ``max_bytes`` of encoded txs (at least one)."""
        out: list[DecodedTx] = []
        size = 0
        while self.pending and len(out) < n:
            h, d = next(iter(self.pending.items()))
            if out and size + len(d.raw) > max_bytes:
                break
            size += len(d.raw)
            self.pending.popitem(last=False)
            self.inflight[h] = d
            out.append(d)
        if not self.pending:
            self.changed.clear()
        return out

    def wait(self, tx_hash: Hash32) -> asyncio.Future[TxLocation]:
        fut: asyncio.Future[TxLocation] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(tx_hash, []).append(fut)
        return fut

    def _resolve(self, tx_hash: Hash32, loc: TxLocation | None, err: CempError | None) -> None:
        for fut in self.waiters.pop(tx_hash, []):
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(err)
            else:
                assert loc is not None
                fut.set_result(loc)

    def committed(self, tx_hashes: Iterable[Hash32], height: int, now_ms: int) -> None:
        """A block with these txs is applied: resolve waiters and rebuild the pending view."""
        results = self.ledger.results(height)
        for i, h in enumerate(tx_hashes):
            # On a follower (or after a leader change) a committed tx may still sit in ``pending``.
            self.inflight.pop(h, None)
            self.pending.pop(h, None)
            if h in self.waiters:
                r = results[i]
                self._resolve(h, TxLocation(Height(height), i, r.code, r.reason), None)
        self.rebuild(now_ms)

    def rebuild(self, now_ms: int) -> None:
        self.overlay = {}
        for d in self.inflight.values():  # still on their way into a block: their effects stay pending
            try:
                self._admit_checked(d, now_ms)
            except CempError:
                pass
        keep: OrderedDict[Hash32, DecodedTx] = OrderedDict()
        for h, d in self.pending.items():
            try:
                self._admit_checked(d, now_ms)
            except CempError as e:
                loc = self.ledger.tx_location(h)
                if loc is not None:  # committed in blocks this node caught up on without applying one by one
                    self._resolve(h, loc, None)
                    continue
                self._resolve(
                    h, None, CempError(e.code, f"dropped from the mempool after a block: {e.message}")
                )
                continue
            keep[h] = d
        self.pending = keep
        if self.pending:
            self.changed.set()
        else:
            self.changed.clear()

    def requeue_inflight(self, now_ms: int) -> None:
        """Txs taken for a block that did not make it (lost leadership, skipped entry) wait again, first."""
        if not self.inflight:
            return
        back: OrderedDict[Hash32, DecodedTx] = OrderedDict(self.inflight)
        back.update(self.pending)
        self.pending = back
        self.inflight = {}
        self.rebuild(now_ms)

    def fail_all(self, err: CempError) -> None:
        for h in list(self.waiters):
            self._resolve(h, None, err)
