"""Node configuration: a TOML file, overridable by ``CEMP_*`` environment variables.

Example::

    node_id = "owner-1"
    data_dir = "data/owner-1"
    key_file = "keys/owner-1.node.key"
    genesis = "genesis.cemp"
    [api]
    host = "127.0.0.1"
    port = 7001
    # peer_host = "10.0.0.5"; peer_port = 7101   # peer messages and state sync on their own listener
    # max_conns_per_ip = 64; idle_timeout_s = 15
    [tls]                                  # HTTPS on the API and between nodes (see node/tls.py)
    cert = "tls/owner-1.crt"
    key = "tls/owner-1.key"
    ca = "tls/ca.crt"                      # the consortium CA, or a bundle of the peers' pinned certificates

Relative paths are relative to the config file. Environment: ``CEMP_NODE_ID``, ``CEMP_DATA_DIR``,
``CEMP_KEY_FILE``, ``CEMP_GENESIS``, ``CEMP_API_HOST``, ``CEMP_API_PORT``, ``CEMP_LOG_FORMAT`` (``[log] format``:
``text`` or ``json``), ``CEMP_TLS_CERT``, ``CEMP_TLS_KEY``, ``CEMP_TLS_CA`` (``[tls]``; ``[api] tls_cert`` and
``tls_key`` are accepted as older spellings of ``cert`` and ``key``), ``CEMP_HALT_HEIGHT`` (``halt_height``), ``CEMP_KEY_PASSPHRASE`` (read where the key
is opened).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.httpguard import CLIENT_KEEPALIVE_S


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    data_dir: Path
    key_file: Path
    genesis: Path
    api_host: str = "127.0.0.1"
    api_port: int = 7001
    mempool_max: int = 100_000
    tls_cert: Path | None = None
    """PEM certificate chain (``[tls] cert``): HTTPS on the API and towards the peers; plain HTTP when unset."""
    tls_key: Path | None = None
    tls_ca: Path | None = None
    """What peers' certificates are checked against (``[tls] ca``): the consortium CA or pinned certificates."""
    raft_compact_every: int = 5000
    raft_catchup: str = "blocks"
    """How a node behind a compacted log catches up: ``blocks`` (fetch and re-verify every block; default) or
    ``state`` (a chunked state snapshot checked against the certified app hash, then the log)."""
    """Applied Raft entries kept before the log is compacted (local policy; blocks themselves are kept)."""
    log_format: str = "text"
    """``text`` or ``json`` (one JSON object per line with a request id): ``[log] format`` or ``CEMP_LOG_FORMAT``."""
    peer_host: str = "127.0.0.1"
    peer_port: int | None = None
    """When set (``[api] peer_host``, ``peer_port``), peer messages and state sync are served only on this
    listener and not on the public one; the genesis address (or ``[peers]`` override) of this node must then
    name it."""
    max_conns_per_ip: int = 64
    """Connections one client address may hold (``[api] max_conns_per_ip``)."""
    idle_timeout_s: float = 15.0
    """Idle and request-head timeout of API connections (``[api] idle_timeout_s``); more than twice the other nodes'
    client keep-alive (``node.httpguard.CLIENT_KEEPALIVE_S``), so they close an idle connection first."""
    halt_height: int | None = None
    """Coordinated upgrade (``halt_height = H`` or ``CEMP_HALT_HEIGHT``): the node applies blocks up to H, cuts none
    after it, refuses new txs, and exits cleanly a few seconds later (``node.driver``, docs/operations.md)."""
    peer_addresses: dict[str, str] = field(default_factory=dict)
    """Overrides of the genesis peer addresses (``[peers]`` table), e.g. to route through a proxy."""


