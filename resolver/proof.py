"""Proofs of handle values, and their offline check with nothing but the genesis.

``GET /api/handles/{handle}?proof=true`` adds ``proof`` to the record: for every tx that set one of the returned
values (usually one or two), the encoded tx, its RFC 6962 path to the header's ``tx_root``, its ``TxResult`` and
path to ``results_root`` (an invalid tx is in its block too, so "applied" must be proven), the encoded block
header, the proposer's signature and the commit certificate (votes of a majority of the nodes).

``verify(proof_doc, values, handle, genesis)`` re-checks all of it and that each returned value is exactly what
its tx wrote (the value from a ``handle.put`` payload, or the values ``device.register`` derives, stamped with
the block time). What a proof cannot show: that no *later* block changed the handle. The app hash is a
multiset hash (``node.statehash``) with no per-key proofs, so freshness is "as of the node's head height",
which the proof states; compare ``head_height`` across nodes, or replay the chain (``cemp verify``), to check it.

Node keys rotate on chain (``node.keyrotation``): a block after a rotation is signed, and voted on, with the new
key. So the proof also carries ``key_changes``: every ``node.key_rotate`` tx whose key counts at or before the
newest proven block, each proven the same way (inclusion, result, header signed and certified by the keys in force
at *its* height). The check walks them in height order from the genesis keys, so each block's signer and voters
are checked with the keys of that block's height, from the genesis alone. Org admin key rotations
(``org.admin_rotate``) need nothing here: a tx's own signature names its sender, and what the chain accepted is
its certified result. Nodes added or removed on chain (``membership``) are not followed: the certificate is
counted over the genesis node set.
"""

from __future__ import annotations

from typing import Any

from node import codec, merkle
from node.chain import genesis_hash, header_hash, quorum, tx_signature_ok
from node.crypto import sha256, verify
from node.devices import org_for_prefix
from node.errors import CempError
from node.keyrotation import MIN_DELAY, KeyEpoch, NodeKeyRotation, key_at
from node.types import (
    DOMAIN_BLOCK,
    DOMAIN_VOTE,
    Block,
    BlockHeader,
    DeviceRegistration,
    Genesis,
    Tx,
    TxResult,
)
from resolver import idis
from resolver.kinds import HandlePut
from resolver.values import HandleRecord, StoredValue, value_to_json

MAX_ROTATION_SCAN = 10_000
"""Blocks looked at (backwards from its effective height) to find the tx of a node key rotation."""


def _part(ledger: Any, block: Block, index: int) -> dict[str, Any]:
    """Proof of the tx at ``index`` of ``block``: inclusion, result, header, signature and certificate."""
    height = int(block.header.height)
    raw = bytes(block.txs[index])
    results = [codec.encode(r) for r in ledger.results(height)]
    return {
        "tx": sha256(raw).hex(),
        "raw": raw.hex(),
        "height": height,
        "index": index,
        "tree_size": len(block.txs),
        "path": [p.hex() for p in merkle.inclusion_proof(block.txs, index)],
        "result": results[index].hex(),
        "results_path": [p.hex() for p in merkle.inclusion_proof(results, index)],
        "header": codec.encode(block.header).hex(),
        "header_hash": header_hash(block.header).hex(),
        "header_signature": bytes(block.signature).hex(),
        "commit": [
            {"node_id": s.node_id, "signature": bytes(s.signature).hex()} for s in ledger.cert(height)
        ],
    }


def _rotation_tx(ledger: Any, node_id: str, epoch: KeyEpoch) -> tuple[Block, int]:
    """The block and index of the valid ``node.key_rotate`` tx that made ``epoch``: it committed at least
    ``MIN_DELAY`` blocks before the effective height (usually ``cemp keys rotate``'s 20)."""
    top = int(epoch.since) - MIN_DELAY
    for height in range(top, max(0, top - MAX_ROTATION_SCAN), -1):
        block = ledger.block(height)
        if block is None:
            break
        results = None
        for i, raw in enumerate(block.txs):
            try:
                tx = codec.decode(Tx, bytes(raw))
                if tx.kind != "node.key_rotate":
                    continue
                p = codec.decode(NodeKeyRotation, tx.payload)
            except CempError:
                continue
            if p.node_id != node_id or p.effective_height != epoch.since or p.new_key != epoch.pubkey:
                continue
            results = results if results is not None else ledger.results(height)
            if results[i].code == 0:
                return block, i
    raise RuntimeError(
        f"the tx that rotated node {node_id}'s key (effective at block {epoch.since}) is not in this node's block "
        "store (restored from a state snapshot?); ask a node with the whole chain"
    )


