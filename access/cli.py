"""``cemp login``, ``cemp people``, ``cemp grant``, ``cemp data-policy`` and ``cemp audit`` (added to the ``cemp``
CLI by the composition root).

Every write is a tx signed by the given key file (an org admin's, or a person's whose role allows it); every read
signs in first (the key signs a node's challenge; the node issues a 15-minute token bound to the key).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from access.audit import CSV_COLUMNS, csv_row
from access.client import audit_pages, read_as, sign_in, submit_signed
from access.model import (
    DATA_KINDS,
    ROLES,
    DataPolicyPayload,
    GrantPayload,
    GrantRevoke,
    PersonPut,
    PersonRevoke,
)
from node.client import NodeClient
from node.crypto import KeyFileError, KeyPair, public_key_of_file, read_key_file
from node.errors import CempError
from node.types import Handle, PublicKey, ShortStr, Text, TimestampMs

HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _key(path: str) -> KeyPair:
    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    return read_key_file(Path(path), passphrase)


def _pubkey(value: str) -> PublicKey:
    """64 hex characters, or a key file (only its public half is read)."""
    if HEX64.fullmatch(value):
        return PublicKey(bytes.fromhex(value))
    return public_key_of_file(Path(value))


def _list(value: str, allowed: tuple[str, ...] | None, what: str) -> tuple[str, ...]:
    items = tuple(sorted({v.strip() for v in value.split(",") if v.strip()}))
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise SystemExit(f"unknown {what}: {', '.join(bad)}; choose from {', '.join(allowed)}")
    return items


def _time_ms(value: str, end_of_day: bool = False) -> int:
    """``2026-12-31`` (UTC midnight; the end of that day with ``end_of_day``), an ISO time, or Unix ms."""
    if value.isdigit():
        return int(value)
    try:
        if len(value) == 10:
            d = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            return int(d.timestamp() * 1000) + (86_400_000 if end_of_day else 0)
        t = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"{value!r} is not a date (2026-12-31), an ISO time or Unix milliseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _run(what: str, coro: Any) -> int:
    try:
        out = asyncio.run(coro)
    except (CempError, KeyFileError) as e:
        print(f"cemp {what}: {getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    if out is not None:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


async def _submit(nodes: str, key: KeyPair, kind: str, payload: object) -> dict[str, Any]:
    async with NodeClient(nodes) as c:
        res = await submit_signed(c, key, kind, payload)
    return {"kind": kind, "tx": res.get("tx"), "height": res.get("height")}


def cmd_login(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with NodeClient(args.nodes) as c:
            got = await sign_in(c, _key(args.key), "web" if args.web else "api")
        if args.web:
            got["login_url"] = args.nodes.rstrip("/") + got.pop("login_path")
        return got

    return _run("login", run())


def cmd_people_add(args: argparse.Namespace) -> int:
    roles = _list(args.roles, ROLES, "roles") if args.roles else ()
    p = PersonPut(_pubkey(args.person), Text(args.name), tuple(ShortStr(r) for r in roles))
    return _run("people add", _submit(args.nodes, _key(args.key), "person.put", p))


def cmd_people_revoke(args: argparse.Namespace) -> int:
    p = PersonRevoke(_pubkey(args.person), Text(args.reason))
    return _run("people revoke", _submit(args.nodes, _key(args.key), "person.revoke", p))


def cmd_people_list(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with NodeClient(args.nodes) as c:
            return await read_as(c, _key(args.key), "/v1/people", **({"org": args.org} if args.org else {}))

    return _run("people list", run())


def cmd_grant_add(args: argparse.Namespace) -> int:
    until = _time_ms(args.until, end_of_day=True)
    p = GrantPayload(
        ShortStr(args.id),
        ShortStr(args.to),
        _pubkey(args.person) if args.person else None,
        tuple(ShortStr(d) for d in _list(args.data, DATA_KINDS, "data kinds")),
        tuple(Handle(h) for h in _list(args.devices or "", None, "devices")),
        tuple(ShortStr(s) for s in _list(args.sites or "", None, "sites")),
        TimestampMs(until),
        Text(args.note or ""),
    )
    return _run("grant add", _submit(args.nodes, _key(args.key), "grant", p))


def cmd_grant_revoke(args: argparse.Namespace) -> int:
    p = GrantRevoke(ShortStr(args.id), Text(args.reason or ""))
    return _run("grant revoke", _submit(args.nodes, _key(args.key), "grant.revoke", p))


def cmd_grant_list(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        async with NodeClient(args.nodes) as c:
            return await read_as(c, _key(args.key), "/v1/grants", **({"org": args.org} if args.org else {}))

    return _run("grant list", run())


def cmd_data_policy(args: argparse.Namespace) -> int:
    private = _list(args.private, DATA_KINDS, "data kinds") if args.private else ()
    devices = _list(args.devices or "", None, "devices")
    p = DataPolicyPayload(tuple(ShortStr(x) for x in private), tuple(Handle(d) for d in devices))
    return _run("data-policy", _submit(args.nodes, _key(args.key), "data.policy", p))


def cmd_audit(args: argparse.Namespace) -> int:
    filters: dict[str, Any] = {}
    for name in ("actor", "object", "kind"):
        if getattr(args, name):
            filters[name] = getattr(args, name)
    if args.since:
        filters["from_ms"] = _time_ms(args.since)
    if args.until:
        filters["to_ms"] = _time_ms(args.until, end_of_day=True)
    show_bar = (not args.quiet and sys.stderr.isatty()) or args.progress

    async def run() -> list[dict[str, Any]]:
        from tqdm import tqdm

        bar: Any = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if not show_bar:
                return
            if bar is None:
                bar = tqdm(total=total, unit="block", desc="audit", file=sys.stderr, mininterval=0.2)
            bar.total = total
            bar.update(done - bar.n)

        out = []
        async with NodeClient(args.nodes, timeout_s=120) as c:
            async for e in audit_pages(c, _key(args.key), filters, progress, args.page_blocks):
                out.append(e)
        if bar is not None:
            bar.close()
        return out

    try:
        entries = asyncio.run(run())
    except (CempError, KeyFileError) as err:
        print(f"cemp audit: {getattr(err, 'message', err)}", file=sys.stderr)
        return 1
    buf = io.StringIO()
    if args.format == "json":
        json.dump(entries, buf, ensure_ascii=False, indent=2)
        buf.write("\n")
    elif args.format == "csv":
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for e in entries:
            w.writerow(csv_row(e))
    else:
        for e in entries:
            r = csv_row(e)
            buf.write(
                f"{r[0]}  #{r[1]}.{r[2]}  {r[3]:<14} {r[6]:<28} {r[8]:<32} {'ok' if e['ok'] else 'REFUSED ' + r[10]}\n"
            )
        buf.write(f"{len(entries)} entries\n")
    if args.out:
        Path(args.out).write_text(buf.getvalue(), encoding="utf-8")
        print(f"{len(entries)} entries written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def add_commands(sub: Any) -> None:
    def nodes(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--nodes", default="http://127.0.0.1:7001", help="a node's API URL (default %(default)s)"
        )

    lg = sub.add_parser(
        "login",
        help="sign in at a node with your key: a 15-minute API token, or (--web) a one-time link for the web UI",
        description="Your key signs the node's challenge; the key never leaves this machine. --web prints a "
        "link that signs the browser that opens it in (valid 2 minutes, once); the session lasts 8 hours.",
    )
    lg.add_argument("--key", required=True, help="your key file (a person's, or an org admin's)")
    lg.add_argument(
        "--web", action="store_true", help="a sign-in link for the web UI instead of an API token"
    )
    nodes(lg)
    lg.set_defaults(func=cmd_login)

    pe = sub.add_parser("people", help="people of an org and their roles (registered by the org's admin key)")
    ps = pe.add_subparsers(dest="people_cmd", required=True)
    pa = ps.add_parser("add", help="register a person's key with roles, or change their name or roles")
    pa.add_argument("--key", required=True, help="the org's admin key file")
    pa.add_argument("--person", required=True, help="the person's public key (64 hex) or key file")
    pa.add_argument("--name", required=True)
    pa.add_argument("--roles", default="", help=f"comma-separated, of: {', '.join(ROLES)} (none: read only)")
    nodes(pa)
    pa.set_defaults(func=cmd_people_add)
    pr = ps.add_parser("revoke", help="end a person's key at once (lost key, person left)")
    pr.add_argument("--key", required=True, help="the org's admin key file")
    pr.add_argument("--person", required=True, help="the person's public key (64 hex) or key file")
    pr.add_argument("--reason", required=True)
    nodes(pr)
    pr.set_defaults(func=cmd_people_revoke)
    pl = ps.add_parser("list", help="people of every org (or --org)")
    pl.add_argument("--key", required=True, help="your key file (to sign in)")
    pl.add_argument("--org")
    nodes(pl)
    pl.set_defaults(func=cmd_people_list)

    gr = sub.add_parser("grant", help="let another org (or one of its people) read some of your org's data")
    gs = gr.add_subparsers(dest="grant_cmd", required=True)
    ga = gs.add_parser("add", help="make (or replace) a grant")
    ga.add_argument("--key", required=True, help="your org's admin key, or an energy manager's key")
    ga.add_argument("--id", required=True, help="your name for the grant, e.g. heat-data-2026")
    ga.add_argument("--to", required=True, help="the org that may read")
    ga.add_argument("--person", help="only this person of that org (public key hex or key file)")
    ga.add_argument("--data", required=True, help=f"comma-separated, of: {', '.join(DATA_KINDS)}")
    ga.add_argument("--devices", help="comma-separated device handles; PREFIX/SUFFIX* covers a subtree")
    ga.add_argument("--sites", help="comma-separated site ids (for 'sites' data)")
    ga.add_argument(
        "--until", required=True, help="end date (UTC, inclusive: 2026-12-31), ISO time or Unix ms"
    )
    ga.add_argument("--note")
    nodes(ga)
    ga.set_defaults(func=cmd_grant_add)
    gv = gs.add_parser("revoke", help="end a grant at once")
    gv.add_argument("--key", required=True)
    gv.add_argument("--id", required=True)
    gv.add_argument("--reason")
    nodes(gv)
    gv.set_defaults(func=cmd_grant_revoke)
    gl = gs.add_parser("list", help="grants of every org (or --org), with their status")
    gl.add_argument("--key", required=True, help="your key file (to sign in)")
    gl.add_argument("--org")
    nodes(gl)
    gl.set_defaults(func=cmd_grant_list)

    dp = sub.add_parser(
        "data-policy", help="which kinds of your org's data only its members (and grantees) may read"
    )
    dp.add_argument("--key", required=True, help="the org's admin key file")
    dp.add_argument(
        "--private", default="", help=f"comma-separated, of: {', '.join(DATA_KINDS)} (empty: all public)"
    )
    nodes(dp)
    dp.set_defaults(func=cmd_data_policy)

    au = sub.add_parser(
        "audit",
        help="the audit trail: every administrative tx (grants, people, factor sets, sites, membership, ...)",
        description="Lists, from a running node, every administrative action on chain with its actor, object, "
        "time and outcome (refused attempts too); filter by actor (org, name or key prefix), object, kind and "
        "time; export as CSV or JSON.",
    )
    au.add_argument("--key", required=True, help="your key file (to sign in; any member)")
    au.add_argument("--actor", help="org name, person name or public-key hex prefix")
    au.add_argument("--object", help="text in the object: a site id, device handle, grant id ...")
    au.add_argument("--kind", help="one tx kind, e.g. grant or person.put")
    au.add_argument("--since", help="from this date/time (UTC)")
    au.add_argument("--until", help="up to this date (inclusive) or time (UTC)")
    au.add_argument("--format", choices=("table", "csv", "json"), default="table")
    au.add_argument("--out", help="write to this file instead of stdout")
    au.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    au.add_argument("--quiet", action="store_true", help="no progress bar")
    au.add_argument(
        "--page-blocks", type=int, default=2000, help="blocks the node reads per request (1-2000)"
    )
    nodes(au)
    au.set_defaults(func=cmd_audit)
