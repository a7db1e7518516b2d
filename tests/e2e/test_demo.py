"""``cemp demo`` end to end: three node processes, the simulators and the collector agent; every source's
readings reach the chain, signed by the device's own key, and every node's data directory verifies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cemp import wiring
from cemp.demo import DEVICES
from node import codec, schema
from node.store import LevelDBStore
from node.types import DeviceRecord
from node.verify import verify_data_dir
from tests.support.testing import free_port

pytestmark = pytest.mark.slow


def test_demo_runs_all_sources_into_the_chain(tmp_path: Path) -> None:
    port = free_port()
    while any(_busy(port + i) for i in range(3)):
        port = free_port()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cemp.cli",
            "demo",
            "--dir",
            str(tmp_path / "d"),
            "--port",
            str(port),
            "--duration",
            "25",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = [int(x) for x in re.findall(r"readings on chain (\d+)", out.stdout)]
    assert counts and counts[-1] > 0, out.stdout[-2000:]
    bills = [int(x) for x in re.findall(r"bills (\d+)", out.stdout)]
    assert bills and bills[-1] >= 1, (
        "the first bill photo should be OCR'd and on chain: " + out.stdout[-2000:]
    )
    carbon = re.findall(
        r"carbon hohhot-complex \S+: electricity ([\d,.]+) kWh .* CO2 ([\d,.]+) kg location-based", out.stdout
    )
    assert carbon, "the demo should print the Hohhot site's live carbon figures: " + out.stdout[-2000:]
    assert "/v1/sites/hohhot-complex/inventory?period=" in out.stdout
    heights = set()
    for nid in ("owner-1", "equipment-1", "regulator-1"):
        rep = verify_data_dir(tmp_path / "d" / "data" / nid, wiring.kinds(), workers=0)
        assert rep.ok, rep.problem
        heights.add(rep.height)
    store = LevelDBStore(tmp_path / "d" / "data" / "regulator-1" / "ledger", create=False)
    try:
        for d in DEVICES:
            raw = store.get(schema.device(d.handle))
            assert raw is not None, f"{d.handle} not registered"
            if d.kind != "scanner.bill":
                assert codec.decode(DeviceRecord, raw).readings > 0, f"no readings from {d.name}"
    finally:
        store.close()


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
