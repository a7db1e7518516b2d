"""Helpers to build small consortia for tests, benchmarks and simulators (no I/O unless asked).

``TestConsortium`` holds genesis plus every private key so a test can sign as any org, node or device.
``start_node_process`` runs a real ``cemp node`` process on a free loopback port.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.chain import ChainRef, genesis_hash, sign_tx
from node.crypto import KeyPair, write_key_file
from node.genesis import DEFAULT_PARAMS, read_genesis, write_genesis
from node.types import (
    ConsensusParams,
    DeviceRegistration,
    Genesis,
    Handle,
    NodeInfo,
    Nonce,
    Org,
    PublicKey,
    Reading,
    ReadingBatch,
    ShortStr,
    SignedInt,
    TimestampMs,
)
from tests.support.procs import spawn

GENESIS_TIME_MS = 1_760_000_000_000  # 2025-10-09, before the 2025/26 Hohhot heating season
ORG_SPECS = (
    ("owner", "owner", "88.123.45"),
    ("equipment", "equipment", "88.123.46"),
    ("regulator", "regulator", "88.123.47"),
)


def node_names(n: int) -> list[tuple[str, str]]:
    """(node id, org) of a consortium's first ``n`` nodes, round-robin over the orgs: owner-1, equipment-1,
    regulator-1, owner-2, ..."""
    return [(f"{ORG_SPECS[i % 3][0]}-{i // 3 + 1}", ORG_SPECS[i % 3][0]) for i in range(n)]


def make_genesis(
    chain_id: str,
    admins: Mapping[str, KeyPair],
    nodes: Sequence[tuple[str, str, bytes, str]],
    time_ms: int = GENESIS_TIME_MS,
    **params: int,
) -> Genesis:
    """A genesis of the three orgs (``ORG_SPECS``, each with its admin key from ``admins``) and ``nodes`` as
    (node id, org, public key, address); ``params`` override ``DEFAULT_PARAMS``. Shared by ``TestConsortium``
    and the whole-node simulator (``tests/sim``)."""
    orgs = tuple(Org(ShortStr(n), ShortStr(r), admins[n].public, Handle(p)) for n, r, p in ORG_SPECS)
    infos = tuple(
        NodeInfo(ShortStr(nid), ShortStr(org), PublicKey(pub), ShortStr(addr))
        for nid, org, pub, addr in nodes
    )
    p = dict(DEFAULT_PARAMS)
    p.update(params)
    return Genesis(ShortStr(chain_id), TimestampMs(time_ms), orgs, infos, ConsensusParams(**p))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TestDevice:
    __test__ = False
    handle: str
    key: KeyPair
    nonce: int = 0
    seq: int = 0

    def batch(self, chain: ChainRef, values: list[tuple[int, str, int, str]], flags: int = 0) -> bytes:
        """Sign a readings tx of (ts_ms, quantity, value, unit) tuples with the next nonce and seqs."""
        rs = []
        for ts, q, v, u in values:
            self.seq += 1
            rs.append(
                Reading(Nonce(self.seq), TimestampMs(ts), ShortStr(q), SignedInt(v), ShortStr(u), flags)
            )
        self.nonce += 1
        raw, _ = sign_tx(
            self.key, chain, "readings", self.nonce, ReadingBatch(Handle(self.handle), tuple(rs))
        )
        return raw


@dataclass
class TestConsortium:
    __test__ = False
    genesis: Genesis
    admins: dict[str, KeyPair]
    node_keys: dict[str, KeyPair]
    admin_nonce: dict[str, int] = field(default_factory=dict)

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def chain(self) -> ChainRef:
        """What this consortium's tx signatures are bound to (chain id and genesis hash)."""
        return ChainRef.of(self.genesis)

    @classmethod
    def create(
        cls, n_nodes: int = 1, chain_id: str = "cemp-test-1", ports: list[int] | None = None, **params: int
    ) -> TestConsortium:
        admins = {name: KeyPair.generate() for name, _, _ in ORG_SPECS}
        names = node_names(n_nodes)
        node_keys = {nid: KeyPair.generate() for nid, _ in names}
        nodes = [
            (nid, org, node_keys[nid].public, f"127.0.0.1:{ports[i] if ports else 7000 + i}")
            for i, (nid, org) in enumerate(names)
        ]
        return cls(make_genesis(chain_id, admins, nodes, **params), admins, node_keys)

    def admin_tx(self, org: str, kind: str, payload: object, nonce: int | None = None) -> bytes:
        if nonce is None:
            nonce = self.admin_nonce.get(org, 0) + 1
        self.admin_nonce[org] = nonce
        raw, _ = sign_tx(self.admins[org], self.chain, kind, nonce, payload)
        return raw

    def register_device(
        self, handle: str, kind: str = "meter.energy", subsystem: str = "core-heating", org: str = "owner"
    ) -> tuple[TestDevice, bytes]:
        dev = TestDevice(handle, KeyPair.generate())
        raw = self.admin_tx(
            org,
            "device.register",
            DeviceRegistration(
                Handle(handle), PublicKey(dev.key.public), ShortStr(kind), ShortStr(subsystem)
            ),
        )
        return dev, raw

    def write_files(self, base: Path, node_id: str, api_port: int) -> Path:
        """Genesis, key and config files for one node under ``base``; returns the config path."""
        base.mkdir(parents=True, exist_ok=True)
        gpath = base / "genesis.cemp"
        if not gpath.exists():
            write_genesis(self.genesis, gpath)
        write_key_file(base / f"{node_id}.key", self.node_keys[node_id])
        cfg = base / f"{node_id}.toml"
        cfg.write_text(
            f'node_id = "{node_id}"\ndata_dir = "data/{node_id}"\nkey_file = "{node_id}.key"\n'
            f'genesis = "genesis.cemp"\n[api]\nhost = "127.0.0.1"\nport = {api_port}\n'
        )
        return cfg


