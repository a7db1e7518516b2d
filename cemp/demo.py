"""``cemp demo``: a local three-org consortium on this machine fed by simulated devices through the collector.

Three node processes (building owner, equipment firm, regulator); simulators of the Hohhot case's sources driven
by one load model (Modbus energy meters on the core heating unit, the pipe heating unit and the thermal storage
tank, the plate heat exchanger's temperature module, the control system's HTTP API for the pump room and the
electrical system, a DL/T 645 main meter); and the collector agent, which polls them, flags quality, signs each
batch with the device's own key, keeps a durable outbox and submits to any node. Devices are registered on chain
by the owner's admin key.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web

from access import client as access_client
from access.model import DataPolicyPayload, GrantPayload, GrantRevoke
from accounting.client import ensure_site, issue_rating, publish_factor_sets, submit_signed
from accounting.model import BoundaryDevice, BoundaryPayload, SitePayload
from cemp.demowalk import (
    ENGINEER,
    GATEWAY_TARGET_FAILED,
    MANAGER,
    MaintenanceWalk,
    person_key,
    register_people,
)
from collector.agent import AgentSettings, DeviceAgent, SiteAgent
from collector.httpsource import FieldMap, HttpSource
from collector.loadmodel import EnergyCounter, HeatingSiteModel, local_ms
from collector.ocr.billgen import generate as generate_bill
from collector.outbox import Outbox
from collector.quality import AlarmSink, QualityConfig, QuantityRules
from collector.scanner import BillScanner, ScannerSettings
from collector.sim.control_api import ControlApiSim
from collector.sim.feeds import HeatMeterFeed, OutdoorTempFeed
from collector.sim.modbus_sim import Fault
from collector.sim.site import COUNTER_START_WH, HEAT_START_WH, SiteSims, run_site_sims
from collector.sources import Source
from maintenance.watch import Watched
from node.chain import ChainRef, genesis_hash, sign_tx
from node.client import NodeClient
from node.crypto import KeyPair, read_key_file, write_key_file, write_private_file
from node.errors import CempError
from node.genesis import genesis_from_toml, read_genesis, write_genesis
from node.submit import Status, SubmitClient
from node.types import (
    DeviceRegistration,
    Handle,
    Nonce,
    PublicKey,
    Reading,
    ReadingBatch,
    ShortStr,
    SignedInt,
    Text,
    TimestampMs,
)
from resolver.bootstrap import ADMIN_SUFFIX, bootstrap_puts
from resolver.credentials import new_secret

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
    source: str
    """Where its data comes from: a simulated endpoint key (``modbus:...``, ``dlt645:...``, ``http:...``)."""


# The case study's seven sources (table 1 of its source document), each with its own key and handle, plus the
# building's main incoming meter read over DL/T 645 and the outdoor air temperature sensor the energy models use.
DEVICES = [
    DemoDevice(
        "88.123.45/101.1.1",
        "core heating unit energy meter (Modbus, PM5xxx)",
        "meter.energy",
        "core-heating",
        "modbus:core_unit",
    ),
    DemoDevice(
        "88.123.45/101.1.2",
        "pipe heating unit energy meter (Modbus, DTSD1352)",
        "meter.energy",
        "pipe-heating",
        "modbus:pipe_heater",
    ),
    DemoDevice(
        "88.123.45/101.1.3",
        "thermal storage tank energy meter (Modbus, ADL400)",
        "meter.energy",
        "storage-tank",
        "modbus:storage_tank",
    ),
    DemoDevice(
        "88.123.45/102.1.1",
        "plate heat exchanger temperature module (Modbus)",
        "sensor.temperature",
        "heat-exchanger",
        "modbus:hx_temps",
    ),
    DemoDevice(
        "88.123.45/102.2.1",
        "plate heat exchanger heat meter (Modbus)",
        "meter.heat",
        "heat-exchanger",
        "modbus:heat_meter",
    ),
    DemoDevice(
        "88.123.45/103.1.1",
        "pump room (control system HTTP API)",
        "gateway.control",
        "pump-room",
        "http:pump-room",
    ),
    DemoDevice(
        "88.123.45/103.1.2",
        "electrical control system (control system HTTP API)",
        "gateway.control",
        "electrical",
        "http:electrical",
    ),
    DemoDevice(
        "88.123.45/101.2.1",
        "main incoming meter (DL/T 645-2007 via serial gateway)",
        "meter.energy",
        "incoming",
        "dlt645:controls",
    ),
    DemoDevice(
        "88.123.45/107.1.1",
        "outdoor air temperature sensor (Modbus PT100 transmitter, north wall)",
        "sensor.temperature",
        "weather",
        "modbus:outdoor",
    ),
    DemoDevice(
        "88.123.45/104.1.1",
        "electricity bill scanner (offline OCR)",
        "scanner.bill",
        "purchasing",
        "bills:inbox",
    ),
]
SITE_ID = "hohhot-complex"
SITE_BUILDING = "88.123.45/200.1"
# The site's accounting boundary: (subsystem, carrier, counter quantity) of each demo device. The control system's
# HTTP gateways report figures of their own model (their feeders repeat the Modbus meters), so they are context
# only; the DL/T 645 meter reads the electrical control cabinet in the simulated plant, so it is a sub-meter of the
# electrical system and the boundary names no main meter.
BOUNDARY = {
    "88.123.45/101.1.1": ("core-heating", "electricity", "energy.import"),
    "88.123.45/101.1.2": ("pipe-heating", "electricity", "energy.import"),
    "88.123.45/101.1.3": ("storage-tank", "electricity", "energy.import"),
    "88.123.45/101.2.1": ("electrical", "electricity", "energy.import"),
    "88.123.45/102.1.1": ("heat-exchanger", "none", ""),
    "88.123.45/102.2.1": ("heat-exchanger", "heat", "heat.energy"),
    "88.123.45/103.1.1": ("pump-room", "none", ""),
    "88.123.45/103.1.2": ("electrical", "none", ""),
    "88.123.45/107.1.1": ("weather", "none", ""),
}
OUTDOOR = "88.123.45/107.1.1"
"""The site's outdoor air sensor (its boundary's ``weather`` device): the energy models read its hourly means."""
BILL_EVERY_S = 45.0
LEADER_WAIT_S = 90.0
"""How often the demo's "utility" drops a new bill photo into the scanner's inbox."""

HTTP_FIELDS = {
    "pump-room": [
        ("energy_wh", "energy.import", "Wh", 1),
        ("power_w", "power", "W", 1),
        ("flow_m3h", "flow", "L/h", 1000),
        ("supply_temp_c", "temp.supply", "mdegC", 1000),
        ("return_temp_c", "temp.return", "mdegC", 1000),
    ],
    "electrical": [
        ("energy_wh", "energy.import", "Wh", 1),
        ("power_w", "power", "W", 1),
        ("voltage_v", "voltage", "mV", 1000),
        ("feeders.core_heating_wh", "energy.feeder.core", "Wh", 1),
        ("feeders.pipe_heating_wh", "energy.feeder.pipe", "Wh", 1),
        ("feeders.storage_tank_wh", "energy.feeder.tank", "Wh", 1),
    ],
}


class DemoError(Exception):
    """The demo cannot start as asked (the message says what to do instead)."""


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
    genesis_file = base / "genesis.cemp"
    if genesis_file.exists():
        first = read_genesis(genesis_file).nodes[0].address
        if first != f"127.0.0.1:{port}":
            raise DemoError(
                f"{base} was created with the nodes on {first} and the next two ports (the genesis names them); "
                f"resume it with --port {first.rsplit(':', 1)[1]}, or start a new chain with --fresh"
            )
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


def device_key_path(base: Path, handle: str) -> Path:
    return base / "keys" / f"device-{handle.replace('/', '_')}.key"


async def register_devices(client: NodeClient, base: Path, chain: ChainRef) -> None:
    """Register every demo device under the owner's prefix (signed by the owner's admin key), once."""
    admin = read_key_file(base / "keys" / "owner.admin.key")
    nonce = await client.nonce(admin.public)
    for d in DEVICES:
        try:
            await client.get(f"/v1/devices/{d.handle}")
            continue
        except CempError:
            pass
        nonce += 1
        key = read_key_file(device_key_path(base, d.handle))
        raw, _ = sign_tx(
            admin,
            chain,
            "device.register",
            nonce,
            DeviceRegistration(
                Handle(d.handle), PublicKey(key.public), ShortStr(d.kind), ShortStr(d.subsystem)
            ),
        )
        out = await SubmitClient.of(client).submit_signed(raw)
        if not out.ok:
            raise RuntimeError(f"registering {d.handle} failed: {out.reason}")
        _log(f"registered {d.handle}: {d.name}")


def hohhot_site(effective_ms: int) -> tuple[SitePayload, BoundaryPayload]:
    """The case's building (100,000 m² in Hohhot, Mengxi grid) and its boundary over the demo devices."""
    site = SitePayload(
        site_id=ShortStr(SITE_ID),
        version=1,
        name=Text("Hohhot commercial complex (shops, hotel, flats)"),
        floor_area_m2=100_000,
        address=Text("Hohhot, Inner Mongolia"),
        province=ShortStr("Inner Mongolia"),
        grid_region=ShortStr("North China"),
        season_start=ShortStr("10-15"),
        season_end=ShortStr("04-15"),
        utc_offset_min=480,
        building=Handle(SITE_BUILDING),
        utility_accounts=(ShortStr("5127336124"),),
        hdd18_annual=4186,
    )
    devices = tuple(
        BoundaryDevice(Handle(h), ShortStr(sub), ShortStr(carrier), ShortStr(q))
        for h, (sub, carrier, q) in sorted(BOUNDARY.items())
    )
    note = "demo boundary: Modbus sub-meters, the DL/T 645 cabinet meter and the heat meter; no main meter"
    return site, BoundaryPayload(ShortStr(SITE_ID), 1, TimestampMs(effective_ms), devices, None, Text(note))


