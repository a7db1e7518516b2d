"""Offline verification of a node's data directory: every block, signature, root, result and state value.

The stored chain is replayed from genesis into an in-memory ledger through the same apply path the node
uses; every header is checked (height, parent hash, time, proposer signature, commit votes, tx root) and
the replayed results root, app hash, per-block results and every state key are compared with what is
stored. Signatures are checked in worker processes ahead of the replay. The first inconsistency is named.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from node import codec, schema
from node.chain import ChainError, Ledger, signing_bytes_of_raw
from node.crypto import sha256, verify
from node.errors import CempError
from node.store import LevelDBStore, MemoryStore, Store, prefix_stop
from node.types import DOMAIN_TX, Block, Genesis, Tx


@dataclass
class VerifyReport:
    ok: bool
    height: int
    blocks: int = 0
    txs: int = 0
    state_keys: int = 0
    seconds: float = 0.0
    problem: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def tx_per_s(self) -> float:
        return self.txs / self.seconds if self.seconds > 0 else 0.0


def _check_sigs(raws: list[bytes]) -> list[bytes]:
    """Worker: hashes of txs whose signature verifies (undecodable txs are left to the replay)."""
    good: list[bytes] = []
    for raw in raws:
        try:
            tx = codec.decode(Tx, raw)
        except CempError:
            continue
        if verify(tx.sender, DOMAIN_TX, signing_bytes_of_raw(raw), tx.signature):
            good.append(sha256(raw))
    return good


def _state_items(store: Store) -> Iterator[tuple[bytes, bytes]]:
    for p in sorted(schema.STATE_PREFIXES):
        pb = bytes([p])
        yield from store.iterate(pb, prefix_stop(pb))


def verify_store(store: Store, *, progress: bool = False, workers: int | None = None) -> VerifyReport:
    t0 = time.perf_counter()
    raw_g = store.get(schema.META_GENESIS)
    raw_h = store.get(schema.META_HEIGHT)
    if raw_g is None or raw_h is None:
        return VerifyReport(False, 0, problem="no genesis or height record: not a CEMP data directory")
    try:
        genesis = codec.decode(Genesis, raw_g)
    except CempError as e:
        return VerifyReport(False, 0, problem=f"stored genesis is damaged: {e.message}")
    height = int.from_bytes(raw_h, "big")
    rep = VerifyReport(True, height)
    replay = Ledger(MemoryStore(), genesis)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    pool = ProcessPoolExecutor(workers) if workers > 1 and height > 0 else None
    bar = tqdm(total=height, unit="block", desc="verify", disable=not progress)

    def load(h: int) -> Block:
        raw = store.get(schema.block(h))
        if raw is None:
            raise ChainError(f"block {h} is missing from the store")
        try:
            return codec.decode(Block, raw)
        except CempError as e:
            raise ChainError(f"block {h} does not decode: {e.message}") from None

    try:
        window: dict[int, Future[list[bytes]]] = {}
        ahead = 64

        def schedule(h: int) -> None:
            if pool is not None and h <= height and h not in window:
                raw = store.get(schema.block(h))
                if raw is not None:
                    try:
                        txs: list[bytes] = list(codec.decode(Block, raw).txs)
                    except CempError:
                        return
                    window[h] = pool.submit(_check_sigs, txs)

        for h in range(1, min(height, ahead) + 1):
            schedule(h)
        for h in range(1, height + 1):
            schedule(h + ahead)
            block = load(h)
            fut = window.pop(h, None)
            if fut is not None:
                for good in fut.result():
                    replay.mark_verified(good)
            try:
                replay.apply_block(block)
            except ChainError as e:
                raise ChainError(str(e)) from None
            if replay.last_hash != sha256(codec.encode(block.header)):
                raise ChainError(f"block {h}: hash mismatch")
            if store.get(schema.block_results(h)) != replay.store.get(schema.block_results(h)):
                raise ChainError(f"block {h}: stored tx results differ from the replayed ones")
            if store.get(schema.block_by_hash(replay.last_hash)) != h.to_bytes(8, "big"):
                raise ChainError(f"block {h}: the hash index does not point at it")
            rep.blocks += 1
            rep.txs += len(block.txs)
            bar.update(1)
        # The newest block's certificate is kept locally until the next block carries it.
        cert_raw = store.get(schema.commit_cert(height)) if height else None
        if cert_raw is not None:
            from node.chain import _Cert

            try:
                replay.check_commit(
                    replay.last_hash, codec.decode(_Cert, cert_raw).sigs, f"block {height} commit"
                )
            except CempError as e:
                raise ChainError(f"block {height} commit certificate does not decode: {e.message}") from None
        # State: every key and value must equal the replay's.
        mine = _state_items(store)
        theirs = _state_items(replay.store)
        while True:
            a = next(mine, None)
            b = next(theirs, None)
            if a is None and b is None:
                break
            if a is None or b is None or a[0] != b[0]:
                k = (a or b)[0]  # type: ignore[index]
                raise ChainError(
                    f"state key {k[:40]!r} exists in {'the store' if b is None or (a and a[0] < b[0]) else 'the replay'} only"
                )
            if a[1] != b[1]:
                raise ChainError(f"state value at key {a[0][:40]!r} differs from the replayed value")
            rep.state_keys += 1
        if store.get(schema.META_STATE_ACC) != replay.acc.to_bytes():
            raise ChainError("stored state accumulator differs from the replayed one")
        if height and store.get(schema.META_LAST_HASH) != replay.last_hash:
            raise ChainError("stored head hash differs from the replayed chain")
        if store.get(schema.block(height + 1)) is not None:
            rep.warnings.append(f"a block above the recorded height {height} is stored (ignored)")
    except ChainError as e:
        rep.ok = False
        rep.problem = str(e)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rep.seconds = time.perf_counter() - t0
    return rep


def verify_data_dir(data_dir: Path, *, progress: bool = False, workers: int | None = None) -> VerifyReport:
    path = data_dir / "ledger" if (data_dir / "ledger").is_dir() else data_dir
    if not (path / "CURRENT").exists():
        return VerifyReport(False, 0, problem=f"{data_dir} holds no LevelDB ledger")
    store = LevelDBStore(path, create=False)
    try:
        return verify_store(store, progress=progress, workers=workers)
    finally:
        store.close()
