"""Org admin key rotation on chain: the ``org.admin_rotate`` tx kind.

An org's admin key (genesis) is replaced, without stopping any node, by a tx that:
- is signed by the org's *current* admin key (a person's key, whatever its roles, cannot rotate it; nor can
  another org);
- names the new public key and carries its proof of possession: the new key's Ed25519 signature over
  ``DOMAIN_ADMIN_POSSESSION || encode(AdminPossessionClaim)``, a claim bound to the genesis hash, the org and the
  key it replaces, so a typo or someone else's public key cannot become an admin key and a proof made for one
  chain or one rotation counts for no other;
- takes effect from the block after the one that commits it, on every node alike (``node.adminkeys``): from then
  on the new key acts for the org and the old one is refused (``Code.KEY_RETIRED``) on admission and on apply;
  txs the old key signed in the same block as the rotation, before it, still count.

The new key must be fresh: never an admin key of any org, never a node key, no person's key, and it has signed
no tx on this chain. One rotation per org per block (a second one in the same block is refused as pending).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node import codec, schema
from node.adminkeys import AdminEpoch, AdminHistory, admin_history
from node.crypto import verify
from node.errors import CempError, Code
from node.genesis import genesis_hash
from node.keyrotation import load_histories
from node.membership import load_nodes
from node.state import StateView
from node.txkinds import Env, Writer
from node.types import Hash32, Height, PublicKey, ShortStr, Signature, Tx

DOMAIN_ADMIN_POSSESSION = b"CEMP/admin-key-possession/v1\x00"


@dataclass(frozen=True, slots=True)
class AdminPossessionClaim:
    """What the new admin key signs: this chain (by genesis hash), this org, the key it replaces, itself."""

    genesis_hash: Hash32
    org: ShortStr
    old_key: PublicKey
    new_key: PublicKey


@dataclass(frozen=True, slots=True)
class OrgAdminRotation:
    """Payload of an ``org.admin_rotate`` tx."""

    org: ShortStr
    new_key: PublicKey
    possession: Signature
    """The new key's Ed25519 over ``DOMAIN_ADMIN_POSSESSION || encode(AdminPossessionClaim)``."""


def admin_claim_message(genesis_hash_: bytes, org: str, old_key: bytes, new_key: bytes) -> bytes:
    return codec.encode(
        AdminPossessionClaim(Hash32(genesis_hash_), ShortStr(org), PublicKey(old_key), PublicKey(new_key))
    )


class OrgAdminRotationKind:
    name = "org.admin_rotate"
    payload_type = OrgAdminRotation

    def _check(self, view: StateView, env: Env, tx: Tx, p: OrgAdminRotation) -> AdminHistory:
        g = env.genesis
        admins = env.admin_keys
        current = admins.key_of(p.org)
        if current is None:
            raise CempError(Code.NOT_FOUND, f"org {p.org!r} is not in the genesis")
        if bytes(tx.sender) != bytes(current):
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"org {p.org}'s admin key is rotated by a tx its current admin key "
                f"({bytes(current).hex()[:16]}...) signs",
            )
        epochs = admin_history(view, p.org)
        if epochs and epochs[-1].since > env.height:
            raise CempError(
                Code.ALREADY_EXISTS,
                f"org {p.org} has an admin key rotation pending (effective at block {epochs[-1].since}); wait a block",
            )
        new = bytes(p.new_key)
        if admins.ever(new) is not None or any(bytes(e.pubkey) == new for e in epochs):
            raise CempError(
                Code.INVALID_PAYLOAD, "that key is or was an org admin key; keys are never reused"
            )
        nodes = load_nodes(view, g)
        node_keys = {bytes(r.pubkey) for r in nodes.values()}
        node_keys.update(bytes(e.pubkey) for eps in load_histories(view).values() for e in eps)
        if new in node_keys:
            raise CempError(
                Code.INVALID_PAYLOAD, "that key is a consortium node key; an admin needs its own key"
            )
        if view.get(schema.person(new)) is not None:
            raise CempError(
                Code.INVALID_PAYLOAD, "that key is a person's key; an admin needs a key of its own"
            )
        if view.get(schema.nonce(new)) is not None:
            raise CempError(
                Code.INVALID_PAYLOAD, "that key has signed txs on this chain already; make a fresh admin key"
            )
        msg = admin_claim_message(genesis_hash(g), p.org, current, new)
        if not verify(p.new_key, DOMAIN_ADMIN_POSSESSION, msg, p.possession):
            raise CempError(
                Code.BAD_SIGNATURE,
                "the proof of possession does not verify: the new key must sign the claim (this chain's genesis "
                "hash, the org, the current and the new admin key)",
            )
        return AdminHistory(p.org, (*epochs, AdminEpoch(Height(env.height + 1), p.new_key)))

    def check(self, view: StateView, env: Env, tx: Tx, p: OrgAdminRotation) -> None:
        self._check(view, env, tx, p)

    def apply(self, state: Writer, env: Env, tx: Tx, p: OrgAdminRotation) -> None:
        raw = state.get(schema.admin_keys(p.org))
        epochs = codec.decode(AdminHistory, raw).epochs if raw is not None else ()
        hist = AdminHistory(p.org, (*epochs, AdminEpoch(Height(env.height + 1), p.new_key)))
        state.put(schema.admin_keys(p.org), codec.encode(hist))

    def admit(self, view: StateView, env: Env, tx: Tx, p: OrgAdminRotation) -> dict[bytes, bytes]:
        # the pending history goes into the mempool's view, so a second rotation of the org waits for a block
        return {schema.admin_keys(p.org): codec.encode(self._check(view, env, tx, p))}

    def describe(self, p: OrgAdminRotation) -> dict[str, Any]:
        return {"org": p.org, "new_key": bytes(p.new_key).hex()}
