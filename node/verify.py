"""Offline verification of a node's data directory: every block, signature, root, result and state value.

The stored chain is replayed from genesis into an in-memory ledger through the same apply path the node
uses; every header is checked (height, parent hash, time, proposer signature, commit votes, tx root) and
the replayed results root, app hash, per-block results and every state key are compared with what is
stored. Signatures are checked in worker processes ahead of the replay. The first inconsistency is named.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from node import codec, merkle, schema
from node.chain import Certificate, ChainError, Ledger, signing_bytes_of_raw
from node.crypto import sha256, verify
from node.errors import CempError
from node.statehash import StateHash
from node.store import LevelDBStore, MemoryStore, Store, prefix_stop
from node.txkinds import KindRegistry
from node.types import DOMAIN_BLOCK, DOMAIN_TX, Block, Genesis, Tx


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


def verify_store(
    store: Store, kinds: KindRegistry, *, progress: bool = False, workers: int | None = None
) -> VerifyReport:
    """Replay ``store``'s chain with ``kinds`` (the registry the node ran with: ``cemp.wiring.kinds()``)."""
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
    base_raw = store.get(schema.META_STATE_BASE)
    if base_raw is not None:
        return verify_from_state_base(store, genesis, kinds, int.from_bytes(base_raw, "big"), height, t0)
    rep = VerifyReport(True, height)
    replay = Ledger(MemoryStore(), genesis, kinds)
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
            try:
                replay.check_commit(
                    replay.last_hash, codec.decode(Certificate, cert_raw).sigs, f"block {height} commit"
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


def verify_data_dir(
    data_dir: Path, kinds: KindRegistry, *, progress: bool = False, workers: int | None = None
) -> VerifyReport:
    path = data_dir / "ledger" if (data_dir / "ledger").is_dir() else data_dir
    if not (path / "CURRENT").exists():
        return VerifyReport(False, 0, problem=f"{data_dir} holds no LevelDB ledger")
    store = LevelDBStore(path, create=False)
    try:
        return verify_store(store, kinds, progress=progress, workers=workers)
    finally:
        store.close()


def state_digest(store: Store) -> StateHash:
    """Recompute the state accumulator from every stored state pair."""
    acc = StateHash()
    for k, v in _state_items(store):
        acc.add(k, v)
    return acc


def verify_from_state_base(
    store: Store, genesis: Genesis, kinds: KindRegistry, base: int, height: int, t0: float
) -> VerifyReport:
    """A node installed from a state snapshot holds no blocks below ``base``, so there is nothing to replay.

    Checked instead: the base block's certificate; every later block's parent hash, proposer signature, tx root
    and commit votes; and that the stored state hashes to the head's certified app hash.
    """
    rep = VerifyReport(True, height)
    rep.warnings.append(
        f"this node was installed from a state snapshot at height {base}: blocks below it are not here, and state "
        "is checked against the certified app hash instead of a replay (verify a full node to replay from genesis)"
    )
    try:
        led = Ledger(store, genesis, kinds)  # reads the head; writes nothing on an existing store
        blocks: list[Block] = []
        for h in range(base, height + 1):
            raw = store.get(schema.block(h))
            if raw is None:
                raise ChainError(f"block {h} is missing from the store")
            try:
                blocks.append(codec.decode(Block, raw))
            except CempError as e:
                raise ChainError(f"block {h} does not decode: {e.message}") from None
        for prev, b in itertools.pairwise(blocks):
            hd = b.header
            if hd.prev_hash != sha256(codec.encode(prev.header)) or hd.height != prev.header.height + 1:
                raise ChainError(f"block {hd.height} does not extend block {prev.header.height}")
            info = led.nodes.get(hd.proposer)
            if info is None or not verify(info.pubkey, DOMAIN_BLOCK, codec.encode(hd), b.signature):
                raise ChainError(f"block {hd.height}: proposer signature does not verify")
            if merkle.root(b.txs) != hd.tx_root:
                raise ChainError(f"block {hd.height}: tx_root does not match its txs")
            led.check_commit(
                sha256(codec.encode(prev.header)), hd.last_commit, f"block {hd.height} last_commit"
            )
            rep.txs += len(b.txs)
        cert_raw = store.get(schema.commit_cert(base))
        if cert_raw is None:
            raise ChainError(f"the snapshot base block {base} has no certificate")
        led.check_commit(
            sha256(codec.encode(blocks[0].header)), codec.decode(Certificate, cert_raw).sigs, "base"
        )
        acc = state_digest(store)
        if acc.to_bytes() != store.get(schema.META_STATE_ACC):
            raise ChainError("stored state does not match the stored state accumulator")
        if acc.digest() != blocks[-1].header.app_hash:
            raise ChainError("stored state does not hash to the head block's certified app hash")
        rep.blocks = len(blocks)
    except (ChainError, CempError) as e:
        rep.ok = False
        rep.problem = str(e)
    rep.seconds = time.perf_counter() - t0
    return rep