async def register_site(client: NodeClient, base: Path, chain: ChainRef) -> None:
    """The regulator records the factor sets; the owner records the Hohhot site and its boundary (once)."""
    regulator = read_key_file(base / "keys" / "regulator.admin.key")
    owner = read_key_file(base / "keys" / "owner.admin.key")
    for set_id in await publish_factor_sets(client, regulator, chain):
        _log(f"regulator recorded factor set {set_id}")
    # In force from the start of last year's heating season, so a fast-forwarded season (--season) is inside it.
    year = time.gmtime(time.time() + 8 * 3600).tm_year
    site, boundary = hohhot_site(local_ms(year - 1, 10, 15))
    if await ensure_site(client, owner, chain, site, boundary):
        _log(
            f"owner recorded site {SITE_ID} ({site.floor_area_m2:,} m²) and its boundary over {len(BOUNDARY)} devices"
        )
        return
    # A chain from an earlier demo whose boundary lacks a device added since (the outdoor sensor): a new boundary
    # version from the next hour on (earlier hours keep the old one).
    current = (await client.get(f"/v1/sites/{SITE_ID}"))["boundaries"][-1]
    if {d["handle"] for d in current["devices"]} != set(BOUNDARY):
        nxt = (int(time.time() * 1000) // 3_600_000 + 1) * 3_600_000
        _, b = hohhot_site(nxt)
        b = BoundaryPayload(
            b.site_id, int(current["version"]) + 1, b.effective_from_ms, b.devices, None, b.note
        )
        await submit_signed(client, owner, chain, "boundary", b)
        _log(
            f"owner recorded boundary version {b.version} of {SITE_ID} (now {len(BOUNDARY)} devices) from the next hour"
        )


FAST_FORWARD = {
    "88.123.45/101.1.1": "core_unit",
    "88.123.45/101.1.2": "pipe_heater",
    "88.123.45/101.1.3": "storage_tank",
    "88.123.45/101.2.1": "controls",
    "88.123.45/102.2.1": "heat",
    OUTDOOR: "outdoor",
}
"""Devices a fast-forwarded season fills from the load model (subsystem, the heat meter's delivered heat, or the
outdoor air temperature)."""
FAST_FORWARD_STEP_MS = 900_000


Feed = EnergyCounter | HeatMeterFeed | OutdoorTempFeed
REGISTER_WH = {"core_unit": 1, "pipe_heater": 6000, "storage_tank": 100, "controls": 10, "heat": 1000}
"""Resolution of each simulated meter's energy register (Wh; the pipe heater's DTSD1352 counts 10 Wh on the
secondary side of a 600:1 CT): history written for a meter the collector reads afterwards is floored to it, so
the first live reading never lies below the last history reading."""
HISTORY_DAYS = 35
"""Days of metered history a new demo chain starts with: the expected-consumption model needs 4 weeks to be
fitted and scored on a held-out week before the forecast and the charging plan have something to stand on."""


async def fill_readings(
    client: NodeClient,
    base: Path,
    chain: ChainRef,
    feeds: dict[str, Feed],
    t0: int,
    t1: int,
    resolution_wh: dict[str, int] | None = None,
) -> int:
    """Readings of ``feeds`` every 15 minutes over ``[t0, t1]``, signed by each device's own key and committed in
    batches of 1,000; returns how many. Counter values are floored to ``resolution_wh[handle]`` when given."""
    res = resolution_wh or {}
    keys = {h: read_key_file(device_key_path(base, h)) for h in feeds}
    nonces = {h: int((await client.get(f"/v1/nonces/{keys[h].public.hex()}"))["next"]) for h in feeds}
    seqs = dict.fromkeys(feeds, 0)
    pending: dict[str, list[Reading]] = {h: [] for h in feeds}
    raws: list[bytes] = []
    sealed = [0]

    def seal(h: str) -> None:
        raw, _ = sign_tx(keys[h], chain, "readings", nonces[h], ReadingBatch(Handle(h), tuple(pending[h])))
        nonces[h] += 1
        raws.append(raw)
        sealed[0] += len(pending[h])
        pending[h] = []

    for ts in range(t0, t1 + 1, FAST_FORWARD_STEP_MS):
        for h, c in feeds.items():
            unit = "Wh"
            if isinstance(c, HeatMeterFeed):
                q, v = "heat.energy", c.values(ts)["heat.energy"]
            elif isinstance(c, OutdoorTempFeed):
                q, v, unit = "temp.outdoor", c.values(ts)["temp.outdoor"], "mdegC"
            else:
                q, v = "energy.import", c.at(ts)
            if unit == "Wh":
                v -= v % res.get(h, 1)
            seqs[h] += 1
            pending[h].append(
                Reading(Nonce(seqs[h]), TimestampMs(ts), ShortStr(q), SignedInt(v), ShortStr(unit), 0)
            )
            if len(pending[h]) == 1000:
                seal(h)
        if len(raws) >= 40:
            await _submit_all(client, raws)
            raws = []
        await asyncio.sleep(0)
    for h in feeds:
        if pending[h]:
            seal(h)
    await _submit_all(client, raws)
    return sealed[0]


async def commission_history(
    client: NodeClient, base: Path, chain: ChainRef, days: int = HISTORY_DAYS
) -> bool:
    """A new demo chain starts with the last ``days`` days of its meters, heat meter and outdoor sensor (the load
    model every 15 minutes, signed by each device's own key), as if the collector had been reading them since.

    The simulated meters' registers are commissioned at the start of that history (``sims/counters_since_ms``,
    written before anything is sent), so the live readings continue the same counters: no counter goes back. Runs
    only when none of those devices has readings yet; returns whether it ran."""
    for h in FAST_FORWARD:
        if (await client.get(f"/v1/devices/{h}"))["readings"]:
            return False
    now = int(time.time() * 1000)
    since_file = base / "sims" / "counters_since_ms"
    if since_file.exists():
        t0 = int(since_file.read_text().strip())
    else:
        t0 = (now - days * 86_400_000) // FAST_FORWARD_STEP_MS * FAST_FORWARD_STEP_MS
        since_file.parent.mkdir(parents=True, exist_ok=True)
        since_file.write_text(f"{t0}\n")
    t1 = now // FAST_FORWARD_STEP_MS * FAST_FORWARD_STEP_MS - FAST_FORWARD_STEP_MS
    if t1 - t0 < 28 * 86_400_000:
        _log(f"the meters were commissioned at {t0} ms, less than 4 weeks ago: no history written")
        return False
    model = HeatingSiteModel(seed=1)  # the simulators' model (run_site_sims' default seed)
    feeds: dict[str, Feed] = {
        h: HeatMeterFeed(model, t0, HEAT_START_WH)
        if sub == "heat"
        else OutdoorTempFeed(model)
        if sub == "outdoor"
        else EnergyCounter(model, sub, t0, COUNTER_START_WH[sub])
        for h, sub in FAST_FORWARD.items()
    }
    res = {h: REGISTER_WH[sub] for h, sub in FAST_FORWARD.items() if sub in REGISTER_WH}
    _log(f"new chain: writing the last {(t1 - t0) / 86_400_000:.0f} days of the meters and the outdoor sensor "
         "(load model, every 15 min, each signed by its device) so the models have history to learn from ...")  # fmt: skip
    n = await fill_readings(client, base, chain, feeds, t0, t1, res)
    _log(f"history: {n:,} readings on chain")
    return True


async def fast_forward_season(client: NodeClient, base: Path, chain: ChainRef, season: str) -> bool:
    """Fill a past heating season (``2025/26``) with the load model's readings every 15 minutes, signed by each
    device's own key (energy counters of the Modbus and DL/T 645 meters, the heat meter's heat counter), then
    record the season's carbon-efficiency rating. Runs only on devices that have no readings yet (a fresh demo):
    the collector agent continues their sequence numbers afterwards. Returns whether it ran."""
    start_year = int(season[:4])
    t0, t1 = local_ms(start_year, 10, 15), local_ms(start_year + 1, 4, 16)
    for h in FAST_FORWARD:
        if (await client.get(f"/v1/devices/{h}"))["readings"]:
            _log(
                f"season {season}: {h} already has readings; fast-forward runs on a fresh demo only (--fresh)"
            )
            return False
    model = HeatingSiteModel(seed=1)
    feeds: dict[str, Feed] = {
        h: HeatMeterFeed(model, t0, 0)
        if sub == "heat"
        else OutdoorTempFeed(model)
        if sub == "outdoor"
        else EnergyCounter(model, sub, t0, 0)
        for h, sub in FAST_FORWARD.items()
    }
    _log(f"fast-forwarding heating season {season} from the load model (readings every 15 min) ...")
    n = await fill_readings(client, base, chain, feeds, t0, t1)
    _log(f"season {season}: {n:,} readings on chain")
    owner = read_key_file(base / "keys" / "owner.admin.key")
    label = f"{season}-season"
    r = await issue_rating(client, owner, chain, SITE_ID, label)
    inv = await client.get(f"/v1/sites/{SITE_ID}/inventory", period=label)
    k = await client.get(f"/v1/sites/{SITE_ID}/kpis", period=label)
    t = inv["site_total"]
    _log(
        f"season {label}: electricity {t['energy_wh'] / 1e6:,.1f} MWh, heat {t['heat_wh'] / 1e6:,.1f} MWh, "
        f"CO2 {t['co2_location_t']} t location-based / {t['co2_market_t']} t market-based; "
        f"heat {k['power']['heat_avg_w_per_m2']} W/m2 average vs 50; avoided vs gas {k['avoided_tco2']['vs_gas_location']} t "
        f"(location); grade {r['grade_location']} (K {r['k_location']}) recorded on chain"
    )
    _log(await season_model_line(client, t0, t1))
    return True


async def season_model_line(client: NodeClient, t0: int, t1: int) -> str:
    """Fit the site's expected-consumption models on the season's signed readings: hourly electricity of the
    boundary's meters against the outdoor sensor's hourly mean temperature (both from the chain)."""
    first = time.strftime("%Y-%m-%d", time.gmtime(t0 / 1000 + 8 * 3600))
    last = time.strftime("%Y-%m-%d", time.gmtime((t1 - 1) / 1000 + 8 * 3600))
    try:
        w = await client.get(f"/v1/sites/{SITE_ID}/weather", **{"from": first, "to": last})
    except CempError as e:
        return f"season model: not fitted ({e.message})"
    temps = dict((t, c) for t, c in w["hours"])
    kwh: dict[str, float] = {}
    for h, (_sub, carrier, q) in BOUNDARY.items():
        if carrier != "electricity":
            continue
        try:
            items = (await client.get(f"/v1/devices/{h}/hourly", quantity=q, **{"from": t0, "to": t1}))[
                "hours"
            ]
        except CempError:
            continue  # not registered on this chain
        prev: dict[str, Any] | None = None
        for it in sorted(items, key=lambda x: x["hour_start_ms"]):
            if prev is not None and it["hour_start_ms"] - prev["hour_start_ms"] == 3_600_000:
                local = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(it["hour_start_ms"] / 1000 + 8 * 3600))
                kwh[local] = kwh.get(local, 0.0) + (it["last_value"] - prev["last_value"]) / 1000
            prev = it
    rows = [[t, temps[t], round(e, 3)] for t, e in sorted(kwh.items()) if t in temps]
    async with client.session.post(f"{client.base}/v1/energy/model", json={"hours": rows[-6600:]}) as r:
        m = await r.json()
    if r.status != 200:
        return f"season model: not fitted ({m.get('message', r.status)})"
    ch = m["chosen"]
    ho = m[ch]["held_out"]
    return (
        f"season model on chain data: {len(rows):,} hours of site electricity against the outdoor sensor {w['device']} "
        f"(HDD18 {w['hdd_total']:,.0f} K·d): {ch} chosen, held-out CV(RMSE) {ho['cv_rmse_pct']:.1f} %, "
        f"NMBE {ho['nmbe_pct']:+.1f} % (n {ho['n']}; ASHRAE G14 hourly bounds 30 % / ±10 %)"
    )


