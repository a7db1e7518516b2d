"""``cemp collect``, ``cemp alarms`` and ``cemp sim``: the collector's commands, added to the ``cemp`` parser.

``add_parser(subparsers)`` adds them to ``cemp.cli``'s sub-parsers; ``python -m collector.cli`` runs them
stand-alone (used by the crash tests). ``collect`` runs until SIGINT/SIGTERM, then signs what it holds,
drains for ``drain_on_stop_s`` and exits 0; a bad config exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any


def cmd_collect(args: argparse.Namespace) -> int:
    from collector.config import CollectConfigError, build_site, load

    try:
        cfg = load(Path(args.config))
    except CollectConfigError as e:
        print(f"config: {e}", file=sys.stderr)
        return 2
    level = (args.log_level or cfg.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        try:
            site = build_site(Path(args.config))
        except (CollectConfigError, ValueError, OSError) as e:
            print(f"cannot start collector: {e}", file=sys.stderr)
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        runner = None
        port = (
            args.metrics_port
            if args.metrics_port is not None
            else os.environ.get("CEMP_COLLECTOR_METRICS_PORT")
        )
        if port not in (None, ""):
            from aiohttp import web

            from collector.metrics import metrics_app

            runner = web.AppRunner(metrics_app(site), access_log=None)
            await runner.setup()
            host = os.environ.get("CEMP_COLLECTOR_METRICS_HOST", "127.0.0.1")
            await web.TCPSite(runner, host, int(port)).start()
            print(f"collector metrics on http://{host}:{port}/metrics", flush=True)
        try:
            await site.run(stop)
        except ValueError as e:
            print(f"cannot start collector: {e}", file=sys.stderr)
            return 2
        finally:
            if runner is not None:
                await runner.cleanup()
        st = site.outbox.stats()
        print(
            json.dumps(
                {
                    "signed_readings": site.stats.signed_readings,
                    "committed_readings": site.stats.committed_readings,
                    "outbox_txs": st.entries,
                    "outbox_readings": st.readings,
                    "dead_txs": st.dead,
                    "alarms": site.alarm_count(),
                }
            ),
            flush=True,
        )
        site.outbox.close()
        return 0

    return asyncio.run(main())


def cmd_sim_control_api(args: argparse.Namespace) -> int:
    from collector.sim.control_api import serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve_forever(args.host, args.port, args.token))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_sim_modbus(args: argparse.Namespace) -> int:
    import collector.sim.site as site_sims

    argv = [
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--dlt645-port",
        str(args.dlt645_port),
        "--seed",
        str(args.seed),
        "--speed",
        str(args.speed),
        "--start",
        args.start,
    ]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    return int(site_sims.main(argv))


def cmd_alarms(args: argparse.Namespace) -> int:
    """List the alarms an agent (or the demo) recorded, with what each rule means."""
    import time

    from collector.quality import ALARM_RULES, alarm_to_json, read_alarms

    if args.rules:
        for rule, meaning in ALARM_RULES.items():
            print(f"{rule:<17} {meaning}")
        return 0
    path = Path(args.file) if args.file else Path(args.dir) / "collector" / "alarms.jsonl"
    if not path.exists():
        print(f"no alarm file at {path} (no alarm yet, or not an agent's data directory)", file=sys.stderr)
        return 2
    alarms = [
        a
        for a in read_alarms(path)
        if (args.rule is None or a.rule == args.rule) and (args.device is None or a.device == args.device)
    ]
    shown = alarms[-args.last :] if args.last > 0 else alarms
    if args.json:
        for a in shown:
            print(
                json.dumps({**alarm_to_json(a), "meaning": ALARM_RULES.get(a.rule, "")}, ensure_ascii=False)
            )
        return 0
    counts: dict[str, int] = {}
    for a in alarms:
        counts[a.rule] = counts.get(a.rule, 0) + 1
    print(
        f"{len(alarms)} alarms in {path}" + (f"; the last {len(shown)}:" if len(shown) < len(alarms) else ":")
    )
    for a in shown:
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a.ts_ms / 1000))
        print(f"  {t}  {a.severity.value:<8} {a.rule:<15} {a.device} {a.quantity}: {a.message}")
    if counts:
        print("what they mean:")
        for rule, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"  {rule} ({n}): {ALARM_RULES.get(rule, 'not a rule this version knows')}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``collect``, ``alarms`` and the ``sim`` group on an ``argparse`` sub-parsers object."""
    al = subparsers.add_parser(
        "alarms",
        help="list the collector's alarms (the demo's by default) with what each means",
        description="Reads the JSON-lines alarm file an agent writes (the demo: DIR/collector/alarms.jsonl) and "
        "prints the newest alarms and, for each rule that occurred, what it means. --rules prints every rule.",
    )
    al.add_argument("--dir", default="demo-data", help="the demo directory (default demo-data)")
    al.add_argument("--file", default=None, help="an alarm file (JSON lines) instead of the demo's")
    al.add_argument("--rule", default=None, help="only this rule (see --rules)")
    al.add_argument("--device", default=None, help="only this device handle")
    al.add_argument("--last", type=int, default=50, help="show the newest N (0 = all; default 50)")
    al.add_argument("--json", action="store_true", help="one JSON object per alarm, with its meaning")
    al.add_argument("--rules", action="store_true", help="print every alarm rule and what it means")
    al.set_defaults(func=cmd_alarms)
    co = subparsers.add_parser(
        "collect",
        help="run the device agent: poll sources, flag quality, sign, keep the outbox, submit",
        description="Run the collector described by a TOML file (see collector/config.py for the format).",
    )
    co.add_argument("--config", required=True, help="collector TOML ([agent], [quality], [[devices]])")
    co.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    co.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    co.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics (outbox depth, dead letters, open alarms) on this port "
        "(or CEMP_COLLECTOR_METRICS_PORT; host CEMP_COLLECTOR_METRICS_HOST, default 127.0.0.1)",
    )
    co.set_defaults(func=cmd_collect)

    sim = subparsers.add_parser("sim", help="run device and control-system simulators")
    ss = sim.add_subparsers(dest="sim_cmd", required=True)
    ca = ss.add_parser("control-api", help="the pump-room / electrical control system's HTTP API")
    ca.add_argument("--host", default="127.0.0.1")
    ca.add_argument("--port", type=int, default=8088)
    ca.add_argument("--token", default="sim-token", help="bearer token the API requires")
    ca.set_defaults(func=cmd_sim_control_api)
    mb = ss.add_parser(
        "modbus",
        help="the site's meters: a Modbus TCP gateway (4 meters + temperature module) and a DL/T 645 gateway",
    )
    mb.add_argument("--host", default="127.0.0.1")
    mb.add_argument("--port", type=int, default=5020, help="Modbus TCP port (0 = any free port)")
    mb.add_argument("--dlt645-port", type=int, default=0, help="DL/T 645 gateway port (0 = any free port)")
    mb.add_argument("--seed", type=int, default=1, help="load model seed")
    mb.add_argument("--speed", type=float, default=1.0, help="model seconds per wall second")
    mb.add_argument("--start", default="2025-01-15T08:00", help="model start, local time (CST)")
    mb.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    mb.set_defaults(func=cmd_sim_modbus)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cemp", description="CEMP collector commands")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
