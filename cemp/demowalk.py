"""The demo's maintenance story: a fault the simulator injects, the alarm the detectors raise from it, and one
inspection work order walked from open to closed, every step a tx signed by the acting org at its own node.

The fault: the storage tank's energy meter stops answering (its RS-485 line is cut; the Modbus gateway answers
exception 0x0B for its unit). The equipment firm's watcher (``maintenance.watch``) follows the chain, finds the
meter silent (``energy.detect.check_silent``: no reading for 6 polls) and raises the alarm with the last readings
tx as evidence. Then the owner acknowledges, the equipment firm assigns, the owner opens a work order from the
alarm, the equipment firm assigns, diagnoses and repairs it (the demo clears the fault at the repair), the
regulator comments, the owner verifies once the meter's readings are on chain again and closes the order, then
the alarm. Each step is printed with its tx hash.

People take the steps with their own keys (``access`` per-person accounts, registered by their org's admin in
``register_people``): Li Wei, the owner's energy manager, acknowledges, opens, verifies and closes; Wang Qiang,
the equipment firm's operator, assigns; Zhang Min, its maintenance engineer, diagnoses and repairs. The chain
checks the org's role and the person's role on submission and on apply. The watcher raises the alarm with the
equipment firm's admin key (a machine, not a person); the regulator comments with its admin key.

The walk is driven by the state on chain, so a demo stopped half-way continues where it stopped when it is run
again; the fault is injected only on a chain that holds no work order yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from access import client as access_client
from access.model import PersonPut
from energy.detect import Rules
from maintenance import client as mc
from maintenance import workorders as wo
from maintenance.watch import Watched, Watcher
from node.chain import ChainRef
from node.client import NodeClient
from node.crypto import KeyPair, read_key_file, write_key_file
from node.errors import CempError
from node.types import ShortStr, Text

TANK_METER = "88.123.45/101.1.3"
TANK_UNIT_KEY = "storage_tank"
GATEWAY_TARGET_FAILED = 0x0B
SILENT_RULES = Rules(silent_factor=6.0, silent_min_ms=30_000)
"""The demo polls every 5 s: six polls (30 s) without a reading is an episode."""
VERIFY_READINGS = 2
"""The owner verifies once this many readings of the repaired meter taken after the repair are on chain."""

STORY = {
    "acknowledge": "seen in the owner's control room: the tank meter shows no data",
    "assign_alarm": "Zhang Min (maintenance engineer, equipment firm)",
    "title": "Storage tank meter silent: inspect the meter and its RS-485 line",
    "assign": "Zhang Min",
    "diagnose": "RS-485 line to the tank meter (Modbus unit 3) cut at the cable tray in the tank room; the gateway "
    "answers exception 0x0B (target failed to respond) for unit 3",
    "repair": "cable spliced and re-terminated, line insulation tested; the meter answers the gateway again",
    "comment": "noted for the annual inspection record",
    "close": "repaired and verified; the tank's consumption in the silent minutes is counted by the meter's "
    "register (no energy lost from the inventory)",
}


@dataclass(frozen=True)
class Person:
    file: str
    """Key file name under ``keys/people/``."""
    org: str
    name: str
    role: str
    label: str


MANAGER = Person("li-wei.owner.key", "owner", "Li Wei", "energy_manager", "Li Wei, energy manager (owner)")
ENGINEER = Person(
    "zhang-min.equipment.key",
    "equipment",
    "Zhang Min",
    "maintenance_engineer",
    "Zhang Min, maintenance engineer (equipment firm)",
)
OPERATOR = Person(
    "wang-qiang.equipment.key", "equipment", "Wang Qiang", "operator", "Wang Qiang, operator (equipment firm)"
)
PEOPLE = (MANAGER, ENGINEER, OPERATOR)


def person_key(base: Path, p: Person) -> KeyPair:
    """The person's own key (made once, in ``keys/people/``; on a real site it never leaves the person's machine)."""
    f = base / "keys" / "people" / p.file
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(f, KeyPair.generate(), label=p.label)
    return read_key_file(f)


async def register_people(client: NodeClient, base: Path) -> None:
    """Each person's account (``person.put`` by the org's admin key; putting it again changes nothing)."""
    for p in PEOPLE:
        admin = read_key_file(base / "keys" / f"{p.org}.admin.key")
        key = person_key(base, p)
        await access_client.submit_signed(
            client, admin, "person.put", PersonPut(key.public, Text(p.name), (ShortStr(p.role),))
        )


@dataclass
class Orgs:
    clients: dict[str, NodeClient]
    """Each org's client of its own node."""
    keys: dict[str, KeyPair]
    """Each org's admin key (the regulator's comment)."""
    people: dict[Person, KeyPair]


