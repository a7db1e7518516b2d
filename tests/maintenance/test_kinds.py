"""The ``alarm`` and ``workorder`` kinds on an in-process ledger: lifecycles, raised once per episode, who may
take which step, illegal and stale steps, evidence, calibration due dates, and the same decisions at mempool
admission as on apply."""

from __future__ import annotations

from typing import Any

import pytest

from maintenance import alarms as al
from maintenance import workorders as wo
from maintenance.alarms import load_alarm
from maintenance.workorders import list_calibrations, load_order
from node.chain import Ledger, sign_tx
from node.errors import CempError, Code
from node.mempool import Mempool
from node.types import TxResult
from tests.accounting.chain import Chain

DEV = "88.123.45/101.1.3"
SINCE = 1_790_000_000_000


def res_ok(c: Chain, raw: bytes) -> None:
    [r] = c.block(raw)
    assert r.code == 0, r


def refused(c: Chain, raw: bytes, code: Code, words: str) -> TxResult:
    [r] = c.block(raw)
    assert r.code == int(code) and words in r.reason, r
    return r


def setup_chain() -> tuple[Chain, Any]:
    c = Chain()
    dev = c.device(DEV)
    c.counter(dev, SINCE - 4 * 3_600_000, 4, 10_000)
    return c, dev


def raise_tx(c: Chain, org: str = "owner", since: int = SINCE, rule: str = "step", **kw: Any) -> bytes:
    p = al.make_raise(
        DEV,
        rule,
        since,
        "about 10 kWh an hour (tank heaters, 7 days' profile)",
        "25 kWh in the hour since 01:00",
        "storage tank consumption stepped up 2.5x",
        quantity="energy.import",
        **kw,
    )
    return c.admin(org, "alarm", p)


def step(c: Chain, org: str, action: str, n: int, **kw: Any) -> bytes:
    a = load_alarm(c.store, n)
    assert a is not None
    return c.admin(org, "alarm", al.make_step(action, n, a.steps, **kw))


def wstep(c: Chain, org: str, action: str, n: int, **kw: Any) -> bytes:
    w = load_order(c.store, n)
    assert w is not None
    return c.admin(org, "workorder", wo.make_step(action, n, w.steps, **kw))


def test_alarm_and_work_order_lifecycle() -> None:
    c, _ = setup_chain()
    res_ok(c, raise_tx(c))
    a = load_alarm(c.store, 1)
    assert a is not None and a.state == "open" and a.raised_by == "owner"
    res_ok(c, step(c, "owner", "acknowledge", 1, note="seen, tank looks odd"))
    res_ok(c, step(c, "equipment", "assign", 1, assignee="Li Gang (maintenance)"))
    res_ok(c, step(c, "regulator", "comment", 1, note="please keep the readings"))
    res_ok(c, c.admin("owner", "workorder", wo.make_open("alarm", DEV, "inspect tank heaters", alarm=1)))
    a = load_alarm(c.store, 1)
    assert a is not None and a.state == "assigned" and a.workorders == (1,) and a.steps == 4
    # The alarm cannot close while its work order is open.
    refused(c, step(c, "owner", "close", 1, note="fixed"), Code.ALREADY_EXISTS, "work order 1")
    res_ok(c, wstep(c, "equipment", "assign", 1, assignee="Li Gang"))
    res_ok(c, wstep(c, "equipment", "diagnose", 1, note="heater 2 contactor welded shut"))
    res_ok(c, wstep(c, "equipment", "repair", 1, note="contactor replaced"))
    res_ok(c, wstep(c, "owner", "verify", 1, result="fail", note="still drawing at noon"))
    assert (w := load_order(c.store, 1)) is not None and w.state == "diagnosed"
    res_ok(c, wstep(c, "equipment", "repair", 1, note="thermostat relay replaced too"))
    res_ok(c, wstep(c, "owner", "verify", 1, result="pass", note="consumption back to profile"))
    res_ok(c, wstep(c, "owner", "close", 1, note="done"))
    res_ok(c, step(c, "owner", "close", 1, note="resolved by work order 1"))
    a, w = load_alarm(c.store, 1), load_order(c.store, 1)
    assert a is not None and a.state == "closed" and w is not None and w.state == "closed"
    hist = [(s.action, s.state, s.org) for s in wo.order_history(c.store, 1)]
    assert hist == [
        ("open", "open", "owner"),
        ("assign", "assigned", "equipment"),
        ("diagnose", "diagnosed", "equipment"),
        ("repair", "repaired", "equipment"),
        ("verify", "diagnosed", "owner"),
        ("repair", "repaired", "equipment"),
        ("verify", "verified", "owner"),
        ("close", "closed", "owner"),
    ]
    assert [s.action for s in al.alarm_history(c.store, 1)] == [
        "raise",
        "acknowledge",
        "assign",
        "comment",
        "close",
    ]
    # Every step names the tx that made it, and that tx is on chain.
    for s in wo.order_history(c.store, 1):
        assert c.led.tx_location(s.tx_hash) is not None
    # A closed alarm takes no more steps.
    refused(c, step(c, "regulator", "comment", 1, note="late"), Code.ALREADY_EXISTS, "is closed")


