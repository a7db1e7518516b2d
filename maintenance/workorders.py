"""The ``workorder`` tx kind: inspection work orders, opened from an alarm or a scheduled inspection or
calibration, then assigned, diagnosed, repaired, verified and closed, each step a signed tx.

Rules (checked at admission and again on apply, like every kind):
- the state machine and who may take each step: ``maintenance.workflow.WORKORDER_FLOW``; an illegal step is
  refused with a 409 naming the state and the steps open in it; a step made on a stale view is refused;
- ``open``: the device is registered; reason ``alarm`` names an alarm of the same device that is not closed (the
  alarm records the order), the other reasons name none; a title; a due date after 2015 or 0;
- ``diagnose``, ``repair``, ``verify``, ``close`` and ``comment`` need a note (what was found, what was done...);
  ``assign`` names the engineer; ``verify`` says ``pass`` or ``fail``;
- ``repair`` of a ``calibration`` order records the meter's next calibration due date (later than the block
  time); ``close`` then writes the meter's calibration record (``schema.calibration``), which the routes list with
  the due dates of every meter.

State: ``schema.workorder(n)`` (``WorkOrderRecord``), history ``schema.workorder_step(n, i)`` (``Step``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from maintenance import workflow as wf
from maintenance.alarms import load_alarm, step_json
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
from maintenance.model import (
    AlarmRecord,
    CalibrationRecord,
    Step,
    WorkOrderOpen,
    WorkOrderPayload,
    WorkOrderRecord,
)
from node import codec, schema
from node.devices import load_device
from node.errors import CempError, Code
from node.readings import EARLIEST_TS_MS
from node.state import StateView
from node.txkinds import Env
from node.types import Handle, ShortStr, Text, TimestampMs, Tx

MAX_DUE_MS = 4_102_444_800_000  # 2100-01-01: a due date beyond it is a typo


def load_order(view: Reader, number: int) -> WorkOrderRecord | None:
    return load_one(view, schema.workorder(number), WorkOrderRecord)


def order_history(view: Iterable, number: int) -> list[Step]:
    return steps(view, schema.workorder_steps_prefix(number), Step)


def list_orders(view: Iterable, *, newest_first: bool = True, limit: int = 200) -> list[WorkOrderRecord]:
    return list_under(view, schema.WORKORDER_PREFIX, WorkOrderRecord, newest_first=newest_first, limit=limit)


def load_calibration(view: Reader, handle: str) -> CalibrationRecord | None:
    return load_one(view, schema.calibration(handle), CalibrationRecord)


def list_calibrations(view: Iterable, limit: int = 5000) -> list[CalibrationRecord]:
    return list_under(view, schema.CALIBRATION_PREFIX, CalibrationRecord, newest_first=False, limit=limit)


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _check_open(view: StateView, env: Env, o: WorkOrderOpen) -> AlarmRecord | None:
    if o.reason not in wf.WORKORDER_REASONS:
        raise bad(f"reason {o.reason!r}: use one of {', '.join(wf.WORKORDER_REASONS)}")
    if load_device(view, o.device) is None:
        raise CempError(Code.UNKNOWN_DEVICE, f"device {o.device} is not registered")
    text(o.title, "title", True)
    if o.due_ms and not EARLIEST_TS_MS <= o.due_ms <= MAX_DUE_MS:
        raise bad("due_ms must be a time between 2015 and 2100 (or 0 for none)")
    if o.reason != "alarm":
        if o.alarm:
            raise bad(f"a {o.reason} order names no alarm (use reason alarm)")
        return None
    a = load_alarm(view, o.alarm)
    if a is None:
        raise CempError(Code.NOT_FOUND, f"no alarm {o.alarm} on this chain")
    if a.state == "closed":
        raise CempError(Code.ALREADY_EXISTS, f"alarm {o.alarm} is closed; open the order without it")
    if a.raised.device != o.device:
        raise bad(f"alarm {o.alarm} is about {a.raised.device}, not {o.device}")
    return a


class WorkOrderKind(StepKind):
    name = "workorder"
    payload_type = WorkOrderPayload
    person_roles = wf.PEOPLE_WHO_WRITE
    """Person roles the chain's authorizer lets send a ``workorder`` tx at all; each step narrows it."""

    def effects(self, view: StateView, env: Env, tx: Tx, p: WorkOrderPayload) -> dict[bytes, bytes]:
        """Every state write of the step (the same dict for admission and apply), after checking it."""
        actor = actor_of(env, tx)
        t = wf.WORKORDER_FLOW.get(p.action)
        if t is None:
            raise bad(f"unknown work-order action {p.action!r}: use one of {', '.join(wf.WORKORDER_FLOW)}")
        unused("an assignee", p.action, p.action != "assign" and bool(p.assignee))
        unused("opening details", p.action, p.action != "open" and p.opened is not None)
        unused("a result", p.action, p.action != "verify" and bool(p.result))
        unused("a calibration due date", p.action, p.action != "repair" and bool(p.calibration_due_ms))
        text(p.note, "note", p.action not in ("open", "assign"))
        if p.action == "open":
            allow(actor, t, "a work order")
            if p.opened is None:
                raise bad("open needs the order's details (opened)")
            if p.order != 0 or p.step != 0:
                raise bad("open takes order 0 and step 0 (the chain numbers the order)")
            o = p.opened
            alarm = _check_open(view, env, o)
            n = next_number(view, b"o")
            rec = WorkOrderRecord(
                n,
                o,
                ShortStr("open"),
                ShortStr(""),
                1,
                ShortStr(actor.name),
                env.tx_hash,
                env.time_ms,
                env.time_ms,
                TimestampMs(0),
                TimestampMs(0),
            )
            detail = f"from alarm {o.alarm}" if alarm is not None else f"{o.reason} of {o.device}"
            if o.due_ms:
                detail += f", due {day(o.due_ms)}"
            out = {
                schema.maint_counter(b"o"): number_bytes(n),
                schema.workorder(n): codec.encode(rec),
                schema.workorder_step(n, 0): codec.encode(
                    step_record("open", "open", actor, tx, env, "", p.note, detail)
                ),
            }
            if alarm is not None:
                linked = replace(alarm, updated_ms=env.time_ms, workorders=(*alarm.workorders, n))
                out[schema.alarm(alarm.number)] = codec.encode(linked)
            return out
        cur = load_order(view, p.order)
        if cur is None:
            raise CempError(Code.NOT_FOUND, f"no work order {p.order} on this chain")
        state = advance(
            wf.WORKORDER_FLOW, actor, "work order", p.order, p.action, cur.state, cur.steps, p.step
        )
        assignee, due, calibrated, detail = cur.assignee, cur.calibration_due_ms, cur.calibrated_ms, ""
        out = {}
        if p.action == "assign":
            text(p.assignee, "assignee", True)
            assignee = ShortStr(p.assignee)
        elif p.action == "verify":
            if p.result not in ("pass", "fail"):
                raise bad("verify says pass or fail (result)")
            if p.result == "fail":
                state = "diagnosed"
            detail = (
                f"verification {p.result}ed" if p.result == "pass" else "verification failed: repair again"
            )
        elif p.action == "repair" and cur.opened.reason == "calibration":
            if not env.time_ms < p.calibration_due_ms <= MAX_DUE_MS:
                raise bad("the repair of a calibration order records the next calibration due date (future)")
            due, calibrated = p.calibration_due_ms, env.time_ms
            detail = f"calibrated; next calibration due {day(due)}"
        elif p.action == "repair" and p.calibration_due_ms:
            raise bad(f"work order {p.order} is a {cur.opened.reason}, not a calibration: no due date")
        elif p.action == "close" and cur.opened.reason == "calibration":
            if not due:
                raise bad(f"work order {p.order} has no calibration recorded (repair with a due date)")
            out[schema.calibration(cur.opened.device)] = codec.encode(
                CalibrationRecord(Handle(cur.opened.device), calibrated, due, cur.number, env.tx_hash)
            )
            detail = f"calibration of {cur.opened.device} recorded; due {day(due)}"
        rec = replace(
            cur,
            state=ShortStr(state),
            assignee=assignee,
            steps=cur.steps + 1,
            updated_ms=env.time_ms,
            calibration_due_ms=TimestampMs(due),
            calibrated_ms=TimestampMs(calibrated),
        )
        out[schema.workorder(cur.number)] = codec.encode(rec)
        out[schema.workorder_step(cur.number, cur.steps)] = codec.encode(
            step_record(p.action, state, actor, tx, env, p.assignee, p.note, detail)
        )
        return out

    def describe(self, p: WorkOrderPayload) -> dict[str, Any]:
        out: dict[str, Any] = {"action": p.action, "order": p.order, "step": p.step}
        if p.opened is not None:
            out["opened"] = open_json(p.opened)
        for k in ("assignee", "note", "result"):
            if getattr(p, k):
                out[k] = getattr(p, k)
        if p.calibration_due_ms:
            out["calibration_due_ms"] = p.calibration_due_ms
        return out