async def _submit_all(client: NodeClient, raws: list[bytes]) -> None:
    if not raws:
        return
    outs = await SubmitClient.of(client).submit_batch(raws, timeout_ms=120_000)
    bad = [o for o in outs if not (o.status == Status.COMMITTED and o.ok)]
    if bad:
        b = bad[0]
        raise RuntimeError(
            f"fast-forward: {len(bad)} readings txs not applied, e.g. {b.status} {b.code} {b.reason}"
        )


def today_cst() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))


def tomorrow_cst() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600 + 86_400))


@dataclass(frozen=True)
class RestAdmin:
    """An org's Handle.Net REST admin identity, as a client (pyhandle, curl) logs in with HTTP Basic auth."""

    org: str
    prefix: str
    username: str
    """``300:<prefix>/admin``: index 300 of the handle ``<prefix>/admin`` (URL-encode it in a Basic header)."""
    secret_file: Path


def handle_admin_secret_path(base: Path, org: str) -> Path:
    return base / "keys" / f"{org}.handle-admin.secret"


async def setup_handle_admins(client: NodeClient, base: Path, chain: ChainRef) -> list[RestAdmin]:
    """Each org's prefix handle and REST admin identity ``300:<prefix>/admin``, set up once per demo directory.

    The secret is generated (never chosen: its scrypt hash is on the public chain) and written, mode 0600, to
    ``keys/<org>.handle-admin.secret`` before the txs that set it are sent; a directory whose secret file is
    missing, or whose handle is not on chain, gets a new secret.
    """
    out = []
    for org, _role, prefix in ORGS:
        identity = f"300:{prefix}/{ADMIN_SUFFIX}"
        secret_file = handle_admin_secret_path(base, org)
        out.append(RestAdmin(org, prefix, identity, secret_file))
        try:
            await client.get(f"/api/handles/{prefix}/{ADMIN_SUFFIX}")
            on_chain = True
        except CempError:
            on_chain = False
        if on_chain and secret_file.exists():
            continue
        secret = new_secret()
        write_private_file(secret_file, (secret + "\n").encode(), overwrite=True)
        admin = read_key_file(base / "keys" / f"{org}.admin.key")
        nonce = await client.nonce(admin.public)
        for put in bootstrap_puts(prefix, admin.public, secret.encode()):
            nonce += 1
            raw, _ = sign_tx(admin, chain, "handle.put", nonce, put)
            res = await SubmitClient.of(client).submit_signed(raw)
            if not res.ok:
                raise RuntimeError(f"setting up {put.handle} failed: {res.reason}")
        _log(f"{org}: Handle REST admin {identity} set up; its secret is in {secret_file}")
    return out