def tls_client_of(config: Path) -> tuple[ssl.SSLContext | None, str]:
    """An SSL context trusting the ``[tls] ca`` of a node's config, and the scheme its API is served on."""
    tls = tomllib.loads(config.read_text()).get("tls", {})
    if not tls.get("cert"):
        return None, "http"
    ca = tls.get("ca")
    return ssl.create_default_context(cafile=str(config.parent / ca) if ca else None), "https"


def write_tls(base: Path, nodes: list[str], hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Path:
    """A consortium CA and a certificate per node under ``base`` (``cemp.tlscerts``); returns the CA cert."""
    from cemp.tlscerts import make_ca, make_cert

    _, ca = make_ca(base)
    for n in nodes:
        make_cert(base, n, list(hosts), base)
    return ca


def start_node_process(
    config: Path,
    log: Path,
    port: int,
    timeout_s: float = 90,
    *,
    module: str = "cemp.cli",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cemp node`` and wait until its status endpoint answers. ``module``: another release's command line
    (``tests.support.nextrelease``); ``env``: extra environment (``CEMP_HALT_HEIGHT``, ...).

    The deadline is generous: on a loaded two-core machine a niced interpreter importing the whole wiring
    (web, accounting, resolver) took more than 20 s before it listened."""
    with open(log, "ab") as lf:
        proc = spawn(  # dies with the suite (tests.support.procs), even if pytest is killed
            [sys.executable, "-m", module, "node", "--config", str(config), "--log-level", "warning"],
            stdout=lf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    # Another process on this machine may hold the port (free_port() only found it free a moment ago): the node
    # that answers must be ours, of our chain, or the test would talk to a stranger.
    doc = tomllib.loads(config.read_text())
    ctx, scheme = tls_client_of(config)
    want = genesis_hash(read_genesis(config.parent / str(doc["genesis"]))).hex()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(
                f"{scheme}://127.0.0.1:{port}/v1/status", timeout=1, context=ctx
            ) as r:
                st = json.loads(r.read())
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        if st.get("genesis_hash") != want or st.get("node_id") != doc["node_id"]:
            proc.kill()
            raise RuntimeError(
                f"port {port} is held by another process ({st.get('node_id')} of another chain)"
            )
        return proc
    proc.kill()
    raise RuntimeError(f"node did not answer on port {port} within {timeout_s} s")
