"""``[tls]`` in the node TOML and its ``CEMP_TLS_*`` overrides; the certificates ``cemp tls`` makes; ``halt_height``."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from cemp.tlscerts import bundle, make_ca, make_cert
from node.config import ConfigError, load_config
from node.tls import TlsFiles, client_context, server_context

BASE = 'node_id = "owner-1"\ndata_dir = "d"\nkey_file = "k"\ngenesis = "g"\n'


def _cfg(tmp_path: Path, extra: str) -> Path:
    p = tmp_path / "node.toml"
    p.write_text(BASE + extra)
    return p


def test_tls_table_env_overrides_and_the_old_api_spelling(tmp_path: Path) -> None:
    for f in ("a.crt", "a.key", "ca.crt", "b.crt"):
        (tmp_path / f).write_text("PEM")
    c = load_config(_cfg(tmp_path, '[tls]\ncert = "a.crt"\nkey = "a.key"\nca = "ca.crt"\n'), env={})
    assert (c.tls_cert, c.tls_key, c.tls_ca) == (tmp_path / "a.crt", tmp_path / "a.key", tmp_path / "ca.crt")
    c = load_config(
        _cfg(tmp_path, '[tls]\ncert = "a.crt"\nkey = "a.key"\n'),
        env={"CEMP_TLS_CERT": str(tmp_path / "b.crt")},
    )
    assert c.tls_cert == tmp_path / "b.crt" and c.tls_ca is None
    c = load_config(_cfg(tmp_path, '[api]\ntls_cert = "a.crt"\ntls_key = "a.key"\n'), env={})
    assert c.tls_cert == tmp_path / "a.crt"
    assert load_config(_cfg(tmp_path, ""), env={}).tls_cert is None


@pytest.mark.parametrize(
    ("extra", "env", "says"),
    [
        ('[tls]\ncert = "a.crt"\n', {}, "cert and key go together"),
        ('[tls]\nca = "a.crt"\n', {}, "needs its own certificate"),
        ('[tls]\ncert = "missing.crt"\nkey = "a.key"\n', {}, "missing.crt is not a file"),
        ("", {"CEMP_TLS_KEY": "/nonexistent/x.key"}, "CEMP_TLS_KEY"),
        ("[tls]\ncert = 5\n", {}, "must be a file path"),
        ('tls = "yes"\n', {}, "[tls] must be a table"),
    ],
)
def test_tls_config_errors_say_what_to_fix(
    tmp_path: Path, extra: str, env: dict[str, str], says: str
) -> None:
    (tmp_path / "a.crt").write_text("PEM")
    (tmp_path / "a.key").write_text("PEM")
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]")):
        load_config(_cfg(tmp_path, extra), env=env)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str = "127.0.0.1") -> None:
    """One TLS handshake over a loopback socket pair; raises what the client or the server refused."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    errors: list[BaseException] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with (
            socket.create_connection(lsock.getsockname()) as raw,
            client.wrap_socket(raw, server_hostname=host) as s,
        ):
            s.sendall(b"x")
    finally:
        t.join(5)
        lsock.close()
    if errors:
        raise errors[0]


def test_ca_signed_and_pinned_certificates(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    make_ca(ca)
    assert stat.S_IMODE((ca / "ca.key").stat().st_mode) == 0o600
    for n in ("n1", "n2"):
        make_cert(ca, n, ["127.0.0.1", "node.example"], ca)
    assert stat.S_IMODE((ca / "n1.key").stat().st_mode) == 0o600
    f1 = TlsFiles(ca / "n1.crt", ca / "n1.key", ca / "ca.crt")
    f2 = TlsFiles(ca / "n2.crt", ca / "n2.key", ca / "ca.crt")
    _handshake(server_context(f1, require_client_cert=True), client_context(f2))
    _handshake(server_context(f1), client_context(f2), host="node.example")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"):
        _handshake(server_context(f1), client_context(f2), host="other.example")
    # another CA's node: refused by the client, and by a mutual-TLS server
    other = tmp_path / "other"
    make_ca(other)
    make_cert(other, "x", ["127.0.0.1"], other)
    fx = TlsFiles(other / "x.crt", other / "x.key", other / "ca.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_context(fx), client_context(f2))
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(
            server_context(f1, require_client_cert=True), client_context(TlsFiles(fx.cert, fx.key, f1.ca))
        )
    # pinning: self-signed certificates, each node trusting the bundle of all of them, and nothing else
    pins = tmp_path / "pins"
    for n in ("p1", "p2"):
        make_cert(pins, n, ["127.0.0.1"])
    b = bundle([pins / "p1.crt", pins / "p2.crt"], pins / "bundle.crt")
    p1 = TlsFiles(pins / "p1.crt", pins / "p1.key", b)
    p2 = TlsFiles(pins / "p2.crt", pins / "p2.key", b)
    _handshake(server_context(p1, require_client_cert=True), client_context(p2))
    make_cert(pins, "p3", ["127.0.0.1"])  # not in the bundle
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server_context(TlsFiles(pins / "p3.crt", pins / "p3.key", b)), client_context(p2))


def test_halt_height_from_toml_or_env(tmp_path: Path) -> None:
    assert load_config(_cfg(tmp_path, ""), env={}).halt_height is None
    assert load_config(_cfg(tmp_path, "halt_height = 120\n"), env={}).halt_height == 120
    assert (
        load_config(_cfg(tmp_path, "halt_height = 120\n"), env={"CEMP_HALT_HEIGHT": "90"}).halt_height == 90
    )
    for bad in ("halt_height = 0\n", "halt_height = true\n", 'halt_height = "soon"\n'):
        with pytest.raises(ConfigError, match="halt_height"):
            load_config(_cfg(tmp_path, bad), env={})
