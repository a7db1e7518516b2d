"""The ``alarm`` tx kind: an anomaly found in the signed readings, raised once per episode, then acknowledged,
assigned, commented on and closed by people, each step a signed tx.

Rules (``check`` runs them at admission against committed state plus the pending txs before it, and again on
apply against the block's state, so every node decides the same way):
- who may take which step, and from which state: ``maintenance.workflow.ALARM_FLOW``; a step made on a stale
  view (``step`` is not the alarm's step count) is refused, so a double submit is not two steps;
- ``raise``: the device is registered; rule, severity and source are known names; the episode start lies after
  2015 and not in the future; expected, observed and message are filled; at most ``MAX_EVIDENCE`` evidence txs,
  each once, each a tx the chain committed as valid. Raised once per episode: the episode key
  ``sha256(device, rule, quantity, since_ms)`` is kept for ever and a second raise of it is refused (409, naming
  the alarm that holds it); while an alarm of the same device, rule and quantity is not closed, a new raise is
  refused too (a detector that moves its episode start does not open a second alarm);
- ``close`` is refused while a work order opened from the alarm is not closed.

State: ``schema.alarm(n)`` (``AlarmRecord``), its history ``schema.alarm_step(n, i)`` (``Step``), the episode and
open-slot indexes; numbers are given in commit order.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from maintenance import workflow as wf
from maintenance.chainrules import (
    Iterable,
    Reader,
    StepKind,
    actor_of,
    advance,
    allow,
    bad,
    list_under,
    load_one,
    next_number,
    number_bytes,
    step_record,
    steps,
    text,
    unused,
)
from maintenance.model import MAX_EVIDENCE, AlarmPayload, AlarmRaise, AlarmRecord, Step, WorkOrderRecord
from node import codec, schema
from node.devices import load_device
from node.errors import CempError, Code
from node.readings import EARLIEST_TS_MS, QUANTITY_RE
from node.state import StateView
from node.txkinds import Env
from node.types import Hash32, ShortStr, Text, TimestampMs, Tx, TxLocation


def episode_key(r: AlarmRaise) -> bytes:
    """The episode an alarm records: device, rule, quantity and start, hashed (raised once)."""
    parts = (r.device, r.rule, r.quantity, str(r.since_ms))
    return hashlib.sha256(b"cemp/alarm-episode/v1\x00" + "\x00".join(parts).encode()).digest()


def slot_key(r: AlarmRaise) -> bytes:
    """Device, rule and quantity, hashed: at most one alarm of a slot is not closed."""
    parts = (r.device, r.rule, r.quantity)
    return hashlib.sha256(b"cemp/alarm-slot/v1\x00" + "\x00".join(parts).encode()).digest()


def load_alarm(view: Reader, number: int) -> AlarmRecord | None:
    return load_one(view, schema.alarm(number), AlarmRecord)


def alarm_history(view: Iterable, number: int) -> list[Step]:
    return steps(view, schema.alarm_steps_prefix(number), Step)


def list_alarms(view: Iterable, *, newest_first: bool = True, limit: int = 200) -> list[AlarmRecord]:
    return list_under(view, schema.ALARM_PREFIX, AlarmRecord, newest_first=newest_first, limit=limit)


def alarm_of_episode(view: Reader, r: AlarmRaise) -> int | None:
    raw = view.get(schema.alarm_episode(episode_key(r)))
    return None if raw is None else int.from_bytes(raw, "big")


def _check_raise(view: StateView, env: Env, r: AlarmRaise) -> None:
    if load_device(view, r.device) is None:
        raise CempError(Code.UNKNOWN_DEVICE, f"device {r.device} is not registered")
    if r.quantity and not QUANTITY_RE.match(r.quantity):
        raise bad(
            f"quantity {r.quantity!r} is not a quantity name like energy.import (or empty: whole device)"
        )
    if r.rule not in wf.ALARM_RULE_NAMES:
        raise bad(f"rule {r.rule!r}: use one of {', '.join(wf.ALARM_RULE_NAMES)}")
    if r.severity not in wf.SEVERITIES:
        raise bad(f"severity {r.severity!r}: use one of {', '.join(wf.SEVERITIES)}")
    if r.source not in wf.ALARM_SOURCES:
        raise bad(f"source {r.source!r}: use one of {', '.join(wf.ALARM_SOURCES)}")
    if r.since_ms < EARLIEST_TS_MS or r.since_ms > env.time_ms + env.params.max_future_skew_ms:
        raise CempError(
            Code.BAD_TIMESTAMP,
            f"since_ms {r.since_ms} must lie between 2015 and the block time {env.time_ms}",
        )
    text(r.expected, "expected", True)
    text(r.observed, "observed", True)
    text(r.message, "message", True)
    text(r.message_zh, "message_zh", False)
    if len(r.evidence) > MAX_EVIDENCE:
        raise CempError(
            Code.TOO_LARGE, f"at most {MAX_EVIDENCE} evidence txs per alarm, got {len(r.evidence)}"
        )
    if len(set(r.evidence)) != len(r.evidence):
        raise bad("evidence names a tx twice")
    for h in r.evidence:
        raw = view.get(schema.tx(h))
        if raw is None:
            raise CempError(
                Code.NOT_FOUND, f"evidence tx {h.hex()[:16]}… is not on chain (committed txs only)"
            )
        loc = codec.decode(TxLocation, raw)
        if loc.code != 0:
            raise bad(f"evidence tx {h.hex()[:16]}… was refused by the chain ({loc.reason[:80]})")
    held = alarm_of_episode(view, r)
    if held is not None:
        raise CempError(Code.ALREADY_EXISTS, f"alarm {held} already records this episode (raised once)")
    raw = view.get(schema.alarm_open_slot(slot_key(r)))
    if raw is not None:
        n = int.from_bytes(raw, "big")
        cur = load_alarm(view, n)
        if cur is not None and cur.state != "closed":
            raise CempError(
                Code.ALREADY_EXISTS,
                f"alarm {n} for {r.device} {r.rule} {r.quantity or '(device)'} is still {cur.state}; "
                "comment on it instead of raising another",
            )


class AlarmKind(StepKind):
    name = "alarm"
    payload_type = AlarmPayload
    person_roles = wf.PEOPLE_WHO_WRITE
    """Person roles the chain's authorizer lets send an ``alarm`` tx at all; each step narrows it (``workflow``)."""

    def effects(self, view: StateView, env: Env, tx: Tx, p: AlarmPayload) -> dict[bytes, bytes]:
        """Every state write of the step (the same dict for admission and apply), after checking it."""
        actor = actor_of(env, tx)
        t = wf.ALARM_FLOW.get(p.action)
        if t is None:
            raise bad(f"unknown alarm action {p.action!r}: use one of {', '.join(wf.ALARM_FLOW)}")
        unused("an assignee", p.action, p.action != "assign" and bool(p.assignee))
        unused("a finding", p.action, p.action != "raise" and p.raised is not None)
        text(p.note, "note", p.action in ("comment", "close"))
        if p.action == "raise":
            allow(actor, t, "an alarm")
            if p.raised is None:
                raise bad("raise needs the finding (raised)")
            if p.alarm != 0 or p.step != 0:
                raise bad("raise takes alarm 0 and step 0 (the chain numbers the alarm)")
            r = p.raised
            _check_raise(view, env, r)
            n = next_number(view, b"a")
            rec = AlarmRecord(
                n,
                r,
                ShortStr("open"),
                ShortStr(""),
                1,
                ShortStr(actor.name),
                env.tx_hash,
                env.time_ms,
                env.time_ms,
                (),
            )
            return {
                schema.maint_counter(b"a"): number_bytes(n),
                schema.alarm(n): codec.encode(rec),
                schema.alarm_step(n, 0): codec.encode(
                    step_record("raise", "open", actor, tx, env, "", p.note)
                ),
                schema.alarm_episode(episode_key(r)): number_bytes(n),
                schema.alarm_open_slot(slot_key(r)): number_bytes(n),
            }
        cur = load_alarm(view, p.alarm)
        if cur is None:
            raise CempError(Code.NOT_FOUND, f"no alarm {p.alarm} on this chain")
        state = advance(wf.ALARM_FLOW, actor, "alarm", p.alarm, p.action, cur.state, cur.steps, p.step)
        assignee = cur.assignee
        if p.action == "assign":
            text(p.assignee, "assignee", True)
            assignee = ShortStr(p.assignee)
        if p.action == "close":
            for w in cur.workorders:
                raw = view.get(schema.workorder(w))
                if raw is not None and codec.decode(WorkOrderRecord, raw).state != "closed":
                    raise CempError(
                        Code.ALREADY_EXISTS,
                        f"work order {w} opened from alarm {p.alarm} is not closed yet; close it first",
                    )
        rec = replace(
            cur, state=ShortStr(state), assignee=assignee, steps=cur.steps + 1, updated_ms=env.time_ms
        )
        return {
            schema.alarm(cur.number): codec.encode(rec),
            schema.alarm_step(cur.number, cur.steps): codec.encode(
                step_record(p.action, state, actor, tx, env, p.assignee, p.note)
            ),
        }

    def describe(self, p: AlarmPayload) -> dict[str, Any]:
        out: dict[str, Any] = {"action": p.action, "alarm": p.alarm, "step": p.step}
        if p.raised is not None:
            out["raised"] = raise_json(p.raised)
        if p.assignee:
            out["assignee"] = p.assignee
        if p.note:
            out["note"] = p.note
        return out