class Site:
    """The simulated plant and the device agent that reads it, signs at the source and submits."""

    def __init__(self, base: Path, urls: list[str], chain: ChainRef, poll_s: float) -> None:
        self.base = base
        self.urls = urls
        self.chain = chain
        self.poll_s = poll_s
        self.sims: SiteSims | None = None
        self.control: ControlApiSim | None = None
        self.agent: SiteAgent | None = None
        self.inbox = base / "bills" / "inbox"
        self.scanner: BillScanner
        self.alarms = AlarmSink(path=base / "collector" / "alarms.jsonl")
        """Every device's and the agent's alarms; ``cemp alarms --dir <base>`` lists them with their meaning."""

    async def start(self) -> SiteAgent:
        now = int(time.time() * 1000)
        # The meters were commissioned when this demo directory was first run; on a restart they continue from
        # there (they count the model's energy for the time the demo was stopped too), so no counter goes back.
        since_file = self.base / "sims" / "counters_since_ms"
        if since_file.exists():
            since = int(since_file.read_text().strip())
        else:
            since_file.parent.mkdir(parents=True, exist_ok=True)
            since_file.write_text(f"{now}\n")
            since = now
        self.sims = await run_site_sims(start_ms=now, speed=1.0, counters_since_ms=since)
        self.control = ControlApiSim(token="demo-token", counters_since=since / 1000)
        await self.control.start()
        handles = {
            d.source.partition(":")[2]: d.handle
            for d in DEVICES
            if d.source.split(":")[0] in ("modbus", "dlt645")
        }
        field_sources = self.sims.sources(handles)
        rules = {"energy.import": QuantityRules(counter=True)}
        for q in ("energy.feeder.core", "energy.feeder.pipe", "energy.feeder.tank", "heat.energy"):
            rules[q] = QuantityRules(counter=True)
        agents = []
        for d in DEVICES:
            kind, _, ref = d.source.partition(":")
            if kind == "bills":
                continue
            src: Source
            if kind in ("modbus", "dlt645"):
                src = field_sources[ref]
            else:
                src = HttpSource(
                    d.handle,
                    self.control.url(f"/api/v1/{ref}"),
                    [FieldMap(path, q, unit, scale) for path, q, unit, scale in HTTP_FIELDS[ref]],
                    auth_token="demo-token",
                    timeout_s=3,
                )
            agents.append(
                DeviceAgent(
                    d.handle,
                    read_key_file(device_key_path(self.base, d.handle)),
                    [src],
                    poll_interval_s=self.poll_s,
                    quality=QualityConfig(int(self.poll_s * 1000), rules=rules),
                    alarms=self.alarms,
                )
            )
        outbox = Outbox(self.base / "collector" / "outbox.sqlite")
        self.agent = SiteAgent(
            agents,
            outbox,
            AgentSettings(
                nodes=tuple(self.urls),
                chain_id=self.chain.chain_id,
                genesis_hash=self.chain.genesis_hash.hex(),
                progress_every_s=30,
            ),
            alarms=self.alarms,
        )
        scanner_dev = next(d for d in DEVICES if d.source.startswith("bills:"))
        self.inbox = self.base / "bills" / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.scanner = BillScanner(
            self.inbox,
            read_key_file(device_key_path(self.base, scanner_dev.handle)),
            scanner_dev.handle,
            ScannerSettings(nodes=tuple(self.urls)),
            chain=self.chain,
        )
        return self.agent

    async def bill_feed(self, stop: asyncio.Event) -> None:
        """The utility's side: a new (synthetic) bill photo lands in the scanner's inbox now and then."""
        seed = sum(1 for p in (self.base / "bills").rglob("bill-*") if p.suffix in (".png", ".jpg"))
        variants: tuple[Literal["photo", "clean", "small"], ...] = ("photo", "clean", "small")
        while not stop.is_set():
            bill = await asyncio.to_thread(generate_bill, seed, variants[seed % 3])
            ext = "png" if bill.media_type == "image/png" else "jpg"
            tmp = self.inbox / f".bill-{seed:04d}.{ext}.part"
            tmp.write_bytes(bill.image)
            tmp.rename(self.inbox / f"bill-{seed:04d}.{ext}")
            _log(f"bill photo bill-{seed:04d}.{ext} arrived ({bill.variant})")
            seed += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BILL_EVERY_S)

    def _tank_unit(self) -> int:
        assert self.sims is not None
        unit = self.sims.endpoints["storage_tank"].unit_id
        assert unit is not None
        return unit

    def inject_tank_fault(self) -> None:
        """The storage tank meter's RS-485 line is cut: the gateway answers 0x0B (target failed) for its unit."""
        assert self.sims is not None
        self.sims.modbus.inject(self._tank_unit(), Fault.EXCEPTION, exception_code=GATEWAY_TARGET_FAILED)

    def clear_tank_fault(self) -> None:
        if self.sims is not None:
            self.sims.modbus.clear_faults(self._tank_unit())

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.stop()
        if self.sims is not None:
            await self.sims.close()


