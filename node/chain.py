"""The ledger: the one apply path from blocks to state, used by the leader, followers, catch-up and ``cemp verify``.

Invariants:
- a block is applied in ONE atomic write batch (``sync=True``) holding the block, its tx index and results,
  every state write, the new height and the state accumulator; on restart the node resumes at exactly the
  last height that batch recorded;
- execution is deterministic: a tx depends only on state, the block header and genesis, so every node
  marks the same txs invalid with the same reason and reaches the same app hash;
- an invalid tx inside a block consumes nothing but, if its signature and nonce were good, its nonce.
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass
from typing import Any

from node import codec, merkle, schema
from node.adminkeys import AdminEpoch, AdminKeys, load_admin_histories, refuse_retired
from node.crypto import KeyPair, sha256, verify
from node.errors import CempError, Code
from node.genesis import genesis_hash
from node.keyrotation import KeyEpoch, key_at, load_histories
from node.state import ElementCache, Overlay, StateView
from node.statehash import StateHash
from node.store import StorageError, Store, prefix_stop
from node.txkinds import Env, KindRegistry, TxKind
from node.types import (
    DOMAIN_BLOCK,
    DOMAIN_TX,
    DOMAIN_VOTE,
    ZERO_HASH,
    Blob,
    Block,
    BlockHeader,
    CommitSig,
    Genesis,
    Hash32,
    Height,
    NodeInfo,
    Nonce,
    ShortStr,
    Term,
    Text,
    TimestampMs,
    Tx,
    TxLocation,
    TxResult,
    UnsignedTx,
)
from node.watermark import Mark, Watermark, WatermarkError, check_store

OK = TxResult(0, Text(""))
_TOUCHES_MEMBERS = operator.methodcaller(
    "startswith", (schema.MEMBER_PREFIX, schema.NODE_KEYS_PREFIX, schema.ADMIN_KEYS_PREFIX)
)


def header_hash(header: BlockHeader) -> Hash32:
    return sha256(codec.encode(header))


def tx_signing_bytes(tx: Tx) -> bytes:
    return codec.encode(tx.unsigned())


def signing_bytes_of_raw(raw: bytes) -> bytes:
    """``encode(tx.unsigned())`` taken from a canonical encoded tx without re-encoding.

    A canonical tx is ``0x96 || fields 1-5 || bin8(64) signature``; the unsigned form is the same five
    fields under ``0x95``. Only valid for bytes that ``codec.decode(Tx, raw)`` accepted.
    """
    return b"\x95" + raw[1:-66]


@dataclass(frozen=True, slots=True)
class ChainRef:
    """What a tx signature is bound to: the chain id *and* the hash of the genesis, so a tx signed for one chain
    never verifies on another that happens to use the same chain id."""

    chain_id: str
    genesis_hash: bytes

    @classmethod
    def of(cls, genesis: Genesis) -> ChainRef:
        return cls(genesis.chain_id, genesis_hash(genesis))

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> ChainRef:
        """From a node's ``/v1/status`` answer (``chain_id``, ``genesis_hash``)."""
        gh = bytes.fromhex(str(status["genesis_hash"]))
        if len(gh) != 32:
            raise ValueError("genesis_hash must be 32 bytes")
        return cls(str(status["chain_id"]), gh)


def tx_signature_ok(genesis_hash_: bytes, tx: Tx, raw: bytes) -> bool:
    """The sender's signature over ``DOMAIN_TX || genesis hash || encode(tx.unsigned())`` (``raw`` canonical)."""
    return verify(tx.sender, DOMAIN_TX, genesis_hash_ + signing_bytes_of_raw(raw), tx.signature)


