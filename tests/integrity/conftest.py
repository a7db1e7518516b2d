"""A stopped node's files, made once per session by a real three-process cluster run in two sessions (so that
LevelDB holds both table files and a write-ahead log), for the corruption tests to copy and damage."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.client import NodeClient
from tests.cluster.harness import Cluster


@dataclass(frozen=True)
class NodeFiles:
    """One node's directory: ``<node_id>.toml``, its key, ``genesis.cemp`` and ``data/<node_id>/``."""

    root: Path
    node_id: str
    height: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data" / self.node_id

    @property
    def ledger(self) -> Path:
        return self.data_dir / "ledger"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.cemp"

    @property
    def config(self) -> Path:
        return self.root / f"{self.node_id}.toml"

    def copy(self, dest: Path) -> NodeFiles:
        shutil.copytree(self.root, dest, ignore=shutil.ignore_patterns("node.log"))
        return NodeFiles(dest, self.node_id, self.height)


async def _run(base: Path) -> tuple[str, int]:
    cl = await Cluster.create(base, proxies=False)
    c = cl.consortium
    dev, reg = c.register_device("88.123.45/101.1.1")
    dev2, reg2 = c.register_device("88.123.45/101.1.2")
    now = int(time.time() * 1000)
    try:
        for session in range(2):
            await cl.start_all()
            leader = await cl.leader()
            async with NodeClient(cl.url(leader)) as nc:
                if session == 0:
                    for raw in (reg, reg2):
                        assert (await nc.submit(raw, wait=True))["result"]["ok"]
                for i in range(4):
                    for d in (dev, dev2):
                        rows = [
                            (now + 1000 * (10 * i + k), "energy.import", 100 * i + k, "Wh") for k in range(3)
                        ]
                        assert (await nc.submit(d.batch(c.chain, rows), wait=True))["result"]["ok"]
                    now += 1
                height = int((await nc.status())["height"])
            await cl.stop()
    finally:
        await cl.stop()
    return leader, height


@pytest.fixture(scope="session")
def stopped_node(tmp_path_factory: pytest.TempPathFactory) -> NodeFiles:
    base = tmp_path_factory.mktemp("cluster")
    leader, height = asyncio.run(_run(base))
    return NodeFiles(base / leader, leader, height)
