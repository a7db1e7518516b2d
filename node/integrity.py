"""Checks of the stored bytes a node relies on, short of a full replay: run at node start and by ``cemp verify``.

- ``check_raft_log``: the Raft hard state, snapshot record and every log entry. Each entry that carries a block
  is either byte-identical to the block the chain holds at its height, or a self-consistent signed proposal the
  chain did not take (a stale leader's, skipped by every node alike); anything else is a damaged copy and is
  named. A leader that passes this check never replicates a damaged entry read from its disk.
- ``check_head``: the newest ``window`` blocks: each decodes, sits at its height, hashes to its tx root and to
  the hash index, carries its proposer's signature; parents chain; stored results hash to each results root;
  the commit votes in each header and the head's certificate verify.

Both raise ``IntegrityError`` (a ``ChainError``) or ``StorageError`` with one line naming what and where.
"""

from __future__ import annotations

import msgpack

from consensus.messages import ConfigChange, Entry, EntryKind, HardState, Snapshot
from node import codec, merkle, schema
from node.chain import ChainError, Ledger, header_hash
from node.crypto import verify
from node.errors import CempError
from node.raftstore import ENTRY, ENTRY_STOP, HARD_STATE, RAFT_APPLIED, SNAPSHOT, SnapshotRef
from node.store import Store
from node.types import DOMAIN_BLOCK, DOMAIN_VOTE, Block, CommitSig
from node.watermark import Mark, check_raft

HEAD_WINDOW = 1000
"""Blocks below the head that a starting node checks in full (older ones are checked whenever they are read)."""


class IntegrityError(ChainError):
    """Stored data that fails a check; the message names the record."""


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else int.from_bytes(raw, "big")


def _block_term(raw: bytes) -> int | None:
    """The ``term`` field of an encoded block's header, without decoding its txs into objects."""
    try:
        v = msgpack.unpackb(raw)[0][5]
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None
    return v if isinstance(v, int) else None


def check_block_alone(led: Ledger, b: Block, what: str) -> None:
    """What can be checked of a block without its parent: chain id, proposer signature, tx root."""
    hd = b.header
    if hd.chain_id != led.genesis.chain_id:
        raise IntegrityError(f"{what}: chain id {hd.chain_id!r} is not this chain's")
    pk = led.node_key(hd.proposer, hd.height)
    if pk is None or not verify(pk, DOMAIN_BLOCK, codec.encode(hd), b.signature):
        raise IntegrityError(f"{what}: the proposer signature of block {hd.height} does not verify")
    if merkle.root(b.txs) != hd.tx_root:
        raise IntegrityError(f"{what}: the txs of block {hd.height} do not hash to its tx root")


