"""Peer messages between nodes: a signed envelope of tagged items (Raft messages, commit votes, txs).

Invariants:
- an envelope is accepted only if its chain id is ours, it is addressed to us, its sender is a member and
  its Ed25519 signature (node key, ``DOMAIN_PEER``, over the genesis hash and the envelope) verifies; every Raft
  message inside must name the envelope's sender as ``from_`` and us as ``to``;
- an envelope carries its sender's time, a session (random per process) and a sequence number per receiver;
  ``ReplayGuard`` refuses one sent more than ``REPLAY_WINDOW_MS`` away from our clock or whose (session, seq)
  was already accepted, so a captured envelope cannot be delivered twice;
- every request on a peer route (messages, state sync) carries a signed ``X-Cemp-Peer`` header naming the
  sender, method, path, body length, time, session and sequence; ``PeerGate`` checks it against the current
  members before the body is read, so a non-member costs one header and one signature check;
- a malformed, unsigned, misaddressed, replayed or foreign envelope or request raises ``PeerError`` with a
  reason that the transport counts; it never reaches consensus.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
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
from node.types import (
    DOMAIN_PEER,
    Blob,
    CommitSig,
    Hash32,
    Height,
    PublicKey,
    ShortStr,
    Signature,
    Text,
    TimestampMs,
)

DOMAIN_PEER_REQUEST = b"CEMP/peer-request/v1\x00"
REPLAY_WINDOW_MS = 60_000
"""How far a peer's clock may be from ours, and how long an accepted (session, seq) is remembered."""
SEQ_WINDOW = 4096
"""Sequence numbers this far below the highest accepted one are refused; above it, each is accepted once."""
PEER_HEADER = "X-Cemp-Peer"


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
    time_ms: TimestampMs
    """Sender's clock when it sealed the envelope; refused beyond ``REPLAY_WINDOW_MS`` from the receiver's."""
    session: int
    """Random per sender process: a restarted sender starts its sequence afresh under a new session."""
    seq: int
    """Per (session, receiver), from 1 upward; each is accepted at most once."""


@dataclass(frozen=True, slots=True)
class Envelope:
    chain_id: ShortStr
    sender: ShortStr
    receiver: ShortStr
    items: tuple[Item, ...]
    time_ms: TimestampMs
    session: int
    seq: int
    signature: Signature
    """Ed25519 (sender's node key) over ``DOMAIN_PEER || genesis hash || encode(UnsignedEnvelope)``."""


@dataclass(frozen=True, slots=True)
class PeerRequest:
    """What the ``X-Cemp-Peer`` header of a request on a peer route signs."""

    genesis_hash: Hash32
    sender: ShortStr
    receiver: ShortStr
    method: ShortStr
    path: Text
    """Path and query string, exactly as sent."""
    body_len: int
    time_ms: TimestampMs
    session: int
    seq: int