def _path(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (base / p)


def _catchup(v: str) -> str:
    if v not in ("blocks", "state"):
        raise ConfigError(f"[raft] catchup must be 'blocks' or 'state', not {v!r}")
    return v


def _port(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        raise ConfigError(f"[api] peer_port must be a port number, not {v!r}")
    return v


def _positive(table: dict[str, Any], key: str, default: Any, typ: type) -> Any:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ConfigError(f"[api] {key} must be a positive number, not {v!r}")
    return typ(v)


def _idle_timeout(api: dict[str, Any]) -> float:
    v: float = _positive(api, "idle_timeout_s", 15.0, float)
    if v <= 2 * CLIENT_KEEPALIVE_S:
        raise ConfigError(
            f"[api] idle_timeout_s must be more than {2 * CLIENT_KEEPALIVE_S:g} s, not {v:g}: the other nodes keep"
            f" idle connections to this one for {CLIENT_KEEPALIVE_S:g} s and must close them first"
        )
    return v


def load_config(path: Path, env: dict[str, str] | None = None) -> NodeConfig:
    env = dict(os.environ) if env is None else env
    try:
        doc: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    base = Path(path).resolve().parent
    api = doc.get("api", {})
    if not isinstance(api, dict):
        raise ConfigError(f"{path}: [api] must be a table")

    def pick(key: str, envkey: str, default: Any = None) -> Any:
        if envkey in env:
            return env[envkey]
        v = doc.get(key, default)
        if v is None:
            raise ConfigError(f"{path}: missing required key {key!r} (or set {envkey})")
        return v

    tls = doc.get("tls", {})
    if not isinstance(tls, dict):
        raise ConfigError(f"{path}: [tls] must be a table")

    def tls_path(key: str, envkey: str, old: str | None) -> Path | None:
        v = env.get(envkey) or tls.get(key) or (api.get(old) if old else None)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise ConfigError(f"{path}: [tls] {key} must be a file path, not {v!r}")
        p = _path(base, v)
        if not p.is_file():
            raise ConfigError(f"[tls] {key} ({envkey}): {p} is not a file")
        return p

    tls_cert = tls_path("cert", "CEMP_TLS_CERT", "tls_cert")
    tls_key = tls_path("key", "CEMP_TLS_KEY", "tls_key")
    tls_ca = tls_path("ca", "CEMP_TLS_CA", None)
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(f"{path}: [tls] cert and key go together (CEMP_TLS_CERT, CEMP_TLS_KEY)")
    if tls_ca is not None and tls_cert is None:
        raise ConfigError(
            f"{path}: [tls] ca is set but cert and key are not: a node of a TLS consortium needs its own "
            "certificate (cemp deploy tls makes one per node)"
        )
    try:
        port = int(str(env.get("CEMP_API_PORT", api.get("port", 7001))))
    except ValueError:
        raise ConfigError("api port must be an integer") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"api port {port} out of range")
    logt = doc.get("log", {})
    if not isinstance(logt, dict):
        raise ConfigError(f"{path}: [log] must be a table")
    log_format = str(env.get("CEMP_LOG_FORMAT", logt.get("format", "text")))
    if log_format not in ("text", "json"):
        raise ConfigError(
            f"log format must be 'text' or 'json', not {log_format!r} ([log] format / CEMP_LOG_FORMAT)"
        )
    raw_halt = env.get("CEMP_HALT_HEIGHT", doc.get("halt_height"))
    halt_height: int | None = None
    if raw_halt is not None and raw_halt != "":
        try:
            halt_height = int(str(raw_halt)) if not isinstance(raw_halt, bool) else -1
        except ValueError:
            halt_height = -1
        if halt_height < 1:
            raise ConfigError(f"halt_height (CEMP_HALT_HEIGHT) must be a block height >= 1, not {raw_halt!r}")
    return NodeConfig(
        halt_height=halt_height,
        node_id=str(pick("node_id", "CEMP_NODE_ID")),
        data_dir=_path(base, str(pick("data_dir", "CEMP_DATA_DIR"))),
        key_file=_path(base, str(pick("key_file", "CEMP_KEY_FILE"))),
        genesis=_path(base, str(pick("genesis", "CEMP_GENESIS"))),
        api_host=str(env.get("CEMP_API_HOST", api.get("host", "127.0.0.1"))),
        api_port=port,
        mempool_max=int(doc.get("mempool_max", 100_000)),
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        log_format=log_format,
        peer_host=str(api.get("peer_host", "127.0.0.1")),
        peer_port=_port(api["peer_port"]) if "peer_port" in api else None,
        max_conns_per_ip=_positive(api, "max_conns_per_ip", 64, int),
        idle_timeout_s=_idle_timeout(api),
        peer_addresses={str(k): str(v) for k, v in dict(doc.get("peers", {})).items()},
        raft_compact_every=int(dict(doc.get("raft", {})).get("compact_every", 5000)),
        raft_catchup=_catchup(str(dict(doc.get("raft", {})).get("catchup", "blocks"))),
    )
