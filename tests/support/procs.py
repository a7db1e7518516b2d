"""Child processes of the test suite die with it: node, agent and demo processes are never left running.

Every long-lived child goes through ``spawn``, which starts it in a session (and process group) of its own and
registers the group with the suite's reaper (``tests/support/reaper.py``): a small process, started on the first
spawn in a session of its own, that reads registrations from a pipe and, when the pipe closes because the suite's
process is gone (it returned, raised, or was killed with SIGKILL), signals every registered group still running.
The kernel closes the pipe whatever way the suite ends, so this holds where an ``atexit`` hook or a fixture
finalizer would not run. A group also takes the child's own children (the demo's three nodes).

Within a run, ``tests/conftest.py`` reaps after each test the groups that test started and left running (a test
that failed half-way, before its ``finally``).

Why not ``PR_SET_PDEATHSIG``: it fires when the *thread* that forked the child exits, and the cluster harness
starts nodes from ``asyncio.to_thread`` workers; and it reaches the direct child only, not the demo's nodes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tests.support.reaper import alive, ours, start_time

_lock = threading.Lock()
_reaper: subprocess.Popen[bytes] | None = None
_groups: list[tuple[int, str]] = []
"""Every group registered by this process, in order: (pgid, leader's start time)."""


def _pipe() -> IO[bytes]:
    """The reaper's stdin, starting the reaper on first use (the caller holds ``_lock``)."""
    global _reaper
    if _reaper is None or _reaper.poll() is not None:
        _reaper = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).with_name("reaper.py"))],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a signal to the suite's process group must not take the reaper with it
        )
    assert _reaper.stdin is not None
    return _reaper.stdin


def register(pgid: int) -> None:
    """Have the reaper kill process group ``pgid`` (whose leader has pid ``pgid``) when the suite is gone."""
    started = start_time(pgid)
    if started is None:
        return  # already gone
    with _lock:
        _groups.append((pgid, started))
        pipe = _pipe()
        pipe.write(f"{pgid} {started}\n".encode())
        pipe.flush()


def spawn(args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` in a new session (its own process group), registered with the reaper."""
    kwargs["start_new_session"] = True
    proc: subprocess.Popen[Any] = subprocess.Popen(args, **kwargs)
    register(proc.pid)
    return proc


def kill_group(pgid: int, sig: int = signal.SIGKILL, started: str | None = None) -> bool:
    """Signal group ``pgid`` if it still runs and is still the one started (see ``reaper.ours``)."""
    if started is None:
        started = next((s for g, s in reversed(_groups) if g == pgid), None)
    if started is None or not ours(pgid, started):
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    capture_output: bool = False,
    text: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` for a command that starts processes of its own (``cemp demo``): on a timeout, or when
    the command exits and leaves children behind, the whole group is killed, not only the command."""
    if capture_output:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
    proc = spawn(args, text=text, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc.pid)
        proc.communicate()
        raise
    finally:
        kill_group(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def mark() -> int:
    """How many groups this process has registered so far (for ``reap_since``)."""
    with _lock:
        return len(_groups)


def reap_since(n: int, grace_s: float = 5.0) -> list[int]:
    """Terminate the groups registered after ``mark()`` returned ``n`` that still run (SIGTERM, then SIGKILL
    after ``grace_s``); returns the groups that had to be signalled."""
    with _lock:
        late = _groups[n:]
    hit = [g for g, s in late if kill_group(g, signal.SIGTERM, s)]
    deadline = time.monotonic() + grace_s
    while any(alive(g) for g in hit) and time.monotonic() < deadline:
        time.sleep(0.05)
    for g, s in late:
        if g in hit:
            kill_group(g, signal.SIGKILL, s)
    return hit