async def run_demo(
    base: Path, port: int, duration_s: float | None, fresh: bool, season: str | None = None
) -> int:
    for p in range(port, port + len(NODES)):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", p)) == 0:
                raise DemoError(f"port {p} is already in use (another demo?); choose another --port")
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
                [sys.executable, "-m", "cemp.cli", "node", "--config", str(cfg)],
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        )
    urls = [f"http://127.0.0.1:{p}" for _, _, p in nodes]
    try:
        async with NodeClient(
            urls[0], timeout_s=300
        ) as client:  # a season fast-forward waits up to 120 s a batch
            # Three fresh processes on a busy machine may take a while to import, open LevelDB and elect a leader.
            deadline = time.monotonic() + LEADER_WAIT_S
            while time.monotonic() < deadline:
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
                raise RuntimeError(
                    f"the consortium did not elect a leader within {LEADER_WAIT_S:.0f} s; see {base}/<node>.log"
                )
            ours = genesis_hash(read_genesis(base / "genesis.cemp")).hex()
            if st.get("genesis_hash") != ours:
                raise DemoError(f"{urls[0]} answers for another chain than {base}'s; choose another --port")
            chain = ChainRef.from_status(st)
            await register_devices(client, base, chain)
            await register_site(client, base, chain)
            if season is not None:
                await fast_forward_season(client, base, chain, season)
            else:
                await commission_history(client, base, chain)
            rest_admins = await setup_handle_admins(client, base, chain)
            await register_people(client, base)  # the people who take the grant story's and the walk's steps
            site = Site(base, urls, chain, poll_s=5.0)
            agent = await site.start()
            stop = asyncio.Event()
            agent_task = asyncio.create_task(agent.run(stop), name="collector")
            metrics_runner, metrics_url = await serve_collector_metrics(agent)
            walk = MaintenanceWalk(
                base,
                urls,
                chain,
                [
                    Watched(d.handle, 5_000, "energy.import" if d.kind == "meter.energy" else None)
                    for d in DEVICES
                    if not d.source.startswith("bills:")
                ],
                _log,
                site.inject_tank_fault,
                site.clear_tank_fault,
            )
            side_tasks = [
                asyncio.create_task(site.scanner.run(stop), name="bill-scanner"),
                asyncio.create_task(site.bill_feed(stop), name="bill-feed"),
                asyncio.create_task(walk.run(stop), name="maintenance"),
            ]
            lines = [
                "",
                f"CEMP demo is running: three nodes (owner, equipment firm, regulator) and {len(DEVICES)} "
                "device-signed sources",
                "(Modbus meters, temperature module, DL/T 645 meter, control-system HTTP API, bill photos "
                "through offline OCR), each signing at the source.",
            ]
            for (nid, _, _port), u in zip(nodes, urls, strict=True):
                lines.append(f"  {nid:<12} {u}/v1/status   data {(base / 'data' / nid).resolve()}")
            u = urls[0]
            lines += [
                f"  explorer     {u}/   (web UI, zh/en; every node serves it: {', '.join(x + '/' for x in urls[1:])})",
                f"  device page  {u}/device/{DEVICES[0].handle}",
                f"  blocks       {u}/v1/blocks   (OpenAPI: {u}/openapi.json, metrics: {u}/metrics)",
                f"  readings     {u}/v1/devices/{DEVICES[0].handle}/readings",
                f"  hourly       {u}/v1/devices/{DEVICES[0].handle}/hourly",
                f"  resolve      {u}/api/handles/{DEVICES[0].handle}   (88.x handle record; a browser goes to /handle/...)",
                f"  logs         {base.resolve()}/<node>.log",
                f"  verify       cemp verify --data-dir {(base / 'data' / nodes[2][0]).resolve()}  (after stopping)",
                f"  outbox       {(base / 'collector' / 'outbox.sqlite').resolve()}",
                f"  collector    {metrics_url}   (outbox depth, dead letters, open quality alarms)",
                f"  backup       cemp backup --data-dir {(base / 'data' / nodes[0][0]).resolve()} --out owner-1.cempbak"
                "   (online; cemp verify --online checks a running node the same way)",
                f"  alarms       {u}/v1/alarms   (on chain, raised by the detectors; cemp alarm list / show N)",
                f"  work orders  {u}/v1/workorders   (cemp workorder show N; who may do what: cemp workorder flow)",
                f"  web inbox    {u}/alarms, {u}/workorders   (a signed-in person takes steps: cemp login --web, "
                "then load the key file on /signin; the browser signs each step with it)",
                f"  quality      cemp alarms --dir {base.resolve()}   (the collector's local data-quality alarms; "
                "cemp alarms --rules)",
                f"  forecast     {u}/v1/sites/{SITE_ID}/energy/forecast   (energy, cost, CO2 for the rest of the "
                "day, month and heating season, with the model's held-out error)",
                f"  plan         {u}/v1/sites/{SITE_ID}/energy/plan?date={tomorrow_cst()}   (day-ahead charging "
                "plan of the storage tank vs charging flat and the site's habit)",
                f"  weather      {u}/v1/sites/{SITE_ID}/weather?from={today_cst()}&to={today_cst()}   "
                f"(outdoor sensor {OUTDOOR}, signed like every device)",
                f"  bills        {(base / 'bills' / 'inbox').resolve()}  (drop a bill photo here; see {u}/v1/documents)",
                f"  site         {u}/v1/sites/{SITE_ID}   (building handle {u}/api/handles/{SITE_BUILDING})",
                f"  carbon       {u}/v1/sites/{SITE_ID}/inventory?period={today_cst()}   "
                f"(KPIs: {u}/v1/sites/{SITE_ID}/kpis?period={today_cst()})",
                "  Handle REST admins (HTTP Basic auth on /api/handles; URL-encode the username):",
                *(
                    f"    {a.org:<10} username {a.username:<22} secret in {a.secret_file.resolve()}"
                    for a in rest_admins
                ),
                f'    e.g. curl -u "{quote(rest_admins[0].username, safe="")}:$(cat {rest_admins[0].secret_file.resolve()})" '
                f"-X PUT -H 'Content-Type: application/json' {u}/api/handles/{rest_admins[0].prefix}/my-test "
                """-d '{"values":[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.org"}}]}'""",
                "The agent submits to any node; followers forward to the leader. A fault is injected in the storage tank's "
                "meter on a new chain: watch the alarm and its work order below. Press Ctrl-C to stop.",
                "",
            ]
            print("\n".join(lines), flush=True)
            # the grant story needs readings of the shared meter: wait for its first batch (bounded)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                dev = await client.get(f"/v1/devices/{SHARED_DEVICE}")
                if dev["readings"] > 0:
                    break
                await asyncio.sleep(1)
            for line in await grant_story(client, base):
                _log(line)
            for line in await energy_lines(client):
                _log(line)
            t_end = None if duration_s is None else time.monotonic() + duration_s
            try:
                while t_end is None or time.monotonic() < t_end:
                    await asyncio.sleep(10 if t_end is None else min(10, max(0.1, t_end - time.monotonic())))
                    if agent_task.done():
                        agent_task.result()
                        break
                    st = await client.status()
                    devs = (await client.get("/v1/devices"))["devices"]
                    total = sum(d["readings"] for d in devs)
                    docs = len((await client.get("/v1/documents", limit=200))["documents"])
                    _log(
                        f"height {st['height']}  leader {st['leader']} (term {st['term']})  readings on chain "
                        f"{total}  bills {docs}  alarms {agent.alarm_count()}  app hash {st['app_hash'][:16]}"
                    )
                    _log(await carbon_line(client))
                    _log(await metrics_line(client, metrics_url))
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(agent_task, 15)
                for t in side_tasks:
                    t.cancel()
                    with contextlib.suppress(BaseException):
                        await t
                await site.stop()
                await metrics_runner.cleanup()
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


