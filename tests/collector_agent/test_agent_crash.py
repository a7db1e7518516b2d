"""``kill -9`` the agent process at random moments, restart it: nothing lost, nothing doubled.

The agent runs as ``python -m collector.cli collect`` against a real node process. After each kill the test
reads the outbox's durable counters (what the agent had signed and fsynced); at the end every one of those
readings must be on chain exactly once: per device, sequence numbers 1..N without hole or repeat, and the
source's values (microsecond clock, unique and rising) strictly rising in sequence order.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.procs import spawn
from tests.support.wait import wait_until_sync

from .conftest import NodeProc

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
HANDLES = [f"88.123.45/108.1.{i}" for i in range(1, 4)]


def write_config(path: Path, node_url: str, keys: Path) -> None:
    devices = "".join(
        f"""
[[devices]]
handle = "{h}"
key_file = "{keys / (h.replace("/", "_") + ".key")}"
poll_interval_s = 0.01
[devices.source]
type = "python"
factory = "tests.collector_agent.fakes:make_monotonic"
"""
        for h in HANDLES
    )
    path.write_text(
        f"""[agent]
data_dir = "agent"
nodes = ["{node_url}"]
flush_interval_s = 0.03
backlog_flush_interval_s = 0.1
progress_every_s = 1
retry_base_s = 0.05
retry_max_s = 0.5
resync_timeout_s = 1
drain_on_stop_s = 10
log_level = "info"
{devices}"""
    )


def start_agent(cfg: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as lf:
        return spawn(
            [sys.executable, "-m", "collector.cli", "collect", "--config", str(cfg), *extra],
            cwd=ROOT,
            env=env,
            stdout=lf,
            stderr=subprocess.STDOUT,
        )


def durable_state(db: Path) -> tuple[dict[str, int], int]:
    """(last signed seq per device, pending txs) as the agent left them on disk."""
    if not db.exists():
        return {}, 0
    con = sqlite3.connect(db)
    try:
        seqs = dict(con.execute("SELECT device, last_seq FROM devices").fetchall())
        pending = con.execute("SELECT count(*) FROM entries").fetchone()[0]
    except sqlite3.OperationalError:  # the agent has not created its tables yet
        return {}, 0
    finally:
        con.close()
    return seqs, int(pending)


async def test_kill9_at_random_moments_loses_and_doubles_nothing(node: NodeProc, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    await node.register(*HANDLES, key_dir=keys)
    cfg = tmp_path / "collect.toml"
    write_config(cfg, node.url, keys)
    db = tmp_path / "agent" / "outbox.sqlite"
    log = tmp_path / "agent.log"
    rng = random.Random(20251125)
    signed_at_kill: list[dict[str, int]] = []
    pending_at_kill: list[int] = []
    for round_ in range(5):
        before = sum(durable_state(db)[0].values())
        proc = start_agent(cfg, log)
        if round_ in (0, 3):
            # Anywhere from start-up and resync on: the moment is random (seeded), not a synchronisation.
            time.sleep(rng.uniform(0.2, 1.2))
        else:
            # Once this incarnation has signed something, at a random moment after.
            wait_until_sync(
                lambda before=before: sum(durable_state(db)[0].values()) > before,
                60,
                f"agent run {round_} to sign readings",
                interval=0.05,
            )
            time.sleep(rng.uniform(0, 0.6))
        if round_ == 2:
            node.stop()  # the node is away: the kill hits an agent holding a full outbox
            wait_until_sync(lambda: durable_state(db)[1] >= 5, 30, "5 txs held in the outbox", interval=0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if round_ == 2:
            node.start()
        seqs, pending = durable_state(db)
        signed_at_kill.append(seqs)
        pending_at_kill.append(pending)
    assert max(pending_at_kill) > 0, "no kill hit an agent with txs in flight"
    assert any(signed_at_kill), "the agent never got to sign before being killed"
    # A last, clean run: SIGTERM after a while; it signs what it holds and drains before exiting.
    before = sum(durable_state(db)[0].values())
    proc = start_agent(cfg, log)
    wait_until_sync(
        lambda: sum(durable_state(db)[0].values()) > before,
        60,
        "the last agent run to sign readings",
        interval=0.05,
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    assert summary["outbox_txs"] == 0 and summary["dead_txs"] == 0, summary
    final, pending = durable_state(db)
    assert pending == 0
    for h in HANDLES:
        rows = await node.readings(h)
        seqs = [r["seq"] for r in rows]
        assert seqs == list(range(1, final[h] + 1)), f"{h}: holes or repeats in {seqs[:5]}..{seqs[-5:]}"
        values = [r["value"] for r in rows]
        assert all(a < b for a, b in itertools.pairwise(values)), f"{h}: a reading was doubled"
        for k, at_kill in enumerate(signed_at_kill):
            assert at_kill.get(h, 0) <= final[h], f"{h}: readings signed before kill {k} are missing"
    print(json.dumps({"kills": len(signed_at_kill), "pending_at_kill": pending_at_kill, "final_seq": final}))