def build(ledger: Any, rec: HandleRecord, values: list[StoredValue]) -> dict[str, Any]:
    """The proof object for ``values`` of ``rec`` from the committed chain of ``ledger``."""
    txs: dict[bytes, dict[str, Any]] = {}
    for sv in values:
        h = bytes(sv.set_tx)
        if h in txs:
            continue
        loc = ledger.tx_location(h)
        block = ledger.block(sv.set_height)
        if loc is None or block is None:
            raise RuntimeError(f"tx {h.hex()} of {rec.handle} is not in the block store")
        txs[h] = _part(ledger, block, loc.index)
    newest = max((int(p["height"]) for p in txs.values()), default=0)
    changes = []
    for node_id, epochs in sorted(ledger.key_epochs.items()):
        for e in epochs:
            if e.since <= newest:
                block, index = _rotation_tx(ledger, node_id, e)
                changes.append(_part(ledger, block, index))
    changes.sort(key=lambda p: (int(p["height"]), int(p["index"])))
    return {
        "handle": rec.handle,
        "version": rec.version,
        "head_height": ledger.height,
        "chain_id": ledger.genesis.chain_id,
        "values": [{"index": sv.value.index, "tx": bytes(sv.set_tx).hex()} for sv in values],
        "txs": list(txs.values()),
        "key_changes": changes,
    }


class ProofError(Exception):
    pass


def _hex(s: object, what: str) -> bytes:
    try:
        return bytes.fromhex(str(s))
    except ValueError:
        raise ProofError(f"{what} is not hex") from None


class NodeKeys:
    """The node keys of each height as the proof's ``key_changes`` establish them, from the genesis keys."""

    def __init__(self, genesis: Genesis) -> None:
        self.registered = {str(n.node_id): bytes(n.pubkey) for n in genesis.nodes}
        self.epochs: dict[str, tuple[KeyEpoch, ...]] = {}
        self.last_height = 0

    def key(self, node_id: str, height: int) -> bytes | None:
        reg = self.registered.get(node_id)
        return None if reg is None else bytes(key_at(reg, self.epochs.get(node_id, ()), height))

    def learn(self, tx: Tx, header: BlockHeader) -> None:
        """Take a proven, valid ``node.key_rotate`` tx (in height order)."""
        if tx.kind != "node.key_rotate":
            raise ProofError(f"a key change of the proof is a {tx.kind} tx, not node.key_rotate")
        if header.height < self.last_height:
            raise ProofError("the proof's key changes are not in height order")
        self.last_height = int(header.height)
        try:
            p = codec.decode(NodeKeyRotation, tx.payload)
        except CempError as e:
            raise ProofError(f"a key change does not decode: {e.message}") from None
        nid = str(p.node_id)
        if nid not in self.registered:
            raise ProofError(f"a key change names node {nid}, which is not in the genesis")
        epochs = self.epochs.get(nid, ())
        if p.effective_height < header.height + MIN_DELAY or (
            epochs and p.effective_height <= epochs[-1].since
        ):
            raise ProofError(f"the key change of node {nid} at block {header.height} is out of order")
        self.epochs[nid] = (*epochs, KeyEpoch(p.effective_height, p.new_key))