SHARED_DEVICE = "88.123.45/102.2.1"
"""The plate heat exchanger's heat meter: the owner keeps its readings members-only and grants them to the
equipment firm's engineer for a while (``grant_story``)."""
GRANT_ID = "hx-heat-meter"


async def _read_as(client: NodeClient, key: KeyPair, path: str) -> str:
    """What ``key``'s person sees at ``path``: a count of readings, or the node's refusal."""
    tok = (await access_client.sign_in(client, key))["token"]
    try:
        body = await access_client.get_as(client, tok, path, limit=10_000)
    except CempError as e:
        return f"refused ({e.code.name.lower()}): {e.message}"
    return f"{len(body['readings'])} readings"


async def grant_story(client: NodeClient, base: Path) -> list[str]:
    """The owner makes the heat meter's readings members-only, registers nobody new but lets the equipment firm's
    engineer (a person the equipment firm's admin registers) read them by a grant, and revokes it; each step is a
    signed tx, and the engineer's read is printed before, during and after."""
    owner = read_key_file(base / "keys" / "owner.admin.key")
    engineer = person_key(base, ENGINEER)  # registered with its role by ``register_people``
    manager = person_key(base, MANAGER)
    mgr_file = base / "keys" / "people" / MANAGER.file
    await access_client.submit_signed(
        client, owner, "data.policy", DataPolicyPayload((ShortStr("readings"),), (Handle(SHARED_DEVICE),))
    )
    path = f"/v1/devices/{SHARED_DEVICE}/readings"
    out = [f"grant demo: the owner keeps {SHARED_DEVICE}'s readings members-only (data.policy)"]
    out.append(f"  Zhang Min (equipment) reads {path}: {await _read_as(client, engineer, path)}")
    until = int(time.time() * 1000) + 30 * 86_400_000
    grant = GrantPayload(
        ShortStr(GRANT_ID),
        ShortStr("equipment"),
        None,
        (ShortStr("readings"),),
        (Handle(SHARED_DEVICE),),
        (),
        TimestampMs(until),
        Text("heat meter data for the plant's operator"),
    )
    await access_client.submit_signed(client, manager, "grant", grant)
    out.append(
        f"  Li Wei (owner's energy manager) grants them to the equipment firm (grant {GRANT_ID}, 30 days)"
    )
    out.append(f"  Zhang Min reads: {await _read_as(client, engineer, path)}")
    await access_client.submit_signed(
        client, manager, "grant.revoke", GrantRevoke(ShortStr(GRANT_ID), Text("demo"))
    )
    out.append("  Li Wei revokes the grant")
    out.append(f"  Zhang Min reads: {await _read_as(client, engineer, path)}")
    out.append(
        f"  sign in on the web: cemp login --web --key {mgr_file.resolve()} --nodes {client.base}   "
        f"(audit: cemp audit --key {mgr_file.resolve()} --nodes {client.base})"
    )
    return out


