"""``cemp demo``: a local three-org consortium on this machine with simulated, device-signed readings.

Until the collector lands, a small built-in generator stands in for the seven sources of the Hohhot
case: energy meters on the core heating unit, the pipe heating unit and the thermal storage tank, the
plate heat exchanger's temperature module, the pump room and the electrical control system. Each device
has its own Ed25519 key, registered on chain by the building owner's admin key, and signs its own batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from node.chain import sign_tx
from node.client import NodeClient
from node.crypto import KeyPair, read_key_file, write_key_file
from node.errors import CempError
from node.genesis import genesis_from_toml, write_genesis
from node.types import (
    DeviceRegistration,
    Handle,
    Nonce,
    PublicKey,
    Reading,
    ReadingBatch,
    ShortStr,
    SignedInt,
    TimestampMs,
)

ORGS = [
    ("owner", "owner", "88.123.45"),
    ("equipment", "equipment", "88.123.46"),
    ("regulator", "regulator", "88.123.47"),
]


@dataclass(frozen=True)
class DemoDevice:
    handle: str
    name: str
    kind: str
    subsystem: str
    quantities: tuple[tuple[str, str], ...]  # (quantity, unit)


DEVICES = [
    DemoDevice(
        "88.123.45/101.1.1",
        "core heating unit meter",
        "meter.energy",
        "core-heating",
        (("energy.import", "Wh"), ("power", "W")),
    ),
    DemoDevice(
        "88.123.45/101.1.2",
        "pipe heating unit meter",
        "meter.energy",
        "pipe-heating",
        (("energy.import", "Wh"), ("power", "W")),
    ),
    DemoDevice(
        "88.123.45/101.1.3",
        "thermal storage tank meter",
        "meter.energy",
        "storage-tank",
        (("energy.import", "Wh"), ("power", "W")),
    ),
    DemoDevice(
        "88.123.45/102.1.1",
        "plate heat exchanger temperatures",
        "sensor.temperature",
        "heat-exchanger",
        (("temp.supply", "mdegC"), ("temp.return", "mdegC")),
    ),
    DemoDevice(
        "88.123.45/103.1.1",
        "pump room (control system API)",
        "gateway.control",
        "pump-room",
        (("energy.import", "Wh"), ("flow", "L/h")),
    ),
    DemoDevice(
        "88.123.45/103.1.2",
        "electrical control system (API)",
        "gateway.control",
        "electrical",
        (("energy.import", "Wh"), ("power", "W")),
    ),
]


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


NODES = [("owner-1", "owner"), ("equipment-1", "equipment"), ("regulator-1", "regulator")]
LAYOUT = "cemp-demo-3nodes-v1"


def prepare(base: Path, port: int) -> list[tuple[str, Path, int]]:
    """Keys, consortium.toml, genesis and one config per node under ``base``.

    Returns (node id, config path, API port) for the owner's, the equipment firm's and the regulator's node.
    """
    marker = base / "LAYOUT"
    if base.exists() and (not marker.exists() or marker.read_text().strip() != LAYOUT):
        _log(f"{base} holds an older demo layout; starting afresh")
        shutil.rmtree(base)
    keys = base / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    marker.write_text(LAYOUT + "\n")

    def key(name: str) -> Path:
        p = keys / f"{name}.key"
        if not p.exists():
            write_key_file(p, KeyPair.generate(), label=name)
        return p

    lines = ['chain_id = "cemp-demo-1"', "", "[params]", "block_interval_ms = 20", ""]
    for name, role, prefix in ORGS:
        key(f"{name}.admin")
        lines += [
            "[[orgs]]",
            f'name = "{name}"',
            f'role = "{role}"',
            f'admin_key = "keys/{name}.admin.key"',
            f'prefix = "{prefix}"',
            "",
        ]
    out = []
    for i, (nid, org) in enumerate(NODES):
        key(f"{nid}.node")
        lines += [
            "[[nodes]]",
            f'id = "{nid}"',
            f'org = "{org}"',
            f'key = "keys/{nid}.node.key"',
            f'address = "127.0.0.1:{port + i}"',
            "",
        ]
        cfg = base / f"{nid}.toml"
        cfg.write_text(
            f'node_id = "{nid}"\ndata_dir = "data/{nid}"\nkey_file = "keys/{nid}.node.key"\n'
            f'genesis = "genesis.cemp"\n\n[api]\nhost = "127.0.0.1"\nport = {port + i}\n'
        )
        out.append((nid, cfg, port + i))
    for d in DEVICES:
        key("device-" + d.handle.replace("/", "_"))
    consortium = base / "consortium.toml"
    if not consortium.exists():
        consortium.write_text("\n".join(lines))
    genesis = base / "genesis.cemp"
    if not genesis.exists():
        write_genesis(genesis_from_toml(consortium), genesis)
    return out


class Generator:
    """Device-signed readings on a simple Hohhot heating-season load model."""

    def __init__(self, client: NodeClient, base: Path, chain_id: str, period_s: float = 2.0) -> None:
        self.client = client
        self.base = base
        self.chain_id = chain_id
        self.period_s = period_s
        self.keys = {
            d.handle: read_key_file(base / "keys" / f"device-{d.handle.replace('/', '_')}.key")
            for d in DEVICES
        }
        self.seq: dict[str, int] = {}
        self.nonce: dict[str, int] = {}
        self.counter_wh: dict[str, int] = {}
        self.sent = 0

    async def register(self) -> None:
        admin = read_key_file(self.base / "keys" / "owner.admin.key")
        nonce = await self.client.nonce(admin.public)
        for d in DEVICES:
            try:
                info = await self.client.get(f"/v1/devices/{d.handle}")
                self.seq[d.handle] = int(info["last_seq"])
                continue
            except CempError:
                pass
            nonce += 1
            raw, _ = sign_tx(
                admin,
                self.chain_id,
                "device.register",
                nonce,
                DeviceRegistration(
                    Handle(d.handle),
                    PublicKey(self.keys[d.handle].public),
                    ShortStr(d.kind),
                    ShortStr(d.subsystem),
                ),
            )
            res = await self.client.submit(raw, wait=True)
            if not res["result"]["ok"]:
                raise RuntimeError(f"registering {d.handle} failed: {res['result']['reason']}")
            self.seq[d.handle] = 0
            _log(f"registered {d.handle} ({d.name}) at height {res['height']}")
        for d in DEVICES:
            self.nonce[d.handle] = await self.client.nonce(self.keys[d.handle].public)
            self.counter_wh[d.handle] = 0

    def _values(self, d: DemoDevice, t: float) -> list[tuple[str, str, int]]:
        day = (t / 86400) % 1.0
        outdoor = -12 + 7 * math.sin(2 * math.pi * (day - 0.375))  # degC, coldest before dawn
        valley = day < 7 / 24 or day >= 23 / 24  # night valley tariff: storage charges
        load_w = max(
            0.0, 50 * 100_000 * 0.45 * (18 - outdoor) / 35
        )  # W for 100,000 m2, under half of 50 W/m2
        share = {
            "core-heating": 0.5,
            "pipe-heating": 0.2,
            "storage-tank": 0.9 if valley else 0.05,
            "pump-room": 0.03,
            "electrical": 0.02,
        }.get(d.subsystem, 0.0)
        out = []
        power = int(load_w * share)
        for q, u in d.quantities:
            if q == "energy.import":
                self.counter_wh[d.handle] += int(power * self.period_s / 3600)
                out.append((q, u, self.counter_wh[d.handle]))
            elif q == "power":
                out.append((q, u, power))
            elif q == "temp.supply":
                out.append((q, u, int((45 + 0.4 * (18 - outdoor)) * 1000)))
            elif q == "temp.return":
                out.append((q, u, int((35 + 0.25 * (18 - outdoor)) * 1000)))
            elif q == "flow":
                out.append((q, u, int(120_000 + 1_500 * (18 - outdoor))))
        return out

    async def tick(self) -> None:
        now_ms = int(time.time() * 1000)
        raws = []
        for d in DEVICES:
            rs = []
            for q, u, v in self._values(d, now_ms / 1000):
                self.seq[d.handle] += 1
                rs.append(
                    Reading(
                        Nonce(self.seq[d.handle]),
                        TimestampMs(now_ms),
                        ShortStr(q),
                        SignedInt(v),
                        ShortStr(u),
                        0,
                    )
                )
            self.nonce[d.handle] += 1
            raw, _ = sign_tx(
                self.keys[d.handle],
                self.chain_id,
                "readings",
                self.nonce[d.handle],
                ReadingBatch(Handle(d.handle), tuple(rs)),
            )
            raws.append(raw)
            self.sent += len(rs)
        results = await self.client.submit_batch(raws, wait=True)
        bad = [r for r in results if r.get("status") != "committed" or not r["result"]["ok"]]
        if bad:
            _log(f"warning: {len(bad)} batches not committed: {bad[0]}")


async def run_demo(base: Path, port: int, duration_s: float | None, fresh: bool) -> int:
    if fresh and base.exists():
        shutil.rmtree(base)
    nodes = prepare(base, port)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for nid, cfg, _ in nodes:
        logf = open(base / f"{nid}.log", "ab")  # noqa: SIM115  closed in finally
        logs.append(logf)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "node.cli", "node", "--config", str(cfg)],
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        )
    urls = [f"http://127.0.0.1:{p}" for _, _, p in nodes]
    try:
        async with NodeClient(urls[0]) as client:
            for _ in range(200):
                dead = [n for (n, _, _), p in zip(nodes, procs, strict=True) if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"node {dead[0]} exited; see {base / (dead[0] + '.log')}")
                try:
                    st = await client.status()
                    if st.get("leader"):
                        break
                except Exception:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the consortium did not elect a leader within 20 s")
            gen = Generator(client, base, st["chain_id"])
            await gen.register()
            lines = [
                "",
                "CEMP demo is running: three nodes (owner, equipment firm, regulator) and six device-signed sources.",
            ]
            for (nid, _, _port), u in zip(nodes, urls, strict=True):
                lines.append(f"  {nid:<12} {u}/v1/status   data {(base / 'data' / nid).resolve()}")
            u = urls[0]
            lines += [
                f"  blocks       {u}/v1/blocks   (OpenAPI: {u}/openapi.json, metrics: {u}/metrics)",
                f"  readings     {u}/v1/devices/{DEVICES[0].handle}/readings",
                f"  hourly       {u}/v1/devices/{DEVICES[0].handle}/hourly",
                f"  logs         {base.resolve()}/<node>.log",
                f"  verify       cemp verify --data-dir {(base / 'data' / nodes[2][0]).resolve()}  (after stopping)",
                "Readings go to the nodes in turn; followers forward them to the leader. Press Ctrl-C to stop.",
                "",
            ]
            print("\n".join(lines), flush=True)
            t_end = None if duration_s is None else time.monotonic() + duration_s
            last_report = 0.0
            turn = 0
            while t_end is None or time.monotonic() < t_end:
                t = time.monotonic()
                gen.client = NodeClient(urls[turn % len(urls)], session=client.session)
                turn += 1
                try:
                    await gen.tick()
                except CempError as e:
                    _log(f"warning: {e.message}")
                if t - last_report >= 10:
                    st = await client.status()
                    _log(
                        f"height {st['height']}  leader {st['leader']} (term {st['term']})  readings sent {gen.sent}  "
                        f"app hash {st['app_hash'][:16]}"
                    )
                    last_report = t
                await asyncio.sleep(max(0.0, gen.period_s - (time.monotonic() - t)))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in logs:
            f.close()
    return 0


def main(base: Path, port: int, duration_s: float | None, fresh: bool) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_demo(base, port, duration_s, fresh))
    return 0


__all__ = ["DEVICES", "main", "prepare"]
