"""Offline verification of a node's data directory: every byte the node relies on.

The stored chain is replayed from genesis (or from the checkpoint of an earlier clean run, ``node.checkpoint``)
into an in-memory ledger through the same apply path the node uses; every header is checked (height, parent hash,
time, proposer signature, commit votes, tx root) and the replayed results root, app hash, per-block results and
every state key are compared with what is stored. Then: every commit certificate held locally, the Raft hard state
and log against the blocks (``node.integrity``), the high-water mark (``node.watermark``), the block-hash index,
the meta records and key namespaces, and one more read of the whole database with LevelDB's checksums on.
Signatures are checked in worker processes ahead of the replay. The first inconsistency is named in one line;
nothing raises out of ``verify_store``.
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

from node import checkpoint as cp
from node import codec, merkle, schema
from node.chain import Certificate, ChainError, Ledger, genesis_hash, sig_key, tx_signature_ok
from node.crypto import sha256, verify
from node.errors import CempError
from node.genesis import GenesisError, read_genesis
from node.integrity import check_raft_log
from node.keyrotation import KeyEpoch, key_at
from node.raftstore import RAFT_APPLIED
from node.statehash import StateHash
from node.store import LevelDBStore, MemoryStore, StorageError, Store, prefix_stop
from node.txkinds import KindRegistry
from node.types import DOMAIN_BLOCK, DOMAIN_VOTE, Block, Genesis, Tx
from node.watermark import Mark, Watermark, WatermarkError, check_store, path_beside

CERT_PREFIX = b"Mcert"


@dataclass
class VerifyReport:
    ok: bool
    height: int
    blocks: int = 0
    txs: int = 0
    state_keys: int = 0
    raft_entries: int = 0
    head_hash: str = ""
    resumed_from: int = 0
    """Height an earlier run had verified (its checkpoint); only the blocks after it were replayed."""
    app_hash: str = ""
    seconds: float = 0.0
    problem: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def tx_per_s(self) -> float:
        return self.txs / self.seconds if self.seconds > 0 else 0.0


def _check_sigs(gh: bytes, raws: list[bytes]) -> list[bytes]:
    """Worker: hashes of txs whose signature verifies (undecodable txs are left to the replay)."""
    good: list[bytes] = []
    for raw in raws:
        try:
            tx = codec.decode(Tx, raw)
        except CempError:
            continue
        if tx_signature_ok(gh, tx, raw):
            good.append(sha256(raw))
    return good


NodeKeys = dict[str, tuple[bytes, tuple[KeyEpoch, ...]]]
"""Each node's registered key and rotations, as the replay knew them when it sent a job (``key_at``)."""


@dataclass(slots=True)
class Checked:
    """What a worker found about a run of blocks: only what holds is listed, the replay checks the rest."""

    hashes: list[bytes | None]
    """Per block: its header hash if the stored bytes decode as a canonical block (None: they do not)."""
    txs: list[bytes]
    """Hashes of txs whose signature verifies."""
    sigs: list[bytes]
    """``sig_key``s of the proposer signatures and commit votes that verify."""


def _check_chunk(gh: bytes, items: list[tuple[bytes, bytes | None]], keys: NodeKeys) -> Checked:
    """Worker: the stateless checks of each (raw block, raw certificate or None): canonical decoding, the header
    hash, tx signatures, the proposer's signature, the votes in the header and in the certificate (each with
    the key its node had at that height, as far as ``keys`` knows). Anything that does not decode or verify is
    simply left out: the replay then checks it itself and names the problem."""
    out = Checked([], [], [])
    seen: set[bytes] = set()

    def check(node_id: str, height: int, domain: bytes, msg: bytes, sig: bytes) -> None:
        got = keys.get(node_id)
        if got is None:
            return
        pk = key_at(got[0], got[1], height)
        k = sig_key(pk, domain, msg, sig)
        # A vote on block h is the same bytes in h's certificate and in h+1's last_commit (Ed25519 signatures
        # are deterministic): verify it once.
        if k in seen:
            return
        seen.add(k)
        if verify(pk, domain, msg, sig):
            out.sigs.append(k)

    for raw, cert_raw in items:
        try:
            b = codec.decode(Block, raw)
        except CempError:
            out.hashes.append(None)
            continue
        out.txs += _check_sigs(gh, list(b.txs))
        hd = b.header
        msg = codec.encode(hd)
        block_hash = sha256(msg)
        out.hashes.append(block_hash)
        check(hd.proposer, hd.height, DOMAIN_BLOCK, msg, b.signature)
        for v in hd.last_commit:
            check(v.node_id, hd.height - 1, DOMAIN_VOTE, hd.prev_hash, v.signature)
        if cert_raw is not None:
            try:
                cert = codec.decode(Certificate, cert_raw).sigs
            except CempError:
                cert = ()
            for v in cert:
                check(v.node_id, hd.height, DOMAIN_VOTE, block_hash, v.signature)
    return out