def _span(start: str, end: str) -> str:
    """``start``..``end`` (exclusive) of a horizon as the dates it covers."""
    last = (date.fromisoformat(end[:10]) - timedelta(days=1)).isoformat()
    return start[:10] if last == start[:10] else f"{start[:10]}..{last}"


def _kwh(x: float) -> str:
    return f"{x:,.0f} kWh" if x >= 100 else f"{x:,.1f} kWh"


async def energy_lines(client: NodeClient) -> list[str]:
    """The site's forecast (rest of the day, month and heating season, with the model's held-out error) and
    tomorrow's charging plan for the storage tank against charging flat and the site's habit, from the routes
    that compute them from the chain; each with the address that serves it."""
    u = client.base
    out: list[str] = []
    try:
        f = await client.get(f"/v1/sites/{SITE_ID}/energy/forecast")
    except CempError as e:
        out.append(f"forecast {SITE_ID}: not available ({e.message})")
    else:
        ho, day = f["model_error"]["hourly_held_out"], f["model_error"].get("daily_held_out")
        h = f["history"]
        out.append(
            f"forecast {SITE_ID} from {f['now']} ({f['model']} model fitted on {h['hours']:,} hours of signed "
            f"meter and outdoor-sensor readings; held-out CV(RMSE) {ho['cv_rmse_pct']:.1f} %, NMBE "
            f"{ho['nmbe_pct']:+.1f} % hourly (n {ho['n']})"
            + (f", daily CV(RMSE) {day['cv_rmse_pct']:.1f} %" if day else "")
            + "; ASHRAE G14 bounds 30 % / ±10 %):"
        )
        for name, label in (("day", "day   "), ("month", "month "), ("season", "season")):
            z = f["horizons"][name]
            out.append(
                f"  rest of {label} {_kwh(z['predicted_kwh']):>13} ±{_kwh(z['predicted_band_95_kwh'])}  "
                f"{z['predicted_cost_yuan']:>12,.2f} yuan  {z['predicted_co2_kg'] / 1000:>9,.2f} tCO2   "
                f"(whole {name} {_span(z['start'], z['end'])}: {_kwh(z['energy_kwh'])}, {z['cost_yuan']:,.2f} yuan, "
                f"{z['co2_kg'] / 1000:,.2f} tCO2; {z['hours_measured']} h measured, {z['hours_predicted']} h "
                "predicted)"
            )
        out.append(f"  forecast JSON {u}/v1/sites/{SITE_ID}/energy/forecast")
    tomorrow = tomorrow_cst()
    try:
        p = await client.get(f"/v1/sites/{SITE_ID}/energy/plan", date=tomorrow)
    except CempError as e:
        out.append(f"charging plan {SITE_ID} {tomorrow}: not available ({e.message})")
        return out
    best, t = p["plan"], p["tank"]
    out.append(
        f"charging plan {tomorrow}, storage tank {t['capacity_kwh']:,.0f} kWh_th / boiler {t['boiler_kw']:,.0f} kW_e "
        f"(LP, HiGHS), heat demand {_kwh(p['demand_kwh_th'])}_th ({p['demand_source']}):"
    )
    out.append(
        f"  least cost  {best['cost_yuan']:>11,.2f} yuan  {best['co2_kg'] / 1000:,.3f} tCO2  "
        f"({_kwh(best['electricity_kwh'])})"
    )
    for name, label in (("flat", "charging flat"), ("habit", "site's habit ")):
        c = p["compare"].get(name)
        if c is None:
            continue
        if "infeasible" in c:
            out.append(f"  {label}: {c['infeasible']}")
            continue
        dc = c["saving_co2_kg"]
        out.append(
            f"  {label} {c['cost_yuan']:>11,.2f} yuan  {c['co2_kg'] / 1000:,.3f} tCO2  ({_kwh(c['electricity_kwh'])}): "
            f"the plan costs {c['saving_yuan']:,.2f} yuan less and emits {abs(dc):,.1f} kgCO2 "
            + ("less" if dc >= 0 else "more (tank losses; one grid factor for every hour)")
        )
    hours = best["hours"]
    for lo in (0, 12):
        out.append(
            f"  boiler kW_e {lo:02d}-{lo + 11:02d}h: "
            + " ".join(f"{x['power_kw']:,.0f}" for x in hours[lo : lo + 12])
            + f"   (tank at {lo + 11:02d}:59 {hours[lo + 11]['stored_kwh_end']:,.0f} kWh_th)"
        )
    if "habit" in p["compare"]:
        out.append(f"  (the site's habit: {p['habit_source']})")
    out.append(f"  plan JSON {u}/v1/sites/{SITE_ID}/energy/plan?date={tomorrow}")
    return out


