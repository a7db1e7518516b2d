"""The test suite's reaper: kills the process groups the suite started once the suite's process is gone.

Run by ``tests.support.procs`` as ``python -I reaper.py``, in a session of its own (so a signal to the suite's
process group does not reach it), with its stdin a pipe from the suite. The suite writes one line per child
process group, ``<pgid> <leader start time>``. When the pipe reads end-of-file -- the suite exited, however it
exited: normally, by an exception, by SIGKILL -- every registered group still alive gets SIGTERM, then SIGKILL
after a grace period, and the reaper exits.

A group is only signalled while it is still ours: its leader is alive with the start time registered, or the
leader is gone but members remain (Linux does not hand out a pid that is still some group's id, so the number still
names the group we started). A leader alive with another start time is a new process that reused the number, and is
left alone.
"""

from __future__ import annotations

import os
import signal
import sys
import time

GRACE_S = 5.0


def stat_fields(pid: str) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, pgrp, ...), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None if it is gone."""
    f = stat_fields(str(pid))
    return f[19] if f is not None else None


def alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (a zombie, dead but not yet reaped, does not count)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            f = stat_fields(pid)
            if f is not None and f[2] == str(pgid) and f[0] not in ("Z", "X"):
                return True
    return False


def ours(pgid: int, started: str) -> bool:
    now = start_time(pgid)
    return now == started if now is not None else alive(pgid)


def signal_groups(groups: dict[int, str], sig: int) -> list[int]:
    hit = []
    for pgid, started in groups.items():
        if ours(pgid, started):
            try:
                os.killpg(pgid, sig)
                hit.append(pgid)
            except (ProcessLookupError, PermissionError):
                pass
    return hit


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: dict[int, str] = {}
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            groups[int(parts[0])] = parts[1]
        elif len(parts) == 2 and parts[0] == "-" and parts[1].isdigit():
            groups.pop(int(parts[1]), None)
    left = signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [g for g in left if alive(g)]
    if left:
        signal_groups({g: groups[g] for g in left}, signal.SIGKILL)


if __name__ == "__main__":
    main()