def _state_items(store: Store) -> Iterator[tuple[bytes, bytes]]:
    for p in sorted(schema.STATE_PREFIXES):
        pb = bytes([p])
        yield from store.iterate(pb, prefix_stop(pb))


def verify_store(
    store: Store,
    kinds: KindRegistry,
    *,
    progress: bool = False,
    workers: int | None = None,
    watermark: Path | None = None,
    genesis_file: Path | None = None,
    checkpoint: Path | None = None,
) -> VerifyReport:
    """Check everything ``store`` holds, replaying its chain with ``kinds`` (the registry the node ran with:
    ``cemp.wiring.kinds()``); never raises: every failure becomes ``problem`` on the report.

    ``watermark`` is the node's high-water-mark file (``node.watermark``), ``genesis_file`` the genesis the node
    is configured with; each is checked when given. With ``checkpoint`` (``node.checkpoint``) the replay resumes
    from the height an earlier run verified and, if everything checks out, records the new head there.
    """
    t0 = time.perf_counter()
    rep = VerifyReport(True, 0)
    try:
        _verify(store, kinds, rep, progress, workers, watermark, genesis_file, checkpoint)
    except (ChainError, StorageError) as e:
        rep.ok = False
        rep.problem = str(e)
    except Exception as e:  # a person gets one line, never a traceback; tests treat this prefix as a bug
        rep.ok = False
        rep.problem = f"{INTERNAL}: {type(e).__name__}: {e}"
    rep.seconds = time.perf_counter() - t0
    return rep


INTERNAL = "internal error while verifying"


def _verify(
    store: Store,
    kinds: KindRegistry,
    rep: VerifyReport,
    progress: bool,
    workers: int | None,
    watermark: Path | None,
    genesis_file: Path | None,
    checkpoint: Path | None,
) -> None:
    raw_g = store.get(schema.META_GENESIS)
    raw_h = store.get(schema.META_HEIGHT)
    if raw_g is None or raw_h is None:
        raise ChainError("no genesis or height record: not a CEMP data directory (or its records were lost)")
    try:
        genesis = codec.decode(Genesis, raw_g)
    except CempError as e:
        raise ChainError(f"stored genesis is damaged: {e.message}") from None
    if genesis_file is not None:
        try:
            configured = read_genesis(genesis_file)
        except (GenesisError, CempError) as e:
            raise ChainError(f"the genesis file {genesis_file} is damaged: {e}") from None
        if codec.encode(configured) != raw_g:
            raise ChainError(f"the genesis file {genesis_file} is not the genesis this store was made for")
    if len(raw_h) != 8:
        raise ChainError("the height record is damaged")
    height = int.from_bytes(raw_h, "big")
    rep.height = height
    mark = _check_watermark(store, watermark, height) if watermark is not None else None
    base_raw = store.get(schema.META_STATE_BASE)
    if base_raw is not None:
        led = verify_from_state_base(store, genesis, kinds, int.from_bytes(base_raw, "big"), height, rep)
    else:
        resume = None
        if checkpoint is not None:
            got = cp.load(checkpoint, genesis_hash(genesis))
            if isinstance(got, str):
                if got != "no checkpoint":
                    rep.warnings.append(f"verify checkpoint not used ({got}): replayed from genesis")
            else:
                resume = got
        led = _replay(store, genesis, kinds, height, rep, progress, workers, resume)
    rep.head_hash, rep.app_hash = led.last_hash.hex(), led.app_hash.hex()
    _check_raft(store, led, rep, mark)
    _scan(store, height, rep)
    if checkpoint is not None and base_raw is None and isinstance(led.store, MemoryStore):
        cp.save(checkpoint, genesis_hash(genesis), height, led.last_hash, led.store, store)