def sign_tx(
    key: KeyPair, chain: ChainRef, kind: str, nonce: int, payload_obj: object
) -> tuple[bytes, Hash32]:
    """Build, sign and encode a tx for ``chain``; returns (encoded tx, tx hash)."""
    payload = Blob(codec.encode(payload_obj))
    unsigned = UnsignedTx(ShortStr(chain.chain_id), ShortStr(kind), key.public, Nonce(nonce), payload)
    sig = key.sign(DOMAIN_TX, chain.genesis_hash + codec.encode(unsigned))
    tx = Tx(unsigned.chain_id, unsigned.kind, unsigned.sender, unsigned.nonce, unsigned.payload, sig)
    raw = codec.encode(tx)
    return raw, sha256(raw)


def sig_key(pubkey: bytes, domain: bytes, message: bytes, signature: bytes) -> bytes:
    """What a checked (key, domain, message, signature) is remembered by (``Ledger.mark_sig_verified``)."""
    return sha256(pubkey + domain + sha256(message) + signature)


def quorum(n: int) -> int:
    return n // 2 + 1


@dataclass(slots=True)
class DecodedTx:
    raw: bytes
    hash: Hash32
    tx: Tx
    kind: TxKind
    payload: Any


@dataclass(slots=True)
class StagedBlock:
    """Effects of executing a block, not yet written."""

    header: BlockHeader
    txs: tuple[bytes, ...]
    tx_hashes: list[Hash32]
    results: list[TxResult]
    overlay: Overlay


class ChainError(Exception):
    """A block that must not be applied (bad header, signature, roots) or a damaged store."""


