"""Online backups of a running node, and restoring one into a new data directory.

Why through the node: LevelDB allows one process to open a database, so a consistent copy of a running node's
store can only come from inside the node. The node serves a small admin app on a unix socket in its data
directory (``admin.sock``, mode 0600: whoever may read the data directory may back it up; nothing about it is
reachable over the network). ``GET /admin/backup`` streams every key of one LevelDB snapshot: the store as of
one instant, between two block writes (each block is one atomic batch), while the node keeps committing.

Backup file (``.cempbak``)::

    b"CEMPBAK1\\n"
    records: u32 key length, key, u32 value length, value   (big-endian; keys in LevelDB order)
    u32 0                                                  (end of records)
    u32 manifest length, manifest JSON

The manifest names the chain, genesis hash, schema version, height, head hash and app hash of the snapshot, the
number of records and the SHA-256 of the record section. The node computes that hash as it streams; the client
recomputes it from the bytes it wrote and refuses a mismatch, and ``restore`` checks it again before using a byte.

Left out of a backup: the ``Mwatermark`` record (the restored node starts a new high-water-mark file; the source
node's file describes the source's disk, not the copy). The Raft log and hard state are included, so a node
restored from its own backup resumes as a follower at the backup's Raft position and catches up from the leader.

``restore`` writes the records into a new LevelDB, then re-verifies the whole store (``node.verify``: every
block, signature, certificate and state value replayed from genesis) and checks that the replay reaches the
manifest's height, head hash and app hash; a directory that fails is renamed ``*.failed`` and never used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from node import schema
from node.store import LevelDBStore, ReadSnapshot, Store, prefix_stop

MAGIC = b"CEMPBAK1\n"
FORMAT = 1
SOCKET_NAME = "admin.sock"
EXCLUDED = frozenset({schema.META_WATERMARK})
CHUNK = 1 << 20
MAX_RECORD = 64 << 20
"""No key or value a node writes comes near this; a larger length is damage, refused before allocating."""
MAX_MANIFEST = 1 << 20
_U32 = struct.Struct(">I")


class BackupError(Exception):
    """A backup that cannot be taken, read or trusted; the message says which and why."""


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


@dataclass
class Manifest:
    format: int
    chain_id: str
    genesis_hash: str
    schema_version: int
    node_id: str
    height: int
    head_hash: str
    app_hash: str
    records: int
    record_bytes: int
    sha256: str
    created_ms: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, doc: object) -> Manifest:
        if not isinstance(doc, dict):
            raise BackupError("the backup manifest is not a JSON object")
        try:
            m = cls(**{k: doc[k] for k in cls.__dataclass_fields__})
        except KeyError as e:
            raise BackupError(f"the backup manifest lacks {e.args[0]!r}") from None
        if m.format != FORMAT:
            raise BackupError(f"backup format {m.format} is not one this release reads ({FORMAT})")
        return m


def _records(snap: ReadSnapshot) -> Iterator[tuple[bytes, bytes]]:
    for k, v in snap.iterate(b"", prefix_stop(b"\xff")):
        if k not in EXCLUDED:
            yield k, v


def _frame(k: bytes, v: bytes) -> bytes:
    return _U32.pack(len(k)) + k + _U32.pack(len(v)) + v


def snapshot_stream(
    store: Store, chain_id: str, genesis_hash: bytes, node_id: str
) -> tuple[Iterator[bytes], Callable[[], Manifest]]:
    """Chunks of a backup of one snapshot of ``store`` (blocking: run it off the event loop), and the manifest
    once every chunk was taken. The snapshot is released when the chunks run out."""
    from node.migrations import stored_version

    snap = store.snapshot()
    head: dict[str, Any] = {}
    count = [0, 0]
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        try:
            raw_h = snap.get(schema.META_HEIGHT)
            head["height"] = int.from_bytes(raw_h or b"\0", "big")
            head["head_hash"] = (snap.get(schema.META_LAST_HASH) or b"").hex()
            head["acc"] = snap.get(schema.META_STATE_ACC) or b""
            head["schema"] = stored_version(snap) or 0
            yield MAGIC
            buf = bytearray()
            for k, v in _records(snap):
                f = _frame(k, v)
                digest.update(f)
                count[0] += 1
                count[1] += len(f)
                buf += f
                if len(buf) >= CHUNK:
                    yield bytes(buf)
                    buf.clear()
            end = _U32.pack(0)
            digest.update(end)
            buf += end
            yield bytes(buf)
        finally:
            snap.release()

    def manifest() -> Manifest:
        from node.statehash import StateHash

        return Manifest(
            FORMAT,
            chain_id,
            genesis_hash.hex(),
            int(head["schema"]),
            node_id,
            int(head["height"]),
            str(head["head_hash"]),
            StateHash.from_bytes(head["acc"]).digest().hex() if head["acc"] else "",
            count[0],
            count[1],
            digest.hexdigest(),
            int(time.time() * 1000),
        )

    return chunks(), manifest


def admin_routes(node: Any) -> list[web.RouteDef]:
    """Routes of the admin app served on the unix socket only (``node.server.serve``)."""

    async def backup(request: web.Request) -> web.StreamResponse:
        led = node.ledger
        chunks, manifest = snapshot_stream(led.store, led.genesis.chain_id, led.genesis_hash, node.node_id)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        it = iter(chunks)
        try:
            while True:
                chunk = await loop.run_in_executor(None, next, it, None)
                if chunk is None:
                    break
                await resp.write(chunk)
        finally:
            it.close()  # type: ignore[attr-defined]
        body = json.dumps(manifest().to_json()).encode()
        await resp.write(_U32.pack(len(body)) + body)
        await resp.write_eof()
        return resp

    async def status(request: web.Request) -> web.Response:
        led = node.ledger
        return web.json_response(
            {"node_id": node.node_id, "height": led.height, "app_hash": led.app_hash.hex()}
        )

    return [web.get("/admin/backup", backup), web.get("/admin/status", status)]


# --- client side ---------------------------------------------------------------------------------------------
async def fetch_backup(sock: Path, out: Path, progress: bool = False) -> Manifest:
    """Stream a backup from the node listening on ``sock`` into ``out`` (written to ``out.part``, fsynced,
    renamed once its hash checks); ``out.manifest.json`` is written beside it."""
    import aiohttp
    from tqdm import tqdm

    if not sock.exists():
        raise BackupError(f"no admin socket at {sock}: is the node running with this data directory?")
    part = out.with_name(out.name + ".part")
    bar = tqdm(unit="B", unit_scale=True, desc="backup", disable=not progress)
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s,
            s.get("http://node/admin/backup", timeout=aiohttp.ClientTimeout(total=None, sock_read=300)) as r,
        ):
            if r.status != 200:
                raise BackupError(f"the node refused the backup: HTTP {r.status} {await r.text()}")
            with open(part, "wb") as f:
                async for chunk in r.content.iter_chunked(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
    except aiohttp.ClientError as e:
        part.unlink(missing_ok=True)
        raise BackupError(f"the backup stream from {sock} broke off: {e}") from None
    finally:
        bar.close()
    try:
        manifest = read_manifest(part)
        check_file(part, manifest)
    except BackupError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    out.with_name(out.name + ".manifest.json").write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise BackupError(f"the backup file ends inside {what}: it is truncated")
    return b


def iter_records(f: BinaryIO, digest: Any) -> Iterator[tuple[bytes, bytes]]:
    """Records from just after the magic up to the end marker, each length bounded before it is read."""
    while True:
        hk = _read_exact(f, 4, "a record length")
        (kl,) = _U32.unpack(hk)
        if kl == 0:
            digest.update(hk)
            return
        if kl > MAX_RECORD:
            raise BackupError(f"a record key of {kl} bytes: the backup file is damaged")
        k = _read_exact(f, kl, "a key")
        hv = _read_exact(f, 4, "a value length")
        (vl,) = _U32.unpack(hv)
        if vl > MAX_RECORD:
            raise BackupError(f"a record value of {vl} bytes: the backup file is damaged")
        v = _read_exact(f, vl, "a value")
        digest.update(hk + k + hv + v)
        yield k, v


def read_manifest(path: Path) -> Manifest:
    """The manifest at the end of a backup file (found by walking the records' lengths, not trusted yet)."""
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise BackupError(f"{path} is not a CEMP backup (no {MAGIC!r} header)")
        for _ in iter_records(f, hashlib.sha256()):
            pass
        (ml,) = _U32.unpack(_read_exact(f, 4, "the manifest length"))
        if ml > MAX_MANIFEST:
            raise BackupError(f"a manifest of {ml} bytes: the backup file is damaged")
        raw = _read_exact(f, ml, "the manifest")
        if f.read(1):
            raise BackupError(f"{path} has bytes after its manifest: it is damaged")
    try:
        return Manifest.from_json(json.loads(raw))
    except json.JSONDecodeError as e:
        raise BackupError(f"the manifest of {path} is not JSON: {e}") from None


def check_file(path: Path, manifest: Manifest) -> None:
    """The records' SHA-256 and count against the manifest."""
    digest = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        f.read(len(MAGIC))
        for _ in iter_records(f, digest):
            n += 1
    if digest.hexdigest() != manifest.sha256 or n != manifest.records:
        raise BackupError(
            f"{path}: the records hash to {digest.hexdigest()[:16]}... ({n} records), the manifest says "
            f"{manifest.sha256[:16]}... ({manifest.records}): the file is damaged or was altered"
        )


def load_into(path: Path, manifest: Manifest, ledger_dir: Path, progress: bool = False) -> None:
    """Write the backup's records into a new LevelDB at ``ledger_dir`` (which must not exist), hash-checked as
    read: a mismatch leaves nothing usable (the caller renames the directory)."""
    from tqdm import tqdm

    if ledger_dir.exists():
        raise BackupError(f"{ledger_dir} exists: restore into a new data directory (move the old one away)")
    store = LevelDBStore(ledger_dir)
    digest = hashlib.sha256()
    bar = tqdm(total=manifest.records, unit="key", desc="restore", disable=not progress)
    try:
        batch: dict[bytes, bytes | None] = {}
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise BackupError(f"{path} is not a CEMP backup")
            for k, v in iter_records(f, digest):
                batch[k] = v
                if len(batch) >= 10_000:
                    store.write(batch, sync=False)
                    bar.update(len(batch))
                    batch = {}
        store.write(batch, sync=True)
        bar.update(len(batch))
        if digest.hexdigest() != manifest.sha256:
            raise BackupError(f"{path} changed while it was being restored (hash mismatch)")
    finally:
        bar.close()
        store.close()
