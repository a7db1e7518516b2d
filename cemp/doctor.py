"""``cemp doctor --config node.toml``: checks one node's setup and says what to fix.

Each check prints one line, ``ok``, ``warn`` or ``FAIL``, with what was found and, unless ok, the fix. The exit
status is 1 if anything failed, else 0. What is checked:

- the config loads (``node.config``: the same validation as ``cemp node``);
- the node key: readable, mode 0600 (no group or other access), owned by this user, the key the genesis (or the
  on-chain registry, for a joined node) names for this node id;
- the genesis file: readable; this node id in it;
- TLS (``[tls]``): certificate and key match, key mode 0600, not expired or expiring within 30 days, the
  certificate names the host of this node's address, and chains to ``ca``;
- the data directory: present or creatable, writable; its storage schema version (``node.migrations``) known to
  this release (read from the store, or from the running node's ``/v1/status`` when it holds the store's lock);
  free disk space (warn under 10 % or 5 GB, fail under 1 GB);
- the API port: free, or answering as this node (running);
- every peer in the genesis (with ``[peers]`` overrides): reachable (over TLS when configured, as the node
  reaches it), the node id expected there, on the same genesis hash; clock skew against each (fail over 5 s:
  block times come from the leader's clock; warn over 1 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import ssl
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from node.config import ConfigError, NodeConfig, load_config

SKEW_WARN_S = 1.0
SKEW_FAIL_S = 5.0
DISK_FAIL = 1 << 30
DISK_WARN = 5 << 30
CERT_WARN_DAYS = 30


@dataclass
class Finding:
    level: str
    """``ok``, ``warn`` or ``FAIL``."""
    what: str
    detail: str
    fix: str = ""


class Doctor:
    def __init__(self, cfg: NodeConfig, timeout_s: float = 3.0) -> None:
        self.cfg = cfg
        self.timeout_s = timeout_s
        self.findings: list[Finding] = []
        self.genesis_hash: str | None = None
        self.genesis: Any = None
        self.running: dict[str, Any] | None = None

    def add(self, level: str, what: str, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(level, what, detail, fix))

    # --- files -----------------------------------------------------------------------------------
    def _mode(self, path: Path, what: str) -> None:
        st = path.stat()
        if st.st_mode & 0o077:
            self.add(
                "FAIL",
                what,
                f"{path} is mode {stat.S_IMODE(st.st_mode):04o}: group or others can read a private key",
                f"chmod 600 {path}",
            )
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            self.add(
                "warn",
                what,
                f"{path} belongs to uid {st.st_uid}, not to this user ({os.getuid()})",
                f"run the node as the file's owner, or chown it to the node's user: chown {os.getuid()} {path}",
            )

    def check_genesis(self) -> None:
        from node.chain import genesis_hash
        from node.genesis import GenesisError, read_genesis

        try:
            g = read_genesis(self.cfg.genesis)
        except (GenesisError, OSError) as e:
            self.add(
                "FAIL", "genesis", str(e), "point genesis (CEMP_GENESIS) at the consortium's genesis.cemp"
            )
            return
        self.genesis = g
        self.genesis_hash = genesis_hash(g).hex()
        ids = [n.node_id for n in g.nodes]
        if self.cfg.node_id in ids:
            self.add(
                "ok", "genesis", f"{self.cfg.genesis}: chain {g.chain_id}, hash {self.genesis_hash[:16]}…"
            )
        else:
            self.add(
                "warn",
                "genesis",
                f"node id {self.cfg.node_id!r} is not in the genesis ({', '.join(ids)})",
                "fine for a node that joins by a membership tx (cemp membership add); otherwise fix node_id",
            )

    def check_key(self) -> None:
        from node.crypto import KeyFileError, read_key_file

        path = self.cfg.key_file
        if not path.exists():
            self.add("FAIL", "node key", f"{path} does not exist", f"cemp keys new --out {path}")
            return
        self._mode(path, "node key")
        try:
            key = read_key_file(path, os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None)
        except KeyFileError as e:
            self.add("FAIL", "node key", str(e), "set CEMP_KEY_PASSPHRASE for an encrypted key file")
            return
        if self.genesis is not None:
            info = next((n for n in self.genesis.nodes if n.node_id == self.cfg.node_id), None)
            if info is not None and info.pubkey != key.public:
                self.add(
                    "FAIL",
                    "node key",
                    f"{path} holds {key.public.hex()[:16]}…, the genesis names {info.pubkey.hex()[:16]}… for "
                    f"{self.cfg.node_id}",
                    "use this node's own key file (key_file / CEMP_KEY_FILE)",
                )
                return
        if not any(f.what == "node key" for f in self.findings):
            self.add("ok", "node key", f"{path}: mode 0600, public key {key.public.hex()[:16]}…")

    def check_tls(self) -> None:
        cfg = self.cfg
        if cfg.tls_cert is None or cfg.tls_key is None:
            self.add("ok", "tls", "off (plain HTTP on the API and between nodes)")
            return
        from cryptography import x509

        n0 = len(self.findings)
        self._mode(cfg.tls_key, "tls key")
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
            cert = x509.load_pem_x509_certificate(cfg.tls_cert.read_bytes())
        except (ssl.SSLError, ValueError, OSError) as e:
            self.add(
                "FAIL",
                "tls",
                f"{cfg.tls_cert} / {cfg.tls_key}: {e}",
                "make a key and certificate: cemp tls cert",
            )
            return
        left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
        if left.total_seconds() <= 0:
            self.add(
                "FAIL",
                "tls",
                f"{cfg.tls_cert} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                "renew: cemp tls cert",
            )
        elif left.days < CERT_WARN_DAYS:
            self.add("warn", "tls", f"{cfg.tls_cert} expires in {left.days} days", "renew it: cemp tls cert")
        host = self._my_address().rpartition(":")[0]
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
            names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        if host and host not in names:
            self.add(
                "FAIL",
                "tls",
                f"{cfg.tls_cert} names {', '.join(names) or 'no host'}, not {host} (this node's address): peers "
                "will refuse it",
                f"cemp tls cert --name {cfg.node_id} --host {host} ...",
            )
        if cfg.tls_ca is not None:
            try:
                verify = ssl.create_default_context(cafile=str(cfg.tls_ca))
                verify.check_hostname = False
                self._self_handshake(ctx, verify)
            except (ssl.SSLError, OSError) as e:
                self.add(
                    "FAIL",
                    "tls",
                    f"{cfg.tls_cert} does not chain to [tls] ca {cfg.tls_ca}: {e}",
                    "have the consortium CA sign it (cemp tls cert --ca-dir), or add it to the pinned bundle",
                )
        if len(self.findings) == n0:
            self.add(
                "ok",
                "tls",
                f"{cfg.tls_cert}: names {', '.join(names)}, valid {left.days} more days"
                + (f", chains to {cfg.tls_ca}" if cfg.tls_ca else ""),
            )

    @staticmethod
    def _self_handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
        """A TLS handshake in memory: does our own certificate verify against our trust (``ca``)?"""
        c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        cli = client.wrap_bio(c_in, c_out, server_hostname="doctor")
        srv = server.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            done = 0
            for side in (cli, srv):
                try:
                    side.do_handshake()
                    done += 1
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if done == 2:
                return
        raise ssl.SSLError("the handshake did not complete")

    # --- data directory and disk ---------------------------------------------------------------
    def check_data_dir(self) -> None:
        d = self.cfg.data_dir
        probe = d if d.exists() else next((p for p in d.parents if p.exists()), Path("/"))
        if not os.access(probe, os.W_OK):
            self.add(
                "FAIL", "data dir", f"{probe} is not writable by this user", f"chown the node's user {d}"
            )
        du = shutil.disk_usage(probe)
        free = f"{du.free / 2**30:.1f} GB free of {du.total / 2**30:.1f} GB on {probe}"
        if du.free < DISK_FAIL:
            self.add(
                "FAIL",
                "disk",
                free,
                "free space or move data_dir: the node stops writing blocks on a full disk",
            )
        elif du.free < DISK_WARN or du.free < du.total * 0.10:
            self.add("warn", "disk", free, "see docs/operations.md (disk per year) and plan more space")
        else:
            self.add("ok", "disk", free)
        self._schema(d / "ledger")

    def _schema(self, path: Path) -> None:
        from node.migrations import SCHEMA_VERSION, SchemaVersionError, stored_version
        from node.store import LevelDBStore, StorageError

        if not path.exists():
            self.add("ok", "schema", f"no store yet at {path}: a new one is made at schema {SCHEMA_VERSION}")
            return
        try:
            store = LevelDBStore(path, create=False)
        except StorageError as e:
            if "lock" not in str(e).lower():
                self.add(
                    "FAIL",
                    "schema",
                    f"{path}: {e}",
                    "restore the data directory from a backup (cemp restore)",
                )
                return
            self.add(
                "ok", "schema", f"{path} is in use by a running node; its version is checked over the API"
            )
            return
        try:
            v = stored_version(store)
        except SchemaVersionError as e:
            self.add("FAIL", "schema", str(e), "restore the data directory from a backup (cemp restore)")
            return
        finally:
            store.close()
        self._schema_verdict(v)

    def _schema_verdict(self, v: int | None) -> None:
        from node.migrations import SCHEMA_VERSION

        if v is None:
            self.add("ok", "schema", f"empty store: it is stamped {SCHEMA_VERSION} at start")
        elif v > SCHEMA_VERSION:
            self.add(
                "FAIL",
                "schema",
                f"storage schema {v} is newer than this release's {SCHEMA_VERSION}",
                "run the release that wrote it (no downgrades), or restore a backup taken before the upgrade",
            )
        elif v < SCHEMA_VERSION:
            self.add("ok", "schema", f"storage schema {v}: migrated to {SCHEMA_VERSION} when the node starts")
        else:
            self.add("ok", "schema", f"storage schema {v} (this release's)")

    # --- network ---------------------------------------------------------------------------------
    def _my_address(self) -> str:
        if self.cfg.node_id in self.cfg.peer_addresses:
            return self.cfg.peer_addresses[self.cfg.node_id]
        if self.genesis is not None:
            for n in self.genesis.nodes:
                if n.node_id == self.cfg.node_id:
                    return str(n.address)
        return f"{self.cfg.api_host}:{self.cfg.api_port}"

    def _client_ctx(self) -> ssl.SSLContext | None:
        from node.server import tls_client

        return tls_client(self.cfg)

    def _get_status(self, address: str) -> tuple[dict[str, Any], float, float | None]:
        """GET /v1/status at ``address`` the way the node would reach it; returns (body, local time at the
        midpoint, the peer's time in seconds from its body or Date header)."""
        ctx = self._client_ctx()
        scheme = "https" if ctx is not None else "http"
        t0 = time.time()
        with urllib.request.urlopen(
            f"{scheme}://{address}/v1/status", timeout=self.timeout_s, context=ctx
        ) as r:
            body = json.loads(r.read())
            date = r.headers.get("Date")
        mid = (t0 + time.time()) / 2
        theirs: float | None = None
        if isinstance(body.get("time_ms"), int):
            theirs = body["time_ms"] / 1000
        elif date:
            theirs = parsedate_to_datetime(date).timestamp()
        return body, mid, theirs

    def check_port(self) -> None:
        host, port = self.cfg.api_host, self.cfg.api_port
        with socket.socket() as s:
            s.settimeout(self.timeout_s)
            in_use = s.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0
        if not in_use:
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((host, port))
                self.add("ok", "port", f"{host}:{port} is free for the API")
            except OSError as e:
                self.add(
                    "FAIL",
                    "port",
                    f"cannot bind {host}:{port}: {e}",
                    "choose [api] host/port this machine has",
                )
            return
        try:
            body, _, _ = self._get_status(f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}")
        except (OSError, ValueError) as e:
            self.add(
                "FAIL",
                "port",
                f"{host}:{port} is taken by something that is not a CEMP node answering as configured ({e})",
                "stop the other program or change [api] port (CEMP_API_PORT)",
            )
            return
        if body.get("node_id") == self.cfg.node_id and body.get("genesis_hash") == self.genesis_hash:
            self.running = body
            self.add("ok", "port", f"{host}:{port}: this node is running (height {body.get('height')})")
            if "schema_version" in body:
                self._schema_verdict(body["schema_version"])
        else:
            self.add(
                "FAIL",
                "port",
                f"{host}:{port} is held by node {body.get('node_id')} of genesis {str(body.get('genesis_hash'))[:16]}…",
                "another node uses this port: change [api] port (CEMP_API_PORT)",
            )

    def check_peers(self) -> None:
        if self.genesis is None:
            return
        addresses = {str(n.node_id): str(n.address) for n in self.genesis.nodes}
        addresses.update(self.cfg.peer_addresses)
        for peer, addr in sorted(addresses.items()):
            if peer == self.cfg.node_id:
                continue
            what = f"peer {peer}"
            try:
                body, mine, theirs = self._get_status(addr)
            except ssl.SSLError as e:
                self.add(
                    "FAIL",
                    what,
                    f"{addr}: TLS refused: {e}",
                    "the peer's certificate must chain to [tls] ca and name its address's host",
                )
                continue
            except urllib.error.URLError as e:
                reason = e.reason
                if isinstance(reason, ssl.SSLError):
                    self.add(
                        "FAIL",
                        what,
                        f"{addr}: TLS refused: {reason}",
                        "the peer's certificate must chain to [tls] ca and name its address's host",
                    )
                else:
                    self.add(
                        "FAIL",
                        what,
                        f"{addr} unreachable: {reason}",
                        "is it running? check the address in the genesis or [peers], firewalls, and TLS on both",
                    )
                continue
            except (OSError, ValueError) as e:
                self.add(
                    "FAIL", what, f"{addr} unreachable: {e}", "is it running? check the address and firewalls"
                )
                continue
            if body.get("genesis_hash") != self.genesis_hash:
                self.add(
                    "FAIL",
                    what,
                    f"{addr} runs genesis {str(body.get('genesis_hash'))[:16]}…, not ours {str(self.genesis_hash)[:16]}…",
                    "both nodes must use the consortium's one genesis.cemp",
                )
                continue
            if body.get("node_id") != peer:
                self.add(
                    "FAIL",
                    what,
                    f"{addr} answers as {body.get('node_id')}, not {peer}",
                    "fix the address in [peers] (or the genesis)",
                )
                continue
            detail = f"{addr}: same genesis, height {body.get('height')}"
            if theirs is None:
                self.add("ok", what, detail + " (no clock to compare)")
                continue
            skew = theirs - mine
            detail += f", clock skew {skew:+.2f} s"
            if abs(skew) > SKEW_FAIL_S:
                self.add("FAIL", what, detail, "run NTP (chrony, systemd-timesyncd) on both machines")
            elif abs(skew) > SKEW_WARN_S:
                self.add("warn", what, detail, "run NTP (chrony, systemd-timesyncd) on both machines")
            else:
                self.add("ok", what, detail)

    def run(self) -> list[Finding]:
        self.check_genesis()
        self.check_key()
        self.check_tls()
        self.check_data_dir()
        self.check_port()
        self.check_peers()
        return self.findings


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(Path(args.config))
    except ConfigError as e:
        findings = [Finding("FAIL", "config", str(e), "fix the TOML or the CEMP_* variable named")]
    else:
        findings = [Finding("ok", "config", f"{args.config} (node {cfg.node_id})")]
        findings += Doctor(cfg, args.timeout).run()
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=1))
    else:
        for f in findings:
            print(f"{f.level:<4}  {f.what}: {f.detail}" + (f"\n      fix: {f.fix}" if f.fix else ""))
        bad = sum(f.level == "FAIL" for f in findings)
        warn = sum(f.level == "warn" for f in findings)
        print(f"{bad} to fix, {warn} warnings" if bad or warn else "all checks passed")
    return 1 if any(f.level == "FAIL" for f in findings) else 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser(
        "doctor",
        help="check a node's setup (keys and permissions, TLS, ports, peers and genesis, clock, disk, schema)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument(
        "--config", required=True, help="the node's TOML (CEMP_* variables apply as for cemp node)"
    )
    d.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each peer (default 3)")
    d.add_argument("--json", action="store_true", help="the findings as JSON")
    d.set_defaults(func=cmd_doctor)
