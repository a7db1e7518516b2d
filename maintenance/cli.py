"""``cemp alarm ...`` and ``cemp workorder ...``: alarms and inspection work orders on chain.

Reading (``list``, ``show``, ``calibrations``, ``flow``) needs only a node's address. Every step is a tx signed with
the acting org's admin key or a person's own key (``--key``: a person acts for their org within their roles; an
encrypted key file reads its passphrase from ``CEMP_KEY_PASSPHRASE``); the command waits until the step is
committed and prints it with its tx hash, or the chain's reason for refusing it (exit 1). ``cemp alarms`` (plural) is another thing: the collector's local data-quality alarms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from access.client import read_as
from maintenance import alarms as al
from maintenance import client as mc
from maintenance import workflow as wf
from maintenance import workorders as wo
from node.chain import ChainRef
from node.client import NodeClient
from node.crypto import KeyFileError, KeyPair, read_key_file
from node.errors import CempError

DEFAULT_NODE = "http://127.0.0.1:7001"
CST_OFFSET_MS = 8 * 3_600_000


def _when(ms: int) -> str:
    """Local time of the site (China Standard Time) for people."""
    return datetime.fromtimestamp((ms + CST_OFFSET_MS) / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _key(path: str) -> KeyPair:
    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    return read_key_file(Path(path), passphrase)


def _due_ms(s: str) -> int:
    try:
        d = datetime.strptime(s, "%Y-%m-%d")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a date like 2027-01-31") from None
    return int(d.replace(tzinfo=UTC).timestamp() * 1000) - CST_OFFSET_MS


def _run(name: str, args: argparse.Namespace, fn: Callable[[NodeClient], Awaitable[Any]]) -> int:
    async def go() -> Any:
        async with NodeClient(args.nodes) as c:
            return await fn(c)

    try:
        out = asyncio.run(go())
    except CempError as e:
        print(f"cemp {name}: {e.message}", file=sys.stderr)
        return 1
    except KeyFileError as e:
        print(f"cemp {name}: {e}", file=sys.stderr)
        return 1
    if isinstance(out, str):
        print(out)
    elif out is not None:
        print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def _done(what: str, action: str, d: mc.Done) -> str:
    return f"{what} {d.number}: {action} committed in block {d.height}, tx {d.tx}; now {d.state}"


def render_history(steps: list[dict[str, Any]]) -> list[str]:
    out = []
    for i, s in enumerate(steps):
        extra = "".join(f"  {k}: {s[k]}" for k in ("assignee", "note", "detail") if s.get(k))
        out.append(f"  {i:>2} {_when(s['time_ms'])}  {s['action']:<11} -> {s['state']:<12} {s['org']:<10} "
                   f"tx {s['tx'][:16]}…{extra}")  # fmt: skip
    return out


def render_alarm(a: dict[str, Any]) -> str:
    lines = [
        f"alarm {a['number']} [{a['state']}] {a['severity']} {a['rule']} on {a['device']} {a['quantity']}".rstrip(),
        f"  {a['message']}",
        f"  expected: {a['expected']}",
        f"  observed: {a['observed']}",
        f"  since:    {_when(a['since_ms'])} (China Standard Time), found by {a['source']}, raised by {a['raised_by']}",
    ]
    if a["evidence"]:
        lines.append(f"  evidence: {', '.join(h[:16] + '…' for h in a['evidence'])}  (GET /v1/txs/<hash>)")
    if a.get("assignee"):
        lines.append(f"  assigned to {a['assignee']}")
    if a["workorders"]:
        lines.append(f"  work orders: {', '.join(str(n) for n in a['workorders'])}")
    if "history" in a:
        lines += ["  history:", *render_history(a["history"])]
    if a["actions"]:
        lines.append(f"  steps open now: {', '.join(a['actions'])}")
    return "\n".join(lines)


def render_order(w: dict[str, Any]) -> str:
    src = f"alarm {w['alarm']}" if w["alarm"] else w["reason"]
    lines = [
        f"work order {w['number']} [{w['state']}] {w['title']}",
        f"  device {w['device']}; from {src}; opened by {w['opened_by']} {_when(w['opened_ms'])}"
        + (f"; due {_when(w['due_ms'])[:10]}" if w["due_ms"] else ""),
    ]
    if w.get("assignee"):
        lines.append(f"  assigned to {w['assignee']}")
    if w.get("calibration_due_ms"):
        lines.append(f"  next calibration due {_when(w['calibration_due_ms'])[:10]}")
    if "history" in w:
        lines += ["  history:", *render_history(w["history"])]
    if w["actions"]:
        lines.append(f"  steps open now: {', '.join(w['actions'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- alarm


def cmd_alarm(args: argparse.Namespace) -> int:
    act = args.alarm_cmd

    async def fn(c: NodeClient) -> Any:
        if act == "list":
            body = await _read(
                c, args, "/v1/alarms", limit=args.limit, **({"state": args.state} if args.state else {})
            )
            items = body["alarms"]
            if args.json:
                return items
            if not items:
                return "no alarms" + _withheld(body)
            return "\n".join(
                f"{a['number']:>5} {a['state']:<12} {a['severity']:<8} {a['rule']:<12} {a['device']:<20} "
                f"since {_when(a['since_ms'])}  {a['message'][:60]}"
                for a in items
            ) + _withheld(body)
        if act == "show":
            a = await _read(c, args, f"/v1/alarms/{args.number}")
            return a if args.json else render_alarm(a)
        key = _key(args.key)
        chain = ChainRef.from_status(await c.status())
        if act == "raise":
            p = al.make_raise(
                args.device,
                args.rule,
                int(args.since_ms),
                args.expected,
                args.observed,
                args.message,
                quantity=args.quantity,
                severity=args.severity,
                evidence=tuple(bytes.fromhex(h) for h in args.evidence),
                source="manual",
            )
            return _done("alarm", "raise", await mc.raise_alarm(c, key, chain, p))
        d = await mc.alarm_step(
            c, key, chain, act, args.number, assignee=getattr(args, "to", ""), note=args.note or ""
        )
        return _done("alarm", act, d)

    return _run("alarm", args, fn)


# --------------------------------------------------------------------------------------------- workorder


def cmd_workorder(args: argparse.Namespace) -> int:
    act = args.wo_cmd

    async def fn(c: NodeClient) -> Any:
        if act == "list":
            q = {"state": args.state} if args.state else {}
            body = await _read(c, args, "/v1/workorders", limit=args.limit, **q)
            items = body["workorders"]
            if args.json:
                return items
            if not items:
                return "no work orders" + _withheld(body)
            return "\n".join(
                f"{w['number']:>5} {w['state']:<10} {w['reason']:<11} {w['device']:<20} "
                f"{(w['assignee'] or '-'):<16} {w['title'][:60]}"
                for w in items
            ) + _withheld(body)
        if act == "show":
            w = await _read(c, args, f"/v1/workorders/{args.number}")
            return w if args.json else render_order(w)
        if act == "calibrations":
            cal = await c.get("/v1/calibrations")
            if args.json:
                return cal
            lines = [
                f"{m['device']:<22} due {m['due']}{'  OVERDUE' if m['overdue'] else ''}  (work order {m['order']})"
                for m in cal["meters"]
            ]
            lines += [f"{h:<22} no calibration on chain" for h in cal["without_calibration"]]
            return "\n".join(lines) or "no meters"
        if act == "flow":
            f = await c.get("/v1/maintenance/flow")
            if args.json:
                return f
            out = []
            for what in ("alarm", "workorder"):
                out.append(f"{what}: states {', '.join(f[what]['states'])}")
                for s in f[what]["steps"]:
                    out.append(f"  {s['action']:<12} from {', '.join(s['from']) or '-':<40} by {s['who']}")
            return "\n".join(out)
        key = _key(args.key)
        chain = ChainRef.from_status(await c.status())
        if act == "open":
            reason = "alarm" if args.alarm else args.reason
            p = wo.make_open(
                reason,
                args.device,
                args.title,
                alarm=args.alarm or 0,
                due_ms=args.due or 0,
                note=args.note or "",
            )
            return _done("work order", "open", await mc.open_order(c, key, chain, p))
        d = await mc.order_step(
            c,
            key,
            chain,
            act,
            args.number,
            assignee=getattr(args, "to", "") or "",
            note=getattr(args, "note", "") or "",
            result=getattr(args, "result", "") or "",
            calibration_due_ms=getattr(args, "next_due", None) or 0,
        )
        return _done("work order", act, d)

    return _run("workorder", args, fn)


def _common(p: argparse.ArgumentParser, key: bool) -> None:
    p.add_argument("--nodes", default=DEFAULT_NODE, help=f"a node's API address (default {DEFAULT_NODE})")
    if key:
        p.add_argument(
            "--key",
            required=True,
            help="the acting org's admin key file, or a person's own key file (a person acts for their org "
            "within their roles; the step is signed with it; CEMP_KEY_PASSPHRASE if encrypted)",
        )
    else:
        p.add_argument("--json", action="store_true", help="print the node's JSON")


def _list_and_show(sub: Any, items: str, states: tuple[str, ...], show_help: str) -> None:
    ls = sub.add_parser("list", help=f"{items}, newest first")
    ls.add_argument("--state", help="open (not closed), closed, or one of " + ", ".join(states))
    ls.add_argument("--limit", type=int, default=50)
    _common(ls, key=False)
    sh = sub.add_parser("show", help=show_help)
    sh.add_argument("number", type=int)
    _common(sh, key=False)
    for x in (ls, sh):
        x.add_argument(
            "--key",
            help="sign in with this key file (an org admin's or a person's) to see items about devices whose "
            "readings are members-only and that you may read; without it, only public ones",
        )


async def _read(c: NodeClient, args: argparse.Namespace, path: str, **params: Any) -> Any:
    """GET ``path``, signed in with ``--key`` when given (the node then shows what that key may read)."""
    return await read_as(c, _key(args.key) if getattr(args, "key", None) else None, path, **params)


def _withheld(body: dict[str, Any]) -> str:
    n = int(body.get("withheld") or 0)
    return f"\n({n} more about members-only devices: --key with a key that may read them)" if n else ""


def _who(flow: dict[str, wf.Transition], action: str) -> str:
    return f"{flow[action].help}; signed by {wf.who(flow[action].roles)}"


def add_commands(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = sub.add_parser(
        "alarm",
        help="alarms on chain: list, show, raise, acknowledge, assign, comment, close",
        description="Alarms on chain. Each is raised once per episode (device, rule, quantity, start) from a "
        "finding, then acknowledged by the owner, assigned by the equipment firm and closed by the owner; any "
        "member org may comment. Every step is a tx signed with the acting org's admin key or a person's own "
        "key and kept on every node. (cemp alarms, plural, lists the collector's local data-quality alarms.)",
        formatter_class=fmt,
        epilog="examples:\n  cemp alarm list --state open\n  cemp alarm show 3\n"
        "  cemp alarm acknowledge 3 --key demo-data/keys/owner.admin.key --note 'seen'\n"
        "  cemp alarm assign 3 --to 'Li Gang' --key demo-data/keys/equipment.admin.key",
    )
    a = ap.add_subparsers(dest="alarm_cmd", required=True)
    _list_and_show(a, "alarms", wf.ALARM_STATES, "one alarm: expected, observed, since, evidence, history")
    rp = a.add_parser(
        "raise", help=_who(wf.ALARM_FLOW, "raise") + " (by hand; the demo raises from findings)"
    )
    rp.add_argument("--device", required=True)
    rp.add_argument("--rule", required=True, choices=wf.ALARM_RULE_NAMES)
    rp.add_argument("--quantity", default="", help="e.g. energy.import; empty for the whole device")
    rp.add_argument("--severity", default="warning", choices=wf.SEVERITIES)
    rp.add_argument("--since-ms", required=True, help="start of the episode, Unix ms")
    rp.add_argument("--expected", required=True)
    rp.add_argument("--observed", required=True)
    rp.add_argument("--message", required=True)
    rp.add_argument("--evidence", nargs="*", default=[], help="hashes of committed txs that show it")
    _common(rp, key=True)
    for action in ("acknowledge", "assign", "comment", "close"):
        x = a.add_parser(action, help=_who(wf.ALARM_FLOW, action))
        x.add_argument("number", type=int)
        if action == "assign":
            x.add_argument("--to", required=True, help="the person or team who handles it")
        x.add_argument("--note", required=action in ("comment", "close"), help="free text kept on chain")
        _common(x, key=True)
    ap.set_defaults(func=cmd_alarm)

    wp = sub.add_parser(
        "workorder",
        help="inspection work orders on chain: list, show, open, assign, diagnose, repair, verify, close",
        description="Inspection work orders on chain, as in the case's inspection flow: opened from an alarm or a "
        "scheduled inspection or calibration; the equipment firm assigns, diagnoses and repairs; the owner "
        "verifies (pass, or fail back to diagnosed) and closes. An illegal step is refused with the state and the "
        "steps open in it. A calibration order's repair records the meter's next calibration due date "
        "(cemp workorder calibrations lists them). Every step is a tx signed with the acting org's admin key or "
        "a person's own key.",
        formatter_class=fmt,
        epilog="examples:\n  cemp workorder open --alarm 3 --device 88.123.45/101.1.3 --title 'check tank heaters' "
        "--key demo-data/keys/owner.admin.key\n"
        "  cemp workorder open --reason calibration --device 88.123.45/101.1.1 --title 'yearly calibration' "
        "--due 2027-03-01 --key ...\n"
        "  cemp workorder assign 1 --to 'Li Gang' --key demo-data/keys/equipment.admin.key\n"
        "  cemp workorder diagnose 1 --note 'heater 2 contactor welded' --key demo-data/keys/equipment.admin.key\n"
        "  cemp workorder repair 1 --note 'contactor replaced' --key demo-data/keys/equipment.admin.key\n"
        "  cemp workorder verify 1 --result pass --note 'back to profile' --key demo-data/keys/owner.admin.key\n"
        "  cemp workorder close 1 --note done --key demo-data/keys/owner.admin.key\n"
        "  cemp workorder show 1",
    )
    w = wp.add_subparsers(dest="wo_cmd", required=True)
    _list_and_show(w, "work orders", wf.WORKORDER_STATES, "one work order with its history")
    for name, help_ in (
        ("calibrations", "meters' calibration due dates (and meters with none on chain)"),
        ("flow", "the states and who may take each step"),
    ):
        x = w.add_parser(name, help=help_)
        _common(x, key=False)
    op = w.add_parser("open", help=_who(wf.WORKORDER_FLOW, "open"))
    op.add_argument("--device", required=True, help="the device to inspect or repair")
    op.add_argument("--alarm", type=int, help="the alarm it comes from (sets --reason alarm)")
    op.add_argument("--reason", default="inspection", choices=wf.WORKORDER_REASONS)
    op.add_argument("--title", required=True)
    op.add_argument("--due", type=_due_ms, help="due date YYYY-MM-DD (site local)")
    op.add_argument("--note")
    _common(op, key=True)
    for action in ("assign", "diagnose", "repair", "verify", "close", "comment"):
        x = w.add_parser(action, help=_who(wf.WORKORDER_FLOW, action))
        x.add_argument("number", type=int)
        if action == "assign":
            x.add_argument("--to", required=True, help="the engineer or team")
        if action == "verify":
            x.add_argument("--result", required=True, choices=("pass", "fail"))
        if action == "repair":
            x.add_argument(
                "--next-due",
                type=_due_ms,
                help="calibration orders: the meter's next calibration due, YYYY-MM-DD",
            )
        x.add_argument("--note", required=action != "assign", help="what was found / done (kept on chain)")
        _common(x, key=True)
    wp.set_defaults(func=cmd_workorder)
