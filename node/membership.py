"""Consortium membership on chain: the ``membership`` tx kind and the node registry it maintains.

Invariants:
- adding or removing a peer needs approvals (Ed25519 over ``DOMAIN_MEMBERSHIP || encode(change)``) from the
  admins of a majority of the genesis orgs; the tx itself may be sent by any org admin;
- node ids are never reused: an id that was ever a member (genesis or added) cannot be added again;
- the registry (``g`` namespace, part of the app hash) is the one source of who may propose blocks, sign commit
  votes and talk on the peer transport; consensus (``node.driver``) follows it: a new node joins Raft as a
  learner and is promoted once caught up; a removed node leaves Raft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from node import codec, schema
from node.crypto import verify
from node.errors import CempError, Code
from node.state import StateView
from node.store import prefix_stop
from node.txkinds import Env, Writer
from node.types import Genesis, Height, NodeInfo, PublicKey, ShortStr, Signature, Tx

DOMAIN_MEMBERSHIP = b"CEMP/membership/v1\x00"
NODE_PREFIX = schema.MEMBER_PREFIX
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ADDR_RE = re.compile(r"^[^\s:]+:\d{1,5}$")


node_key = schema.member


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """What the org admins approve."""

    chain_id: ShortStr
    op: ShortStr
    """``add`` or ``remove``."""
    node_id: ShortStr
    org: ShortStr
    pubkey: PublicKey
    address: ShortStr


@dataclass(frozen=True, slots=True)
class Approval:
    org: ShortStr
    signature: Signature


@dataclass(frozen=True, slots=True)
class MembershipTx:
    """Payload of a ``membership`` tx."""

    change: MembershipChange
    approvals: tuple[Approval, ...]


@dataclass(frozen=True, slots=True)
class NodeRecord:
    node_id: ShortStr
    org: ShortStr
    pubkey: PublicKey
    address: ShortStr
    active: bool
    """False once removed; the record stays so the id is never reused and old blocks still verify."""
    since: Height


def approval_message(change: MembershipChange) -> bytes:
    """What each approving org admin signs (under ``DOMAIN_MEMBERSHIP``)."""
    return codec.encode(change)


def genesis_records(genesis: Genesis) -> dict[str, NodeRecord]:
    return {
        n.node_id: NodeRecord(n.node_id, n.org, n.pubkey, n.address, True, Height(0)) for n in genesis.nodes
    }


def load_nodes(view: StateView, genesis: Genesis) -> dict[str, NodeRecord]:
    """Every node ever in the consortium: genesis nodes, then the on-chain registry over them."""
    out = genesis_records(genesis)
    store = view.store
    for _, v in store.iterate(NODE_PREFIX, prefix_stop(NODE_PREFIX)):
        rec = codec.decode(NodeRecord, v)
        out[rec.node_id] = rec
    return out


def _record(view: StateView, genesis: Genesis, node_id: str) -> NodeRecord | None:
    raw = view.get(node_key(node_id))
    if raw is not None:
        return codec.decode(NodeRecord, raw)
    return genesis_records(genesis).get(node_id)


class MembershipKind:
    name = "membership"
    payload_type = MembershipTx

    def check(self, view: StateView, env: Env, tx: Tx, p: MembershipTx) -> None:
        g = env.genesis
        admins = env.admin_keys
        if admins.org_of(tx.sender) is None:
            raise CempError(Code.NOT_AUTHORIZED, "membership changes are sent by an org admin key")
        ch = p.change
        if ch.chain_id != g.chain_id:
            raise CempError(Code.WRONG_CHAIN, "the approved change names another chain")
        if ch.op not in ("add", "remove"):
            raise CempError(Code.INVALID_PAYLOAD, f"op must be 'add' or 'remove', not {ch.op!r}")
        if not ID_RE.match(ch.node_id):
            raise CempError(Code.INVALID_PAYLOAD, f"node id {ch.node_id!r} must be a short lower-case id")
        orgs = {o.name: o for o in g.orgs}
        approved: set[str] = set()
        msg = approval_message(ch)
        for a in p.approvals:
            org = orgs.get(a.org)
            if org is None:
                raise CempError(Code.INVALID_PAYLOAD, f"approval from unknown org {a.org!r}")
            key = admins.key_of(org.name)
            if key is None or not verify(key, DOMAIN_MEMBERSHIP, msg, a.signature):
                raise CempError(
                    Code.BAD_SIGNATURE, f"approval of org {a.org} does not verify with its current admin key"
                )
            approved.add(a.org)
        need = len(orgs) // 2 + 1
        if len(approved) < need:
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"{len(approved)} org approvals; changing the membership needs a majority ({need} of {len(orgs)})",
            )
        rec = _record(view, g, ch.node_id)
        if ch.op == "add":
            if rec is not None:
                raise CempError(
                    Code.ALREADY_EXISTS, f"node id {ch.node_id} was used before; ids are never reused"
                )
            if ch.org not in orgs:
                raise CempError(Code.INVALID_PAYLOAD, f"org {ch.org!r} is not in the consortium")
            if not ADDR_RE.match(ch.address):
                raise CempError(Code.INVALID_PAYLOAD, "address must be host:port")
        else:
            if rec is None or not rec.active:
                raise CempError(Code.NOT_FOUND, f"node {ch.node_id} is not a member")
            active = [r for r in load_nodes(view, g).values() if r.active]
            if len(active) <= 1:
                raise CempError(Code.NOT_AUTHORIZED, "cannot remove the last node")

    def apply(self, state: Writer, env: Env, tx: Tx, p: MembershipTx) -> None:
        ch = p.change
        if ch.op == "add":
            rec = NodeRecord(ch.node_id, ch.org, ch.pubkey, ch.address, True, env.height)
        else:
            old = _record(_WriterView(state), env.genesis, ch.node_id)
            assert old is not None
            rec = NodeRecord(old.node_id, old.org, old.pubkey, old.address, False, env.height)
        state.put(node_key(ch.node_id), codec.encode(rec))

    def admit(self, view: StateView, env: Env, tx: Tx, p: MembershipTx) -> dict[bytes, bytes]:
        self.check(view, env, tx, p)
        return {}

    def describe(self, p: MembershipTx) -> dict[str, Any]:
        ch = p.change
        return {
            "op": ch.op,
            "node_id": ch.node_id,
            "org": ch.org,
            "pubkey": ch.pubkey.hex(),
            "address": ch.address,
            "approvals": [a.org for a in p.approvals],
        }


class _WriterView(StateView):
    def __init__(self, w: Writer) -> None:
        self.w = w

    def get(self, key: bytes) -> bytes | None:
        return self.w.get(key)


def as_node_info(rec: NodeRecord) -> NodeInfo:
    return NodeInfo(rec.node_id, rec.org, rec.pubkey, rec.address)
