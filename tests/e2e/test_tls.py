"""The API (node, resolver) over HTTPS when ``[api] tls_cert``/``tls_key`` are set."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.procs import spawn
from tests.support.testing import TestConsortium, free_port
from tests.support.wait import wait_until_sync

pytestmark = pytest.mark.slow


def test_node_serves_https(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    c = TestConsortium.create(ports=[port])
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path, nid, port)
    cfg.write_text(cfg.read_text() + f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    proc = spawn([sys.executable, "-m", "cemp.cli", "node", "--config", str(cfg), "--log-level", "warning"])
    ctx = ssl.create_default_context(cafile=str(cert))
    try:

        def status() -> dict[str, object] | None:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{port}/v1/status", context=ctx, timeout=1
                ) as r:
                    return json.loads(r.read())  # type: ignore[no-any-return]
            except OSError:
                return None

        body = wait_until_sync(status, 30, f"the node to answer over TLS on port {port}", interval=0.1)
        assert body["node_id"] == nid
        with pytest.raises(OSError):  # plain HTTP is not served on a TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2).read()
    finally:
        proc.terminate()
        proc.wait(10)
