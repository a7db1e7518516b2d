"""Real node processes for the collector-agent tests (no mocks of the node)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from node.client import NodeClient
from node.crypto import write_key_file
from tests.support.testing import TestConsortium, TestDevice, free_port, start_node_process


@dataclass
class NodeProc:
    """One ``cemp node`` process on a loopback port; can be stopped and started again on the same data."""

    consortium: TestConsortium
    config: Path
    log: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    devices: dict[str, TestDevice] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None
        self.proc = start_node_process(self.config, self.log, self.port)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(15)
        self.proc = None

    async def register(self, *handles: str, key_dir: Path | None = None) -> list[TestDevice]:
        """Register devices (owner admin signs ``device.register``); optionally write their key files."""
        out = []
        async with NodeClient(self.url) as cl:
            for h in handles:
                dev, raw = self.consortium.register_device(h)
                res = await cl.submit(raw, wait=True)
                assert res["result"]["ok"], res
                self.devices[h] = dev
                if key_dir is not None:
                    write_key_file(key_dir / (h.replace("/", "_") + ".key"), dev.key)
                out.append(dev)
        return out

    async def readings(self, handle: str) -> list[dict[str, object]]:
        async with NodeClient(self.url) as cl:
            rows = (await cl.get(f"/v1/devices/{handle}/readings", limit=10_000))["readings"]
        return sorted(rows, key=lambda r: r["seq"])  # type: ignore[no-any-return]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProc]:
    port = free_port()
    c = TestConsortium.create(ports=[port], block_interval_ms=10)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path / "node", nid, port)
    n = NodeProc(c, cfg, tmp_path / "node" / "node.log", port)
    n.start()
    try:
        yield n
    finally:
        n.stop(kill=True)
