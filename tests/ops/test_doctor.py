"""``cemp doctor`` on a real three-node TLS consortium: a healthy node passes; each fault is named with its fix."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from cemp.cli import main
from tests.cluster.harness import Cluster
from tests.support.testing import TestConsortium, free_port

pytestmark = pytest.mark.slow


def doctor(config: Path) -> tuple[int, str, list[dict[str, str]]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["doctor", "--config", str(config), "--timeout", "5"])
    js = io.StringIO()
    with contextlib.redirect_stdout(js):
        main(["doctor", "--config", str(config), "--timeout", "5", "--json"])
    return rc, out.getvalue(), json.loads(js.getvalue())


def levels(findings: list[dict[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in findings:
        out.setdefault(f["what"], set()).add(f["level"])
    return out


async def test_doctor_on_a_tls_consortium(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False, tls=True)
    await cl.start_all()
    try:
        await cl.leader(30)
        me = cl.ids[0]
        rc, text, fs = await asyncio.to_thread(doctor, cl.configs[me])
        assert rc == 0, text
        lv = levels(fs)
        for what in ("config", "genesis", "node key", "tls", "disk", "port", "schema"):
            assert lv.get(what, set()) <= {"ok", "warn"} and what in lv, (what, text)
        assert "this node is running" in text and "storage schema 1 (this release's)" in text
        for peer in cl.ids[1:]:
            assert lv[f"peer {peer}"] == {"ok"}, text
        assert "clock skew" in text and "chains to" in text

        # a private key others can read
        key = cl.configs[me].parent / f"{me}.key"
        os.chmod(key, 0o644)
        rc, text, fs = await asyncio.to_thread(doctor, cl.configs[me])
        assert rc == 1 and "FAIL  node key" in text and f"fix: chmod 600 {key}" in text, text
        os.chmod(key, 0o600)

        # a peer that is down
        down = cl.ids[2]
        cl.kill(down)
        rc, text, fs = await asyncio.to_thread(doctor, cl.configs[me])
        assert rc == 1 and levels(fs)[f"peer {down}"] == {"FAIL"} and "unreachable" in text, text

        # a node set up with another consortium's genesis (same node ids and addresses)
        other = TestConsortium.create(3, ports=[cl.ports[n] for n in cl.ids])
        cfg = other.write_files(tmp_path / "stray", me, free_port())
        t = tmp_path / "tls"
        cfg.write_text(
            cfg.read_text() + f'[tls]\ncert = "{t / me}.crt"\nkey = "{t / me}.key"\nca = "{t}/ca.crt"\n'
        )
        rc, text, fs = await asyncio.to_thread(doctor, cfg)
        assert rc == 1, text
        assert levels(fs)["node key"] == {"ok"}  # its key is the one its genesis names
        assert levels(fs)[f"peer {cl.ids[1]}"] == {"FAIL"} and "not ours" in text, text
        assert "port" in levels(fs) and levels(fs)["port"] == {"ok"}
    finally:
        await cl.stop()


def test_doctor_reports_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "n.toml"
    cfg.write_text('node_id = "x"\ndata_dir = "d"\nkey_file = "k"\ngenesis = "g"\n[tls]\ncert = "nope.crt"\n')
    rc, text, _ = doctor(cfg)
    assert rc == 1 and "FAIL  config" in text and "nope.crt is not a file" in text
