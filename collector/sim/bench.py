"""How many simulated meters one process can serve and poll.

``python -m collector.sim.bench --meters 1000 --per-server 200 --rounds 5 [--link shared|own] [--split]``

Starts a ``MeterFleet`` of ``meters`` SDM630 meters on ``ceil(meters / per-server)`` Modbus endpoints, then
polls every meter through its own ``ModbusSource``, each round all at once (``asyncio.gather``). ``--link
shared``: one TCP connection per endpoint (a gateway with its RS-485 meters); ``own``: one per meter.
``--split`` serves from a child process, so simulators and pollers get a core each. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

from collector.modbus import ModbusLink, ModbusSource
from collector.sim.fleet import MeterFleet


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def poll_rounds(sources: Sequence[ModbusSource], rounds: int) -> dict[str, float]:
    times = []
    errors = samples = 0
    for _ in range(rounds):
        t = time.perf_counter()
        results = await asyncio.gather(*(s.poll() for s in sources), return_exceptions=True)
        times.append(time.perf_counter() - t)
        for r in results:
            if isinstance(r, BaseException):
                errors += 1
            else:
                samples += len(r)
    for s in sources:
        await s.close()
    steady = sorted(times[1:] or times)
    median = steady[len(steady) // 2]
    return {
        "first_round_s": round(times[0], 3),
        "round_s_median": round(median, 3),
        "polls_per_s": round(len(sources) / median, 1),
        "errors": errors,
        "samples": samples,
    }


def sources_for(endpoints: Sequence[tuple[str, int, int]], link_mode: str) -> list[ModbusSource]:
    links: dict[int, ModbusLink] = {}
    out = []
    for i, (host, port, uid) in enumerate(endpoints):
        link = links.setdefault(port, ModbusLink(host, port, 10.0)) if link_mode == "shared" else None
        out.append(ModbusSource(f"bench/{i}", host, port, uid, "eastron_sdm630", 10.0, link=link))
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {
        k: getattr(args, k) for k in ("meters", "per_server", "link", "split", "rounds")
    }
    if args.split:
        cmd = [sys.executable, "-m", "collector.sim.bench", "--serve", "--meters", str(args.meters)]
        child = subprocess.Popen(
            [*cmd, "--per-server", str(args.per_server)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        try:
            info = json.loads(await asyncio.to_thread(child.stdout.readline))
            out.update(start_s=info["start_s"], sim_rss_mb=info["rss_mb"])
            out.update(
                await poll_rounds(sources_for([tuple(e) for e in info["endpoints"]], args.link), args.rounds)
            )
        finally:
            child.terminate()
            child.wait(10)
        out["poller_rss_mb"] = _rss_mb()
        return out
    fleet = MeterFleet(args.meters, per_server=args.per_server, speed=args.speed)
    t = time.perf_counter()
    endpoints = await fleet.start()
    out["start_s"] = round(time.perf_counter() - t, 3)
    try:
        out.update(await poll_rounds(sources_for(endpoints, args.link), args.rounds))
    finally:
        await fleet.close()
    out["rss_mb"] = _rss_mb()
    return out


async def serve(args: argparse.Namespace) -> None:
    fleet = MeterFleet(args.meters, per_server=args.per_server, speed=args.speed)
    t = time.perf_counter()
    endpoints = await fleet.start()
    print(
        json.dumps(
            {"start_s": round(time.perf_counter() - t, 3), "rss_mb": _rss_mb(), "endpoints": endpoints}
        )
    )
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await fleet.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m collector.sim.bench", description=__doc__)
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--per-server", type=int, default=200, help="unit ids per Modbus endpoint (1..247)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--link", choices=["shared", "own"], default="shared")
    p.add_argument("--speed", type=float, default=60.0)
    p.add_argument("--split", action="store_true", help="serve from a child process")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.per_server <= 247:
        p.error("--per-server must be within 1..247")
    if args.serve:
        asyncio.run(serve(args))
        return 0
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
