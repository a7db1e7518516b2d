"""Alarm and work-order steps signed by people's own keys (``access`` per-person accounts), not org admin keys:
the whole lifecycle taken by the owner's energy manager and operator and the equipment firm's operator and
maintenance engineer, each step's record naming the person's key; and every (person, step) pair the table refuses
is refused with NOT_AUTHORIZED at mempool admission and again inside a block (nothing changes), as is a revoked
person's key and a key no org registered."""

from __future__ import annotations

from typing import Any

import pytest

from access.model import PersonPut, PersonRevoke
from maintenance import alarms as al
from maintenance import workflow as wf
from maintenance import workorders as wo
from maintenance.alarms import alarm_history, load_alarm
from maintenance.model import AlarmPayload, WorkOrderPayload
from maintenance.workorders import load_order, order_history
from node.chain import sign_tx
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.mempool import Mempool
from node.types import ShortStr, Text
from tests.accounting.chain import Chain

DEV = "88.123.45/101.1.3"
SINCE = 1_790_000_000_000
PEOPLE = {
    "li-wei": ("owner", "energy_manager"),
    "wu-fang": ("owner", "operator"),
    "zhao-lei": ("owner", "auditor"),
    "wang-qiang": ("equipment", "operator"),
    "zhang-min": ("equipment", "maintenance_engineer"),
    "chen-jie": ("equipment", "energy_manager"),
}


class People:
    def __init__(self, c: Chain) -> None:
        self.c = c
        self.keys = {p: KeyPair.from_seed(bytes([i + 1]) * 32) for i, p in enumerate(PEOPLE)}
        self.nonce = dict.fromkeys(PEOPLE, 0)
        c.ok(
            *(
                c.admin(org, "person.put", PersonPut(self.keys[p].public, Text(p), (ShortStr(role),)))
                for p, (org, role) in PEOPLE.items()
            )
        )

    def tx(self, who: str, kind: str, payload: object, key: KeyPair | None = None) -> bytes:
        self.nonce[who] = self.nonce.get(who, 0) + 1
        raw, _ = sign_tx(key or self.keys[who], self.c.c.chain, kind, self.nonce[who], payload)
        return raw


def _chain() -> tuple[Chain, People]:
    c = Chain()
    dev = c.device(DEV)
    c.counter(dev, SINCE - 4 * 3_600_000, 4, 10_000)
    return c, People(c)


def _raise() -> AlarmPayload:
    return al.make_raise(
        DEV,
        "step",
        SINCE,
        "about 10 kWh an hour",
        "25 kWh in the hour",
        "tank stepped up",
        quantity="energy.import",
    )


def _astep(c: Chain, action: str, n: int = 1, **kw: Any) -> AlarmPayload:
    a = load_alarm(c.store, n)
    assert a is not None
    return al.make_step(action, n, a.steps, **kw)


def _wstep(c: Chain, action: str, n: int = 1, **kw: Any) -> WorkOrderPayload:
    w = load_order(c.store, n)
    assert w is not None
    return wo.make_step(action, n, w.steps, **kw)


def _refused_both_ways(c: Chain, p: People, who: str, kind: str, payload: object, words: str) -> None:
    """Refused at admission with 403, and marked NOT_AUTHORIZED in a block; the item is unchanged."""
    before = (load_alarm(c.store, 1), load_order(c.store, 1))
    pool = Mempool(c.led)
    raw = p.tx(who, kind, payload)
    with pytest.raises(CempError) as e:
        pool.admit(c.led.decode_tx(raw), c.time_ms + 1)
    assert e.value.code == Code.NOT_AUTHORIZED and e.value.status == 403 and words in e.value.message, e.value
    [r] = c.block(raw)
    assert r.code == int(Code.NOT_AUTHORIZED) and r.reason == e.value.message, (r, e.value.message)
    assert (load_alarm(c.store, 1), load_order(c.store, 1)) == before