class Ledger:
    def __init__(
        self, store: Store, genesis: Genesis, kinds: KindRegistry, watermark: Watermark | None = None
    ) -> None:
        self.store = store
        self.watermark = watermark
        """High-water mark beside a node's LevelDB (``node.watermark``); None for replays and memory stores."""
        self.mark: Mark | None = None
        """The high-water mark as read at open (None: no watermark, or it was just created)."""
        self._vouched: dict[bytes, None] = {}
        """Digests of (header hash, signature) whose proposer signature was checked on a read from disk."""
        self._headers: dict[int, BlockHeader] = {}
        """Headers of recently vouched blocks by height (``results`` checks against them without a re-read)."""
        self.genesis = genesis
        self.kinds = kinds
        """The tx kinds this chain executes (the composition root's registry; the same on every node)."""
        self.params = genesis.params
        self.genesis_hash = genesis_hash(genesis)
        self.nodes: dict[str, NodeInfo] = {n.node_id: n for n in genesis.nodes}
        """Every node ever in the consortium (old blocks by removed nodes still verify)."""
        self.active: set[str] = {n.node_id for n in genesis.nodes}
        """Current members: who may propose and whose commit votes count."""
        self.key_epochs: dict[str, tuple[KeyEpoch, ...]] = {}
        """Each node's key rotations (``node.keyrotation``); ``node_key`` answers the key of a height."""
        self.admin_epochs: dict[str, tuple[AdminEpoch, ...]] = {}
        """Each org's admin key rotations (``node.adminkeys``); ``admin_keys`` answers the keys of a height."""
        self._admins: AdminKeys | None = None
        self.verified: set[bytes] = set()
        """Tx hashes whose signature this process already checked at admission (skip on apply)."""
        self._verified_lock = threading.Lock()
        self.elements = ElementCache()
        """State pairs this ledger hashed lately: a block updating them takes their old element from here."""
        self.verified_sigs: set[bytes] = set()
        """``sig_key``s of block and vote signatures checked by another process (verify's workers)."""
        stored = store.get(schema.META_GENESIS)
        if stored is None:
            store.write(
                {
                    schema.META_GENESIS: codec.encode(genesis),
                    schema.META_HEIGHT: (0).to_bytes(8, "big"),
                    schema.META_STATE_ACC: StateHash().to_bytes(),
                    schema.META_LAST_HASH: self.genesis_hash,
                },
                sync=True,
            )
        elif stored != codec.encode(genesis):
            raise ChainError("the data directory belongs to a different genesis; refusing to mix chains")
        self.refresh_members()  # before the head: its proposer may have joined after genesis
        self._load_head()
        if watermark is not None:
            self._check_watermark(watermark)

    @property
    def where(self) -> str:
        return str(getattr(self.store, "path", "the store"))

    def _check_watermark(self, wm: Watermark) -> None:
        """Refuse a store rolled back behind the newest block this node committed; create the mark if new."""
        try:
            mark = wm.read()
        except WatermarkError as e:
            raise StorageError(self.where, "reading the high-water mark", str(e)) from None
        if mark is None:
            if self.store.get(schema.META_WATERMARK) is not None:
                raise StorageError(
                    self.where,
                    "reading the high-water mark",
                    f"{wm.path} is missing, though this store had one: it cannot be shown that the chain "
                    "was not rolled back",
                )
            wm.create(Mark(self.height, self.last_hash))
            self.store.write({schema.META_WATERMARK: b"\x01"}, sync=True)
            return
        self.mark = mark
        problem = check_store(
            mark, self.height, {self.height: self.last_hash}, self.height_of_hash(mark.block_hash)
        )
        if problem is not None:
            raise StorageError(self.where, "checking the chain against the high-water mark", problem)

    def refresh_members(self) -> None:
        from node.membership import as_node_info, load_nodes

        recs = load_nodes(StateView(self.store), self.genesis)
        self.nodes = {k: as_node_info(r) for k, r in recs.items()}
        self.active = {k for k, r in recs.items() if r.active}
        self.key_epochs = load_histories(StateView(self.store))
        self.admin_epochs = load_admin_histories(self.store)
        self._admins = None

    def admin_keys(self, height: int | None = None) -> AdminKeys:
        """The org admin keys in force for block ``height`` (default: the next block, what a tx submitted now and
        a read now go by), from committed state. Rotations take effect from the block after the one that commits
        them, so the keys of the block being executed never depend on that block's own txs."""
        h = self.height + 1 if height is None else height
        got = self._admins
        if got is None or got.height != h:
            got = AdminKeys(self.genesis, self.admin_epochs, h)
            self._admins = got
        return got

    def node_key(self, node_id: str, height: int) -> bytes | None:
        """The key of node ``node_id`` for block ``height`` (its proposal and the votes on it); None for a node
        that was never a member."""
        info = self.nodes.get(node_id)
        if info is None:
            return None
        return key_at(info.pubkey, self.key_epochs.get(node_id, ()), height)

    def node_keys(self, node_id: str) -> list[bytes]:
        """Every key the node ever had (registered first, then rotations in order)."""
        info = self.nodes.get(node_id)
        if info is None:
            return []
        return [bytes(info.pubkey), *(bytes(e.pubkey) for e in self.key_epochs.get(node_id, ()))]

    def _load_head(self) -> None:
        raw_h = self.store.get(schema.META_HEIGHT)
        acc = self.store.get(schema.META_STATE_ACC)
        last = self.store.get(schema.META_LAST_HASH)
        if raw_h is None or acc is None or last is None:
            raise ChainError("store is missing its head records (height, state accumulator, last hash)")
        self.height = Height(int.from_bytes(raw_h, "big"))
        self.acc = StateHash.from_bytes(acc)
        self.last_hash = Hash32(last)
        self.last_time_ms = TimestampMs(self.genesis.time_ms)
        self.last_term = Term(0)
        self.head_header: BlockHeader | None = None
        if self.height > 0:
            raw = self.store.get(schema.block(self.height))
            head = self.vouch(self.height, raw) if raw is not None else None
            if head is None or header_hash(head.header) != self.last_hash:
                raise ChainError(f"head block {self.height} is missing or does not match the recorded hash")
            self.last_time_ms = head.header.time_ms
            self.last_term = head.header.term
            self.head_header = head.header

    @property
    def chain(self) -> ChainRef:
        """What this chain's tx signatures are bound to."""
        return ChainRef(self.genesis.chain_id, self.genesis_hash)

    @property
    def app_hash(self) -> Hash32:
        return self.acc.digest()

    # --- txs ---------------------------------------------------------------------------------
    def decode_tx(self, raw: bytes, *, canonical_known: bool = False) -> DecodedTx:
        """Stateless checks: size, canonical encoding, chain id, kind, payload shape. No signature check.

        ``canonical_known``: these bytes were decoded canonically before (by this process or a ``cemp verify``
        worker, which recorded their hash with ``mark_verified``), so the re-encoding comparison is skipped."""
        if len(raw) > self.params.max_tx_bytes:
            raise CempError(
                Code.TOO_LARGE, f"tx is {len(raw)} bytes; the limit is {self.params.max_tx_bytes}"
            )
        tx = codec.from_wire(Tx, codec.unpack_bounded(raw)) if canonical_known else codec.decode(Tx, raw)
        if tx.chain_id != self.genesis.chain_id:
            raise CempError(
                Code.WRONG_CHAIN, f"tx is for chain {tx.chain_id!r}; this node runs {self.genesis.chain_id!r}"
            )
        kind = self.kinds.get(tx.kind)
        if kind is None:
            raise CempError(
                Code.UNKNOWN_KIND, f"unknown tx kind {tx.kind!r}; known: {', '.join(sorted(self.kinds))}"
            )
        if tx.nonce == 0:
            raise CempError(Code.NONCE_GAP, "nonces start at 1")
        try:
            payload = codec.decode(kind.payload_type, tx.payload)
        except CempError as e:
            raise CempError(e.code, f"{tx.kind} payload: {e.message}") from None
        return DecodedTx(raw, sha256(raw), tx, kind, payload)

    def check_signature(self, d: DecodedTx) -> None:
        with self._verified_lock:
            if d.hash in self.verified:
                return
        if not tx_signature_ok(self.genesis_hash, d.tx, d.raw):
            raise CempError(Code.BAD_SIGNATURE, "signature does not verify against the sender key")

    def mark_sig_verified(self, key: bytes) -> None:
        """A block or vote signature checked elsewhere (``cemp verify``'s worker processes): see ``sig_key``."""
        with self._verified_lock:
            if len(self.verified_sigs) > 500_000:
                self.verified_sigs.clear()
            self.verified_sigs.add(key)

    def sig_ok(self, pubkey: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
        if self.verified_sigs:
            k = sig_key(pubkey, domain, message, signature)
            with self._verified_lock:
                if k in self.verified_sigs:  # kept: a vote is checked twice (certificate, next header)
                    return True
        return verify(pubkey, domain, message, signature)

    def mark_verified(self, tx_hash: bytes) -> None:
        with self._verified_lock:
            if (
                len(self.verified) > 500_000
            ):  # entries for txs that never reached a block: drop, re-verify later
                self.verified.clear()
            self.verified.add(tx_hash)

    def nonce_of(self, view: StateView, sender: bytes) -> int:
        raw = view.get(schema.nonce(sender))
        return int.from_bytes(raw, "big") if raw else 0

    def check_nonce(self, view: StateView, d: DecodedTx) -> None:
        last = self.nonce_of(view, d.tx.sender)
        if d.tx.nonce <= last:
            raise CempError(
                Code.NONCE_REPLAYED, f"nonce {d.tx.nonce} already used (sender's last nonce is {last})"
            )
        if d.tx.nonce != last + 1:
            raise CempError(Code.NONCE_GAP, f"nonce {d.tx.nonce} skips ahead; the next nonce is {last + 1}")

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        raw = self.store.get(schema.tx(tx_hash))
        return None if raw is None else codec.decode(TxLocation, raw)

    # --- execution ---------------------------------------------------------------------------
    def execute(
        self,
        raw_txs: tuple[bytes, ...],
        *,
        time_ms: int,
        proposer: str,
        term: int,
        last_commit: tuple[CommitSig, ...],
        decoded: list[DecodedTx | None] | None = None,
        tx_root: Hash32 | None = None,
    ) -> StagedBlock:
        """Run ``raw_txs`` on top of the committed head; returns the staged block (header unsigned).

        ``tx_root``: the Merkle root of ``raw_txs`` when the caller already checked it (``apply_block``)."""
        height = Height(self.height + 1)
        overlay = Overlay(self.store, self.acc, self.elements)
        admins = self.admin_keys(height)
        results: list[TxResult] = []
        hashes: list[Hash32] = []
        for i, raw in enumerate(raw_txs):
            pre = decoded[i] if decoded is not None else None
            res, h = self._apply_tx(overlay, raw, pre, height, TimestampMs(time_ms), i, admins)
            results.append(res)
            hashes.append(h)
        header = BlockHeader(
            chain_id=self.genesis.chain_id,
            height=height,
            prev_hash=self.last_hash,
            time_ms=TimestampMs(time_ms),
            proposer=ShortStr(proposer),
            term=Term(term),
            tx_root=merkle.root(raw_txs) if tx_root is None else tx_root,
            results_root=merkle.root([codec.encode(r) for r in results]),
            app_hash=overlay.acc.digest(),
            last_commit=last_commit,
        )
        return StagedBlock(header, raw_txs, hashes, results, overlay)

    def _apply_tx(
        self,
        st: Overlay,
        raw: bytes,
        pre: DecodedTx | None,
        height: Height,
        time_ms: TimestampMs,
        index: int,
        admins: AdminKeys,
    ) -> tuple[TxResult, Hash32]:
        h = pre.hash if pre is not None else sha256(raw)
        st.begin()
        consumed_nonce = False
        try:
            # A tx whose signature was checked already was decoded canonically then, from these very bytes.
            d = pre if pre is not None else self.decode_tx(raw, canonical_known=h in self.verified)
            self.check_signature(d)
            self.check_nonce(st, d)
            st.put(schema.nonce(d.tx.sender), d.tx.nonce.to_bytes(8, "big"))
            consumed_nonce = True
            env = Env(self.genesis, height, time_ms, h, index, admins=admins)
            refuse_retired(admins, d.tx.sender)
            if self.kinds.authorizer is not None:
                actor = self.kinds.authorizer.authorize(st, env, d.tx, d.payload)
                # not dataclasses.replace: hot path
                env = Env(self.genesis, height, time_ms, h, index, actor=actor, admins=admins)
            fused = getattr(d.kind, "check_and_apply", None)
            if fused is not None:
                fused(st, env, d.tx, d.payload)
            else:
                d.kind.check(st, env, d.tx, d.payload)
                d.kind.apply(st, env, d.tx, d.payload)
            result = OK
        except CempError as e:
            result = TxResult(int(e.code), Text(e.message[:1024]))
            st.rollback()
            st.begin()
            if consumed_nonce:
                st.put(schema.nonce(d.tx.sender), d.tx.nonce.to_bytes(8, "big"))
        tkey = schema.tx(h)
        if st.get(tkey) is None:  # a duplicate keeps the first location
            st.put(tkey, codec.encode(TxLocation(height, index, result.code, result.reason)))
        st.release()
        with self._verified_lock:
            self.verified.discard(h)
        return result, h

    def sign_block(self, staged: StagedBlock, key: KeyPair) -> Block:
        sig = key.sign(DOMAIN_BLOCK, codec.encode(staged.header))
        return Block(staged.header, sig, tuple(Blob(t) for t in staged.txs))

    def vote(self, block_hash: bytes, node_id: str, key: KeyPair) -> CommitSig:
        return CommitSig(ShortStr(node_id), key.sign(DOMAIN_VOTE, block_hash))

    def commit(
        self,
        block: Block,
        staged: StagedBlock,
        cert: tuple[CommitSig, ...] = (),
        extra: dict[bytes, bytes] | None = None,
        *,
        raw: bytes | None = None,
        block_hash: Hash32 | None = None,
    ) -> None:
        """Write the block and all its effects in one synced batch, then advance the head.

        ``extra`` holds meta records that must move with the block (the consensus driver's applied index).
        ``raw`` is ``codec.encode(block)`` and ``block_hash`` its header hash when the caller has them already.
        """
        h = header_hash(block.header) if block_hash is None else block_hash
        changes: dict[bytes, bytes | None] = dict(staged.overlay.writes)
        changes[schema.block(block.header.height)] = codec.encode(block) if raw is None else raw
        changes[schema.block_by_hash(h)] = block.header.height.to_bytes(8, "big")
        changes[schema.META_HEIGHT] = block.header.height.to_bytes(8, "big")
        changes[schema.META_STATE_ACC] = staged.overlay.acc.to_bytes()
        changes[schema.META_LAST_HASH] = h
        changes[schema.block_results(block.header.height)] = codec.encode(BlockResults(tuple(staged.results)))
        if extra:
            changes.update(extra)
        if cert:
            changes[schema.commit_cert(block.header.height)] = codec.encode(Certificate(cert))
        self.store.write(changes, sync=True)
        if self.watermark is not None:
            self.watermark.advance_block(block.header.height, h)  # only after the batch is on disk
        if any(map(_TOUCHES_MEMBERS, staged.overlay.writes)):  # map: no Python frame per written key
            self.refresh_members()
        self.height = block.header.height
        self.acc = staged.overlay.acc
        self.last_hash = h
        self.last_time_ms = block.header.time_ms
        self.last_term = block.header.term
        self.head_header = block.header

    # --- validation of a block made elsewhere (followers, replay, verify) ----------------------
    def check_commit(self, block_hash: bytes, sigs: tuple[CommitSig, ...], what: str, *, height: int) -> None:
        """Votes on the block ``block_hash`` of height ``height``: each by a current member, with its key of that
        height, a majority of them."""
        seen: set[str] = set()
        for s in sigs:
            pk = self.node_key(s.node_id, height)
            if pk is None or s.node_id not in self.active:
                raise ChainError(f"{what}: vote from {s.node_id!r}, which is not a current member")
            if s.node_id in seen:
                raise ChainError(f"{what}: two votes from node {s.node_id!r}")
            if not self.sig_ok(pk, DOMAIN_VOTE, block_hash, s.signature):
                raise ChainError(f"{what}: vote of node {s.node_id!r} does not verify")
            seen.add(s.node_id)
        need = quorum(len(self.active))
        if len(seen) < need:
            raise ChainError(f"{what}: {len(seen)} votes, a majority needs {need}")

    def check_header(self, block: Block, header_bytes: bytes | None = None) -> None:
        """Everything about ``block`` but its execution: chain id, height, parent, time, proposer and its
        signature, the parent's commit votes, the tx root. ``header_bytes``: ``codec.encode(block.header)``."""
        hd = block.header
        if hd.chain_id != self.genesis.chain_id:
            raise ChainError(f"block {hd.height}: chain id {hd.chain_id!r} is not {self.genesis.chain_id!r}")
        if hd.height != self.height + 1:
            raise ChainError(f"block {hd.height}: expected height {self.height + 1}")
        if hd.prev_hash != self.last_hash:
            raise ChainError(f"block {hd.height}: prev_hash does not match block {self.height}'s hash")
        if hd.time_ms <= self.last_time_ms:
            raise ChainError(
                f"block {hd.height}: time {hd.time_ms} does not advance past {self.last_time_ms}"
            )
        pk = self.node_key(hd.proposer, hd.height)
        if pk is None or hd.proposer not in self.active:
            raise ChainError(f"block {hd.height}: proposer {hd.proposer!r} is not a current consortium node")
        hb = codec.encode(hd) if header_bytes is None else header_bytes
        if not self.sig_ok(pk, DOMAIN_BLOCK, hb, block.signature):
            raise ChainError(
                f"block {hd.height}: proposer signature does not verify (with its key of that height)"
            )
        if hd.height > 1:
            self.check_commit(
                self.last_hash, hd.last_commit, f"block {hd.height} last_commit", height=self.height
            )
        elif hd.last_commit:
            raise ChainError("block 1 must not carry commit votes")
        if merkle.root(block.txs) != hd.tx_root:
            raise ChainError(f"block {hd.height}: tx_root does not match its txs")

    def apply_block(
        self,
        block: Block,
        cert: tuple[CommitSig, ...] = (),
        extra: dict[bytes, bytes] | None = None,
        *,
        raw: bytes | None = None,
    ) -> StagedBlock:
        """Validate a block made elsewhere, execute it, check its roots, and commit it. ``raw``: the block's
        canonical bytes when the caller holds them (stored as they are instead of encoding the block again)."""
        hd = block.header
        hb = codec.encode(hd)  # once: the proposer signature covers it, its hash is the block hash
        self.check_header(block, hb)
        staged = self.execute(
            block.txs,
            time_ms=hd.time_ms,
            proposer=hd.proposer,
            term=hd.term,
            last_commit=hd.last_commit,
            tx_root=hd.tx_root,  # check_header compared it with the txs' root
        )
        if staged.header.results_root != hd.results_root:
            raise ChainError(f"block {hd.height}: results differ from the proposer's (results_root mismatch)")
        if staged.header.app_hash != hd.app_hash:
            raise ChainError(
                f"block {hd.height}: state after execution differs from the proposer's (app_hash)"
            )
        self.commit(block, staged, cert, extra, raw=raw, block_hash=sha256(hb))
        return staged

    # --- state snapshots ----------------------------------------------------------------------
    def install_snapshot(
        self,
        block: Block,
        results: tuple[TxResult, ...],
        cert: tuple[CommitSig, ...],
        pairs: list[tuple[bytes, bytes]],
    ) -> None:
        """Replace this node's state by a snapshot at ``block``'s height, after checking it.

        Checks: the certificate is a majority of the members this node knows; the pairs hash (LtHash) to the
        certified header's app hash; every key is a state key. All-or-nothing: one synced batch.
        """
        h = header_hash(block.header)
        self.check_commit(
            h, cert, f"snapshot block {block.header.height} certificate", height=block.header.height
        )
        acc = StateHash()
        for k, v in pairs:
            if not schema.is_state_key(k):
                raise ChainError(f"snapshot holds a non-state key {k[:20]!r}")
            acc.add(k, v)
        if acc.digest() != block.header.app_hash:
            raise ChainError("snapshot state does not hash to the certified app hash")
        if merkle.root([codec.encode(r) for r in results]) != block.header.results_root:
            raise ChainError("snapshot block results do not match the header's results root")
        changes: dict[bytes, bytes | None] = {}
        for p in schema.STATE_PREFIXES:
            pb = bytes([p])
            for k, _ in self.store.iterate(pb, prefix_stop(pb)):
                changes[k] = None
        changes.update(pairs)
        height = block.header.height
        changes[schema.block(height)] = codec.encode(block)
        changes[schema.block_by_hash(h)] = height.to_bytes(8, "big")
        changes[schema.block_results(height)] = codec.encode(BlockResults(results))
        changes[schema.commit_cert(height)] = codec.encode(Certificate(cert))
        changes[schema.META_HEIGHT] = height.to_bytes(8, "big")
        changes[schema.META_STATE_ACC] = acc.to_bytes()
        changes[schema.META_LAST_HASH] = h
        changes[schema.META_STATE_BASE] = height.to_bytes(8, "big")
        self.store.write(changes, sync=True)
        if self.watermark is not None:
            self.watermark.advance_block(height, h)
        self.refresh_members()
        self._load_head()

    # --- reads -------------------------------------------------------------------------------
    def block(self, height: int) -> Block | None:
        """Block ``height`` from disk, checked (``vouch``) before anyone relies on it."""
        raw = self.store.get(schema.block(height))
        return None if raw is None else self.vouch(height, raw)

    def block_raw(self, height: int) -> bytes | None:
        """Block ``height``'s stored bytes, checked like ``block`` before they are served or sent."""
        raw = self.store.get(schema.block(height))
        if raw is not None:
            self.vouch(height, raw)
        return raw

    def vouch(self, height: int, raw: bytes) -> Block:
        """Check a block read from disk: it decodes, sits at its height, its txs hash to its tx root, the hash
        index names it, and its proposer signed it. Raises ``StorageError`` naming the block otherwise."""

        def bad(detail: str) -> StorageError:
            return StorageError(self.where, f"reading block {height}", detail)

        try:
            b = codec.decode(Block, raw)
        except CempError as e:
            raise bad(f"it does not decode ({e.message})") from None
        hd = b.header
        if hd.height != height:
            raise bad(f"it says it is block {hd.height}")
        if merkle.root(b.txs) != hd.tx_root:
            raise bad("its txs do not hash to its header's tx root")
        h = header_hash(hd)
        if self.store.get(schema.block_by_hash(h)) != height.to_bytes(8, "big"):
            raise bad("its header hash is not the one recorded for that height (header damaged?)")
        digest = sha256(h + b.signature)
        if digest not in self._vouched:
            pk = self.node_key(hd.proposer, hd.height)
            if pk is None or not verify(pk, DOMAIN_BLOCK, codec.encode(hd), b.signature):
                raise bad("its proposer signature does not verify")
            self._remember(digest)
        with self._verified_lock:
            if len(self._headers) >= 1024:
                self._headers.pop(next(iter(self._headers)))
            self._headers[height] = hd
        return b

    def _remember(self, digest: bytes) -> None:
        with self._verified_lock:  # API handlers and worker threads read blocks at the same time
            if len(self._vouched) >= 4096:
                self._vouched.pop(next(iter(self._vouched)))
            self._vouched[digest] = None

    def height_of_hash(self, block_hash: bytes) -> int | None:
        raw = self.store.get(schema.block_by_hash(block_hash))
        return None if raw is None else int.from_bytes(raw, "big")

    def cert(self, height: int) -> tuple[CommitSig, ...]:
        """Commit votes on block ``height``: from block ``height+1``'s header, else from the local record."""
        nxt = self.block(height + 1)
        if nxt is not None:
            return nxt.header.last_commit
        raw = self.store.get(schema.commit_cert(height))
        if raw is None:
            return ()
        what = f"reading the commit certificate of block {height}"
        try:
            sigs = codec.decode(Certificate, raw).sigs
        except CempError as e:
            raise StorageError(self.where, what, f"it does not decode ({e.message})") from None
        if height == self.height:
            block_hash: bytes | None = self.last_hash
        else:
            b = self.block(height)
            block_hash = header_hash(b.header) if b is not None else None
        digest = sha256(raw + (block_hash or b""))
        if digest in self._vouched:
            return sigs
        for s in sigs:
            pk = self.node_key(s.node_id, height)
            if block_hash is None or pk is None or not verify(pk, DOMAIN_VOTE, block_hash, s.signature):
                raise StorageError(self.where, what, f"the vote of {s.node_id!r} does not verify")
        self._remember(digest)
        return sigs

    def results(self, height: int, header: BlockHeader | None = None) -> tuple[TxResult, ...]:
        """Tx results of block ``height``, checked against the header's results root."""
        raw = self.store.get(schema.block_results(height))
        if raw is None:
            return ()
        what = f"reading the tx results of block {height}"
        try:
            results = codec.decode(BlockResults, raw).results
        except CempError as e:
            raise StorageError(self.where, what, f"they do not decode ({e.message})") from None
        if header is None and height == self.height:
            header = self.head_header
        if header is None:
            header = self._headers.get(height)
        if header is None:
            b = self.block(height)
            header = b.header if b is not None else None
        if header is None or merkle.root([codec.encode(r) for r in results]) != header.results_root:
            raise StorageError(self.where, what, "they do not hash to the block's results root")
        return results


@dataclass(frozen=True, slots=True)
class Certificate:
    sigs: tuple[CommitSig, ...]


@dataclass(frozen=True, slots=True)
class BlockResults:
    results: tuple[TxResult, ...]


__all__ = [
    "ZERO_HASH",
    "ChainError",
    "ChainRef",
    "DecodedTx",
    "Ledger",
    "StagedBlock",
    "genesis_hash",
    "header_hash",
    "sign_tx",
    "tx_signature_ok",
]