def test_raised_once_per_episode() -> None:
    c, _ = setup_chain()
    res_ok(c, raise_tx(c))
    # The same episode again (the next poll), from either org: refused, naming the alarm.
    refused(c, raise_tx(c, "equipment"), Code.ALREADY_EXISTS, "alarm 1 already records this episode")
    # The detector moved its episode start: still the open alarm of that device, rule and quantity.
    refused(c, raise_tx(c, since=SINCE + 900_000), Code.ALREADY_EXISTS, "alarm 1 for 88.123.45/101.1.3")
    # Another rule on the same device is another alarm.
    res_ok(c, raise_tx(c, rule="out_of_band"))
    res_ok(c, step(c, "owner", "close", 1, note="false alarm: planned test"))
    # After closing, a new episode may be raised; the closed one never again.
    refused(c, raise_tx(c), Code.ALREADY_EXISTS, "already records this episode")
    res_ok(c, raise_tx(c, since=SINCE + 7_200_000))
    assert (a := load_alarm(c.store, 3)) is not None and a.raised.since_ms == SINCE + 7_200_000


def test_two_raises_of_one_episode_in_one_block() -> None:
    c, _ = setup_chain()
    r = c.block(raise_tx(c), raise_tx(c, "equipment"))
    assert r[0].code == 0 and r[1].code == int(Code.ALREADY_EXISTS)


@pytest.mark.parametrize(
    ("org", "action", "kw"),
    [
        ("equipment", "acknowledge", {}),
        ("regulator", "acknowledge", {}),
        ("owner", "assign", {"assignee": "someone"}),
        ("regulator", "assign", {"assignee": "someone"}),
        ("equipment", "close", {"note": "x"}),
    ],
)
def test_alarm_step_permissions(org: str, action: str, kw: dict[str, Any]) -> None:
    c, _ = setup_chain()
    res_ok(c, raise_tx(c))
    refused(c, step(c, org, action, 1, **kw), Code.NOT_AUTHORIZED, f"{action} of alarm 1 is done by")
    assert (a := load_alarm(c.store, 1)) is not None and a.steps == 1


def test_raise_by_regulator_or_a_device_key_is_refused() -> None:
    c, dev = setup_chain()
    refused(c, raise_tx(c, "regulator"), Code.NOT_AUTHORIZED, "raise of an alarm is done by")
    p = al.make_raise(DEV, "step", SINCE, "e", "o", "m")
    dev.nonce += 1
    raw, _ = sign_tx(dev.key, c.c.chain, "alarm", dev.nonce, p)
    refused(c, raw, Code.NOT_AUTHORIZED, "this key is neither")


@pytest.mark.parametrize(
    ("org", "action", "kw"),
    [
        ("owner", "assign", {"assignee": "x"}),
        ("regulator", "assign", {"assignee": "x"}),
    ],
)
def test_workorder_permissions(org: str, action: str, kw: dict[str, Any]) -> None:
    c, _ = setup_chain()
    res_ok(c, c.admin("owner", "workorder", wo.make_open("inspection", DEV, "monthly inspection")))
    refused(c, wstep(c, org, action, 1, **kw), Code.NOT_AUTHORIZED, f"{action} of work order 1 is done by")
    refused(
        c, c.admin("regulator", "workorder", wo.make_open("inspection", DEV, "x")), Code.NOT_AUTHORIZED, ""
    )


