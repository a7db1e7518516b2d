"""Shared pieces of the benchmarks: signed workloads, throughput over HTTP (open-loop steps: bench/offered.py)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import msgpack

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from node.crypto import KeyPair, verify  # noqa: E402
from node.types import DOMAIN_TX  # noqa: E402
from tests.support.testing import TestConsortium, TestDevice  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def verify_baseline(seconds: float = 2.0, clock: Callable[[], float] = time.perf_counter) -> float:
    """Bare Ed25519 verifications per second on one core (the same-run baseline); with
    ``clock=time.process_time``, per CPU-second of this process."""
    k = KeyPair.generate()
    msg = b"x" * 180
    sig = k.sign(DOMAIN_TX, msg)
    n = 0
    t0 = clock()
    while clock() - t0 < seconds:
        for _ in range(500):
            verify(k.public, DOMAIN_TX, msg, sig)
        n += 500
    return n / (clock() - t0)


async def post_batch(session: aiohttp.ClientSession, url: str, raws: list[bytes], wait: bool) -> list[dict]:
    params = {"wait": "commit", "timeout_ms": "120000"} if wait else {}
    async with session.post(
        f"{url}/v1/txs/batch",
        data=msgpack.packb(raws, use_bin_type=True),
        params=params,
        headers={"Content-Type": "application/msgpack"},
    ) as r:
        body = await r.json()
        if r.status != 200:
            raise RuntimeError(f"batch refused: {body}")
        return body["results"]


async def register_devices(
    c: TestConsortium, url: str, n: int, prefix: str = "88.123.45/201"
) -> list[TestDevice]:
    devs, regs = [], []
    for i in range(n):
        d, reg = c.register_device(f"{prefix}.{i // 100}.{i % 100}")
        devs.append(d)
        regs.append(reg)
    async with aiohttp.ClientSession() as s:
        res = await post_batch(s, url, regs, wait=True)
    bad = [r for r in res if r["status"] != "committed" or not r["result"]["ok"]]
    if bad:
        raise RuntimeError(f"device registration failed: {bad[:2]}")
    return devs


def sign_streams(
    c: TestConsortium, devs: list[TestDevice], per_dev: int, readings: int, t0: int, conns: int
) -> list[list[bytes]]:
    """Pre-signed txs, one stream per connection; a device's txs all go through one stream, in nonce order."""
    streams: list[list[bytes]] = [[] for _ in range(conns)]
    for i, d in enumerate(devs):
        for j in range(per_dev):
            base = t0 + j * readings * 10
            raw = d.batch(
                c.chain,
                [(base + k * 10, "energy.import", j * readings + k, "Wh") for k in range(readings)],
            )
            streams[i % conns].append(raw)
    return streams


async def throughput(urls: list[str], per_conn: list[list[bytes]], chunk: int) -> tuple[float, int]:
    """Each connection sends its txs in order, ``chunk`` per request; its last request waits for the commit.
    Connections are spread over ``urls``. Returns (seconds, txs not accepted or not committed)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        t0 = time.perf_counter()

        async def run(i: int, txs: list[bytes]) -> int:
            url = urls[i % len(urls)]
            bad = 0
            for k in range(0, len(txs), chunk):
                part = txs[k : k + chunk]
                last = k + chunk >= len(txs)
                res = await post_batch(s, url, part, wait=last)
                rej = [x for x in res if x["status"] not in ("pending", "committed")]
                if rej and not bad:
                    log(f"first refusal: {rej[0]}")
                bad += len(rej)
                if last:
                    bad += sum(1 for x in res if x["status"] != "committed")
            return bad

        bads = await asyncio.gather(*(run(i, t) for i, t in enumerate(per_conn)))
        dt = time.perf_counter() - t0
    if sum(bads):
        log(f"warning: {sum(bads)} txs not accepted/committed")
    return dt, sum(bads)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
