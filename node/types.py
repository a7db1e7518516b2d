"""Chain objects: the frozen, slotted dataclasses that travel on the wire and are hashed.

Invariants:
- every field is an int, str, bytes, a nested wire object or a tuple of those; no floats, no maps;
- quantities that are hashed are integers in base units (Wh, W, milli-degrees C, grams, fen);
- the field order of each class *is* its wire format (see ``node.codec``); append new fields at the end
  only together with a new chain version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

# Domain types. The codec knows the size limits attached to each (see codec.CONSTRAINTS).
Height = NewType("Height", int)
Term = NewType("Term", int)
Nonce = NewType("Nonce", int)
TimestampMs = NewType("TimestampMs", int)
SignedInt = NewType("SignedInt", int)  # int64: reading values may be negative (temperatures)
Hash32 = NewType("Hash32", bytes)
PublicKey = NewType("PublicKey", bytes)
Signature = NewType("Signature", bytes)
Handle = NewType("Handle", str)
ShortStr = NewType("ShortStr", str)  # kinds, quantities, units, node ids: <= 64 chars
Text = NewType("Text", str)  # reasons and free text: <= 1024 chars
Blob = NewType("Blob", bytes)  # opaque encoded payloads: <= 1 MiB

ZERO_HASH = Hash32(b"\x00" * 32)

# Domain tags: a signature made for one purpose can never be replayed as another.
DOMAIN_TX = b"CEMP/tx/v2\x00"  # v2: the signed bytes start with the genesis hash
DOMAIN_BLOCK = b"CEMP/block/v1\x00"
DOMAIN_VOTE = b"CEMP/commit-vote/v1\x00"
DOMAIN_PEER = b"CEMP/peer-msg/v1\x00"


@dataclass(frozen=True, slots=True)
class UnsignedTx:
    """The part of a transaction its signature covers."""

    chain_id: ShortStr
    """Genesis chain id; a tx for another chain is refused."""
    kind: ShortStr
    """Registered tx kind, e.g. ``readings`` or ``device.register``."""
    sender: PublicKey
    """Ed25519 public key of the signer (a device key for ``readings``, an org admin key otherwise)."""
    nonce: Nonce
    """Per-sender counter: exactly one more than the sender's last committed nonce (first tx: 1)."""
    payload: Blob
    """Canonical encoding of the kind's payload object."""


@dataclass(frozen=True, slots=True)
class Tx:
    """A signed transaction. Its id is ``sha256(encode(tx))``."""

    chain_id: ShortStr
    kind: ShortStr
    sender: PublicKey
    nonce: Nonce
    payload: Blob
    signature: Signature
    """Ed25519 over ``DOMAIN_TX || genesis hash || encode(UnsignedTx)``: bound to one chain, not just its id."""

    def unsigned(self) -> UnsignedTx:
        return UnsignedTx(self.chain_id, self.kind, self.sender, self.nonce, self.payload)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value. The device handle is carried once per batch (``ReadingBatch.device``)."""

    seq: Nonce
    """Device sequence number, strictly increasing per device across all its batches."""
    ts_ms: TimestampMs
    """When the value was taken, Unix milliseconds (device clock, checked against the block time)."""
    quantity: ShortStr
    """What was measured, e.g. ``energy.import`` (a counter), ``power`` or ``temp.supply``."""
    value: SignedInt
    """Integer value in ``unit``."""
    unit: ShortStr
    """Base unit: ``Wh``, ``W``, ``mV``, ``mA``, ``mdegC``, ``mHz``, ``g``, ``fen`` ..."""
    flags: int
    """Quality flags (``node.readings.Flag`` bits); 0 means good."""


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Payload of a ``readings`` tx: a batch from one device, signed by that device's key."""

    device: Handle
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    """Payload of ``device.register``: binds a handle under the sender org's prefix to a device key.

    Minimal until the resolver's handle records take over (HS_PUBKEY at the device's handle).
    """

    device: Handle
    pubkey: PublicKey
    kind: ShortStr
    """Device type, e.g. ``meter.energy``, ``sensor.temperature``, ``scanner.bill``."""
    subsystem: ShortStr
    """Subsystem the device belongs to (``core-heating``, ``pipe-heating``, ``storage-tank`` ...)."""


