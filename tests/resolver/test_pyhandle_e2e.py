"""pyhandle (PyPI, unchanged) against a real ``cemp node`` process: resolve, register (overwrite=False too),
modify, delete values, search, delete handles, and refusals for wrong credentials.

pyhandle is synchronous (requests); the node runs in its own process on a free loopback port.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.crypto import write_key_file
from tests.support.testing import TestConsortium, free_port, start_node_process

pyhandle = pytest.importorskip("pyhandle")
from pyhandle.client.resthandleclient import RESTHandleClient  # noqa: E402
from pyhandle.handleexceptions import (  # noqa: E402
    GenericHandleError,
    HandleAlreadyExistsException,
    HandleNotFoundException,
)

pytestmark = pytest.mark.slow
ADMIN = "300:88.123.45/admin"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(URL of a real node, the generated secret of 300:88.123.45/admin)."""
    base: Path = tmp_path_factory.mktemp("pyhandle-node")
    port = free_port()
    c = TestConsortium.create(n_nodes=1, ports=[port], block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(base, nid, port)
    proc = start_node_process(cfg, base / "node.log", port)
    url = f"http://127.0.0.1:{port}"
    try:
        # The org's admin key sets up 0.NA/88.123.45 and 300:88.123.45/admin with the resolver's own command.
        write_key_file(base / "owner.admin.key", c.admins["owner"])
        cmd = [sys.executable, "-m", "resolver.cli", "handles-bootstrap", "--node", url]
        cmd += ["--admin-key", str(base / "owner.admin.key"), "--prefix", "88.123.45"]
        # The command generates the secret (192 random bits) and writes it to a new 0600 file.
        cmd += ["--secret-out", str(base / "admin.secret")]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [d.get("handle") for d in lines[:2]] == ["0.NA/88.123.45", "88.123.45/admin"]
        assert lines[2] == {"identity": ADMIN, "secret_file": str(base / "admin.secret")}
        assert (base / "admin.secret").stat().st_mode & 0o777 == 0o600
        yield url, (base / "admin.secret").read_text().strip()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def node_url(node: tuple[str, str]) -> str:
    return node[0]


@pytest.fixture(scope="module")
def client(node: tuple[str, str]) -> RESTHandleClient:
    # Constructing the client GETs the user's handle (88.123.45/admin) and checks the echo.
    return RESTHandleClient.instantiate_with_username_and_password(
        node[0], ADMIN, node[1], HTTPS_verify=False
    )


def test_resolve_user_handle_and_missing(client: RESTHandleClient) -> None:
    rec = client.retrieve_handle_record_json("88.123.45/admin")
    assert rec["handle"] == "88.123.45/admin" and rec["responseCode"] == 1
    assert [v["type"] for v in rec["values"]] == ["HS_ADMIN"]  # HS_SECKEY (1100) is not public
    assert all("timestamp" in v and "ttl" in v for v in rec["values"])
    assert client.retrieve_handle_record_json("88.123.45/does-not-exist") is None


def test_register_modify_delete_cycle(client: RESTHandleClient) -> None:
    h = "88.123.45/pyhandle-1"
    assert client.register_handle_kv(h, overwrite=False, URL="https://example.org/a", CHECKSUM="abc123") == h
    with pytest.raises(HandleAlreadyExistsException):
        client.register_handle_kv(h, overwrite=False, URL="https://example.org/other")
    assert client.get_value_from_handle(h, "URL") == "https://example.org/a"
    rec = client.retrieve_handle_record(h)
    assert rec["CHECKSUM"] == "abc123"
    assert "200" in rec["HS_ADMIN"] and "0.NA/88.123.45" in rec["HS_ADMIN"]

    assert client.modify_handle_value(h, URL="https://example.org/b", NOTE="added by pyhandle") == h
    rec = client.retrieve_handle_record(h)
    assert rec["URL"] == "https://example.org/b" and rec["NOTE"] == "added by pyhandle"

    assert client.delete_handle_value(h, "CHECKSUM") == h
    assert "CHECKSUM" not in client.retrieve_handle_record(h)
    assert client.delete_handle_value(h, "NOT_THERE") is None

    assert client.search_handle(URL="*example.org/b") == [h]
    assert client.search_handle(URL="*nothing-like-this*") == []

    assert client.delete_handle(h) == h
    assert client.retrieve_handle_record_json(h) is None
    with pytest.raises(HandleNotFoundException):
        client.delete_handle(h)


def test_register_overwrite_and_json(client: RESTHandleClient) -> None:
    h = "88.123.45/pyhandle-2"
    assert client.register_handle(h, "https://example.org/first", overwrite=True) == h
    assert client.register_handle(h, "https://example.org/second", checksum="ff", overwrite=True) == h
    assert client.get_value_from_handle(h, "URL") == "https://example.org/second"
    entries = [
        {"index": 2, "type": "EMAIL", "data": "ops@example.org"},
        {"index": 3, "type": "URL", "data": "https://x.example"},
    ]
    h3 = "88.123.45/pyhandle-3"
    assert client.register_handle_json(h3, entries, overwrite=False) == h3
    rec = client.retrieve_handle_record_json(h3, indices=[2])
    assert [v["index"] for v in rec["values"]] == [2]
    name = client.generate_and_register_handle("88.123.45", "https://example.org/minted")
    assert (
        name.startswith("88.123.45/")
        and client.get_value_from_handle(name, "URL") == "https://example.org/minted"
    )


def test_wrong_password_is_refused_and_writes_nothing(node_url: str, client: RESTHandleClient) -> None:
    h = "88.123.45/pyhandle-4"
    client.register_handle(h, "https://example.org/keep", overwrite=True)
    bad = RESTHandleClient.instantiate_with_username_and_password(
        node_url, ADMIN, "wrong", HTTPS_verify=False
    )
    with pytest.raises(GenericHandleError) as e:
        bad.modify_handle_value(h, URL="https://evil.example")
    assert e.value.response.status_code == 403
    assert client.get_value_from_handle(h, "URL") == "https://example.org/keep"
    with pytest.raises(GenericHandleError):
        bad.register_handle_kv("88.123.45/pyhandle-evil", overwrite=False, URL="https://evil.example")
    assert client.retrieve_handle_record_json("88.123.45/pyhandle-evil") is None