async def serve_collector_metrics(agent: SiteAgent) -> tuple[web.AppRunner, str]:
    """The collector's ``/metrics`` (``collector.metrics``) on a free loopback port, as ``cemp collect`` serves it."""
    from collector.metrics import metrics_app

    runner = web.AppRunner(metrics_app(agent), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/metrics"


def prom_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def _p50_ms(samples: list[tuple[str, dict[str, str], float]], name: str) -> float | None:
    """Upper bound (ms) of the histogram bucket that holds the median, None without observations."""
    buckets = sorted(
        (float(lb["le"]), v)
        for n, lb, v in samples
        if n == f"{name}_bucket" and lb.get("le") not in (None, "+Inf")
    )
    total = sum(v for n, _, v in samples if n == f"{name}_count")
    if not total:
        return None
    return next((le * 1000 for le, cum in buckets if cum >= total / 2), None)


async def metrics_line(client: NodeClient, collector_url: str) -> str:
    """A few live figures from the node's and the collector's ``/metrics``, as Prometheus scrapes them."""
    try:
        async with client.session.get(f"{client.base}/metrics") as r:
            node = prom_samples(await r.text())
        async with client.session.get(collector_url) as r:
            coll = prom_samples(await r.text())
    except Exception as e:  # a node restarting: the figures come with the next line
        return f"metrics unavailable ({e})"

    def total(samples: list[tuple[str, dict[str, str], float]], name: str) -> float:
        return sum(v for n, _, v in samples if n == name)

    refused = {lb.get("reason", "?"): v for n, lb, v in node if n == "cemp_txs_refused_total" and v}
    why = ", ".join(f"{k} {v:.0f}" for k, v in sorted(refused.items())) or "none"
    p50 = _p50_ms(node, "cemp_commit_latency_seconds")
    count = total(node, "cemp_commit_latency_seconds_count")
    mean = total(node, "cemp_commit_latency_seconds_sum") / count * 1000 if count else None
    lat = "n/a" if p50 is None or mean is None else f"p50 <= {p50:.0f} ms, mean {mean:.0f} ms"
    return (
        f"metrics {client.base}/metrics: height {total(node, 'cemp_height'):.0f}  commit latency {lat}  "
        f"txs accepted {total(node, 'cemp_txs_accepted_total'):.0f} refused {sum(refused.values()):.0f} ({why})  "
        f"mempool {total(node, 'cemp_mempool_txs'):.0f}  leader changes {total(node, 'cemp_leader_changes_total'):.0f}"
        f"  | collector {collector_url}: open alarms {total(coll, 'cemp_collector_open_alarms'):.0f}  outbox "
        f"{total(coll, 'cemp_collector_outbox_txs'):.0f} txs  dead letters {total(coll, 'cemp_collector_dead_letters'):.0f}"
    )


async def carbon_line(client: NodeClient) -> str:
    """Today's live carbon figures of the Hohhot site, from its inventory on chain."""
    day = today_cst()
    try:
        inv = await client.get(f"/v1/sites/{SITE_ID}/inventory", period=day)
    except CempError as e:
        return f"carbon {SITE_ID} {day}: {e.message}"
    t = inv["site_total"]
    return (
        f"carbon {SITE_ID} {day}: electricity {t['energy_wh'] / 1000:,.1f} kWh  heat {t['heat_wh'] / 1000:,.1f} kWh  "
        f"CO2 {t['co2_location_ug'] / 1e9:,.2f} kg location-based / {t['co2_market_ug'] / 1e9:,.2f} kg market-based  "
        f"(factor {inv['factors'][0]['location']['value'] if inv['factors'][0].get('location') else '-'} "
        f"tCO2/MWh, set {inv['factors'][0]['set']['set_id'] if inv['factors'][0].get('set') else '-'})"
    )


def main(base: Path, port: int, duration_s: float | None, fresh: bool, season: str | None = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        try:
            return asyncio.run(run_demo(base, port, duration_s, fresh, season))
        except DemoError as e:
            print(f"cemp demo: {e}", file=sys.stderr)
            return 2
    return 0


__all__ = ["DEVICES", "main", "prepare"]
