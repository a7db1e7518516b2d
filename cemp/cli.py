"""``cemp``: the one command line for keys, genesis, nodes, verification and the demo."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path

from node.config import ConfigError, load_config
from node.crypto import KeyFileError, KeyPair, read_key_file, write_key_file
from node.genesis import GenesisError, genesis_from_toml, write_genesis

EPILOG = """examples:
  cemp keys new --out keys/owner.admin.key          # new Ed25519 key (0600)
  cemp keys rotate --node-id owner-1 --key keys/owner-1.node.key   # new node key, effective 20 blocks on
  cemp init --config consortium.toml --out genesis.cemp
  cemp node --config owner-1.toml                   # run one org's node
  cemp verify --data-dir demo-data/data/owner-1     # re-check every block and state value
  cemp backup --data-dir data/owner-1 --out owner-1.cempbak   # online, from a running node
  cemp restore owner-1.cempbak --data-dir data/owner-1-new    # load + re-verify, then start the node on it
  cemp demo                                         # everything on localhost
"""


DEMO_DESCRIPTION = """\
Runs, on this machine, the owner's, the equipment firm's and the regulator's nodes (three processes), simulators
of the Hohhot site's meters, temperature module, outdoor temperature sensor, control-system API and bill photos,
and the collector agent that signs every reading with its device's own key and submits it. It prints where to
look, then a status line every 10 s; Ctrl-C (or --duration) stops everything.

maintenance:
  On a new chain the simulator cuts the storage tank meter's RS-485 line shortly after it first reports. The
  equipment firm's watcher (energy.detect on the chain's readings) finds the meter silent after 30 s and raises
  an alarm on chain; the demo then walks one inspection work order from open to closed (owner acknowledges,
  equipment firm assigns, diagnoses, repairs -- the fault is cleared --, the regulator comments, the owner
  verifies once readings are back and closes), printing each step with its tx hash. A stopped walk continues
  on the next run. See cemp alarm show 1, cemp workorder show 1.

ports:
  --port P      the three nodes' HTTP APIs (and their peer links) on 127.0.0.1:P, P+1 and P+2 (owner-1,
                equipment-1, regulator-1); default 7001 or CEMP_DEMO_PORT. The simulators (Modbus TCP,
                DL/T 645, control-system HTTP API) take free loopback ports of their own.

data directory (--dir, default demo-data):
  keys/                       org admin, node and device keys (0600); <org>.handle-admin.secret: the secret of
                              each org's Handle REST admin identity 300:<prefix>/admin (printed at start)
  consortium.toml, genesis.cemp, <node>.toml, <node>.log
  data/<node>/                each node's LevelDB ledger (check it with: cemp verify --data-dir data/<node>)
  collector/outbox.sqlite     signed readings not yet committed; collector/alarms.jsonl: see `cemp alarms`
  bills/inbox/                bill photos for the scanner (drop your own there too)
  sims/counters_since_ms      when the simulated meters were commissioned

resuming:
  Run it again with the same --dir and --port and it continues: the same chain, keys and devices (not
  registered again), the outbox's unsent readings are sent, and the meters continue their counters (they count
  the time the demo was stopped too, as real meters do). The genesis records the nodes' ports, so another
  --port is refused with the one to use. --fresh deletes the directory first and starts a new chain.