def open_json(o: WorkOrderOpen) -> dict[str, Any]:
    return {"reason": o.reason, "device": o.device, "alarm": o.alarm, "title": o.title, "due_ms": o.due_ms}


def order_json(w: WorkOrderRecord) -> dict[str, Any]:
    return {
        "number": w.number,
        "state": w.state,
        "assignee": w.assignee,
        "steps": w.steps,
        "opened_by": w.opened_by,
        "opened_tx": w.opened_tx.hex(),
        "opened_ms": w.opened_ms,
        "updated_ms": w.updated_ms,
        "calibration_due_ms": w.calibration_due_ms,
        **open_json(w.opened),
        "actions": wf.actions_open(wf.WORKORDER_FLOW, w.state, None),
    }


def calibration_json(c: CalibrationRecord, now_ms: int) -> dict[str, Any]:
    return {
        "device": c.device,
        "calibrated_ms": c.calibrated_ms,
        "due_ms": c.due_ms,
        "due": day(c.due_ms),
        "overdue": c.due_ms <= now_ms,
        "order": c.order,
        "tx": c.tx_hash.hex(),
    }


def make_open(
    reason: str, device: str, title: str, *, alarm: int = 0, due_ms: int = 0, note: str = ""
) -> WorkOrderPayload:
    o = WorkOrderOpen(ShortStr(reason), Handle(device), alarm, Text(title[:1024]), TimestampMs(due_ms))
    return WorkOrderPayload(
        ShortStr("open"), 0, 0, o, ShortStr(""), Text(note[:1024]), ShortStr(""), TimestampMs(0)
    )


def make_step(
    action: str,
    order: int,
    step: int,
    *,
    assignee: str = "",
    note: str = "",
    result: str = "",
    calibration_due_ms: int = 0,
) -> WorkOrderPayload:
    return WorkOrderPayload(
        ShortStr(action),
        order,
        step,
        None,
        ShortStr(assignee),
        Text(note[:1024]),
        ShortStr(result),
        TimestampMs(calibration_due_ms),
    )


__all__ = ["WorkOrderKind", "load_order", "make_open", "make_step", "order_history", "step_json"]
