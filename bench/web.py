"""Web UI benchmark: server time of the explorer home, a block page and a device page on a big ledger.

Builds (once; kept in ``--data`` for later runs) a one-node LevelDB ledger through the real apply path:
one meter with a heating season (``--days``, default 90) of 1-minute readings of three quantities, in signed
20-minute batches, plus filler txs from ``--devices`` devices (one signed reading each) up to ``--txs`` txs in
blocks of ``--block-txs``. Then serves the web routes on a loopback port and requests each page ``--n`` times
in a seeded random order; a middleware measures the server time of each request (handler start to body
ready; wall time, and the serving thread's CPU time, which a loaded shared machine does not inflate), and the
client records bytes per page. The 1-minute load average at the end is printed with the figures.

Prints progress on stderr and one JSON line last: ``home_p50_ms``, ``home_p99_ms``, ``block_p50_ms``,
``block_p99_ms``, ``device_p50_ms``, ``device_p99_ms``, ``device_kb``, ``txs`` (and the build's figures).
``device_*`` is the season view computed afresh for every request (each asks for a range no request asked for
before); ``device_cached_*`` the same page viewed again, whose chart data is reused until the device commits new
readings; ``*_cpu_*`` the serving thread's CPU time.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from common import ROOT, log

from cemp import wiring
from cemp.cli import settle_heap
from node.chain import Ledger
from node.crypto import KeyPair
from node.devices import load_device
from node.genesis import read_genesis, write_genesis
from node.server import Node
from node.state import StateView
from node.store import LevelDBStore
from node.types import Block
from tests.support.testing import TestConsortium, TestDevice, free_port

METER = "88.123.45/101.1.1"
QUANTITIES = (("energy.import", "Wh"), ("power", "W"), ("voltage.l1", "mV"))


def _commit(led: Ledger, key: KeyPair, raws: list[bytes], t_ms: int) -> None:
    for raw in raws:  # signatures were made here a moment ago: skip re-verifying them on apply
        led.mark_verified(led.decode_tx(raw).hash)
    staged = led.execute(tuple(raws), time_ms=t_ms, proposer="owner-1", term=0, last_commit=())
    bad = [r for r in staged.results if r.code != 0]
    if bad:
        raise RuntimeError(f"bench tx refused: {bad[0].reason}")
    block: Block = led.sign_block(staged, key)
    vote = led.vote(bytes.fromhex(_hash_hex(block)), "owner-1", key)
    led.commit(block, staged, (vote,))


def _hash_hex(block: Block) -> str:
    from node.chain import header_hash

    return header_hash(block.header).hex()


def build(data: Path, txs: int, days: int, devices: int, block_txs: int) -> dict[str, float]:
    """Create the ledger under ``data``; returns build figures."""
    c = TestConsortium.create(n_nodes=1, block_max_txs=block_txs)
    data.mkdir(parents=True)
    write_genesis(c.genesis, data / "genesis.cemp")
    (data / "node.key").write_bytes(c.node_keys["owner-1"].seed)
    store = LevelDBStore(data / "ledger")
    led = Ledger(store, c.genesis, wiring.kinds())
    key = c.node_keys["owner-1"]
    t0 = time.perf_counter()
    now = int(time.time() * 1000) // 60_000 * 60_000
    block_t = now - 3_600_000  # block times: the last hour, 1 ms apart per block at least
    now = block_t - 60_000  # the season of readings ends just before the first block
    start = now - days * 86_400_000
    meter, reg = c.register_device(METER)
    fillers: list[TestDevice] = []
    regs = [reg]
    for i in range(devices):
        d, r = c.register_device(
            f"88.123.45/301.{i // 100}.{i % 100}", kind="meter.energy", subsystem="tenants"
        )
        fillers.append(d)
        regs.append(r)
    for i in range(0, len(regs), block_txs):
        _commit(led, key, regs[i : i + block_txs], block_t)
        block_t += 1
    # the meter's season: one tx per 20 minutes, 3 quantities per minute
    season: list[bytes] = []
    energy = 1_000_000_000
    rng = random.Random(13)
    for t in range(start, now, 20 * 60_000):
        vals = []
        for m in range(20):
            ts = t + m * 60_000
            p = 80_000 + rng.randrange(60_000)
            energy += p // 60
            vals += [(ts, "energy.import", energy, "Wh"), (ts, "power", p, "W")]
            vals += [(ts, "voltage.l1", 219_000 + rng.randrange(2_000), "mV")]
        season.append(meter.batch(c.chain, vals))
    filler_n = max(0, txs - len(regs) - len(season))
    log(
        f"signed {len(season)} season txs; signing and applying {filler_n} filler txs in blocks of {block_txs}"
    )
    pending = list(season)
    made = 0
    last_log = time.perf_counter()
    while pending or made < filler_n:
        raws = pending[:block_txs]
        del pending[:block_txs]
        while len(raws) < block_txs and made < filler_n:
            d = fillers[made % len(fillers)]
            raws.append(d.batch(c.chain, [(block_t - 1000, "power", 1000 + made % 5000, "W")]))
            made += 1
        _commit(led, key, raws, block_t)
        block_t += 1
        if time.perf_counter() - last_log > 15:
            log(f"  height {led.height}, {made}/{filler_n} filler txs, {time.perf_counter() - t0:.0f} s")
            last_log = time.perf_counter()
    total = len(regs) + len(season) + filler_n
    (data / "built.json").write_text(json.dumps({"txs": total, "height": led.height}))
    store.close()
    return {"build_s": round(time.perf_counter() - t0, 1), "txs": total}


async def measure(data: Path, n: int, seed: int) -> dict[str, float]:
    genesis = read_genesis(data / "genesis.cemp")
    key = KeyPair.from_seed((data / "node.key").read_bytes())
    store = LevelDBStore(data / "ledger")
    node = Node(genesis, store, "owner-1", key, kinds=wiring.kinds(), routes=())
    from web.app import routes

    timings: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    @web.middleware
    async def timer(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        t, c = time.perf_counter(), time.thread_time()
        resp = await handler(request)
        page = request.headers.get("X-Bench-Page", "?")
        timings.setdefault(page, []).append((time.perf_counter() - t) * 1000)
        # CPU time of the serving thread: what the request itself cost, apart from waiting for a core on a
        # shared machine (requests are sent one at a time, so nothing else runs on the loop meanwhile)
        cpu.setdefault(page, []).append((time.thread_time() - c) * 1000)
        return resp

    app = web.Application(middlewares=[timer])
    app.add_routes(routes(node))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    led = node.ledger
    mid = max(1, led.height // 2)
    meter = load_device(StateView(store), METER)
    assert meter is not None
    season_to = meter.last_ts_ms + 60_000
    season_from = season_to - 92 * 86_400_000  # the whole season the builder wrote (90 days), and a margin
    pages = {
        "home": "/",
        "block": f"/block/{mid}",
        # the device page over the whole season of readings, with a range no earlier request asked for:
        # nothing cached (the headline figure)
        "device": f"/device/{METER}?from={{i}}&to={season_to}",
        # the same page viewed again: chart data reused until the device commits new readings
        "device_cached": f"/device/{METER}?from={season_from}&to={season_to}",
        "device_24h": f"/device/{METER}",
        "txs": "/txs",
    }
    sizes: dict[str, int] = {}
    order = [p for p in pages for _ in range(n)]
    random.Random(seed).shuffle(order)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for name, path in pages.items():  # one warm-up each: first-touch caches are measured apart
                path = path.replace("{i}", str(season_from - 1))
                async with s.get(base + path, headers={"X-Bench-Page": "warmup-" + name}) as r:
                    assert r.status == 200, (path, r.status, (await r.text())[:500])
                    sizes[name] = len(await r.read())
            for i, name in enumerate(order):
                path = pages[name].replace("{i}", str(season_from + i))
                async with s.get(
                    base + path, headers={"X-Bench-Page": name, "Accept-Language": "zh-CN"}
                ) as r:
                    body = await r.read()
                    assert r.status == 200
                    sizes[name] = len(body)
    finally:
        await runner.cleanup()
        store.close()

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)

    out: dict[str, float] = {}
    for name in pages:
        out[f"{name}_p50_ms"] = round(statistics.median(timings[name]), 2)
        out[f"{name}_p99_ms"] = pct(timings[name], 0.99)
        out[f"{name}_kb"] = round(sizes[name] / 1024, 1)
        out[f"{name}_first_ms"] = round(timings["warmup-" + name][0], 1)
        out[f"{name}_cpu_p50_ms"] = round(statistics.median(cpu[name]), 2)
        out[f"{name}_cpu_p99_ms"] = pct(cpu[name], 0.99)
    out["height"] = led.height
    out["load_avg_1m"] = round(os.getloadavg()[0], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "bench-data" / "web")
    ap.add_argument("--txs", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--block-txs", type=int, default=1000)
    ap.add_argument("--n", type=int, default=300, help="requests per page")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--quick", action="store_true", help="20,000 txs and 30 days (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.txs, args.days, args.n = 20_000, 30, 50
        args.data = args.data.with_name(args.data.name + "-quick")
    built = args.data / "built.json"
    build_info: dict[str, float] = {}
    if args.rebuild and args.data.exists():
        shutil.rmtree(args.data)
    if built.exists() and json.loads(built.read_text()).get("txs", 0) >= args.txs * 0.99:
        log(f"using the ledger in {args.data}")
        info = json.loads(built.read_text())
    else:
        if args.data.exists():
            shutil.rmtree(args.data)
        log(f"building a ledger of {args.txs} txs in {args.data} (once)")
        build_info = build(args.data, args.txs, args.days, args.devices, args.block_txs)
        info = json.loads(built.read_text())
        log(f"built in {build_info['build_s']} s")
    settle_heap()  # as ``cemp node`` does once everything is imported
    res = asyncio.run(measure(args.data, args.n, args.seed))
    res.update({"txs": info["txs"], "season_days": args.days, "requests_per_page": args.n, **build_info})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