@dataclass(frozen=True, slots=True)
class CommitSig:
    """A node's signature on a block hash it has applied (a commit vote)."""

    node_id: ShortStr
    signature: Signature
    """Ed25519 over ``DOMAIN_VOTE || block_hash``."""


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: ShortStr
    height: Height
    """Genesis is height 0 (no block); the first block is height 1."""
    prev_hash: Hash32
    """Hash of the previous header; the genesis hash for height 1."""
    time_ms: TimestampMs
    """Proposer's clock, strictly greater than the previous block's."""
    proposer: ShortStr
    """Node id of the proposer; must be a member at ``height``."""
    term: Term
    """Consensus term in which the block was proposed (0 on a single node)."""
    tx_root: Hash32
    """RFC 6962 Merkle root over the encoded txs."""
    results_root: Hash32
    """RFC 6962 Merkle root over the encoded ``TxResult`` of each tx, in order."""
    app_hash: Hash32
    """Commitment to the whole application state *after* this block (``node.statehash``)."""
    last_commit: tuple[CommitSig, ...]
    """Commit votes of a majority of nodes on the previous block (empty for height 1)."""


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    signature: Signature
    """Proposer's Ed25519 over ``DOMAIN_BLOCK || encode(header)``."""
    txs: tuple[Blob, ...]
    """Encoded txs, each canonical."""


@dataclass(frozen=True, slots=True)
class TxResult:
    """Outcome of one tx inside a committed block, the same on every node."""

    code: int
    """0 = applied; otherwise the tx is kept in the block but marked invalid (``node.errors.Code``)."""
    reason: Text
    """Empty when applied, else a sentence naming the problem."""


@dataclass(frozen=True, slots=True)
class TxLocation:
    """Value of the tx index: where a tx sits and how it ended."""

    height: Height
    index: int
    code: int
    reason: Text


@dataclass(frozen=True, slots=True)
class Org:
    name: ShortStr
    role: ShortStr
    """``owner`` | ``equipment`` | ``regulator``."""
    admin_key: PublicKey
    prefix: Handle
    """Handle prefix the org owns, e.g. ``88.123.45``."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: ShortStr
    org: ShortStr
    pubkey: PublicKey
    address: ShortStr
    """``host:port`` of the node's peer/API endpoint."""


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    block_max_txs: int
    block_interval_ms: int
    max_tx_bytes: int
    max_batch_readings: int
    max_future_skew_ms: int
    """How far a reading's timestamp may be ahead of the block time."""
    election_ticks: int
    heartbeat_ticks: int
    tick_ms: int


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: ShortStr
    time_ms: TimestampMs
    orgs: tuple[Org, ...]
    nodes: tuple[NodeInfo, ...]
    params: ConsensusParams


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """State of a registered device (``schema.device``)."""

    handle: Handle
    pubkey: PublicKey
    """Key that must sign the device's readings (HS_PUBKEY once the resolver lands)."""
    org: ShortStr
    kind: ShortStr
    subsystem: ShortStr
    devnum: int
    """Compact number used in reading and aggregate keys."""
    registered_height: Height
    last_seq: Nonce
    """Highest reading sequence number committed (0 = none yet)."""
    last_ts_ms: TimestampMs
    readings: int
    """Number of readings committed."""


@dataclass(frozen=True, slots=True)
class HourlyAggregate:
    """Per device, quantity and hour (``schema.hourly``); for counters, ``last_value - first_value`` is use."""

    count: int
    total: SignedInt
    minimum: SignedInt
    maximum: SignedInt
    first_ts_ms: TimestampMs
    first_value: SignedInt
    last_ts_ms: TimestampMs
    last_value: SignedInt
    flagged: int
    """Readings in the hour that carried any quality flag."""
