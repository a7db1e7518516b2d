"""Peer messages between nodes: a signed envelope of tagged items (Raft messages, commit votes, txs).

Invariants:
- an envelope is accepted only if its chain id is ours, it is addressed to us, its sender is a member and
  its Ed25519 signature (node key, ``DOMAIN_PEER``) verifies; every Raft message inside must name the
  envelope's sender as ``from_`` and us as ``to``;
- a malformed, unsigned, misaddressed or foreign envelope raises ``PeerError`` with a reason that the
  transport counts; it never reaches consensus.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from node import codec
from node.crypto import KeyPair, verify
from node.errors import CempError
from node.types import DOMAIN_PEER, Blob, CommitSig, Hash32, Height, PublicKey, ShortStr, Signature


@dataclass(frozen=True, slots=True)
class CommitVote:
    """A node's signature on a block it applied; the next block's header carries a majority of them."""

    height: Height
    block_hash: Hash32
    sig: CommitSig


@dataclass(frozen=True, slots=True)
class ForwardTxs:
    """Txs a node admitted and passes on so the leader can put them in a block."""

    txs: tuple[Blob, ...]


class Tag(IntEnum):
    REQUEST_VOTE = 1
    REQUEST_VOTE_RESPONSE = 2
    APPEND_ENTRIES = 3
    APPEND_ENTRIES_RESPONSE = 4
    INSTALL_SNAPSHOT = 5
    INSTALL_SNAPSHOT_RESPONSE = 6
    TIMEOUT_NOW = 7
    COMMIT_VOTE = 20
    FORWARD_TXS = 21


TYPES: dict[Tag, type[Any]] = {
    Tag.REQUEST_VOTE: RequestVote,
    Tag.REQUEST_VOTE_RESPONSE: RequestVoteResponse,
    Tag.APPEND_ENTRIES: AppendEntries,
    Tag.APPEND_ENTRIES_RESPONSE: AppendEntriesResponse,
    Tag.INSTALL_SNAPSHOT: InstallSnapshot,
    Tag.INSTALL_SNAPSHOT_RESPONSE: InstallSnapshotResponse,
    Tag.TIMEOUT_NOW: TimeoutNow,
    Tag.COMMIT_VOTE: CommitVote,
    Tag.FORWARD_TXS: ForwardTxs,
}
TAG_OF: dict[type[Any], Tag] = {v: k for k, v in TYPES.items()}
RAFT_TYPES = tuple(TYPES[t] for t in Tag if t < 20)


@dataclass(frozen=True, slots=True)
class Item:
    tag: int
    body: bytes
    """One encoded message; an AppendEntries carries whole blocks, so this is not limited like a ``Blob``."""


@dataclass(frozen=True, slots=True)
class UnsignedEnvelope:
    chain_id: ShortStr
    sender: ShortStr
    receiver: ShortStr
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Envelope:
    chain_id: ShortStr
    sender: ShortStr
    receiver: ShortStr
    items: tuple[Item, ...]
    signature: Signature


class PeerError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def seal(chain_id: str, sender: str, receiver: str, messages: list[Any], key: KeyPair) -> bytes:
    items = tuple(Item(int(TAG_OF[type(m)]), codec.encode(m)) for m in messages)
    u = UnsignedEnvelope(ShortStr(chain_id), ShortStr(sender), ShortStr(receiver), items)
    sig = key.sign(DOMAIN_PEER, codec.encode(u))
    return codec.encode(Envelope(u.chain_id, u.sender, u.receiver, items, sig))


def open_envelope(raw: bytes, chain_id: str, me: str, members: dict[str, PublicKey]) -> tuple[str, list[Any]]:
    """Check and decode an envelope; returns (sender, messages)."""
    try:
        env = codec.decode(Envelope, raw)
    except CempError as e:
        raise PeerError("malformed", e.message) from None
    if env.chain_id != chain_id:
        raise PeerError("wrong_chain", env.chain_id)
    if env.receiver != me:
        raise PeerError("misaddressed", env.receiver)
    pk = members.get(env.sender)
    if pk is None:
        raise PeerError("non_member", env.sender)
    u = UnsignedEnvelope(env.chain_id, env.sender, env.receiver, env.items)
    if not verify(pk, DOMAIN_PEER, codec.encode(u), env.signature):
        raise PeerError("bad_signature", env.sender)
    out: list[Any] = []
    for it in env.items:
        try:
            cls = TYPES[Tag(it.tag)]
        except ValueError:
            raise PeerError("unknown_tag", str(it.tag)) from None
        try:
            msg = codec.decode(cls, it.body)
        except CempError as e:
            raise PeerError("malformed", e.message) from None
        if isinstance(msg, RAFT_TYPES) and (msg.from_ != env.sender or msg.to != me):
            raise PeerError("spoofed", f"{msg.from_}->{msg.to} inside an envelope from {env.sender}")
        if isinstance(msg, CommitVote) and msg.sig.node_id != env.sender:
            raise PeerError("spoofed", "commit vote of another node")
        out.append(msg)
    return env.sender, out