def test_illegal_and_stale_steps_are_refused_with_reasons() -> None:
    c, _ = setup_chain()
    res_ok(c, c.admin("equipment", "workorder", wo.make_open("inspection", DEV, "monthly inspection")))
    r = refused(c, wstep(c, "equipment", "diagnose", 1, note="x"), Code.ALREADY_EXISTS, "is 'open'")
    assert "diagnose needs 'assigned'" in r.reason and "steps open now: assign, comment" in r.reason
    refused(c, wstep(c, "owner", "close", 1, note="x"), Code.ALREADY_EXISTS, "close needs 'verified'")
    res_ok(c, wstep(c, "equipment", "assign", 1, assignee="Li"))
    # A step made on the view before the assignment (step 1) is stale now.
    stale = c.admin("equipment", "workorder", wo.make_step("diagnose", 1, 1, note="x"))
    refused(c, stale, Code.ALREADY_EXISTS, "someone acted meanwhile")
    # Fields a step does not take, notes that are required.
    refused(c, wstep(c, "equipment", "diagnose", 1), Code.INVALID_PAYLOAD, "note must not be empty")
    refused(c, wstep(c, "equipment", "diagnose", 1, note="x", result="pass"), Code.INVALID_PAYLOAD, "result")
    refused(
        c,
        wstep(c, "equipment", "diagnose", 1, note="x", calibration_due_ms=SINCE),
        Code.INVALID_PAYLOAD,
        "calibration due",
    )
    refused(c, wstep(c, "equipment", "fix", 1, note="x"), Code.INVALID_PAYLOAD, "unknown work-order action")
    refused(c, c.admin("owner", "workorder", wo.make_step("assign", 9, 0, assignee="x")), Code.NOT_FOUND, "9")
    # An order from an alarm names an open alarm of the same device.
    refused(c, c.admin("owner", "workorder", wo.make_open("alarm", DEV, "t", alarm=5)), Code.NOT_FOUND, "5")
    refused(
        c,
        c.admin("owner", "workorder", wo.make_open("inspection", DEV, "t", alarm=1)),
        Code.INVALID_PAYLOAD,
        "",
    )
    refused(
        c,
        c.admin("owner", "workorder", wo.make_open("inspection", "88.123.45/9.9", "t")),
        Code.UNKNOWN_DEVICE,
        "",
    )


def test_evidence_must_be_valid_committed_txs() -> None:
    c, _dev = setup_chain()
    loc_hashes = _readings_tx_hashes(c)
    assert loc_hashes
    res_ok(c, raise_tx(c, evidence=tuple(loc_hashes[:2])))
    assert (a := load_alarm(c.store, 1)) is not None and a.raised.evidence == tuple(loc_hashes[:2])
    refused(c, raise_tx(c, rule="out_of_band", evidence=(b"\x01" * 32,)), Code.NOT_FOUND, "not on chain")
    bad_tx = raise_tx(c, "regulator", rule="gap")  # refused on chain: its hash is no evidence
    c.block(bad_tx)
    from hashlib import sha256

    refused(c, raise_tx(c, rule="gap", evidence=(sha256(bad_tx).digest(),)), Code.INVALID_PAYLOAD, "refused")
    refused(
        c, raise_tx(c, rule="gap", evidence=(loc_hashes[0], loc_hashes[0])), Code.INVALID_PAYLOAD, "twice"
    )
    refused(c, raise_tx(c, rule="nonsense"), Code.INVALID_PAYLOAD, "rule 'nonsense'")
    refused(c, raise_tx(c, rule="gap", since=1_000), Code.BAD_TIMESTAMP, "since_ms")


def _readings_tx_hashes(c: Chain) -> list[bytes]:
    from hashlib import sha256

    out = []
    for b, _ in c.blocks:
        for raw in b.txs:
            if b"readings" in bytes(raw)[:40]:
                out.append(sha256(bytes(raw)).digest())
    return out


def test_calibration_due_date_recorded_on_close() -> None:
    c, _ = setup_chain()
    due_open = c.time_ms + 86_400_000 * 10
    res_ok(
        c,
        c.admin(
            "owner", "workorder", wo.make_open("calibration", DEV, "yearly calibration", due_ms=due_open)
        ),
    )
    res_ok(c, wstep(c, "equipment", "assign", 1, assignee="metrology team"))
    res_ok(c, wstep(c, "equipment", "diagnose", 1, note="error +0.8% at 10% load, class 1 allows 1%"))
    refused(
        c, wstep(c, "equipment", "repair", 1, note="calibrated"), Code.INVALID_PAYLOAD, "next calibration"
    )
    next_due = c.time_ms + 365 * 86_400_000
    res_ok(c, wstep(c, "equipment", "repair", 1, note="calibrated on site", calibration_due_ms=next_due))
    res_ok(c, wstep(c, "owner", "verify", 1, result="pass", note="certificate 2026-117 seen"))
    assert list_calibrations(c.store) == []
    res_ok(c, wstep(c, "owner", "close", 1, note="ok"))
    [cal] = list_calibrations(c.store)
    assert cal.device == DEV and cal.due_ms == next_due and cal.order == 1
    # An inspection order takes no due date.
    res_ok(c, c.admin("owner", "workorder", wo.make_open("inspection", DEV, "look")))
    res_ok(c, wstep(c, "equipment", "assign", 2, assignee="x"))
    res_ok(c, wstep(c, "equipment", "diagnose", 2, note="fine"))
    refused(
        c,
        wstep(c, "equipment", "repair", 2, note="x", calibration_due_ms=next_due),
        Code.INVALID_PAYLOAD,
        "not a calibration",
    )


