"""``cemp backup``, ``cemp restore`` and ``cemp verify --online``: operating a node's data without stopping it.

``backup`` asks the running node (over its admin socket, ``node.backup``) for one consistent LevelDB snapshot and
writes it with its manifest. ``restore`` loads a backup into a new data directory and re-verifies all of it
(``node.verify``, with this chain's kinds from ``cemp.wiring``) before the directory can be used.
``verify --online`` is a backup into a temporary directory, restored and verified there, so an auditor checks a
running node's chain without stopping it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

from node.backup import BackupError, Manifest, check_file, fetch_backup, load_into, read_manifest, socket_path


def _sock(args: argparse.Namespace) -> Path:
    return Path(args.socket) if args.socket else socket_path(Path(args.data_dir))


def cmd_backup(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; choose another name or pass --force", file=sys.stderr)
        return 2
    try:
        m = asyncio.run(fetch_backup(_sock(args), out, progress=not args.quiet))
    except BackupError as e:
        print(f"backup: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"file": str(out), "manifest": str(out) + ".manifest.json", **m.to_json()}))
    return 0


def restore(
    backup: Path, data_dir: Path, progress: bool, genesis: Path | None
) -> tuple[Manifest, dict[str, object]]:
    """Load and verify; raises ``BackupError`` with the reason (the directory is renamed ``*.failed``)."""
    from cemp import wiring
    from node.store import LevelDBStore
    from node.verify import verify_store

    manifest = read_manifest(backup)
    check_file(backup, manifest)
    ledger = data_dir / "ledger"
    load_into(backup, manifest, ledger, progress)
    store = LevelDBStore(ledger, create=False)
    try:
        rep = verify_store(store, wiring.kinds(), progress=progress, genesis_file=genesis)
    finally:
        store.close()
    problem = rep.problem
    if not problem and (rep.height, rep.head_hash, rep.app_hash) != (
        manifest.height,
        manifest.head_hash,
        manifest.app_hash,
    ):
        problem = (
            f"the replay reached height {rep.height} app hash {rep.app_hash[:16]}..., the manifest says "
            f"{manifest.height} {manifest.app_hash[:16]}..."
        )
    if problem:
        failed = data_dir.with_name(data_dir.name + ".failed")
        shutil.rmtree(failed, ignore_errors=True)
        data_dir.rename(failed)
        raise BackupError(f"the restored store does not verify ({problem}); it was moved to {failed}")
    return manifest, {
        "height": rep.height,
        "blocks": rep.blocks,
        "txs": rep.txs,
        "state_keys": rep.state_keys,
        "app_hash": rep.app_hash,
        "head_hash": rep.head_hash,
        "warnings": rep.warnings,
        "seconds": round(rep.seconds, 3),
    }


def cmd_restore(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if (data_dir / "ledger").exists():
        print(
            f"{data_dir / 'ledger'} exists: restore into an empty data directory (stop the node and move the old "
            "one away first)",
            file=sys.stderr,
        )
        return 2
    try:
        m, rep = restore(
            Path(args.file), data_dir, not args.quiet, Path(args.genesis) if args.genesis else None
        )
    except BackupError as e:
        print(f"restore: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "data_dir": str(data_dir), "backup_of": m.node_id, "verified": rep}))
    return 0


def verify_online(sock: Path, progress: bool, genesis: Path | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="cemp-verify-") as tmp:
        bak = Path(tmp) / "node.cempbak"
        try:
            m = asyncio.run(fetch_backup(sock, bak, progress))
            _m, rep = restore(bak, Path(tmp) / "data", progress, genesis)
        except BackupError as e:
            return {"ok": False, "online": True, "problem": str(e)}
        return {"ok": True, "online": True, "node_id": m.node_id, **rep}


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser(
        "backup",
        help="consistent online backup of a running node (LevelDB snapshot + SHA-256 manifest)",
        description="Streams one LevelDB snapshot of the running node over its admin socket "
        "(<data-dir>/admin.sock) into FILE, checks its SHA-256 against the node's and writes FILE.manifest.json.",
    )
    b.add_argument("--data-dir", help="the running node's data directory (its admin.sock is used)")
    b.add_argument("--socket", help="the node's admin socket, if not in --data-dir")
    b.add_argument("--out", required=True, help="backup file to write (e.g. owner-1-2026-12-05.cempbak)")
    b.add_argument("--force", action="store_true", help="overwrite --out")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser(
        "restore",
        help="load a backup into a new data directory and re-verify all of it",
        description="Checks the backup's SHA-256, writes its records into <data-dir>/ledger, replays and checks "
        "every block, signature and state value, and compares height, head hash and app hash with the manifest. "
        "Then start the node on the directory: it rejoins and catches up from its peers.",
    )
    r.add_argument("file", help="a .cempbak file written by cemp backup")
    r.add_argument("--data-dir", required=True, help="the new data directory (must not hold a ledger)")
    r.add_argument("--genesis", help="the consortium's genesis file: also check the backup belongs to it")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_restore)
