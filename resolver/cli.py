"""Resolver commands: ``verify-proof`` (offline, genesis only) and ``handles-bootstrap`` (prefix setup).

Run as ``python -m resolver.cli ...``; ``add_commands`` plugs the same commands into ``cemp``'s parser.

    python -m resolver.cli verify-proof --genesis genesis.cemp proof.json
    curl -s 'http://127.0.0.1:7001/api/handles/88.123.45/101.1.1?proof=true' | python -m resolver.cli verify-proof --genesis genesis.cemp -
    python -m resolver.cli handles-bootstrap --node http://127.0.0.1:7001 --admin-key keys/owner.admin.key --prefix 88.123.45

``verify-proof`` prints one JSON line and exits 0 when every returned value is proven, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from node.genesis import GenesisError, read_genesis
    from resolver.proof import ProofError, verify_proof

    try:
        genesis = read_genesis(Path(args.genesis))
    except GenesisError as e:
        print(json.dumps({"ok": False, "problem": str(e)}))
        return 2
    try:
        text = sys.stdin.read() if args.proof == "-" else Path(args.proof).read_text()
        doc = json.loads(text)
    except (OSError, ValueError) as e:
        print(json.dumps({"ok": False, "problem": f"cannot read the proof: {e}"}))
        return 2
    try:
        out: dict[str, Any] = verify_proof(doc, genesis)
    except (ProofError, KeyError, TypeError, ValueError) as e:
        print(json.dumps({"ok": False, "handle": doc.get("handle"), "problem": str(e)}))
        return 1
    print(json.dumps(out))
    return 0


async def _bootstrap(args: argparse.Namespace) -> int:
    from node.chain import ChainRef, sign_tx
    from node.client import NodeClient
    from node.crypto import KeyFileError, read_key_file, write_private_file
    from node.submit import Status, SubmitClient
    from resolver.bootstrap import bootstrap_puts
    from resolver.credentials import new_secret

    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    key = read_key_file(Path(args.admin_key), passphrase)
    # The secret is made here, never chosen: its scrypt hash goes on the public chain (docs/resolver.md).
    secret = new_secret()
    identity = f"300:{args.prefix}/admin"
    if args.secret_out:
        try:
            write_private_file(Path(args.secret_out), (secret + "\n").encode(), overwrite=False)
        except KeyFileError as e:
            print(json.dumps({"ok": False, "problem": str(e)}))
            return 2
    async with NodeClient(args.node) as client:
        st = await client.status()
        nonce = await client.nonce(key.public)
        for p in bootstrap_puts(args.prefix, key.public, secret.encode()):
            nonce += 1
            raw, _ = sign_tx(key, ChainRef.from_status(st), "handle.put", nonce, p)
            out = await SubmitClient.of(client).submit(raw)
            if out.status != Status.COMMITTED or not out.ok:
                problem = out.reason if out.status == Status.COMMITTED else f"{out.status}: {out.message}"
                print(json.dumps({"ok": False, "handle": p.handle, "problem": problem}))
                return 1
            print(json.dumps({"ok": True, "handle": p.handle, "height": out.height}))
    if args.secret_out:
        print(json.dumps({"identity": identity, "secret_file": str(args.secret_out)}))
    else:
        print(json.dumps({"identity": identity, "secret": secret}))
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    return asyncio.run(_bootstrap(args))


def add_commands(sub: Any) -> None:
    """Add ``verify-proof`` and ``handles-bootstrap`` to an argparse subparsers object."""
    vp = sub.add_parser("verify-proof", help="check a handle proof (?proof=true reply) with only the genesis")
    vp.add_argument(
        "proof", help="file with the JSON reply of GET /api/handles/{handle}?proof=true, or - for stdin"
    )
    vp.add_argument("--genesis", required=True, help="the consortium's genesis file")
    vp.set_defaults(func=cmd_verify_proof)
    bs = sub.add_parser(
        "handles-bootstrap",
        help="create 0.NA/<prefix> and the REST admin identity 300:<prefix>/admin with a new generated "
        "secret (192 random bits), printed once or written to --secret-out",
    )
    bs.add_argument("--node", default="http://127.0.0.1:7001", help="node API URL")
    bs.add_argument("--admin-key", required=True, help="the org's admin key file")
    bs.add_argument("--prefix", required=True, help="the org's prefix, e.g. 88.123.45")
    bs.add_argument(
        "--secret-out",
        help="write the generated secret to this new file (mode 0600, never overwritten) instead of stdout",
    )
    bs.set_defaults(func=cmd_bootstrap)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m resolver.cli", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    add_commands(sub)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