def test_people_walk_an_alarm_and_its_work_order_to_closed() -> None:
    c, p = _chain()
    walk: list[tuple[str, str, Any]] = [
        ("wu-fang", "alarm", lambda: _raise()),
        ("li-wei", "alarm", lambda: _astep(c, "acknowledge", note="seen")),
        ("wang-qiang", "alarm", lambda: _astep(c, "assign", assignee="Zhang Min")),
        ("zhang-min", "alarm", lambda: _astep(c, "comment", note="on my way")),
        ("li-wei", "workorder", lambda: wo.make_open("alarm", DEV, "inspect the tank meter", alarm=1)),
        ("chen-jie", "workorder", lambda: _wstep(c, "assign", assignee="Zhang Min")),
        ("zhang-min", "workorder", lambda: _wstep(c, "diagnose", note="RS-485 cut")),
        ("zhang-min", "workorder", lambda: _wstep(c, "repair", note="spliced")),
        ("wu-fang", "workorder", lambda: _wstep(c, "verify", result="pass", note="readings back")),
        ("li-wei", "workorder", lambda: _wstep(c, "close", note="done")),
        ("li-wei", "alarm", lambda: _astep(c, "close", note="resolved by work order 1")),
    ]
    for who, kind, make in walk:
        raw = p.tx(who, kind, make())
        Mempool(c.led).admit(c.led.decode_tx(raw), c.time_ms + 1)  # admitted at submission ...
        [r] = c.block(raw)  # ... and applied
        assert r.code == 0, (who, kind, r)
    a, w = load_alarm(c.store, 1), load_order(c.store, 1)
    assert a is not None and a.state == "closed" and w is not None and w.state == "closed"
    steps = [*alarm_history(c.store, 1), *order_history(c.store, 1)]
    signers = {bytes(s.sender): s.org for s in steps}
    assert set(signers) == {bytes(p.keys[who].public) for who, _, _ in walk}
    for s in steps:
        who = next(n for n, k in p.keys.items() if bytes(k.public) == bytes(s.sender))
        assert s.org == PEOPLE[who][0], (s.action, who, s.org)  # a person acts for their own org


def test_steps_the_table_refuses_a_person_are_refused_on_admission_and_apply() -> None:
    c, p = _chain()
    _refused_both_ways(c, p, "zhang-min", "alarm", _raise(), "holds maintenance_engineer")
    _refused_both_ways(c, p, "zhao-lei", "alarm", _raise(), "holds auditor")
    c.ok(p.tx("wu-fang", "alarm", _raise()))
    # the org's role allows it, the person's role does not (or the other way round)
    _refused_both_ways(c, p, "chen-jie", "alarm", _astep(c, "acknowledge", note="x"), "building owner")
    _refused_both_ways(c, p, "wu-fang", "alarm", _astep(c, "close", note="x"), "this person of owner")
    c.ok(p.tx("wu-fang", "alarm", _astep(c, "acknowledge", note="seen")))
    c.ok(p.tx("wang-qiang", "alarm", _astep(c, "assign", assignee="Zhang Min")))
    c.ok(p.tx("li-wei", "workorder", wo.make_open("alarm", DEV, "inspect", alarm=1)))
    _refused_both_ways(c, p, "zhang-min", "workorder", _wstep(c, "assign", assignee="me"), "this person of")
    c.ok(p.tx("wang-qiang", "workorder", _wstep(c, "assign", assignee="Zhang Min")))
    _refused_both_ways(c, p, "wang-qiang", "workorder", _wstep(c, "diagnose", note="x"), "this person of")
    _refused_both_ways(c, p, "li-wei", "workorder", _wstep(c, "diagnose", note="x"), "equipment")
    c.ok(p.tx("zhang-min", "workorder", _wstep(c, "diagnose", note="cut")))
    c.ok(p.tx("zhang-min", "workorder", _wstep(c, "repair", note="spliced")))
    _refused_both_ways(c, p, "zhang-min", "workorder", _wstep(c, "verify", result="pass", note="x"), "owner")
    _refused_both_ways(c, p, "zhao-lei", "workorder", _wstep(c, "comment", note="x"), "holds auditor")
    c.ok(p.tx("wu-fang", "workorder", _wstep(c, "verify", result="pass", note="ok")))
    _refused_both_ways(c, p, "wu-fang", "workorder", _wstep(c, "close", note="x"), "this person of owner")
    # a revoked person's key stops acting at once; a key nobody registered never acts
    c.ok(c.admin("owner", "person.revoke", PersonRevoke(p.keys["li-wei"].public, Text("left the company"))))
    _refused_both_ways(c, p, "li-wei", "workorder", _wstep(c, "close", note="x"), "revoked")
    stranger = KeyPair.from_seed(b"\x99" * 32)
    raw = p.tx("stranger", "workorder", _wstep(c, "close", note="x"), key=stranger)
    [r] = c.block(raw)
    assert r.code == int(Code.NOT_AUTHORIZED) and "neither" in r.reason, r
    w = load_order(c.store, 1)
    assert w is not None and w.state == "verified"
    assert wf.WORKORDER_FLOW["close"].people == frozenset({"energy_manager"})
