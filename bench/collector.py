"""Collector benchmark: N simulated meters → one ``SiteAgent`` (outbox, fsync on) → one real node process.

Phases (one invocation; the last line printed is one JSON object):
1. steady state for ``--duration`` s: readings committed per second and outbox bytes per reading;
2. node outage for ``--outage`` s under the same load: readings held in the outbox, bytes per reading on disk;
3. node back: time until the whole backlog (outbox + readings waiting in memory) is committed, and the
   commit rate meanwhile (backlog + the load that goes on).

Meters: ``collector.sim.fleet`` when it provides ``bench_sources(handles) -> (sources, async close)``
(1,000 Modbus TCP meters in the real benchmark); otherwise in-process synthetic counters (energy + power
per poll), which measure the agent, outbox and node without the Modbus stack.
Usage: python bench/collector.py [--devices 1000] [--interval 1] [--duration 15] [--outage 10] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import importlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import log, register_devices

from collector.agent import AgentSettings, DeviceAgent, SiteAgent
from collector.outbox import Outbox
from collector.sources import Sample, Source
from tests.support.testing import TestConsortium, free_port, start_node_process


class SyntheticMeter:
    def __init__(self, device: str, start: int) -> None:
        self.device = device
        self.value = start

    async def poll(self) -> list[Sample]:
        self.value += 83
        ts = int(time.time() * 1000)
        return [Sample("energy.import", self.value, "Wh", ts), Sample("power", 300_000, "W", ts)]

    async def close(self) -> None:
        pass


async def _noop() -> None:
    return None


def meters(handles: list[str]) -> tuple[list[Source], Callable[[], Awaitable[None]], str]:
    try:
        sim = importlib.import_module("collector.sim.fleet")
        make = sim.bench_sources
    except (ImportError, AttributeError):
        return [SyntheticMeter(h, 1_000_000 * i) for i, h in enumerate(handles)], _noop, "synthetic"
    sources, close = make(handles)
    return list(sources), close, "modbus_sim"


async def wait_for(cond: Callable[[], bool], timeout: float) -> tuple[float, bool]:
    """(seconds waited, whether ``cond`` held): a condition that never held is not a time."""
    t = time.monotonic()
    while not cond() and time.monotonic() - t < timeout:
        await asyncio.sleep(0.05)
    return time.monotonic() - t, cond()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cemp-bench-collector-"))
    port = free_port()
    c = TestConsortium.create(ports=[port])
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(work / "node", nid, port)
    node = start_node_process(cfg, work / "node.log", port)
    url = f"http://127.0.0.1:{port}"
    try:
        devs = await register_devices(c, url, args.devices, prefix="88.123.45/301")
        handles = [d.handle for d in devs]
        sources, close_sources, kind = meters(handles)
        agents = [
            DeviceAgent(d.handle, d.key, [s], poll_interval_s=args.interval)
            for d, s in zip(devs, sources, strict=True)
        ]
        settings = AgentSettings(
            nodes=(url,),
            flush_interval_s=args.flush,
            backlog_flush_interval_s=args.backlog_flush,
            progress_every_s=5,
            retry_base_s=0.1,
            retry_max_s=1.0,
        )
        agent = SiteAgent(agents, Outbox(work / "agent" / "outbox.sqlite"), settings)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        _, started = await wait_for(lambda: agent.stats.committed_readings > 0, 30)
        if not started:
            raise SystemExit("nothing committed within 30 s of starting the agent; see the node log")
        log(f"{kind} meters: {args.devices}, polled every {args.interval} s; steady state {args.duration} s")
        c0, t0, cpu0 = agent.stats.committed_readings, time.monotonic(), time.process_time()
        await asyncio.sleep(args.duration)
        steady = (agent.stats.committed_readings - c0) / (time.monotonic() - t0)
        # CPU of this process (the agent, plus the simulated meters when they run in-process) per wall second.
        cpu_pct = 100 * (time.process_time() - cpu0) / (time.monotonic() - t0)
        log(f"steady: {steady:.0f} readings/s committed; node goes away for {args.outage} s")
        await asyncio.to_thread(node.terminate)
        await asyncio.to_thread(node.wait, 15)
        await asyncio.sleep(args.outage)
        held = agent.outbox.stats()
        buffered = sum(len(d.buffer) for d in agents)
        backlog = held.readings + buffered
        log(
            f"outage: outbox holds {held.entries} txs / {held.readings} readings ({held.db_bytes} B in use); "
            f"{buffered} readings wait in memory (backlog flush every {settings.backlog_flush_interval_s} s)"
        )
        committed_before = agent.stats.committed_readings
        t1 = time.monotonic()
        node = await asyncio.to_thread(start_node_process, cfg, work / "node.log", port)
        node_start = time.monotonic() - t1
        drain, drained = await wait_for(
            lambda: agent.stats.committed_readings - committed_before >= backlog, 600
        )
        committed_during = agent.stats.committed_readings - committed_before
        stop.set()
        await task
        await close_sources()
        final = agent.outbox.stats()
        agent.outbox.close()
        drain_rate = committed_during / max(drain, 1e-9)
        return {
            "bench": "collector",
            "meters": args.devices,
            "readings_per_s": round(steady, 1),
            "agent_cpu_pct": round(cpu_pct, 1),
            "outbox_bytes_per_reading": round(held.db_bytes / max(1, held.readings), 1),
            "drain_speedup": round(drain_rate / max(steady, 1e-9), 1),
            "meter_kind": kind,
            "devices": args.devices,
            "poll_interval_s": args.interval,
            "flush_interval_s": args.flush,
            "backlog_flush_interval_s": args.backlog_flush,
            "steady_readings_per_s": round(steady, 1),
            "outage_s": args.outage,
            "outage_txs_held": held.entries,
            "outage_readings_held": held.readings,
            "outbox_signed_bytes_per_reading": round(held.bytes_per_reading, 1),
            "outbox_db_bytes_per_reading": round(held.db_bytes / max(1, held.readings), 1),
            "outbox_files_bytes": held.file_bytes,
            "outage_readings_in_memory": buffered,
            "node_restart_s": round(node_start, 2),
            "drain_s": round(drain, 2) if drained else None,
            "drained": drained,
            "drain_commit_readings_per_s": round(committed_during / max(drain, 1e-9), 1),
            "left_in_outbox": final.readings,
            "dead_letters": final.dead,
        }
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--flush", type=float, default=1.0)
    p.add_argument("--backlog-flush", type=float, default=10.0, help="flush interval while nodes are away")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--outage", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="100 devices, 5 s phases")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.devices, a.duration, a.outage = 100, 5.0, 5.0
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(main(a))), flush=True)