def check_raft_log(store: Store, led: Ledger, mark: Mark | None = None) -> tuple[int, int]:
    """Check the stored Raft state against itself, the chain and the high-water ``mark`` (if any); returns
    (entries checked, entries whose block is not the chain's at its height)."""
    hs: HardState | None = None
    raw = store.get(HARD_STATE)
    if raw is not None:
        try:
            hs = codec.decode(HardState, raw)
        except CempError as e:
            raise IntegrityError(f"the raft hard state does not decode: {e.message}") from None
    base_index, base_term = 0, 0
    raw = store.get(SNAPSHOT)
    if raw is not None:
        try:
            snap = codec.decode(Snapshot, raw)
            ref = codec.decode(SnapshotRef, snap.data) if snap.data else None
        except CempError as e:
            raise IntegrityError(f"the raft snapshot record does not decode: {e.message}") from None
        base_index, base_term = int(snap.meta.index), int(snap.meta.term)
        state_base = _int(store.get(schema.META_STATE_BASE)) or 0
        if (
            ref is not None
            and state_base <= ref.height <= led.height
            and led.height_of_hash(ref.block_hash) != ref.height
        ):
            raise IntegrityError(
                f"the raft snapshot record names block {ref.height} with a hash the chain does not hold"
            )
    prev_index, prev_term = base_index, base_term
    checked = skipped = 0  # skipped: entries whose block is not the chain's at its height (stale or pending)
    guess = 0  # height the next block entry most likely carries: consecutive entries carry consecutive blocks
    for key, raw in store.iterate(ENTRY, ENTRY_STOP):
        if len(key) != len(ENTRY) + 8:
            raise IntegrityError(f"a raft log key is malformed: {key[:16]!r}")
        idx = int.from_bytes(key[len(ENTRY) :], "big")
        what = f"raft log entry {idx}"
        try:
            ent = codec.decode(Entry, raw)
        except CempError as err:
            raise IntegrityError(f"{what} does not decode: {err.message}") from None
        if ent.index != idx:
            raise IntegrityError(f"{what} says it is entry {ent.index}")
        if idx != prev_index + 1:
            raise IntegrityError(f"the raft log skips from entry {prev_index} to {idx}")
        if ent.term < prev_term:
            raise IntegrityError(f"{what} has term {ent.term}, below the {prev_term} of the entry before it")
        if hs is not None and ent.term > hs.term:
            raise IntegrityError(f"{what} has term {ent.term}, above the hard state's term {hs.term}")
        if ent.kind == EntryKind.NORMAL:
            if guess and store.get(schema.block(guess)) == ent.data:
                # The very bytes of a block the chain holds (checked on its own); only the entry's term is left.
                if _block_term(ent.data) != ent.term:
                    raise IntegrityError(f"{what}: its term {ent.term} is not its block's")
                guess += 1
            else:
                try:
                    b = codec.decode(Block, ent.data)
                except CempError as err:
                    raise IntegrityError(f"{what}: its block does not decode ({err.message})") from None
                h = int(b.header.height)
                if int(b.header.term) != int(ent.term):
                    raise IntegrityError(
                        f"{what}: its block's term {b.header.term} is not the entry's {ent.term}"
                    )
                if store.get(schema.block(h)) != ent.data:
                    # Not the chain's block at that height: it must still be a valid signed proposal.
                    check_block_alone(led, b, what)
                    if led.height_of_hash(header_hash(b.header)) == h:
                        raise IntegrityError(
                            f"block {h} in the store differs from the copy {what} carries (which checks "
                            "out): the stored block is damaged"
                        )
                    skipped += 1
                guess = h + 1
        elif ent.kind == EntryKind.CONFIG:
            try:
                ConfigChange.decode(ent.data)
            except (ValueError, UnicodeDecodeError) as err:
                raise IntegrityError(f"{what}: its configuration change does not decode ({err})") from None
        elif ent.data:
            raise IntegrityError(f"{what}: an empty (no-op) entry carries {len(ent.data)} bytes")
        prev_index, prev_term = idx, int(ent.term)
        checked += 1
    if hs is not None and hs.commit > prev_index:
        raise IntegrityError(
            f"the raft hard state says entry {hs.commit} is committed, but the log ends at entry {prev_index}"
        )
    if mark is not None:
        if hs is None:
            problem = (
                f"the raft hard state is missing, but this node had persisted term {mark.term}"
                if mark.term
                else None
            )
        else:
            problem = check_raft(mark, int(hs.term), hs.vote, int(hs.commit), prev_index)
        if problem is not None:
            raise IntegrityError(problem)
    applied = _int(store.get(RAFT_APPLIED))
    if applied is not None and applied > max(hs.commit if hs else 0, base_index):
        raise IntegrityError(f"raft entry {applied} is recorded as applied but was never committed")
    return checked, skipped


def _check_votes(led: Ledger, block_hash: bytes, sigs: tuple[CommitSig, ...], what: str, height: int) -> None:
    """Votes on block ``height`` (``block_hash``), each with its node's key of that height."""
    for s in sigs:
        pk = led.node_key(s.node_id, height)
        if pk is None or not verify(pk, DOMAIN_VOTE, block_hash, s.signature):
            raise IntegrityError(f"{what}: the vote of {s.node_id!r} does not verify")


def check_head(led: Ledger, window: int | None = None) -> int:
    """Check the newest ``window`` blocks and the head's certificate; returns how many blocks were checked."""
    window = HEAD_WINDOW if window is None else window
    store = led.store
    top = int(led.height)
    if top == 0:
        return 0
    base = _int(store.get(schema.META_STATE_BASE)) or 1
    lo = max(base, top - window + 1, 1)
    prev_hash: bytes | None = None
    for h in range(lo, top + 1):
        raw = store.get(schema.block(h))
        if raw is None:
            raise IntegrityError(f"block {h} is missing from the store")
        b = led.vouch(h, raw)
        hd = b.header
        if prev_hash is None and h > base:
            if led.height_of_hash(hd.prev_hash) != h - 1:
                raise IntegrityError(f"block {h}'s parent is not block {h - 1} of this store")
        elif prev_hash is not None and hd.prev_hash != prev_hash:
            raise IntegrityError(f"block {h} does not extend block {h - 1}")
        if h > base:
            _check_votes(led, hd.prev_hash, hd.last_commit, f"block {h}'s votes on block {h - 1}", h - 1)
        led.results(h, hd)
        prev_hash = header_hash(hd)
    if prev_hash != led.last_hash:
        raise IntegrityError(f"the head block {top} is not the one the head record names")
    led.cert(top)
    return top - lo + 1


__all__ = ["HEAD_WINDOW", "IntegrityError", "check_block_alone", "check_head", "check_raft_log"]
