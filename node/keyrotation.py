"""Node key rotation on chain: the ``node.key_rotate`` tx kind and each node's key history.

A node's signing key (its block proposals, its commit votes, its peer messages) is replaced by a signed tx that
names the new public key and the height ``E`` from which it counts. Every node applies the same tx in the same
block, so every node switches at the same height, deterministically:

- a block of height ``h`` verifies with the proposer's key *at h*, and commit votes on block ``h`` with each
  voter's key at ``h`` (``key_at``); from ``E`` on only the new key is accepted for blocks and votes, before ``E``
  only the old one, so the old key cannot sign new history once the rotation is effective;
- the tx is sent by the node's current key or by its org's admin key (when the node key is lost or stolen), and
  carries a proof of possession: the new key's signature over ``DOMAIN_KEY_POSSESSION || encode(claim)``, a
  claim bound to the genesis hash (like tx signatures, ``ChainRef``), so a typo or someone else's public key
  cannot become a node's key and a proof made for one chain counts on no other that shares its chain id;
- ``E`` is at least ``MIN_DELAY`` blocks after the block that commits the tx (every node has applied the rotation
  before it needs it, even one that receives the two blocks together) and at most ``MAX_DELAY``; one rotation may
  be pending per node; a key is never reused by the node or held by another node.

The history is state (``gkeys/<node>``, part of the app hash): a list of (since height, public key) epochs over the
key the node was registered with (genesis or ``membership``). Old blocks keep verifying with the key of their
height, so ``cemp verify`` replays a chain with rotations from its genesis alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node import codec, schema
from node.crypto import verify
from node.errors import CempError, Code
from node.genesis import genesis_hash
from node.membership import _record, load_nodes
from node.state import StateView
from node.store import prefix_stop
from node.txkinds import Env, Writer
from node.types import Genesis, Hash32, Height, PublicKey, ShortStr, Signature, Tx

DOMAIN_KEY_POSSESSION = b"CEMP/node-key-possession/v2\x00"
"""v2: the claim names the genesis hash (v1 named the chain id only)."""
KEYS_PREFIX = schema.NODE_KEYS_PREFIX
MIN_DELAY = 2
MAX_DELAY = 1_000_000


def keys_key(node_id: str) -> bytes:
    """State key of a node's key history."""
    return KEYS_PREFIX + node_id.encode()


@dataclass(frozen=True, slots=True)
class KeyEpoch:
    since: Height
    """First block height this key signs (and its votes count for)."""
    pubkey: PublicKey


@dataclass(frozen=True, slots=True)
class KeyHistory:
    node_id: ShortStr
    epochs: tuple[KeyEpoch, ...]
    """Rotations in order of ``since`` (strictly increasing); the registered key counts before the first."""


@dataclass(frozen=True, slots=True)
class PossessionClaim:
    """What the new key signs: this chain (by genesis hash), this node, this key, from this height."""

    genesis_hash: Hash32
    node_id: ShortStr
    new_key: PublicKey
    effective_height: Height


@dataclass(frozen=True, slots=True)
class NodeKeyRotation:
    """Payload of a ``node.key_rotate`` tx."""

    node_id: ShortStr
    new_key: PublicKey
    effective_height: Height
    possession: Signature
    """The new key's Ed25519 over ``DOMAIN_KEY_POSSESSION || encode(PossessionClaim)``."""


def claim_message(genesis_hash_: bytes, node_id: str, new_key: bytes, effective_height: int) -> bytes:
    return codec.encode(
        PossessionClaim(
            Hash32(genesis_hash_), ShortStr(node_id), PublicKey(new_key), Height(effective_height)
        )
    )


def load_histories(view: StateView) -> dict[str, tuple[KeyEpoch, ...]]:
    out: dict[str, tuple[KeyEpoch, ...]] = {}
    for _, v in view.store.iterate(KEYS_PREFIX, prefix_stop(KEYS_PREFIX)):
        h = codec.decode(KeyHistory, v)
        out[str(h.node_id)] = h.epochs
    return out


