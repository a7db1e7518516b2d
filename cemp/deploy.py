"""``cemp deploy``: the files a containerised consortium needs (used by ``docker/entrypoint.sh``).

``cemp deploy init --dir D`` writes, once (an existing genesis is never replaced): the orgs' admin keys, the three
nodes' keys, the device keys of the Hohhot plant, ``consortium.toml`` with the node addresses given by
``CEMP_CONSORTIUM_ADDRESSES`` (``owner-1=owner-1:7001,...``; compose service names by default), ``genesis.cemp``
and ``collector.toml`` (the plant simulators' Modbus gateway and control-system API, addressed by
``CEMP_SIM_MODBUS`` and ``CEMP_SIM_CONTROL_API``), and ``tls/``: a consortium CA (``ca.crt``, ``ca.key``) and each
node's certificate and key (``<node>.crt``, ``<node>.key``; ``cemp.tlscerts``) naming the node id, the host of its
address, ``localhost`` and ``127.0.0.1`` (the health check). A node uses them when ``CEMP_TLS_CERT``,
``CEMP_TLS_KEY`` and ``CEMP_TLS_CA`` point at them (``docker/compose.yaml`` does).

``cemp deploy register --dir D --nodes URL,...`` registers the plant's devices under the owner's prefix, signed
by the owner's admin key (skipping those already registered), waiting until a node answers.

This is a single-host demonstration deployment: one volume holds every org's keys. In production each org runs
its own node with only its own key (see ``docs/operations.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from cemp.demo import DEVICES, HTTP_FIELDS, NODES, ORGS, device_key_path, register_devices
from cemp.tlscerts import make_ca, make_cert
from node.crypto import KeyPair, write_key_file
from node.genesis import genesis_from_toml, write_genesis

DEFAULT_ADDRESSES = ",".join(f"{nid}={nid}:7001" for nid, _ in NODES)
MODBUS_PLAN = {  # unit id and register profile of each meter on the simulated Modbus gateway
    "core_unit": (1, "schneider_pm5xxx"),
    "pipe_heater": (2, "acrel_dtsd1352"),
    "storage_tank": (3, "acrel_adl400"),
    "hx_temps": (10, "hx_temp_4ch"),
    "heat_meter": (11, "heat_meter_modbus"),
    "outdoor": (12, "outdoor_temp_1ch"),
}
COUNTERS = ("energy.import", "energy.feeder.core", "energy.feeder.pipe", "energy.feeder.tank", "heat.energy")


def _addresses(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in spec.split(","):
        nid, sep, addr = part.strip().partition("=")
        if not sep or not addr:
            raise SystemExit(f"CEMP_CONSORTIUM_ADDRESSES: {part!r} is not node_id=host:port")
        out[nid] = addr
    missing = {nid for nid, _ in NODES} - set(out)
    if missing:
        raise SystemExit(f"CEMP_CONSORTIUM_ADDRESSES lacks {', '.join(sorted(missing))}")
    return out


def init(
    base: Path, addresses: dict[str, str], modbus: str, control: str, nodes: list[str]
) -> dict[str, object]:
    keys = base / "keys"
    keys.mkdir(parents=True, exist_ok=True)

    def key(name: str) -> str:
        p = keys / f"{name}.key"
        if not p.exists():
            write_key_file(p, KeyPair.generate(), label=name)
        return f"keys/{name}.key"

    lines = ['chain_id = "cemp-hohhot-1"', "", "[params]", "block_interval_ms = 200", ""]
    for name, role, prefix in ORGS:
        lines += ["[[orgs]]", f'name = "{name}"', f'role = "{role}"', f'admin_key = "{key(name + ".admin")}"']
        lines += [f'prefix = "{prefix}"', ""]
    for nid, org in NODES:
        lines += ["[[nodes]]", f'id = "{nid}"', f'org = "{org}"', f'key = "{key(nid + ".node")}"']
        lines += [f'address = "{addresses[nid]}"', ""]
    tls = base / "tls"
    make_ca(tls)
    for nid, _ in NODES:
        if not (tls / f"{nid}.crt").exists():
            host = addresses[nid].rpartition(":")[0]
            make_cert(tls, nid, [host, "localhost", "127.0.0.1"], tls)
    genesis = base / "genesis.cemp"
    if not genesis.exists():
        (base / "consortium.toml").write_text("\n".join(lines))
        write_genesis(genesis_from_toml(base / "consortium.toml"), genesis)
    mhost, _, mport = modbus.rpartition(":")
    col = [
        "[agent]",
        'data_dir = "collector-data"  # beside this file; a container sets CEMP_COLLECT_DATA_DIR',
        f"nodes = {json.dumps(nodes)}",
        'chain_id = "cemp-hohhot-1"',
        "",
    ]
    for q in COUNTERS:
        col += [f'[quality.quantities."{q}"]', "counter = true"]
    col.append("")
    for d in DEVICES:
        kind, _, ref = d.source.partition(":")
        if kind not in ("modbus", "http"):
            continue  # the DL/T 645 gateway and the bill scanner run in the demo only
        col += ["[[devices]]", f'handle = "{d.handle}"', f'key_file = "{device_key_path(base, d.handle)}"']
        col += ["poll_interval_s = 10", "[devices.source]"]
        if kind == "modbus":
            uid, prof = MODBUS_PLAN[ref]
            col += ['type = "modbus"', f'host = "{mhost}"', f"port = {int(mport)}", f"unit_id = {uid}"]
            col += [f'profile = "{prof}"', "timeout_s = 3"]
        else:
            col += [
                'type = "http"',
                f'url = "http://{control}/api/v1/{ref}"',
                'auth_token_env = "CEMP_CONTROL_TOKEN"',
            ]
            col += ["timeout_s = 3", "fields = ["]
            col += [
                f'  {{ path = "{p}", quantity = "{q}", unit = "{u}", scale = {s} }},'
                for p, q, u, s in HTTP_FIELDS[ref]
            ]
            col.append("]")
        col.append("")
    for d in DEVICES:  # every registered device needs a key, also those the compose collector does not read
        if not device_key_path(base, d.handle).exists():
            write_key_file(device_key_path(base, d.handle), KeyPair.generate())
    (base / "collector.toml").write_text("\n".join(col))
    return {"dir": str(base), "genesis": str(genesis), "nodes": addresses, "tls_ca": str(tls / "ca.crt")}


async def register(base: Path, urls: list[str], timeout_s: float) -> int:
    from node.chain import ChainRef
    from node.client import NodeClient

    end = time.monotonic() + timeout_s
    while True:
        for url in urls:
            try:
                async with NodeClient(url) as c:
                    st = await c.status()
                    if not st.get("leader"):
                        raise OSError("no leader yet")
                    await register_devices(c, base, ChainRef.from_status(st))
                    return 0
            except Exception as e:  # not up yet; any node will do
                last = f"{url}: {e}"
        if time.monotonic() > end:
            print(f"register: no node answered within {timeout_s:.0f} s ({last})", file=sys.stderr)
            return 1
        await asyncio.sleep(1)


def cmd_deploy(args: argparse.Namespace) -> int:
    base = Path(args.dir)
    nodes = [u for u in args.nodes.split(",") if u]
    if args.deploy_cmd == "init":
        out = init(
            base,
            _addresses(os.environ.get("CEMP_CONSORTIUM_ADDRESSES", DEFAULT_ADDRESSES)),
            os.environ.get("CEMP_SIM_MODBUS", "plant-sim:5020"),
            os.environ.get("CEMP_SIM_CONTROL_API", "control-sim:8088"),
            nodes,
        )
        print(json.dumps(out))
        return 0
    return asyncio.run(register(base, nodes, args.timeout))


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("deploy", help="files and device registration for a containerised consortium")
    d.add_argument("deploy_cmd", choices=["init", "register"])
    d.add_argument("--dir", default=os.environ.get("CEMP_CONSORTIUM_DIR", "/cemp/consortium"))
    d.add_argument(
        "--nodes",
        default=os.environ.get("CEMP_NODES", ",".join(f"http://{nid}:7001" for nid, _ in NODES)),
        help="node API URLs, comma separated (CEMP_NODES)",
    )
    d.add_argument("--timeout", type=float, default=120, help="register: how long to wait for a leader")
    d.set_defaults(func=cmd_deploy)