"""


def _passphrase(args: argparse.Namespace, confirm: bool) -> bytes | None:
    env = os.environ.get("CEMP_KEY_PASSPHRASE")
    if env:
        return env.encode()
    if not getattr(args, "passphrase", False):
        return None
    p1 = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != p1:
        raise SystemExit("passphrases differ")
    return p1.encode()


def cmd_keys_new(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; use --force to overwrite", file=sys.stderr)
        return 2
    key = KeyPair.generate()
    try:
        write_key_file(out, key, _passphrase(args, True), label=args.label or out.stem, overwrite=args.force)
    except KeyFileError as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps({"file": str(out), "public_key": key.public.hex()}))
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    try:
        key = read_key_file(Path(args.file), _passphrase(args, False))
    except KeyFileError as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps({"file": args.file, "public_key": key.public.hex()}))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    try:
        g = genesis_from_toml(Path(args.config))
    except GenesisError as e:
        print(f"genesis: {e}", file=sys.stderr)
        return 2
    from node.chain import genesis_hash

    write_genesis(g, Path(args.out))
    print(
        json.dumps(
            {
                "file": args.out,
                "chain_id": g.chain_id,
                "genesis_hash": genesis_hash(g).hex(),
                "orgs": [o.name for o in g.orgs],
                "nodes": [n.node_id for n in g.nodes],
            }
        )
    )
    return 0


GC_THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Called once a serving process has imported everything: the objects made so far (modules, classes, the
    kinds' and templates' tables, ~86,000 of them) are moved out of the collector's reach (``gc.freeze``) and the
    young generation is collected every 20,000 allocations instead of 700. Without this a full collection walked
    all of them every few dozen page views: 23-88 ms pauses, the device page's p99 (``bench/web.py``)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def cmd_node(args: argparse.Namespace) -> int:
    from cemp import wiring
    from node.server import serve

    try:
        cfg = load_config(Path(args.config))
    except ConfigError as e:
        print(f"config: {e}", file=sys.stderr)
        return 2
    from node import logs
    from node.chain import ChainError
    from node.migrations import SchemaVersionError
    from node.store import StorageError

    logs.configure(args.log_level, cfg.log_format)
    kinds = wiring.kinds()
    settle_heap()
    try:
        asyncio.run(serve(cfg, kinds, wiring.ROUTES))
    except (KeyFileError, GenesisError, ValueError, SchemaVersionError) as e:
        print(f"cannot start node: {e}", file=sys.stderr)
        return 2
    except (StorageError, ChainError) as e:
        msg = str(e)
        if "different genesis" in msg:
            hint = ""
        elif "LOCK" in msg:
            hint = f"\nAnother process (a running node, or cemp verify) holds {cfg.data_dir}."
        else:
            hint = (
                f"\nThe data directory {cfg.data_dir} is damaged: run `cemp verify --data-dir {cfg.data_dir}` for a "
                "full report; restore it from a backup, or move it away and start again to rebuild it from the peers."
            )
        print(f"cannot start node: {msg}{hint}", file=sys.stderr)
        return 3
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from cemp import wiring
    from node.verify import verify_data_dir

    # The same kinds and hooks as ``cmd_node``: a re-check must execute every tx the way the nodes did.
    genesis = Path(args.genesis) if args.genesis else None
    if args.online:
        from cemp.ops import verify_online
        from node.backup import socket_path

        sock = Path(args.socket) if args.socket else socket_path(Path(args.data_dir))
        out = verify_online(sock, not args.quiet, genesis)
        print(json.dumps(out))
        return 0 if out["ok"] else 1
    rep = verify_data_dir(
        Path(args.data_dir),
        wiring.kinds(),
        progress=not args.quiet,
        workers=args.workers,
        genesis_file=genesis,
        incremental=not args.full,
    )
    doc: dict[str, object] = {
        "ok": rep.ok,
        "height": rep.height,
        "blocks": rep.blocks,
        "txs": rep.txs,
        "state_keys": rep.state_keys,
        "raft_entries": rep.raft_entries,
        "resumed_from": rep.resumed_from,
        "blocks_per_s": round(rep.blocks / rep.seconds, 1) if rep.seconds > 0 else 0.0,
        "head_hash": rep.head_hash,
        "app_hash": rep.app_hash,
        "seconds": round(rep.seconds, 3),
        "tx_per_s": round(rep.tx_per_s, 1),
    }
    if rep.problem:
        doc["problem"] = rep.problem
    if rep.warnings:
        doc["warnings"] = rep.warnings
    print(json.dumps(doc))
    return 0 if rep.ok else 1


def cmd_membership(args: argparse.Namespace) -> int:
    from node.chain import ChainRef, sign_tx
    from node.client import NodeClient
    from node.crypto import public_key_of_file
    from node.membership import DOMAIN_MEMBERSHIP, Approval, MembershipChange, MembershipTx, approval_message
    from node.submit import Status, SubmitClient
    from node.types import PublicKey, ShortStr

    async def run() -> int:
        async with NodeClient(args.api) as nc:
            st = await nc.status()
            approvers = [read_key_file(Path(p), _passphrase(args, False)) for p in args.approve]
            if args.op == "add":
                if not (args.key and args.address and args.org):
                    print(
                        "adding a node needs --key (its public key file), --org and --address",
                        file=sys.stderr,
                    )
                    return 2
                pub = public_key_of_file(Path(args.key))
            else:
                pub = PublicKey(b"\x00" * 32)
            change = MembershipChange(
                ShortStr(st["chain_id"]),
                ShortStr(args.op),
                ShortStr(args.node_id),
                ShortStr(args.org or ""),
                pub,
                ShortStr(args.address or ""),
            )
            msg = approval_message(change)
            orgs = {o["admin_key"]: o["name"] for o in (await nc.get("/v1/consortium"))["orgs"]}
            approvals = []
            for k in approvers:
                org = orgs.get(k.public.hex())
                if org is None:
                    print(f"key {k.public.hex()[:16]}... is not an org admin key", file=sys.stderr)
                    return 2
                approvals.append(Approval(ShortStr(org), k.sign(DOMAIN_MEMBERSHIP, msg)))
            sender = approvers[0]
            nonce = await nc.nonce(sender.public)
            raw, _ = sign_tx(
                sender,
                ChainRef.from_status(st),
                "membership",
                nonce + 1,
                MembershipTx(change, tuple(approvals)),
            )
            out = await SubmitClient.of(nc).submit(raw)
            if out.status != Status.COMMITTED:
                err = out.error
                assert err is not None
                print(json.dumps({**err.to_json(), "outcome": str(out.status)}), file=sys.stderr)
                return 1
            print(json.dumps(out.body))
            return 0 if out.ok else 1

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace) -> int:
    from cemp.demo import main as demo_main

    return demo_main(Path(args.dir), args.port, args.duration, args.fresh, args.season)


def _season(s: str) -> str:
    import re

    m = re.fullmatch(r"(20\d\d)/(\d\d)", s)
    if m is None or int(m[2]) != (int(m[1]) + 1) % 100:
        raise argparse.ArgumentTypeError(f"{s!r} is not a heating season like 2025/26")
    return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cemp",
        description="CEMP: a permissioned carbon-data ledger for buildings (nodes, keys, genesis, verify, demo).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    keys = sub.add_parser("keys", help="create and inspect Ed25519 key files")
    ks = keys.add_subparsers(dest="keys_cmd", required=True)
    kn = ks.add_parser("new", help="write a new key file (mode 0600)")
    kn.add_argument("--out", required=True, help="path of the key file to write")
    kn.add_argument("--label", help="free-text label stored in the file")
    kn.add_argument(
        "--passphrase", action="store_true", help="encrypt the seed (prompted, or CEMP_KEY_PASSPHRASE)"
    )
    kn.add_argument("--force", action="store_true", help="overwrite an existing file")
    kn.set_defaults(func=cmd_keys_new)
    kw = ks.add_parser("show", help="print a key file's public key (checks the passphrase if encrypted)")
    kw.add_argument("file")
    kw.add_argument("--passphrase", action="store_true", help="prompt for the passphrase")
    kw.set_defaults(func=cmd_keys_show)
    from cemp.keyrotate import add_rotate_parser

    add_rotate_parser(ks)

    ini = sub.add_parser("init", help="build a genesis file from a consortium TOML")
    ini.add_argument(
        "--config", required=True, help="consortium TOML: chain_id, [[orgs]], [[nodes]], [params]"
    )
    ini.add_argument("--out", default="genesis.cemp", help="genesis file to write (default genesis.cemp)")
    ini.set_defaults(func=cmd_init)

    nd = sub.add_parser("node", help="run one org's node (API, block production)")
    nd.add_argument("--config", required=True, help="node TOML (node_id, data_dir, key_file, genesis, [api])")
    nd.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    nd.set_defaults(func=cmd_node)

    ve = sub.add_parser("verify", help="re-check every block, signature, root and state value of a data dir")
    ve.add_argument(
        "--data-dir", required=True, help="the node's data directory (stop the node first, or use --online)"
    )
    ve.add_argument(
        "--online",
        action="store_true",
        help="verify a running node: take a snapshot over its admin socket and verify that copy",
    )
    ve.add_argument("--socket", help="with --online: the node's admin socket, if not <data-dir>/admin.sock")
    ve.add_argument("--workers", type=int, default=None, help="signature-checking processes (default: 2)")
    ve.add_argument("--quiet", action="store_true", help="no progress bar")
    ve.add_argument(
        "--full",
        action="store_true",
        help="replay from genesis (default: resume from the height the last clean run verified, kept in "
        "<data-dir>/verify-checkpoint, and re-check only newer blocks; every other check covers the whole store)",
    )
    ve.add_argument("--genesis", help="the node's genesis file: also check that the store was made for it")
    ve.set_defaults(func=cmd_verify)

    me = sub.add_parser(
        "membership",
        help="add or remove a consortium node (needs approvals from a majority of org admins)",
        description="Builds a membership tx, signs the change with each --approve admin key (a majority of "
        "orgs is needed) and submits it. A new node joins as a Raft learner and becomes a voter once caught up.",
    )
    me.add_argument("op", choices=["add", "remove"])
    me.add_argument("--node-id", required=True, help="id of the node to add or remove (ids are never reused)")
    me.add_argument("--org", help="org that runs the new node")
    me.add_argument("--key", help="key file of the new node (only its public key is read)")
    me.add_argument("--address", help="host:port the new node serves on")
    me.add_argument(
        "--approve",
        action="append",
        required=True,
        metavar="ADMIN_KEY_FILE",
        help="an org admin key file approving the change; repeat for each org (the first sends the tx)",
    )
    me.add_argument(
        "--api", default="http://127.0.0.1:7001", help="any node's API (default http://127.0.0.1:7001)"
    )
    me.set_defaults(func=cmd_membership)

    de = sub.add_parser(
        "demo",
        help="run a local consortium with simulated device-signed readings",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    de.add_argument(
        "--dir", default="demo-data", help="where keys, genesis and data live (default demo-data)"
    )
    de.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("CEMP_DEMO_PORT", "7001")),
        help="first node's API port; the others use the next two (default 7001 or CEMP_DEMO_PORT)",
    )
    de.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    de.add_argument(
        "--fresh",
        action="store_true",
        help="delete the demo directory first (a new chain); without it, resume",
    )
    de.add_argument(
        "--season",
        type=_season,
        default=None,
        help="fast-forward a past heating season (e.g. 2025/26) from the load model, so inventories, KPIs, "
        "ratings and reports have a whole season to show (needs a fresh demo directory)",
    )
    de.set_defaults(func=cmd_demo)
    from access.cli import add_commands as add_access_commands
    from accounting.cli import add_commands as add_accounting_commands
    from accounting.reportcli import add_commands as add_report_commands
    from cemp.deploy import add_commands as add_deploy_commands
    from cemp.doctor import add_commands as add_doctor_commands
    from cemp.ops import add_commands as add_ops_commands
    from cemp.tlscerts import add_commands as add_tls_commands
    from collector.cli import add_parser as add_collector_commands
    from collector.scanner import add_parser as add_document_commands
    from energy.cli import add_commands as add_energy_commands
    from maintenance.cli import add_commands as add_maintenance_commands
    from resolver.cli import add_commands as add_resolver_commands

    add_ops_commands(sub)
    add_tls_commands(sub)
    add_doctor_commands(sub)
    add_deploy_commands(sub)

    add_collector_commands(sub)
    add_document_commands(sub)
    add_resolver_commands(sub)
    add_accounting_commands(sub)
    add_energy_commands(sub)
    add_report_commands(sub)
    add_maintenance_commands(sub)
    add_access_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
