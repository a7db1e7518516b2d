"""The resolution page in a real headless browser (Debian's Chromium) against a real node process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from node.client import NodeClient
from tests.support.testing import TestConsortium, free_port, start_node_process

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browse(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "Chromium is missing: apt-get install chromium (.ci/run installs it)"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=420,1200", *args, url],
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_device_page_renders_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    c = TestConsortium.create(ports=[port])
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path, nid, port)
    proc = start_node_process(cfg, tmp_path / "node.log", port)
    try:
        _, reg = c.register_device("88.123.45/101.1.1")
        async with NodeClient(f"http://127.0.0.1:{port}") as nc:
            assert (await nc.submit(reg, wait=True))["result"]["ok"]
        url = f"http://127.0.0.1:{port}/api/handles/88.123.45/101.1.1"
        for lang, heading in (("en", "Values"), ("zh", "标识值")):
            dom = browse(f"{url}?lang={lang}", tmp_path / f"p-{lang}", "--dump-dom").stdout
            assert "88.123.45/101.1.1" in dom and f"<h2>{heading}</h2>" in dom, dom[:2000]
            assert "built-in method" not in dom and "<svg" in dom and "meter.energy" in dom
        shot = tmp_path / "page.png"
        browse(url, tmp_path / "p-shot", f"--screenshot={shot}")
        assert shot.exists() and shot.stat().st_size > 20_000  # a rendered page, not a blank one
    finally:
        proc.terminate()
        proc.wait(10)