def key_at(registered: bytes, epochs: tuple[KeyEpoch, ...], height: int) -> bytes:
    """The key that signs block ``height`` (and votes on it): the newest epoch that has started, else the
    registered key."""
    key = registered
    for e in epochs:
        if e.since <= height:
            key = e.pubkey
        else:
            break
    return key


def _history(view: StateView, node_id: str) -> tuple[KeyEpoch, ...]:
    raw = view.get(keys_key(node_id))
    return codec.decode(KeyHistory, raw).epochs if raw is not None else ()


class NodeKeyRotationKind:
    name = "node.key_rotate"
    payload_type = NodeKeyRotation

    def check(self, view: StateView, env: Env, tx: Tx, p: NodeKeyRotation) -> None:
        g: Genesis = env.genesis
        rec = _record(view, g, p.node_id)
        if rec is None or not rec.active:
            raise CempError(Code.NOT_FOUND, f"node {p.node_id} is not a member")
        epochs = _history(view, p.node_id)
        current = key_at(rec.pubkey, epochs, env.height)
        admin_org = env.admin_keys.org_of(tx.sender)
        if tx.sender != current and (admin_org is None or admin_org.name != rec.org):
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"a key rotation of node {p.node_id} is sent by its current key or by org {rec.org}'s admin key",
            )
        if epochs and epochs[-1].since > env.height:
            raise CempError(
                Code.ALREADY_EXISTS,
                f"node {p.node_id} has a rotation pending (effective at height {epochs[-1].since}); wait for it",
            )
        if not env.height + MIN_DELAY <= p.effective_height <= env.height + MAX_DELAY:
            raise CempError(
                Code.INVALID_PAYLOAD,
                f"effective height {p.effective_height} must be {MIN_DELAY} to {MAX_DELAY} blocks after the block "
                f"that commits the rotation ({env.height}); choose a later one",
            )
        used = {bytes(rec.pubkey), *(bytes(e.pubkey) for e in epochs)}
        if bytes(p.new_key) in used:
            raise CempError(
                Code.INVALID_PAYLOAD, f"node {p.node_id} used this key before; keys are never reused"
            )
        for other in load_nodes(view, g).values():
            if other.node_id == p.node_id:
                continue
            if bytes(p.new_key) in {
                bytes(other.pubkey),
                *(bytes(e.pubkey) for e in _history(view, other.node_id)),
            }:
                raise CempError(Code.INVALID_PAYLOAD, f"this key belongs to node {other.node_id}")
        if env.admin_keys.ever(p.new_key) is not None:
            raise CempError(Code.INVALID_PAYLOAD, "an org admin key (current or former) cannot be a node key")
        msg = claim_message(genesis_hash(g), p.node_id, p.new_key, p.effective_height)
        if not verify(p.new_key, DOMAIN_KEY_POSSESSION, msg, p.possession):
            raise CempError(
                Code.BAD_SIGNATURE, "the proof of possession does not verify: the new key must sign the claim"
            )

    def apply(self, state: Writer, env: Env, tx: Tx, p: NodeKeyRotation) -> None:
        raw = state.get(keys_key(p.node_id))
        epochs = codec.decode(KeyHistory, raw).epochs if raw is not None else ()
        hist = KeyHistory(p.node_id, (*epochs, KeyEpoch(p.effective_height, p.new_key)))
        state.put(keys_key(p.node_id), codec.encode(hist))

    def admit(self, view: StateView, env: Env, tx: Tx, p: NodeKeyRotation) -> dict[bytes, bytes]:
        self.check(view, env, tx, p)
        return {}

    def describe(self, p: NodeKeyRotation) -> dict[str, Any]:
        return {
            "node_id": p.node_id,
            "new_key": bytes(p.new_key).hex(),
            "effective_height": int(p.effective_height),
        }
