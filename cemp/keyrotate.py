"""``cemp keys rotate``: replace a node's signing key by a signed ``node.key_rotate`` tx (``node.keyrotation``).

Steps it takes: read the node's status (chain, height); make the new key file if it does not exist (0600, beside
the node key by default: ``<node key>.next``, where the running node looks for it); sign the proof of possession
with the new key and the tx with the node's current key (or, with ``--admin``, its org's admin key: a lost or
stolen node key); submit and wait until it commits. The node switches to the new key at the effective height by
itself, as does every other node; afterwards the operator replaces the old key file with the new one.

``cemp keys rotate-admin`` replaces an org's admin key by a signed ``org.admin_rotate`` tx
(``node.adminrotation``): it makes the new key file if it does not exist (0600), signs the proof of possession
with it (over the chain's genesis hash, the org, the current and the new key) and the tx with the current admin
key, submits and waits until it commits. From the next block every node takes the new key as the org's admin
and refuses the old one; nothing restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from node.adminrotation import DOMAIN_ADMIN_POSSESSION, OrgAdminRotation, admin_claim_message
from node.chain import ChainRef, sign_tx
from node.client import NodeClient
from node.crypto import KeyFileError, KeyPair, read_key_file, write_key_file
from node.errors import CempError, Code
from node.keyrotation import DOMAIN_KEY_POSSESSION, MIN_DELAY, NodeKeyRotation, claim_message
from node.types import Height, PublicKey, ShortStr

DEFAULT_IN_BLOCKS = 20
NONCE_TRIES = 5
"""Times a rotation is signed again with a fresh nonce when another tx of the same key took its nonce first."""


async def _sign_submit(
    c: NodeClient, key: KeyPair, chain: ChainRef, kind: str, payload: object, timeout_s: float
) -> tuple[bytes, dict[str, Any]]:
    """Sign ``payload`` with ``key``'s next nonce, submit it and wait for its block: (tx hash, the answer).

    The key may be signing other txs meanwhile (an org's own tools go on using its admin key while it is rotated,
    a node its key): a nonce they take between our read and our submission is refused ``nonce_replayed``, at
    admission or in the block. The tx is then signed again with the next free nonce, at most ``NONCE_TRIES``
    times; any other refusal is final.
    """
    for attempt in range(1, NONCE_TRIES + 1):
        nxt = int((await c.get(f"/v1/nonces/{key.public.hex()}"))["next"])
        raw, h = sign_tx(key, chain, kind, nxt, payload)
        try:
            res = await c.submit(raw, wait=True, timeout_ms=int(timeout_s * 1000))
        except CempError as e:
            if e.code != Code.NONCE_REPLAYED or attempt == NONCE_TRIES:
                raise
            continue
        result = res.get("result") or {}
        if result.get("code") != Code.NONCE_REPLAYED or attempt == NONCE_TRIES:
            return h, res
    raise AssertionError("unreachable")


def _load_or_make(path: Path, label: str) -> tuple[KeyPair, bool]:
    """The new key: read from ``path`` if it exists (a rerun after a failed attempt reuses it), else made there
    (0600); and whether it was made now."""
    if path.exists():
        return read_key_file(path), False
    new = KeyPair.generate()
    write_key_file(path, new, label=label, overwrite=False)
    return new, True


def _run_and_print(
    job: Coroutine[Any, Any, dict[str, object]], api: str, new_path: Path, made: bool
) -> dict[str, object] | None:
    """Run a rotation and print its result as one JSON line; None (said on stderr) if it was refused or the node
    could not be reached."""
    try:
        out = asyncio.run(job)
    except CempError as e:
        print(f"rotation refused: {e.message}", file=sys.stderr)
        return None
    except OSError as e:
        print(f"cannot reach {api}: {e}", file=sys.stderr)
        return None
    out["new_key_file"] = str(new_path) + (" (made now)" if made else "")
    print(json.dumps(out))
    return None if "refused" in out else out


async def rotate(
    api: str,
    node_id: str,
    sender: KeyPair,
    new: KeyPair,
    in_blocks: int,
    at_height: int | None,
    timeout_s: float,
) -> dict[str, object]:
    async with NodeClient(api, timeout_s=timeout_s + 10) as c:
        st = await c.status()
        chain, height = ChainRef.from_status(st), int(st["height"])
        effective = at_height if at_height is not None else height + in_blocks
        possession = new.sign(
            DOMAIN_KEY_POSSESSION, claim_message(chain.genesis_hash, node_id, new.public, effective)
        )
        payload = NodeKeyRotation(ShortStr(node_id), PublicKey(new.public), Height(effective), possession)
        h, res = await _sign_submit(c, sender, chain, "node.key_rotate", payload, timeout_s)
    out: dict[str, object] = {
        "tx": h.hex(),
        "node_id": node_id,
        "new_key": new.public.hex(),
        "effective_height": effective,
        "status": res.get("status"),
        "height": res.get("height"),
    }
    result = res.get("result") or {}
    if not result.get("ok", False):
        out["refused"] = result.get("reason")
    return out


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    if bool(args.key) == bool(args.admin):
        print(
            "give the node's current key (--key) or its org's admin key (--admin), one of them",
            file=sys.stderr,
        )
        return 2
    sender_path = Path(args.key or args.admin)
    new_path = Path(args.new_key) if args.new_key else sender_path.with_name(sender_path.name + ".next")
    if args.admin and not args.new_key:
        print(
            "with --admin, name the new key file (--new-key): it goes to the node's machine", file=sys.stderr
        )
        return 2
    if args.in_blocks < MIN_DELAY:
        print(f"--in-blocks must be at least {MIN_DELAY}", file=sys.stderr)
        return 2
    try:
        sender = read_key_file(sender_path)
        new, made = _load_or_make(new_path, f"{args.node_id} node key (rotated)")
    except KeyFileError as e:
        print(e, file=sys.stderr)
        return 2
    out = _run_and_print(
        rotate(args.api, args.node_id, sender, new, args.in_blocks, args.at_height, args.timeout),
        args.api,
        new_path,
        made,
    )
    if out is None:
        return 1
    print(
        f"node {args.node_id} signs with the new key from height {out['effective_height']}. Make sure the node "
        f"can read it as <its key_file>.next until then; after that height replace its key_file by it.",
        file=sys.stderr,
    )
    return 0


async def rotate_admin(
    api: str, org: str, current: KeyPair, new: KeyPair, timeout_s: float
) -> dict[str, object]:
    """Sign, submit and wait for an ``org.admin_rotate`` tx; the result as printed by the command."""
    async with NodeClient(api, timeout_s=timeout_s + 10) as c:
        st = await c.status()
        chain = ChainRef.from_status(st)
        msg = admin_claim_message(chain.genesis_hash, org, current.public, new.public)
        payload = OrgAdminRotation(
            ShortStr(org), PublicKey(new.public), new.sign(DOMAIN_ADMIN_POSSESSION, msg)
        )
        h, res = await _sign_submit(c, current, chain, "org.admin_rotate", payload, timeout_s)
    out: dict[str, object] = {
        "tx": h.hex(),
        "org": org,
        "old_key": current.public.hex(),
        "new_key": new.public.hex(),
        "status": res.get("status"),
        "height": res.get("height"),
    }
    result = res.get("result") or {}
    if not result.get("ok", False):
        out["refused"] = result.get("reason")
    elif isinstance(res.get("height"), int):
        out["effective_height"] = int(res["height"]) + 1
    return out


def cmd_keys_rotate_admin(args: argparse.Namespace) -> int:
    admin_path = Path(args.admin)
    new_path = Path(args.new_key) if args.new_key else admin_path.with_name(admin_path.name + ".next")
    try:
        current = read_key_file(admin_path)
        new, made = _load_or_make(new_path, f"{args.org} admin key (rotated)")
    except KeyFileError as e:
        print(e, file=sys.stderr)
        return 2
    if new.public == current.public:
        print("the new key is the current admin key; name another --new-key", file=sys.stderr)
        return 2
    out = _run_and_print(
        rotate_admin(args.api, args.org, current, new, args.timeout), args.api, new_path, made
    )
    if out is None:
        return 1
    print(
        f"org {args.org}'s admin key is {new_path} from block {out.get('effective_height')}; the old key is "
        f"refused from then on. Give the new key to whoever signs for the org (cemp people/grant/... --key) and "
        f"retire the old file.",
        file=sys.stderr,
    )
    return 0


def add_rotate_parser(keys_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = keys_sub.add_parser(
        "rotate",
        help="replace a node's signing key by a signed tx, effective from a block height (no downtime)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--node-id", required=True, help="the node whose key is replaced")
    r.add_argument("--key", help="the node's current key file (signs the tx)")
    r.add_argument("--admin", help="or: the node's org admin key file (when the node key is lost or stolen)")
    r.add_argument(
        "--new-key",
        help="the new key file; made (0600) if it does not exist. Default: <--key>.next, where the node looks",
    )
    r.add_argument(
        "--in-blocks",
        type=int,
        default=DEFAULT_IN_BLOCKS,
        help=f"effective this many blocks after the current height (default {DEFAULT_IN_BLOCKS}, at least {MIN_DELAY})",
    )
    r.add_argument("--at-height", type=int, help="or: effective from this block height")
    r.add_argument(
        "--api", default="http://127.0.0.1:7001", help="any node's API (default http://127.0.0.1:7001)"
    )
    r.add_argument("--timeout", type=float, default=60, help="seconds to wait for the tx to commit")
    r.set_defaults(func=cmd_keys_rotate)

    a = keys_sub.add_parser(
        "rotate-admin",
        help="replace an org's admin key by a tx its current admin key signs, from the next block (no downtime)",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--org", required=True, help="the org whose admin key is replaced")
    a.add_argument("--admin", required=True, help="the org's current admin key file (signs the tx)")
    a.add_argument(
        "--new-key", help="the new admin key file; made (0600) if it does not exist. Default: <--admin>.next"
    )
    a.add_argument(
        "--api", default="http://127.0.0.1:7001", help="any node's API (default http://127.0.0.1:7001)"
    )
    a.add_argument("--timeout", type=float, default=60, help="seconds to wait for the tx to commit")
    a.set_defaults(func=cmd_keys_rotate_admin)