def test_mempool_admission_decides_as_apply_does() -> None:
    c, _ = setup_chain()
    pool = Mempool(c.led)
    now = c.time_ms + 1

    def admit(raw: bytes) -> None:
        pool.admit(c.led.decode_tx(raw), now)

    admit(raise_tx(c))
    # The second raise of the episode is refused at admission: the first one is pending.
    with pytest.raises(CempError) as e:
        admit(raise_tx(c, "equipment"))
    assert e.value.code == Code.ALREADY_EXISTS and e.value.status == 409
    c.c.admin_nonce["equipment"] -= 1
    # Steps on the pending alarm are admitted in order; a forbidden one is refused with 403.
    admit(c.admin("owner", "alarm", al.make_step("acknowledge", 1, 1)))
    with pytest.raises(CempError) as e:
        admit(c.admin("owner", "alarm", al.make_step("assign", 1, 2, assignee="x")))
    assert e.value.code == Code.NOT_AUTHORIZED and e.value.status == 403
    c.c.admin_nonce["owner"] -= 1
    admit(c.admin("equipment", "alarm", al.make_step("assign", 1, 2, assignee="Li")))
    assert len(pool.take(10)) == 3


def test_a_block_with_forbidden_steps_is_decided_alike_by_three_ledgers() -> None:
    """The proposer puts forbidden txs in a block without the mempool; every node marks them refused with the
    same reason and reaches the same app hash."""
    from cemp import wiring
    from node.chain import header_hash
    from node.store import MemoryStore
    from tests.support.testing import TestConsortium

    cons = TestConsortium.create(n_nodes=3)
    chains = [Chain(cons) for _ in range(3)]
    for ch in chains[1:]:
        ch.store = MemoryStore()
        ch.led = Ledger(ch.store, cons.genesis, wiring.kinds())
    lead = chains[0]
    _dev, reg = cons.register_device(DEV)
    txs = [
        reg,
        raise_tx(lead, "regulator"),  # forbidden: the regulator raises
        raise_tx(lead, "owner"),
        lead.admin("owner", "alarm", al.make_step("assign", 1, 1, assignee="x")),  # forbidden: owner assigns
        lead.admin("equipment", "alarm", al.make_step("acknowledge", 1, 1)),  # forbidden: equipment acks
    ]
    results = []
    for _i, raw in enumerate(txs):
        led = lead.led
        lead.time_ms += 1
        staged = led.execute(
            (raw,), time_ms=lead.time_ms, proposer=lead.nid, term=0, last_commit=led.cert(led.height)
        )
        block = led.sign_block(staged, cons.node_keys[lead.nid])
        h = header_hash(block.header)
        cert = tuple(led.vote(h, n, k) for n, k in cons.node_keys.items())
        led.commit(block, staged, cert)
        for other in chains[1:]:
            st = other.led.apply_block(block, cert)
            assert st.results == staged.results and st.header.app_hash == staged.header.app_hash
        results.append(staged.results[0])
    assert [r.code for r in results] == [
        0,
        int(Code.NOT_AUTHORIZED),
        0,
        int(Code.NOT_AUTHORIZED),
        int(Code.NOT_AUTHORIZED),
    ]
    for ch in chains:
        a = load_alarm(ch.store, 1)
        assert a is not None and a.state == "open" and a.steps == 1