class MaintenanceWalk:
    def __init__(
        self,
        base: Path,
        urls: list[str],
        chain: ChainRef,
        devices: list[Watched],
        log: Callable[[str], None],
        inject: Callable[[], None],
        clear: Callable[[], None],
    ) -> None:
        self.base = base
        self.urls = urls
        self.chain = chain
        self.devices = devices
        self.log = log
        self.inject = inject
        self.clear = clear
        self.fault_at: int | None = None
        self.repaired_ms: int | None = None
        self.alarm: int | None = None
        self.done = False
        self.height = 0
        """Height of the last step taken: a node is read only once it has applied it."""

    async def run(self, stop: asyncio.Event) -> None:
        names = ("owner", "equipment", "regulator")
        orgs = Orgs(
            {o: NodeClient(u) for o, u in zip(names, self.urls, strict=True)},
            {o: read_key_file(self.base / "keys" / f"{o}.admin.key") for o in names},
            {p: person_key(self.base, p) for p in PEOPLE},
        )
        try:
            await self._run(stop, orgs)
        finally:
            for c in orgs.clients.values():
                await c.close()

    async def _run(self, stop: asyncio.Event, orgs: Orgs) -> None:
        watcher: Watcher | None = None
        inject = False
        while not stop.is_set():
            try:
                if watcher is None:
                    watcher, inject = await self._start(orgs)
                await self._tick(orgs, watcher, inject)
            except Exception as e:  # the demo keeps going; every error is shown, and the next tick retries
                self.log(f"maintenance: {type(e).__name__}: {getattr(e, 'message', e)}; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):  # not wait_for: on 3.11 it can swallow a cancel
                    await stop.wait()

    async def _start(self, orgs: Orgs) -> tuple[Watcher, bool]:
        """The watcher from the current height, and whether to inject the fault (a chain with no work order)."""
        eq = orgs.clients["equipment"]
        head = int((await eq.status())["height"])
        watcher = Watcher(eq, orgs.keys["equipment"], self.chain, self.devices, SILENT_RULES, head, self.log)
        orders = (await eq.get("/v1/workorders", limit=5))["workorders"]
        resumed = await self._resume(eq)
        if resumed is not None:
            self.alarm = resumed
            self.log(f"maintenance: continuing the walk of alarm {resumed} where the last run stopped")
        elif orders:
            w = orders[0]
            self.log(
                f"maintenance: work order {w['number']} is {w['state']} (cemp workorder show {w['number']}); "
                "no fault injected this run"
            )
            self.done = True
        return watcher, not orders and resumed is None

    async def _tick(self, orgs: Orgs, watcher: Watcher, inject: bool) -> None:
        eq = orgs.clients["equipment"]
        now = int(time.time() * 1000)
        await watcher.follow()
        if inject and self.fault_at is None and TANK_METER in watcher.last:
            self.inject()
            self.fault_at = now
            self.log(
                f"fault injected: the storage tank meter {TANK_METER} stops answering (its RS-485 line is cut; "
                "the gateway answers 0x0B for Modbus unit 3); the watcher should raise an alarm in about 30 s"
            )
        for r in await watcher.raise_new(now):
            d = r.done
            self.height = max(self.height, d.height)
            a = await eq.get(f"/v1/alarms/{d.number}")
            self.log(
                f"alarm {d.number} raised by equipment ({a['rule']}, {a['severity']}): "
                f"{a['message']}  tx {d.tx}"
            )
            self.log(f"  expected: {a['expected']}")
            self.log(f"  observed: {a['observed']}")
            self.log(f"  since:    {time.strftime('%H:%M:%S', time.gmtime(a['since_ms'] / 1000 + 8 * 3600))} CST; evidence "
                     f"{', '.join(h[:16] + '…' for h in a['evidence']) or '-'}")  # fmt: skip
            if a["device"] == TANK_METER and a["rule"] == "silent" and self.alarm is None and not self.done:
                self.alarm = d.number
        if self.alarm is not None and not self.done:
            await self._advance(orgs, watcher)

    async def _resume(self, c: NodeClient) -> int | None:
        for a in (await c.get("/v1/alarms", state="open", device=TANK_METER, limit=10))["alarms"]:
            if a["rule"] == "silent" and a["raised_by"] == "equipment":
                return int(a["number"])
        return None

    async def _sync(self, orgs: Orgs) -> None:
        """Wait until every org's node has applied the last step (each reads its own node before it acts)."""
        deadline = time.monotonic() + 30
        for org, c in orgs.clients.items():
            while (h := int((await c.status())["height"])) < self.height:
                if time.monotonic() >= deadline:
                    # Say so rather than act on a stale read in silence: the org's next step may be refused
                    # (and is then taken again on the next pass, once its node has the block).
                    self.log(
                        f"{org}'s node is at block {h}, below the walk's last step ({self.height}) after 30 s"
                    )
                    break
                await asyncio.sleep(0.05)

    def _step(self, what: str, action: str, org: str, d: mc.Done, person: Person | None = None) -> None:
        self.height = max(self.height, d.height)
        who = f"{person.name}'s own key ({person.role.replace('_', ' ')})" if person else f"{org}'s admin key"
        self.log(f"{what} {d.number}: {action:<11} by {org:<9} -> {d.state:<12} tx {d.tx}  signed with {who}")

    async def _advance(self, orgs: Orgs, watcher: Watcher) -> None:
        """Take every step that can be taken now (the verification waits for the meter's readings)."""
        assert self.alarm is not None
        n = self.alarm
        c, k, pk, cid = orgs.clients, orgs.keys, orgs.people, self.chain
        while True:
            await self._sync(orgs)
            a = await c["owner"].get(f"/v1/alarms/{n}")
            if a["state"] == "closed":
                self.log(f"alarm {n} and its work order are closed: cemp alarm show {n}; cemp workorder show "
                         f"{a['workorders'][-1] if a['workorders'] else '?'}  (or {self.urls[0]}/v1/alarms/{n})")  # fmt: skip
                self.done = True
                return
            if a["state"] == "open":
                d = await mc.alarm_step(
                    c["owner"], pk[MANAGER], cid, "acknowledge", n, note=STORY["acknowledge"]
                )
                self._step("alarm", "acknowledge", "owner", d, MANAGER)
                continue
            if a["state"] == "acknowledged":
                d = await mc.alarm_step(
                    c["equipment"], pk[OPERATOR], cid, "assign", n, assignee=STORY["assign_alarm"]
                )
                self._step("alarm", "assign", "equipment", d, OPERATOR)
                continue
            if not a["workorders"]:
                p = wo.make_open("alarm", a["device"], STORY["title"], alarm=n)
                d = await mc.open_order(c["owner"], pk[MANAGER], cid, p)
                self._step("work order", "open", "owner", d, MANAGER)
                continue
            w = await c["owner"].get(f"/v1/workorders/{a['workorders'][-1]}")
            m = int(w["number"])
            if w["state"] == "closed":
                d = await mc.alarm_step(
                    c["owner"], pk[MANAGER], cid, "close", n, note=f"resolved by work order {m}"
                )
                self._step("alarm", "close", "owner", d, MANAGER)
                continue
            if w["state"] == "open":
                d = await mc.order_step(
                    c["equipment"], pk[OPERATOR], cid, "assign", m, assignee=STORY["assign"]
                )
                self._step("work order", "assign", "equipment", d, OPERATOR)
            elif w["state"] == "assigned":
                d = await mc.order_step(
                    c["equipment"], pk[ENGINEER], cid, "diagnose", m, note=STORY["diagnose"]
                )
                self._step("work order", "diagnose", "equipment", d, ENGINEER)
            elif w["state"] == "diagnosed":
                self.clear()  # the engineer splices the cable: the meter answers again
                self.repaired_ms = int(time.time() * 1000)
                d = await mc.order_step(c["equipment"], pk[ENGINEER], cid, "repair", m, note=STORY["repair"])
                self._step("work order", "repair", "equipment", d, ENGINEER)
            elif w["state"] == "repaired" and not any(s["action"] == "comment" for s in w["history"]):
                d = await mc.order_step(
                    c["regulator"], k["regulator"], cid, "comment", m, note=STORY["comment"]
                )
                self._step("work order", "comment", "regulator", d)
            elif w["state"] == "repaired":
                since = self.repaired_ms or int(w["updated_ms"])
                seen = await _readings_since(c["owner"], a["device"], since)
                if len(seen) < VERIFY_READINGS:
                    return  # the owner checks again on the next tick
                note = (
                    f"the meter's readings are on chain again: {len(seen)} since the repair, the first at "
                    f"{time.strftime('%H:%M:%S', time.gmtime(seen[0] / 1000 + 8 * 3600))}"
                )
                d = await mc.order_step(c["owner"], pk[MANAGER], cid, "verify", m, result="pass", note=note)
                self._step("work order", "verify", "owner", d, MANAGER)
            elif w["state"] == "verified":
                d = await mc.order_step(c["owner"], pk[MANAGER], cid, "close", m, note=STORY["close"])
                self._step("work order", "close", "owner", d, MANAGER)


async def _readings_since(c: NodeClient, device: str, since_ms: int) -> list[int]:
    try:
        r = await c.get(
            f"/v1/devices/{device}/readings", quantity="energy.import", limit=50, **{"from": since_ms}
        )
    except CempError:
        return []
    return [int(x["ts_ms"]) for x in r["readings"] if int(x["ts_ms"]) > since_ms]
