"""A node the harness started dies with the suite's process, even when that process is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.reaper import alive
from tests.support.wait import wait_until_sync

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from tests.support.testing import TestConsortium, free_port, start_node_process

    base = Path(sys.argv[1])
    port = free_port()
    c = TestConsortium.create(ports=[port])
    nid = str(c.genesis.nodes[0].node_id)
    proc = start_node_process(c.write_files(base, nid, port), base / "node.log", port)
    print(json.dumps({"pid": proc.pid}), flush=True)
    time.sleep(600)  # killed by the test long before
    """
)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.mark.slow
def test_node_dies_when_the_harness_process_is_killed(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    node = 0
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # printed once the node answered its status
        assert line, "the child did not start its node"
        node = int(json.loads(line)["pid"])
        assert _running(node)
        child.send_signal(signal.SIGKILL)  # no finalizer, no atexit: only the kernel closing its files
        child.wait(10)
        wait_until_sync(
            lambda: not _running(node), 20, f"node process {node} to end after its harness was killed"
        )
    finally:
        child.kill()
        child.wait()
        if node and _running(node):
            os.kill(node, signal.SIGKILL)


def test_run_kills_what_the_command_left_behind(tmp_path: Path) -> None:
    """``procs.run`` of a command whose child outlives it (like ``cemp demo``'s nodes): the group is gone after."""
    pidfile = tmp_path / "pid"
    script = f"import subprocess, sys; p = subprocess.Popen(['sleep', '300']); open({str(pidfile)!r}, 'w').write(str(p.pid))"
    out = procs.run([sys.executable, "-c", script], timeout=60)
    assert out.returncode == 0
    orphan = int(pidfile.read_text())
    wait_until_sync(lambda: not _running(orphan), 10, f"the command's child {orphan} to be killed")


def test_run_kills_the_group_on_a_timeout() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["sh", "-c", "sleep 300 & sleep 300"], timeout=0.5)
    n = procs.mark()
    pgid = procs._groups[n - 1][0]
    wait_until_sync(lambda: not alive(pgid), 10, "the timed-out command's group to end")