def test_honest_nodes_refuse_a_block_whose_proposer_let_a_forbidden_step_pass() -> None:
    """A proposer running a kind without the permission check marks the regulator's raise valid; the followers
    execute the block themselves, get another result and refuse the block (results root), so it never commits."""
    from dataclasses import replace

    from cemp import wiring
    from node.chain import ChainError, header_hash
    from node.store import MemoryStore
    from node.txkinds import KindRegistry
    from tests.support.testing import TestConsortium

    cons = TestConsortium.create(n_nodes=3)
    owner_key = cons.admins["owner"].public

    class Lax(al.AlarmKind):
        def effects(self, view: Any, env: Any, tx: Any, p: Any) -> dict[bytes, bytes]:
            return super().effects(view, env, replace(tx, sender=owner_key), p)

    kinds = dict(wiring.kinds())
    kinds["alarm"] = Lax()
    lax = KindRegistry(kinds.values())
    bad_led = Ledger(MemoryStore(), cons.genesis, lax)
    good = [Ledger(MemoryStore(), cons.genesis, wiring.kinds()) for _ in range(2)]
    _dev, reg = cons.register_device(DEV)
    t = 1_800_000_000_000
    nid = cons.genesis.nodes[0].node_id
    for i, raw in enumerate(
        [reg, cons.admin_tx("regulator", "alarm", al.make_raise(DEV, "step", SINCE, "e", "o", "m"))]
    ):
        staged = bad_led.execute(
            (raw,), time_ms=t + i, proposer=nid, term=0, last_commit=bad_led.cert(bad_led.height)
        )
        assert staged.results[0].code == 0
        block = bad_led.sign_block(staged, cons.node_keys[nid])
        cert = tuple(bad_led.vote(header_hash(block.header), n, k) for n, k in cons.node_keys.items())
        if i == 0:
            bad_led.commit(block, staged, cert)
            for g in good:
                g.apply_block(block, cert)
            continue
        for g in good:
            with pytest.raises(ChainError, match="results differ"):
                g.apply_block(block, cert)
            assert g.height == 1 and load_alarm(g.store, 1) is None


def test_a_detector_finding_becomes_an_alarm_with_its_evidence() -> None:
    from energy.detect import Obs, check_counter
    from maintenance.findings import raise_from_finding

    c, dev = setup_chain()
    c.counter(dev, SINCE, 1, 1000, start_wh=90_000)
    hashes = _readings_tx_hashes(c)
    assert len(hashes) == 2
    obs = [
        Obs(SINCE, 1, 5000, ref=hashes[0].hex()),
        Obs(SINCE + 60_000, 2, 4000, ref=hashes[1].hex()),
        Obs(SINCE + 120_000, 3, 4100, ref=""),
    ]
    [f] = check_counter(DEV, obs, rated_power_w=None)
    p = raise_from_finding(f)
    assert p.raised is not None and p.raised.rule == "negative_delta" and p.raised.since_ms == f.since_ms
    assert set(p.raised.evidence) <= set(hashes[:2]) and p.raised.evidence
    res_ok(c, c.admin("equipment", "alarm", p))
    a = load_alarm(c.store, 1)
    assert a is not None and a.raised.message == f.message and a.raised.message_zh == f.message_zh
    assert "5,000.0 Wh" in a.raised.expected and "4,000.0 Wh" in a.raised.observed
    # The evaluator runs again an hour later and finds the same episode: refused, once is enough.
    refused(c, c.admin("owner", "alarm", raise_from_finding(f)), Code.ALREADY_EXISTS, "already records")


def test_a_persons_roles_narrow_what_their_org_may_do() -> None:
    """With per-person accounts (the chain's authorizer decides the org a person acts for), a step needs both the
    org's role and one of the person's roles: the equipment firm's maintenance engineer diagnoses but does not
    assign; its operator assigns but does not diagnose; an auditor takes no step; the org's admin key does all."""
    from maintenance import workflow as wf
    from maintenance.chainrules import Actor, allow
    from tests.support.testing import TestConsortium

    orgs = {o.name: o for o in TestConsortium.create().genesis.orgs}
    eng = Actor(orgs["equipment"], frozenset({"maintenance_engineer"}))
    op = Actor(orgs["equipment"], frozenset({"operator"}))
    aud = Actor(orgs["owner"], frozenset({"auditor"}))
    admin = Actor(orgs["equipment"])
    flow = wf.WORKORDER_FLOW
    allow(eng, flow["diagnose"], "work order 1")
    allow(op, flow["assign"], "work order 1")
    allow(admin, flow["diagnose"], "work order 1")
    allow(admin, flow["assign"], "work order 1")
    for actor, action in ((eng, "assign"), (op, "diagnose"), (aud, "comment"), (aud, "verify")):
        with pytest.raises(CempError) as e:
            allow(actor, flow[action], "work order 1")
        assert e.value.code == Code.NOT_AUTHORIZED and "this person of" in e.value.message, e.value.message