def _check_watermark(store: Store, path: Path, height: int) -> Mark | None:
    try:
        mark = Watermark(path).read()
    except WatermarkError as e:
        raise ChainError(str(e)) from None
    if mark is None:
        if store.get(schema.META_WATERMARK) is not None:
            raise ChainError(
                f"the high-water mark file {path} is missing, though this store had one: it cannot be shown that "
                "the chain was not rolled back"
            )
        return None
    raw = store.get(schema.block_by_hash(mark.block_hash))
    problem = check_store(mark, height, None, None if raw is None else int.from_bytes(raw, "big"))
    if problem is not None:
        raise ChainError(problem)
    return mark


def _check_raft(store: Store, led: Ledger, rep: VerifyReport, mark: Mark | None) -> None:
    entries, off_chain = check_raft_log(store, led, mark)
    rep.raft_entries = entries
    if off_chain:
        rep.warnings.append(
            f"{off_chain} raft log entries carry signed blocks the chain did not take (stale or not yet applied)"
        )


def check_certificate(led: Ledger, store: Store, height: int, block_hash: bytes) -> None:
    """The commit certificate held locally for block ``height`` (if any) decodes and its votes verify."""
    check_stored_certificate(led, store.get(schema.commit_cert(height)), height, block_hash)


def check_stored_certificate(led: Ledger, raw: bytes | None, height: int, block_hash: bytes) -> None:
    """``check_certificate`` on the stored bytes ``raw`` (None: no certificate is stored)."""
    if raw is None:
        return
    what = f"the commit certificate of block {height}"
    try:
        sigs = codec.decode(Certificate, raw).sigs
    except CempError as e:
        raise ChainError(f"{what} does not decode: {e.message}") from None
    for sig in sigs:
        pk = led.node_key(sig.node_id, height)
        if pk is None or not led.sig_ok(pk, DOMAIN_VOTE, block_hash, sig.signature):
            raise ChainError(f"{what}: the vote of {sig.node_id!r} does not verify")


_KNOWN_NAMESPACES = {ord(c) for c in "MBHQR"} | set(schema.STATE_PREFIXES)


def _scan(store: Store, height: int, rep: VerifyReport) -> None:
    """Read every key once more with checksums on (every table block LevelDB holds, including ones no check
    above needed), and account for every key outside the state: hash index, results, meta."""
    scan = getattr(store, "scan_all", None)
    if scan is None:
        return
    blocks_indexed = blocks_held = 0
    for k, _v in scan():
        p = k[0] if k else -1
        if p not in _KNOWN_NAMESPACES:
            raise ChainError(f"the store holds a key outside every namespace the node writes: {k[:24]!r}")
        if p == ord("H"):
            # Each block's own entry was checked above; with the count equal there is no other.
            blocks_indexed += 1
        elif p in (ord("B"), ord("Q")) and (len(k) != 9 or schema.block_height_of(k) > height):
            rep.warnings.append(f"{schema.describe_key(k)} is above the recorded height {height} (ignored)")
        elif p == ord("B"):
            blocks_held += 1
        elif k.startswith(CERT_PREFIX):
            if len(k) != len(CERT_PREFIX) + 8 or int.from_bytes(k[len(CERT_PREFIX) :], "big") > height:
                raise ChainError(f"{schema.describe_key(k)} is for a block this store does not hold")
        elif p == ord("M") and k not in schema.KNOWN_META and k != RAFT_APPLIED:
            raise ChainError(f"the store holds an unknown meta record {k[:24]!r}")
    if blocks_indexed != blocks_held:
        raise ChainError(f"the block-hash index holds {blocks_indexed} entries for {blocks_held} blocks")


CHUNK = 32
"""Blocks per job sent to a signature-checking worker (few jobs: the per-job overhead dominates small blocks)."""


