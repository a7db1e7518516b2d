"""Open-loop offered-rate steps, shared by the CEMP cluster and its PySyncObj peer (bench/cluster.py).

A step offers ``rate`` ops/s for ``seconds``: every 20 ms a batch is due, per node, whatever happened to the
earlier ones (open loop: a slow system does not slow the offer down). Each op ends as ``committed`` (the node
said so, with its place in the log), ``refused`` or ``timeout`` (no commit within the wait, or no answer); its
latency runs from the moment its batch was due to the moment its answer arrived, so client lag counts too.
Nothing is dropped: the p50/p99 are over every offered op, those that did not commit counting as infinitely slow
(a step where more than 1 % did not commit has no finite p99).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
from common import log

from node.client import NodeClient
from tests.support.testing import TestConsortium, TestDevice

TICK_S = 0.02
SUSTAIN_P99_MS = 500.0

Send = Callable[[int, list[bytes]], Awaitable[list[str]]]
"""``send(node_index, ops)`` -> one of ``committed``/``refused``/``timeout`` per op, in order."""


@dataclass
class Step:
    offered_per_s: float
    seconds: float
    offered: int = 0
    committed: int = 0
    refused: int = 0
    timeouts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    load_avg_1m: float = 0.0

    def pct(self, p: float) -> float:
        """Percentile over every offered op (not committed = infinitely slow)."""
        if not self.offered:
            return math.nan
        lat = sorted(self.latencies_ms)
        k = max(0, math.ceil(self.offered * p) - 1)
        return lat[k] if k < len(lat) else math.inf

    @property
    def sustained(self) -> bool:
        return self.committed == self.offered and self.pct(0.99) < SUSTAIN_P99_MS

    def json(self) -> dict[str, object]:
        def num(x: float) -> float | None:
            return round(x, 2) if math.isfinite(x) else None

        return {
            "offered_per_s": round(self.offered_per_s),
            "offered": self.offered,
            "committed": self.committed,
            "refused": self.refused,
            "timeouts": self.timeouts,
            "committed_per_s": round(self.committed / self.wall_s) if self.wall_s else 0,
            "p50_ms": num(self.pct(0.50)),
            "p99_ms": num(self.pct(0.99)),
            "sustained": self.sustained,
            "load_avg_1m": round(self.load_avg_1m, 2),
        }


async def offer(
    send: Send, ops: Sequence[Sequence[list[bytes]]], rate: float, seconds: float, grace_s: float
) -> Step:
    """``ops[tick][node]``: the ops due at each tick for each node (pre-built). Waits for every answer, at most
    ``grace_s`` after the last tick; anything unanswered then is a timeout."""
    step = Step(rate, seconds, load_avg_1m=os.getloadavg()[0])
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(due: float, node: int, batch: list[bytes]) -> None:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            outs = await send(node, batch)
        except Exception:  # no answer: every op in it timed out (counted, not hidden)
            outs = ["timeout"] * len(batch)
        done = loop.time()
        for o in outs:
            if o == "committed":
                step.committed += 1
                step.latencies_ms.append((done - due) * 1000)
            elif o == "refused":
                step.refused += 1
            else:
                step.timeouts += 1

    tasks = []
    for i, per_node in enumerate(ops):
        for node, batch in enumerate(per_node):
            if batch:
                step.offered += len(batch)
                tasks.append(asyncio.create_task(one(start + i * TICK_S, node, batch)))
    t0 = time.perf_counter()
    _, pending = await asyncio.wait(tasks, timeout=seconds + 0.1 + grace_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    step.wall_s = time.perf_counter() - t0
    answered = step.committed + step.refused + step.timeouts
    step.timeouts += step.offered - answered  # cancelled: never answered
    return step


def curve_summary(steps: list[Step]) -> dict[str, object]:
    """The highest offered rate sustained (every op committed, p99 < 500 ms) and its figures."""
    ok = [s for s in steps if s.sustained]
    best = max(ok, key=lambda s: s.offered_per_s) if ok else None
    return {
        "sustained_offered_per_s": round(best.offered_per_s) if best else 0,
        "sustained_committed_per_s": round(best.committed / best.wall_s) if best else 0,
        "sustained_p50_ms": round(best.pct(0.5), 2) if best else None,
        "sustained_p99_ms": round(best.pct(0.99), 2) if best else None,
        "curve": [s.json() for s in steps],
    }


def headline(steps: list[Step]) -> dict[str, object]:
    """``curve_summary`` plus the keys issues 2-5 named: ``tx_per_s``, ``p50_ms``, ``p99_ms`` (at the highest rate
    sustained), ``offered_per_s``, and every step's ``timeouts`` and ``refused`` added up."""
    summary = curve_summary(steps)
    return {
        **summary,
        "tx_per_s": summary["sustained_committed_per_s"],
        "offered_per_s": summary["sustained_offered_per_s"],
        "p50_ms": summary["sustained_p50_ms"],
        "p99_ms": summary["sustained_p99_ms"],
        "timeouts": sum(s.timeouts for s in steps),
        "refused": sum(s.refused for s in steps),
    }


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    p = str(path.resolve())
    best, kind = "", "unknown"
    with open("/proc/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace("\\040", " ")
            if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


WAIT_MS = 5_000
PER_NODE_CONNS = 48
"""Connections the load generator opens to one node: below the node's 64 per client address (httpguard), so
the follower's block listing that checks the counts still gets through; later requests queue in the client
(their wait counts in their latency)."""


async def settle(urls: list[str], timeout_s: float = 20.0) -> None:
    """Wait until every node has applied the same height (a step starts with no node behind, so a device's next
    tx sent to a follower is not refused as a nonce gap because of the previous step's lag)."""
    deadline = time.monotonic() + timeout_s
    while True:
        heights = []
        for u in urls:
            async with NodeClient(u) as nc:
                heights.append(int((await nc.status())["height"]))
        if len(set(heights)) == 1 or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


async def chain_txs(url: str, above: int, attempts: int = 5) -> tuple[int, int]:
    """(height, txs in the blocks above ``above``) as a node reports them (a dropped connection is retried)."""
    for i in range(attempts):
        try:
            return await _chain_txs(url, above)
        except aiohttp.ClientError as e:
            log(f"reading blocks from {url}: {e!r}; again")
            if i == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def _chain_txs(url: str, above: int) -> tuple[int, int]:
    total = 0
    async with NodeClient(url) as nc:
        top = int((await nc.status())["height"])
        before = top + 1
        while before - 1 > above:
            page = await nc.get("/v1/blocks", before=before, limit=200)
            for b in page["blocks"]:
                if int(b["height"]) > above:
                    total += int(b["tx_count"])
            if not page["blocks"]:
                break
            before = int(page["blocks"][-1]["height"])
    return top, total


def cemp_sender(session: aiohttp.ClientSession, urls: list[str]) -> Any:
    refusals: list[dict[str, Any]] = []

    async def send(node: int, raws: list[bytes]) -> list[str]:
        async with session.post(
            f"{urls[node]}/v1/txs/batch",
            data=msgpack.packb(raws, use_bin_type=True),
            params={"wait": "commit", "timeout_ms": str(WAIT_MS)},
            headers={"Content-Type": "application/msgpack"},
        ) as r:
            if r.status != 200:
                return ["refused"] * len(raws)
            res = (await r.json())["results"]
        out = []
        for x in res:
            st = x["status"]
            if st not in ("committed", "pending") and not refusals:
                refusals.append(x)
                log(f"first refusal: {x}")
            if st == "committed":
                out.append("committed" if x["result"]["ok"] else "refused")
            elif st == "pending":
                out.append("timeout")
            else:
                out.append("refused")
        return out

    return send


def cemp_ops(
    c: TestConsortium, devs: list[TestDevice], rate: float, seconds: float, t0_ms: int, nodes: int
) -> list[list[list[bytes]]]:
    """Single-reading txs for one step: ``ops[tick][node]``; device i always goes to node i % nodes."""
    per_tick = max(1, round(rate * TICK_S))
    ticks = int(seconds / TICK_S)
    ops: list[list[list[bytes]]] = []
    k = 0
    for _ in range(ticks):
        per_node: list[list[bytes]] = [[] for _ in range(nodes)]
        for _ in range(per_tick):
            i = k % len(devs)
            k += 1
            per_node[i % nodes].append(devs[i].batch(c.chain, [(t0_ms + k, "power", k, "W")]))
        ops.append(per_node)
    return ops


async def cemp_curve(
    c: TestConsortium,
    urls: list[str],
    check_url: str,
    devs: list[TestDevice],
    rates: list[float],
    seconds: float,
    t0_ms: int,
) -> list[Step]:
    """The offered-rate curve of single-reading txs spread over ``urls``; every step's committed count is
    checked against the txs in the blocks ``check_url`` (a follower) holds."""
    steps: list[Step] = []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=WAIT_MS / 1000 + 30),
        connector=aiohttp.TCPConnector(limit=512, limit_per_host=PER_NODE_CONNS),
    ) as s:
        send = cemp_sender(s, urls)
        for rate in rates:
            ops = cemp_ops(c, devs, rate, seconds, t0_ms, len(urls))
            t0_ms += 5_000_000  # all steps stay in the past: the curve starts 20e6 ms after now - 1 day
            await settle(urls)
            h0, _ = await chain_txs(check_url, 1 << 62)
            step = await offer(send, ops, rate, seconds, grace_s=WAIT_MS / 1000 + 5)
            await asyncio.sleep(1.0)  # the follower applies the last blocks
            _, on_chain = await chain_txs(check_url, h0)
            j = step.json()
            j["chain_txs"] = on_chain
            log(f"cemp {json.dumps(j)}")
            if on_chain < step.committed:
                raise SystemExit(f"{step.committed} txs answered committed but {on_chain} in the blocks")
            steps.append(step)
            if step.committed < 0.5 * step.offered or step.pct(0.5) > 2000:
                log("cemp: far past saturation; no higher rates")
                break
            # Let a backlog drain before the next step.
            await asyncio.sleep(2.0)
    return steps


MEMORY_FS = frozenset({"tmpfs", "ramfs", "devtmpfs", "overlay-tmpfs"})
