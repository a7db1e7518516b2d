"""``cemp baseline``, ``cemp site apply``, ``cemp factors publish`` and ``cemp rating`` (added to the ``cemp`` CLI by
the composition root)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from accounting.baseline import add_parser as add_baseline
from accounting.client import issue_rating, publish_factor_sets
from node.chain import ChainRef
from node.client import NodeClient
from node.crypto import KeyPair, read_key_file
from node.errors import CempError


def _key(path: str) -> KeyPair:
    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    return read_key_file(Path(path), passphrase)


def cmd_factors(args: argparse.Namespace) -> int:
    async def run() -> list[str]:
        async with NodeClient(args.nodes) as c:
            chain = ChainRef.from_status(await c.status())
            return await publish_factor_sets(c, _key(args.key), chain)

    try:
        done = asyncio.run(run())
    except CempError as e:
        print(f"cemp factors publish: {e.message}", file=sys.stderr)
        return 1
    print("recorded: " + (", ".join(done) if done else "nothing (every shipped set is on chain)"))
    return 0


def cmd_rating(args: argparse.Namespace) -> int:
    if not args.dry_run and not args.key:
        print(
            "cemp rating: --key (the owner's or the regulator's admin key) is needed to record a rating",
            file=sys.stderr,
        )
        return 2

    async def run() -> dict[str, Any]:
        async with NodeClient(args.nodes) as c:
            if args.dry_run:
                return dict(
                    (
                        await c.get(
                            f"/v1/sites/{args.site}/rating", period=args.period, benchmark=args.benchmark
                        )
                    )["computed"]
                )
            chain = ChainRef.from_status(await c.status())
            return await issue_rating(c, _key(args.key), chain, args.site, args.period, args.benchmark)

    try:
        r = asyncio.run(run())
    except CempError as e:
        print(f"cemp rating: {e.message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(r, ensure_ascii=False))
        return 0
    print(
        f"{r['site_id']} {r['period']}: grade {r['grade_location']} location-based (K {r['k_location']}), "
        f"grade {r['grade_market']} market-based (K {r['k_market']}); benchmark {r['benchmark']}"
        + ("" if args.dry_run else " — recorded on chain")
    )
    base = args.nodes.rstrip("/")
    print(f"label: {base}/v1/sites/{r['site_id']}/rating/label.svg?period={r['period']}")
    return 0


def cmd_site_apply(args: argparse.Namespace) -> int:
    from accounting.sitefile import SiteFileError, apply

    async def run() -> list[str]:
        async with NodeClient(args.nodes) as c:
            chain = ChainRef.from_status(await c.status())
            return await apply(c, _key(args.key), chain, Path(args.file))

    try:
        done = asyncio.run(run())
    except (CempError, SiteFileError, OSError) as e:
        print(f"cemp site apply: {getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    print("\n".join(f"recorded {d}" for d in done) if done else "the chain already matches the file")
    return 0


def add_commands(sub: Any) -> None:
    add_baseline(sub)
    sp = sub.add_parser("site", help="record a site and its accounting boundary from a TOML file (owner key)")
    ss = sp.add_subparsers(dest="site_cmd", required=True)
    sa = ss.add_parser(
        "apply", help="record the site, or new versions of what changed (see docs/accounting.md)"
    )
    sa.add_argument("file", help="site TOML file")
    sa.add_argument("--key", required=True, help="the owner org's admin key file")
    sa.add_argument("--nodes", default="http://127.0.0.1:7001", help="a node's API address")
    sa.set_defaults(func=cmd_site_apply)
    fp = sub.add_parser("factors", help="record the shipped emission-factor sets on chain (regulator key)")
    fs = fp.add_subparsers(dest="factors_cmd", required=True)
    pub = fs.add_parser("publish", help="record every shipped factor set the chain does not hold yet")
    pub.add_argument("--key", required=True, help="the regulator org's admin key file")
    pub.add_argument("--nodes", default="http://127.0.0.1:7001", help="a node's API address")
    pub.set_defaults(func=cmd_factors)
    rp = sub.add_parser("rating", help="compute a site's carbon-efficiency grade (碳效码) and record it")
    rp.add_argument("--site", required=True)
    rp.add_argument("--period", required=True, help="2026-01, 2026-Q1, 2026 or 2025/26-season")
    rp.add_argument("--benchmark", default="gas", help="gas (default), coal or a fixed kgCO2/m2")
    rp.add_argument("--key", help="admin key of the site's owner org or of the regulator")
    rp.add_argument("--nodes", default="http://127.0.0.1:7001", help="a node's API address")
    rp.add_argument("--dry-run", action="store_true", help="compute and print only")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_rating)