def _replay(
    store: Store,
    genesis: Genesis,
    kinds: KindRegistry,
    height: int,
    rep: VerifyReport,
    progress: bool,
    workers: int | None,
    resume: tuple[cp.Checkpoint, MemoryStore] | None = None,
) -> Ledger:
    start = 1
    if resume is not None:
        mark, mem = resume
        if mark.height > height:
            raise ChainError(
                f"the chain ends at block {height}, below block {mark.height} that an earlier verify checked"
            )
        if mark.height and store.get(schema.block_by_hash(mark.block_hash)) != mark.height.to_bytes(8, "big"):
            raise ChainError(f"block {mark.height} is not the block an earlier verify checked at that height")
        replay = Ledger(mem, genesis, kinds)
        if replay.last_hash != mark.block_hash or replay.acc.to_bytes() != mark.acc:
            raise ChainError(
                "the verify checkpoint does not hold the state it records"
            )  # digest-checked: a bug
        start = mark.height + 1
        rep.resumed_from = mark.height
    else:
        replay = Ledger(MemoryStore(), genesis, kinds)
    gh = genesis_hash(genesis)
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    pool = ProcessPoolExecutor(workers) if workers > 1 and height >= start else None
    bar = tqdm(total=height - start + 1, unit="block", desc="verify", disable=not progress)
    raws: dict[int, tuple[bytes, bytes | None]] = {}
    """Blocks sent to a worker, kept for the replay: raw block and raw certificate (None: none stored)."""
    hashes: dict[int, bytes | None] = {}
    """Header hashes of blocks a worker decoded as canonical."""

    def load(h: int) -> tuple[Block, bytes, bytes | None]:
        got = raws.pop(h, None)
        raw, cert_raw = (
            got if got is not None else (store.get(schema.block(h)), store.get(schema.commit_cert(h)))
        )
        if raw is None:
            raise ChainError(f"block {h} is missing from the store")
        try:
            if hashes.get(h) is not None:
                # A worker decoded these very bytes as a canonical block: build it without encoding it again.
                return codec.from_wire(Block, codec.unpack_bounded(raw)), raw, cert_raw
            return codec.decode(Block, raw), raw, cert_raw
        except CempError as e:
            raise ChainError(f"block {h} does not decode: {e.message}") from None

    try:
        window: dict[int, Future[Checked]] = {}
        ahead = 4 * max(workers, 1)

        def schedule(first: int) -> None:
            """Send blocks ``first .. first+CHUNK-1`` to a worker (their bytes are kept for the replay)."""
            if pool is None or first > height or first in window:
                return
            items: list[tuple[bytes, bytes | None]] = []
            for h in range(first, min(first + CHUNK, height + 1)):
                raw = store.get(schema.block(h))
                if raw is None:
                    break
                raws[h] = (raw, store.get(schema.commit_cert(h)))
                items.append(raws[h])
            keys = {n: (bytes(i.pubkey), replay.key_epochs.get(n, ())) for n, i in replay.nodes.items()}
            window[first] = pool.submit(_check_chunk, gh, items, keys)

        for k in range(ahead):
            schedule(start + k * CHUNK)
        for h in range(start, height + 1):
            if (h - start) % CHUNK == 0:
                schedule(h + ahead * CHUNK)
                fut = window.pop(h, None)
                if fut is not None:
                    done = fut.result()
                    for t in done.txs:
                        replay.mark_verified(t)
                    for g in done.sigs:
                        replay.mark_sig_verified(g)
                    hashes.update(zip(range(h, h + len(done.hashes)), done.hashes, strict=True))
            block, raw, cert_raw = load(h)
            try:
                replay.apply_block(block, raw=raw)
            except ChainError as e:
                raise ChainError(str(e)) from None
            # The header hash as the worker computed it from the stored bytes (or here, without a worker).
            if replay.last_hash != (hashes.pop(h, None) or sha256(codec.encode(block.header))):
                raise ChainError(f"block {h}: hash mismatch")
            if store.get(schema.block_results(h)) != replay.store.get(schema.block_results(h)):
                raise ChainError(f"block {h}: stored tx results differ from the replayed ones")
            if store.get(schema.block_by_hash(replay.last_hash)) != h.to_bytes(8, "big"):
                raise ChainError(f"block {h}: the hash index does not point at it")
            check_stored_certificate(replay, cert_raw, h, replay.last_hash)
            # The replay keeps only state and the hash index: the blocks and results are in the node's store.
            replay.store.write({schema.block(h): None, schema.block_results(h): None}, sync=False)
            rep.blocks += 1
            rep.txs += len(block.txs)
            bar.update(1)
        # The newest block's certificate is kept locally until the next block carries it.
        cert_raw = store.get(schema.commit_cert(height)) if height else None
        if cert_raw is not None:
            try:
                replay.check_commit(
                    replay.last_hash,
                    codec.decode(Certificate, cert_raw).sigs,
                    f"block {height} commit",
                    height=height,
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
                sk = (a or b)[0]  # type: ignore[index]
                raise ChainError(
                    f"state key {sk[:40]!r} exists in {'the store' if b is None or (a and a[0] < b[0]) else 'the replay'} only"
                )
            if a[1] != b[1]:
                raise ChainError(f"state value at key {a[0][:40]!r} differs from the replayed value")
            rep.state_keys += 1
        if store.get(schema.META_STATE_ACC) != replay.acc.to_bytes():
            raise ChainError("stored state accumulator differs from the replayed one")
        if height and store.get(schema.META_LAST_HASH) != replay.last_hash:
            raise ChainError("stored head hash differs from the replayed chain")
        if height and cert_raw is None and len(replay.active) > 1:
            rep.warnings.append(
                f"no commit certificate is stored for the head block {height} (it is written without a sync "
                "and collected again from the peers after a restart)"
            )
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return replay


def verify_data_dir(
    data_dir: Path,
    kinds: KindRegistry,
    *,
    progress: bool = False,
    workers: int | None = None,
    genesis_file: Path | None = None,
    incremental: bool = False,
) -> VerifyReport:
    """``verify_store`` on a node's data directory; ``incremental`` resumes from (and updates) the checkpoint
    ``<data_dir>/verify-checkpoint`` (``node.checkpoint``)."""
    path = data_dir / "ledger" if (data_dir / "ledger").is_dir() else data_dir
    if not (path / "CURRENT").exists():
        return VerifyReport(False, 0, problem=f"{data_dir} holds no LevelDB ledger (no {path / 'CURRENT'})")
    try:
        store = LevelDBStore(path, create=False)
    except StorageError as e:
        return VerifyReport(False, 0, problem=str(e))
    try:
        return verify_store(
            store,
            kinds,
            progress=progress,
            workers=workers,
            watermark=path_beside(path),
            genesis_file=genesis_file,
            checkpoint=cp.path_for(path) if incremental else None,
        )
    finally:
        store.close()


def state_digest(store: Store) -> StateHash:
    """Recompute the state accumulator from every stored state pair."""
    acc = StateHash()
    for k, v in _state_items(store):
        acc.add(k, v)
    return acc


def verify_from_state_base(
    store: Store, genesis: Genesis, kinds: KindRegistry, base: int, height: int, rep: VerifyReport
) -> Ledger:
    """A node installed from a state snapshot holds no blocks below ``base``, so there is nothing to replay.

    Checked instead: the base block's certificate; every later block's parent hash, proposer signature, tx root
    and commit votes; and that the stored state hashes to the head's certified app hash.
    """
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
            pk = led.node_key(hd.proposer, hd.height)
            if pk is None or not verify(pk, DOMAIN_BLOCK, codec.encode(hd), b.signature):
                raise ChainError(f"block {hd.height}: proposer signature does not verify")
            if merkle.root(b.txs) != hd.tx_root:
                raise ChainError(f"block {hd.height}: tx_root does not match its txs")
            led.check_commit(
                sha256(codec.encode(prev.header)),
                hd.last_commit,
                f"block {hd.height} last_commit",
                height=prev.header.height,
            )
            rep.txs += len(b.txs)
        cert_raw = store.get(schema.commit_cert(base))
        if cert_raw is None:
            raise ChainError(f"the snapshot base block {base} has no certificate")
        led.check_commit(
            sha256(codec.encode(blocks[0].header)),
            codec.decode(Certificate, cert_raw).sigs,
            "base",
            height=blocks[0].header.height,
        )
        for b in blocks:
            led.results(b.header.height, b.header)
            check_certificate(led, store, b.header.height, sha256(codec.encode(b.header)))
        acc = state_digest(store)
        if acc.to_bytes() != store.get(schema.META_STATE_ACC):
            raise ChainError("stored state does not match the stored state accumulator")
        if acc.digest() != blocks[-1].header.app_hash:
            raise ChainError("stored state does not hash to the head block's certified app hash")
        rep.blocks = len(blocks)
    except CempError as e:
        raise ChainError(str(e)) from None
    return led