class PeerError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class ReplayGuard:
    """Per sender: the sessions seen within the window, each with its highest seq and a bitmap below it."""

    def __init__(self, window_ms: int = REPLAY_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._seen: dict[
            tuple[str, int], tuple[int, int, int]
        ] = {}  # (sender, session) -> (top, bits, last ms)
        self.refused = 0

    def check(self, sender: str, session: int, seq: int, time_ms: int, now_ms: int) -> None:
        """Accept (and remember) or raise PeerError("stale" | "replayed")."""
        if abs(now_ms - time_ms) > self.window_ms:
            self.refused += 1
            raise PeerError("stale", f"sent at {time_ms}, {abs(now_ms - time_ms)} ms from this node's clock")
        if len(self._seen) > 256:
            self._seen = {k: v for k, v in self._seen.items() if now_ms - v[2] <= 2 * self.window_ms}
        top, bits, _ = self._seen.get((sender, session), (0, 0, now_ms))
        if seq > top:
            shift = seq - top
            bits = ((bits << shift) | 1) & ((1 << SEQ_WINDOW) - 1) if shift < SEQ_WINDOW else 1
            top = seq
        else:
            back = top - seq
            if back >= SEQ_WINDOW or bits >> back & 1:
                self.refused += 1
                raise PeerError("replayed", f"{sender} session {session:x} seq {seq} was already received")
            bits |= 1 << back
        self._seen[(sender, session)] = (top, bits, now_ms)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Sequencer:
    """A sender's session and its next sequence number per receiver."""

    def __init__(self) -> None:
        self.session = secrets.randbits(63)
        self._next: dict[str, int] = {}

    def next(self, receiver: str) -> int:
        n = self._next.get(receiver, 0) + 1
        self._next[receiver] = n
        return n


def seal(
    genesis_hash: bytes,
    chain_id: str,
    sender: str,
    receiver: str,
    messages: list[Any],
    key: KeyPair,
    seqs: Sequencer,
    now_ms: int | None = None,
) -> bytes:
    items = tuple(Item(int(TAG_OF[type(m)]), codec.encode(m)) for m in messages)
    u = UnsignedEnvelope(
        ShortStr(chain_id),
        ShortStr(sender),
        ShortStr(receiver),
        items,
        TimestampMs(_now_ms() if now_ms is None else now_ms),
        seqs.session,
        seqs.next(receiver),
    )
    sig = key.sign(DOMAIN_PEER, genesis_hash + codec.encode(u))
    return codec.encode(Envelope(u.chain_id, u.sender, u.receiver, items, u.time_ms, u.session, u.seq, sig))


def open_envelope(
    raw: bytes,
    genesis_hash: bytes,
    chain_id: str,
    me: str,
    members: dict[str, PublicKey],
    replay: ReplayGuard,
    now_ms: int | None = None,
    accept: Mapping[str, tuple[bytes, ...]] | None = None,
) -> tuple[str, list[Any]]:
    """Check and decode an envelope; returns (sender, messages). ``accept``: a member's keys during a key
    rotation (any of them verifies; ``node.driver.ConsensusDriver._sync_keys``)."""
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
    u = UnsignedEnvelope(env.chain_id, env.sender, env.receiver, env.items, env.time_ms, env.session, env.seq)
    msg = genesis_hash + codec.encode(u)
    keys = (accept or {}).get(env.sender) or (pk,)
    if not any(verify(k, DOMAIN_PEER, msg, env.signature) for k in keys):
        raise PeerError("bad_signature", env.sender)
    replay.check(env.sender, env.session, env.seq, env.time_ms, _now_ms() if now_ms is None else now_ms)
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


# --- signed requests on peer routes ---------------------------------------------------------------------------


def request_header(
    key: KeyPair,
    genesis_hash: bytes,
    sender: str,
    receiver: str,
    method: str,
    path: str,
    body_len: int,
    seqs: Sequencer,
    now_ms: int | None = None,
) -> dict[str, str]:
    """The ``X-Cemp-Peer`` header for one request from ``sender`` to ``receiver``."""
    r = PeerRequest(
        Hash32(genesis_hash),
        ShortStr(sender),
        ShortStr(receiver),
        ShortStr(method.upper()),
        Text(path),
        body_len,
        TimestampMs(_now_ms() if now_ms is None else now_ms),
        seqs.session,
        seqs.next("request:" + receiver),
    )
    sig = key.sign(DOMAIN_PEER_REQUEST, codec.encode(r))
    return {PEER_HEADER: f"{sender} {r.time_ms} {r.session} {r.seq} {sig.hex()}"}


class RequestSigner:
    """Signs this node's requests on other nodes' peer routes (state sync), under its own session."""

    def __init__(self, key: KeyPair, genesis_hash: bytes, me: str) -> None:
        self.key = key
        self.genesis_hash = genesis_hash
        self.me = me
        self.seqs = Sequencer()

    def header(self, receiver: str, method: str, path: str, body_len: int) -> dict[str, str]:
        """The ``X-Cemp-Peer`` header for one request to ``receiver`` (path with its query, as sent)."""
        return request_header(
            self.key, self.genesis_hash, self.me, receiver, method, path, body_len, self.seqs
        )


class PeerGate:
    """Server side of signed peer requests: only current members, each request once."""

    def __init__(
        self,
        genesis_hash: bytes,
        me: str,
        members: Callable[[], dict[str, PublicKey]],
        clock_ms: Callable[[], int] = _now_ms,
        accept: Callable[[], Mapping[str, tuple[bytes, ...]]] | None = None,
    ) -> None:
        """``accept``: each member's keys during a key rotation (``node.keyrotation``), beyond ``members``."""
        self.genesis_hash = genesis_hash
        self.me = me
        self.members = members
        self.accept = accept
        self.clock_ms = clock_ms
        self.replay = ReplayGuard()

    def check(self, method: str, path: str, body_len: int, header: str | None) -> str:
        """The authenticated sender, or PeerError (``unsigned``, ``non_member``, ``bad_signature``, ``stale``,
        ``replayed``)."""
        if not header:
            raise PeerError("unsigned", f"peer routes need a signed {PEER_HEADER} header from a member node")
        parts = header.split(" ")
        if len(parts) != 5 or not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts[1:4]):
            raise PeerError("malformed", f"{PEER_HEADER} is 'node time_ms session seq signature'")
        sender, t_ms, session, seq, sig_hex = parts[0], int(parts[1]), int(parts[2]), int(parts[3]), parts[4]
        pk = self.members().get(sender)
        if pk is None:
            raise PeerError("non_member", sender[:64])
        try:
            sig = bytes.fromhex(sig_hex)
            claim = PeerRequest(
                Hash32(self.genesis_hash),
                ShortStr(sender),
                ShortStr(self.me),
                ShortStr(method.upper()),
                Text(path),
                body_len,
                TimestampMs(t_ms),
                session,
                seq,
            )
            signed = codec.encode(claim)
        except (ValueError, TypeError, OverflowError):
            raise PeerError("malformed", f"{PEER_HEADER} does not parse") from None
        keys = (self.accept() if self.accept is not None else {}).get(sender) or (pk,)
        if not any(verify(k, DOMAIN_PEER_REQUEST, signed, sig) for k in keys):
            raise PeerError("bad_signature", sender)
        self.replay.check(sender, session, seq, t_ms, self.clock_ms())
        return sender