def _check_tx(p: dict[str, Any], genesis: Genesis, keys: NodeKeys | None = None) -> tuple[Tx, BlockHeader]:
    raw = _hex(p.get("raw"), "raw tx")
    try:
        tx = codec.decode(Tx, raw)
        header = codec.decode(BlockHeader, _hex(p.get("header"), "header"))
        result = codec.decode(TxResult, _hex(p.get("result"), "result"))
    except CempError as e:
        raise ProofError(f"a proof part does not decode: {e.message}") from None
    h = sha256(raw)
    if h.hex() != p.get("tx"):
        raise ProofError("the tx hash does not match the tx bytes")
    if header.chain_id != genesis.chain_id or tx.chain_id != genesis.chain_id:
        raise ProofError(f"the proof is for chain {header.chain_id!r}, the genesis is {genesis.chain_id!r}")
    if header.height != p.get("height"):
        raise ProofError("the header's height differs from the proof's")
    idx, size = int(p.get("index", -1)), int(p.get("tree_size", 0))
    path = [_hex(x, "path") for x in p.get("path", [])]
    if not merkle.verify_inclusion(raw, idx, size, path, header.tx_root):
        raise ProofError(f"tx {h.hex()[:16]}: Merkle path does not lead to the header's tx_root")
    rpath = [_hex(x, "results_path") for x in p.get("results_path", [])]
    if not merkle.verify_inclusion(codec.encode(result), idx, size, rpath, header.results_root):
        raise ProofError(f"tx {h.hex()[:16]}: result path does not lead to the header's results_root")
    if result.code != 0:
        raise ProofError(f"tx {h.hex()[:16]} is in its block but was marked invalid: {result.reason}")
    if not tx_signature_ok(genesis_hash(genesis), tx, raw):
        raise ProofError(f"tx {h.hex()[:16]}: sender signature does not verify")
    hh = header_hash(header)
    keys = keys if keys is not None else NodeKeys(genesis)
    height = int(header.height)
    prop = keys.key(str(header.proposer), height)
    if prop is None or not verify(
        prop, DOMAIN_BLOCK, codec.encode(header), _hex(p.get("header_signature"), "sig")
    ):
        raise ProofError(
            f"block {header.height}: proposer signature does not verify with {header.proposer}'s key of that "
            "height (genesis keys and the proof's key changes)"
        )
    seen: set[str] = set()
    for v in p.get("commit", []):
        nid = str(v.get("node_id"))
        key = keys.key(nid, height)
        if key is None or nid in seen:
            continue
        if verify(key, DOMAIN_VOTE, hh, _hex(v.get("signature"), "vote")):
            seen.add(nid)
    need = quorum(len(keys.registered))
    if len(seen) < need:
        raise ProofError(
            f"block {header.height}: {len(seen)} valid commit votes, a majority of the genesis needs {need}"
        )
    return tx, header


_VALUE_WRITERS: dict[str, type[Any]] = {"handle.put": HandlePut, "device.register": DeviceRegistration}
"""The tx kinds whose payload carries or implies handle values, and their payload classes."""


def _values_written(tx: Tx, header: BlockHeader, genesis: Genesis, handle: str) -> dict[int, dict[str, Any]]:
    payload_type = _VALUE_WRITERS.get(tx.kind)
    if payload_type is None:
        raise ProofError(f"a {tx.kind} tx does not write handle values")
    payload = codec.decode(payload_type, tx.payload)
    stamp = header.time_ms
    if isinstance(payload, HandlePut):
        if payload.handle.upper() != handle.upper():
            raise ProofError(f"the tx writes {payload.handle}, not {handle}")
        vals = payload.values
    elif isinstance(payload, DeviceRegistration):
        if payload.device.upper() != handle.upper():
            raise ProofError(f"the tx registers {payload.device}, not {handle}")
        org = org_for_prefix(genesis, payload.device.split("/", 1)[0])
        if org is None:
            raise ProofError("the device's prefix belongs to no genesis org")
        vals = idis.device_values(payload, org, stamp)
    else:
        raise ProofError(f"a {tx.kind} tx does not write handle values")
    return {v.index: value_to_json(StoredValue(v, stamp, header.height, sha256(b""))) for v in vals}


def verify_proof(doc: dict[str, Any], genesis: Genesis) -> dict[str, Any]:
    """Check a ``?proof=true`` resolution (the whole JSON reply). Returns a summary; raises ProofError."""
    proof = doc.get("proof")
    if not isinstance(proof, dict):
        raise ProofError("the document has no proof; resolve with ?proof=true")
    handle = str(doc.get("handle", ""))
    keys = NodeKeys(genesis)
    for p in proof.get("key_changes", []):
        tx, header = _check_tx(p, genesis, keys)
        keys.learn(tx, header)
    by_tx: dict[str, tuple[Tx, BlockHeader]] = {}
    for p in proof.get("txs", []):
        by_tx[str(p.get("tx"))] = _check_tx(p, genesis, keys)
    where = {int(v["index"]): str(v["tx"]) for v in proof.get("values", [])}
    checked = []
    for value in doc.get("values", []):
        i = int(value["index"])
        txh = where.get(i)
        if txh is None or txh not in by_tx:
            raise ProofError(f"value {i} has no proof")
        tx, header = by_tx[txh]
        written = _values_written(tx, header, genesis, handle).get(i)
        if written != value:
            raise ProofError(f"value {i} differs from what tx {txh[:16]} wrote")
        checked.append(i)
    return {
        "ok": True,
        "handle": handle,
        "values": checked,
        "txs": len(by_tx),
        "as_of_height": proof.get("head_height"),
        "blocks": sorted({h.height for _, h in by_tx.values()}),
        "key_changes": len(proof.get("key_changes", [])),
    }