def raise_json(r: AlarmRaise) -> dict[str, Any]:
    return {
        "device": r.device,
        "quantity": r.quantity,
        "rule": r.rule,
        "severity": r.severity,
        "since_ms": r.since_ms,
        "expected": r.expected,
        "observed": r.observed,
        "message": r.message,
        "message_zh": r.message_zh,
        "evidence": [h.hex() for h in r.evidence],
        "source": r.source,
    }


def step_json(s: Step) -> dict[str, Any]:
    return {
        "action": s.action,
        "state": s.state,
        "org": s.org,
        "signer": s.sender.hex(),
        "tx": s.tx_hash.hex(),
        "height": s.height,
        "time_ms": s.time_ms,
        "assignee": s.assignee,
        "note": s.note,
        "detail": s.detail,
    }


def alarm_json(a: AlarmRecord) -> dict[str, Any]:
    return {
        "number": a.number,
        "state": a.state,
        "assignee": a.assignee,
        "steps": a.steps,
        "raised_by": a.raised_by,
        "raised_tx": a.raised_tx.hex(),
        "raised_ms": a.raised_ms,
        "updated_ms": a.updated_ms,
        "workorders": list(a.workorders),
        **raise_json(a.raised),
        "actions": wf.actions_open(wf.ALARM_FLOW, a.state, None),
    }


def make_raise(
    device: str,
    rule: str,
    since_ms: int,
    expected: str,
    observed: str,
    message: str,
    *,
    quantity: str = "",
    severity: str = "warning",
    evidence: tuple[bytes, ...] = (),
    source: str = "energy.detect",
    message_zh: str = "",
) -> AlarmPayload:
    """A ``raise`` payload (texts cut to what the chain takes)."""
    r = AlarmRaise(
        device=device,  # type: ignore[arg-type]
        quantity=ShortStr(quantity),
        rule=ShortStr(rule),
        severity=ShortStr(severity),
        since_ms=TimestampMs(since_ms),
        expected=Text(expected[:1024]),
        observed=Text(observed[:1024]),
        message=Text(message[:1024]),
        message_zh=Text(message_zh[:1024]),
        evidence=tuple(Hash32(h) for h in evidence[:MAX_EVIDENCE]),
        source=ShortStr(source),
    )
    return AlarmPayload(ShortStr("raise"), 0, 0, r, ShortStr(""), Text(""))


def make_step(action: str, alarm: int, step: int, *, assignee: str = "", note: str = "") -> AlarmPayload:
    return AlarmPayload(ShortStr(action), alarm, step, None, ShortStr(assignee), Text(note[:1024]))
