"""Genesis: built from a small TOML description of the consortium, stored canonically.

Example ``consortium.toml``::

    chain_id = "cemp-hohhot-1"
    [params]                      # all optional
    block_max_txs = 2000
    block_interval_ms = 20
    [[orgs]]
    name = "owner"
    role = "owner"                # owner | equipment | regulator
    admin_key = "keys/owner.admin.key"   # key file, or 64 hex chars of a public key
    prefix = "88.123.45"
    [[nodes]]
    id = "owner-1"
    org = "owner"
    key = "keys/owner-1.node.key"
    address = "127.0.0.1:7001"
"""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any

from node import codec
from node.crypto import KeyFileError, public_key_of_file, sha256
from node.devices import PREFIX_RE
from node.types import (
    ConsensusParams,
    Genesis,
    Handle,
    Hash32,
    NodeInfo,
    Org,
    PublicKey,
    ShortStr,
    TimestampMs,
)

ROLES = ("owner", "equipment", "regulator")
DEFAULT_PARAMS: dict[str, int] = {
    "block_max_txs": 4000,
    "block_interval_ms": 20,
    "max_tx_bytes": 64 * 1024,
    "max_batch_readings": 1000,
    "max_future_skew_ms": 5 * 60 * 1000,
    "election_ticks": 10,
    "heartbeat_ticks": 1,
    "tick_ms": 50,
}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class GenesisError(Exception):
    pass


def _key(base: Path, value: str, what: str) -> PublicKey:
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        return PublicKey(bytes.fromhex(value))
    p = Path(value)
    try:
        return public_key_of_file(p if p.is_absolute() else base / p)
    except KeyFileError as e:
        raise GenesisError(f"{what}: {e}") from None


def check_prefixes(named: list[tuple[str, str]]) -> None:
    """Each org's prefix is its own: unique and not under another's, compared case-insensitively (handle
    prefixes are case-insensitive, so ``88.cemp`` and ``88.CEMP`` name the same handles)."""
    for i, (na, a) in enumerate(named):
        for nb, b in named[i + 1 :]:
            ua, ub = a.upper(), b.upper()
            if ua == ub:
                raise GenesisError(
                    f"orgs {na} and {nb} have the prefixes {a} and {b}, which are the same prefix "
                    "(handle prefixes are case-insensitive); give each org its own prefix"
                )
            if ub.startswith(ua + ".") or ua.startswith(ub + "."):
                inner, outer = (b, a) if ub.startswith(ua + ".") else (a, b)
                raise GenesisError(f"prefix {inner} lies under {outer}: each org needs its own prefix")


def build_genesis(doc: dict[str, Any], base: Path, now_ms: int | None = None) -> Genesis:
    chain_id = doc.get("chain_id")
    if not isinstance(chain_id, str) or not ID_RE.match(chain_id.replace(".", "-")):
        raise GenesisError("chain_id must be a short lower-case name such as 'cemp-hohhot-1'")
    params = dict(DEFAULT_PARAMS)
    for k, v in dict(doc.get("params", {})).items():
        if k not in DEFAULT_PARAMS:
            raise GenesisError(f"unknown consensus parameter {k!r}; known: {', '.join(DEFAULT_PARAMS)}")
        if not isinstance(v, int) or v <= 0:
            raise GenesisError(f"parameter {k} must be a positive integer")
        params[k] = v
    orgs = []
    for o in doc.get("orgs", []):
        name, role, prefix = o.get("name"), o.get("role"), o.get("prefix")
        if not isinstance(name, str) or not ID_RE.match(name):
            raise GenesisError(f"org name {name!r} must be a short lower-case id")
        if role not in ROLES:
            raise GenesisError(f"org {name}: role must be one of {', '.join(ROLES)}")
        if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
            raise GenesisError(f"org {name}: prefix {prefix!r} must look like 88.123.45")
        orgs.append(
            Org(
                ShortStr(name),
                ShortStr(role),
                _key(base, str(o.get("admin_key", "")), f"org {name}"),
                Handle(prefix),
            )
        )
    if not orgs:
        raise GenesisError("a genesis needs at least one org")
    names = [o.name for o in orgs]
    if len(set(names)) != len(names):
        raise GenesisError("org names must be unique")
    check_prefixes([(o.name, o.prefix) for o in orgs])
    nodes = []
    for n in doc.get("nodes", []):
        nid, org, addr = n.get("id"), n.get("org"), n.get("address")
        if not isinstance(nid, str) or not ID_RE.match(nid):
            raise GenesisError(f"node id {nid!r} must be a short lower-case id")
        if org not in names:
            raise GenesisError(f"node {nid}: org {org!r} is not defined")
        if not isinstance(addr, str) or not re.fullmatch(r"[^\s:]+:\d{1,5}", addr):
            raise GenesisError(f"node {nid}: address must be host:port")
        nodes.append(
            NodeInfo(
                ShortStr(nid), ShortStr(org), _key(base, str(n.get("key", "")), f"node {nid}"), ShortStr(addr)
            )
        )
    if not nodes:
        raise GenesisError("a genesis needs at least one node")
    if len({n.node_id for n in nodes}) != len(nodes):
        raise GenesisError("node ids must be unique")
    t = doc.get("genesis_time_ms", now_ms if now_ms is not None else int(time.time() * 1000))
    return Genesis(
        ShortStr(chain_id), TimestampMs(int(t)), tuple(orgs), tuple(nodes), ConsensusParams(**params)
    )


def genesis_hash(genesis: Genesis) -> Hash32:
    """What a chain is known by beside its id: tx signatures and proofs of possession are bound to it."""
    return sha256(b"CEMP/genesis/v1\x00" + codec.encode(genesis))


def genesis_from_toml(path: Path) -> Genesis:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise GenesisError(f"cannot read {path}: {e}") from None
    return build_genesis(doc, path.resolve().parent)


def write_genesis(genesis: Genesis, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(codec.encode(genesis))


def read_genesis(path: Path) -> Genesis:
    try:
        genesis = codec.decode(Genesis, path.read_bytes())
    except OSError as e:
        raise GenesisError(f"cannot read genesis {path}: {e}") from None
    check_prefixes([(o.name, o.prefix) for o in genesis.orgs])
    return genesis
