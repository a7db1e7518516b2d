"""The durable outbox: signed ``readings`` txs waiting for a node to say they are committed.

Format: one SQLite database (stdlib ``sqlite3``) in WAL mode with ``synchronous=FULL``. Why SQLite rather
than a hand-made append-only log:
- the agent needs *multi-record atomic* changes: "insert these batches AND advance each device's nonce and
  sequence counters", and "dead-letter this tx AND replace the device's later txs with re-signed ones AND
  move its nonce counter back". In a log these need a commit-marker protocol of our own; in SQLite they
  are one transaction, and after ``kill -9`` either the whole transaction is there or none of it;
- with WAL + ``synchronous=FULL`` a ``COMMIT`` returns only after the WAL is fsynced, which is exactly the
  "written and fsynced before sent" guarantee; a torn last write is discarded by SQLite's own checksummed
  WAL frames (the CRC framing and recovery scan we would otherwise write and test ourselves);
- deletion on commit needs no compaction pass: freed pages are reused, and ``compact()`` returns them to
  the file system when the outbox is empty;
- operators can inspect it with the ``sqlite3`` shell.
The cost is a little per-row overhead (two indexes); measured figures are in ``stats()``.

Invariants (kept by ``put``, ``dead_letter`` and ``rebase``, each in one transaction):
- per device, pending entries hold consecutive nonces ``committed+1 .. last_nonce`` and rising,
  non-overlapping sequence ranges; ``devices.last_nonce``/``last_seq`` are never below any pending entry's;
- an entry's ``raw`` bytes never change while a node might still commit them: after a restart the *same*
  signed bytes are resubmitted, so the chain deduplicates by tx hash (and, failing that, by the device's
  nonce and reading sequence);
- an entry leaves the table only when a node reported its tx committed (``remove_committed``) or
  definitively refused it (``dead_letter``/``rebase``, which keep the bytes and the reason in the ``dead``
  table and in ``deadletter.jsonl``); ``rebase`` re-signs only txs that can no longer commit as they are (those
  from a refused nonce on), keeping their readings and sequence numbers, so the chain still refuses doubles;
- the device counters live in the same database as the entries, so they can never disagree after a crash.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    pubkey BLOB NOT NULL,
    last_nonce INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_ts_ms INTEGER NOT NULL,
    synced INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS last_values (
    device TEXT NOT NULL,
    quantity TEXT NOT NULL,
    value INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (device, quantity)
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    seq_first INTEGER NOT NULL,
    seq_last INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    tx_hash BLOB NOT NULL UNIQUE,
    raw BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (device, nonce)
);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    seq_first INTEGER NOT NULL,
    seq_last INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    tx_hash BLOB NOT NULL,
    raw BLOB NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    committed INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0
);
"""


class OutboxError(Exception):
    """A write that would break an outbox invariant (a bug in the caller, never a transient condition)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One signed ``readings`` tx waiting for commit."""

    device: str
    nonce: int
    seq_first: int
    seq_last: int
    readings: int
    tx_hash: bytes
    raw: bytes
    """The encoded, signed tx: exactly the bytes sent to the node, again and again until committed."""
    created_ms: int


@dataclass(frozen=True, slots=True)
class Counters:
    """A device's signing state, persisted with the outbox."""

    device: str
    pubkey: bytes
    last_nonce: int
    """Nonce of the last tx signed for this device (committed or still in the outbox)."""
    last_seq: int
    """Sequence number of the last reading signed for this device."""
    last_ts_ms: int
    """Newest reading time signed for this device (0 = none); lets a restarted agent see the gap."""
    synced: bool
    """True once the counters were checked against a node (or advanced past what a node reported)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    device: str
    nonce: int
    seq_first: int
    seq_last: int
    readings: int
    tx_hash: bytes
    raw: bytes
    code: str
    reason: str
    committed: bool
    """True if the tx sits in a block marked invalid (its nonce is used); False if refused at admission."""
    ts_ms: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    entries: int
    readings: int
    raw_bytes: int
    """Sum of the signed tx bytes held."""
    file_bytes: int
    """Database + WAL files on disk (the WAL keeps old frames until a checkpoint, so this runs ahead)."""
    db_bytes: int
    """Pages the database uses now (page size × (pages − free pages)): the outbox's real footprint."""
    dead: int

    @property
    def bytes_per_reading(self) -> float:
        """Signed tx bytes per pending reading (what the outbox must hold per reading, before SQLite)."""
        return self.raw_bytes / self.readings if self.readings else 0.0


class Outbox:
    """Synchronous and thread-safe; the agent calls it from one worker thread so the event loop never blocks."""

    def __init__(self, path: Path, *, dead_letter_path: Path | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dead_letter_path = dead_letter_path or self.path.with_name("deadletter.jsonl")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise OutboxError(f"{self.path}: cannot switch SQLite to WAL mode (got {mode!r})")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(_SCHEMA)
        ver = self.get_meta("schema")
        if ver is None:
            self.set_meta("schema", SCHEMA_VERSION)
        elif ver != SCHEMA_VERSION:
            raise OutboxError(f"{self.path}: outbox schema {ver}, this agent writes {SCHEMA_VERSION}")
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(readings), 0), coalesce(sum(length(raw)), 0) FROM entries"
        ).fetchone()
        self._entries, self._readings, self._raw_bytes = int(row[0]), int(row[1]), int(row[2])
        self._dead = int(self._db.execute("SELECT count(*) FROM dead").fetchone()[0])
        self._export_dead()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- meta and counters ---------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def last_values(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Device → quantity → (value, ts_ms) of the newest signed value of each cumulative counter."""
        with self._lock:
            rows = self._db.execute("SELECT device, quantity, value, ts_ms FROM last_values").fetchall()
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for device, quantity, value, ts in rows:
            out.setdefault(str(device), {})[str(quantity)] = (int(value), int(ts))
        return out

    def counters(self, device: str) -> Counters | None:
        row = self._db.execute(
            "SELECT device, pubkey, last_nonce, last_seq, last_ts_ms, synced FROM devices WHERE device = ?",
            (device,),
        ).fetchone()
        return None if row is None else _counters(row)

    def all_counters(self) -> dict[str, Counters]:
        rows = self._db.execute(
            "SELECT device, pubkey, last_nonce, last_seq, last_ts_ms, synced FROM devices"
        ).fetchall()
        return {r[0]: _counters(r) for r in rows}

    def set_counters(self, c: Counters) -> None:
        """Record counters after a resync. Refuses to move below a pending entry (that would re-use a nonce)."""
        with self._lock:
            self._begin()
            try:
                row = self._db.execute(
                    "SELECT max(nonce), max(seq_last) FROM entries WHERE device = ?", (c.device,)
                ).fetchone()
                if row[0] is not None and (c.last_nonce < row[0] or c.last_seq < row[1]):
                    raise OutboxError(
                        f"{c.device}: counters nonce {c.last_nonce}/seq {c.last_seq} are below pending "
                        f"entries (nonce {row[0]}, seq {row[1]})"
                    )
                self._write_counters(c)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending_devices(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT DISTINCT device FROM entries")}

    # --- entries -------------------------------------------------------------------------------
    def put(
        self,
        entries: Sequence[Entry],
        counters: Sequence[Counters],
        last_values: Sequence[tuple[str, str, int, int]] = (),
    ) -> None:
        """Durably add signed txs and the counters they advanced, all or nothing, fsynced on return.

        Each entry must continue its device's counters: nonce = last_nonce + 1, seq_first > last_seq.
        ``counters`` give the new state of every device touched (pubkey, last_ts_ms, synced included).
        ``last_values`` are (device, quantity, value, ts_ms) of the newest signed value of each cumulative
        counter, so an agent restarted on this outbox still sees a counter that went backwards.
        """
        if not entries and not counters:
            return
        with self._lock:
            self._begin()
            try:
                last: dict[str, tuple[int, int]] = {}
                for e in entries:
                    if e.device not in last:
                        row = self._db.execute(
                            "SELECT last_nonce, last_seq FROM devices WHERE device = ?", (e.device,)
                        ).fetchone()
                        last[e.device] = (0, 0) if row is None else (int(row[0]), int(row[1]))
                    n, s = last[e.device]
                    if e.nonce != n + 1 or e.seq_first <= s or e.seq_last < e.seq_first:
                        raise OutboxError(
                            f"{e.device}: entry nonce {e.nonce} seq {e.seq_first}..{e.seq_last} does not "
                            f"continue nonce {n} seq {s}"
                        )
                    last[e.device] = (e.nonce, e.seq_last)
                    self._insert(e)
                for c in counters:
                    n, s = last.get(c.device, (c.last_nonce, c.last_seq))
                    if (c.last_nonce, c.last_seq) != (n, s):
                        raise OutboxError(f"{c.device}: counters do not match the entries written")
                    self._write_counters(c)
                for d in last:
                    if not any(c.device == d for c in counters):
                        raise OutboxError(f"{d}: entries written without the device's counters")
                self._db.executemany(
                    "INSERT OR REPLACE INTO last_values (device, quantity, value, ts_ms) VALUES (?, ?, ?, ?)",
                    last_values,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for e in entries:
                self._account(e, +1)

    def pending(self, *, per_device: int = 64, limit: int = 1000) -> list[Entry]:
        """The oldest pending entries: up to ``per_device`` per device in nonce order, ``limit`` in all.

        Devices are interleaved (first entries of every device before second entries) so one chatty device
        cannot starve the others; each device's entries stay in nonce order.
        """
        rows = self._db.execute(
            "SELECT device, nonce, seq_first, seq_last, readings, tx_hash, raw, created_ms FROM ("
            " SELECT *, row_number() OVER (PARTITION BY device ORDER BY nonce) AS rn FROM entries"
            ") WHERE rn <= ? ORDER BY rn, device LIMIT ?",
            (per_device, limit),
        ).fetchall()
        return [_entry(r) for r in rows]

    def entries_for(self, device: str) -> list[Entry]:
        rows = self._db.execute(
            "SELECT device, nonce, seq_first, seq_last, readings, tx_hash, raw, created_ms FROM entries "
            "WHERE device = ? ORDER BY nonce",
            (device,),
        ).fetchall()
        return [_entry(r) for r in rows]

    def remove_committed(self, tx_hashes: Iterable[bytes]) -> int:
        """Forget txs a node reported committed with result ok. Returns how many were still here."""
        hs = list(tx_hashes)
        if not hs:
            return 0
        with self._lock:
            self._begin()
            try:
                gone: list[Entry] = []
                for h in hs:
                    row = self._db.execute(
                        "SELECT device, nonce, seq_first, seq_last, readings, tx_hash, raw, created_ms "
                        "FROM entries WHERE tx_hash = ?",
                        (h,),
                    ).fetchone()
                    if row is not None:
                        gone.append(_entry(row))
                        self._db.execute("DELETE FROM entries WHERE tx_hash = ?", (h,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for e in gone:
                self._account(e, -1)
        return len(gone)

    def dead_letter(self, entry: Entry, code: str, reason: str, *, committed: bool) -> None:
        """Move one tx to the dead letters (with its bytes and the node's reason). Later txs stay as they are.

        Use it for a tx that sits in a block marked invalid (``committed=True``: its nonce is used). A tx
        refused at admission leaves its nonce free, so the device's later txs need ``rebase`` instead.
        """
        with self._lock:
            self._begin()
            try:
                self._delete_to_dead(entry, code, reason, committed)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._account(entry, -1)
            self._dead += 1
            self._export_dead()

    def rebase(
        self,
        device: str,
        from_nonce: int,
        replacements: Sequence[Entry],
        counters: Counters,
        *,
        dead: tuple[Entry, str, str] | None = None,
    ) -> None:
        """Replace a device's entries from ``from_nonce`` on with re-signed ones, in one transaction.

        ``replacements`` carry the same readings and sequence ranges as the entries they replace (minus
        ``dead``, the (entry, code, reason) of a tx refused at admission, which goes to the dead letters),
        signed with new nonces. Safe because the old bytes can never commit: the node refused the first of
        them (or reported its nonce used), and each later one needs its predecessor's nonce used first.
        """
        with self._lock:
            self._begin()
            try:
                old = [
                    _entry(r)
                    for r in self._db.execute(
                        "SELECT device, nonce, seq_first, seq_last, readings, tx_hash, raw, created_ms "
                        "FROM entries WHERE device = ? AND nonce >= ? ORDER BY nonce",
                        (device, from_nonce),
                    )
                ]
                if not old or old[0].nonce != from_nonce:
                    raise OutboxError(f"{device}: no pending entry with nonce {from_nonce}")
                kept = old
                if dead is not None:
                    entry, code, reason = dead
                    if entry.tx_hash != old[0].tx_hash:
                        raise OutboxError(f"{device}: the dead entry is not the one at nonce {from_nonce}")
                    self._delete_to_dead(entry, code, reason, False)
                    kept = old[1:]
                if [(e.seq_first, e.seq_last) for e in kept] != [
                    (e.seq_first, e.seq_last) for e in replacements
                ]:
                    raise OutboxError(f"{device}: replacements do not carry the same readings")
                last = self._db.execute(
                    "SELECT max(nonce) FROM entries WHERE device = ? AND nonce < ?", (device, from_nonce)
                ).fetchone()[0]
                nonces = [e.nonce for e in replacements]
                if nonces and nonces != list(range(nonces[0], nonces[0] + len(nonces))):
                    raise OutboxError(f"{device}: replacement nonces are not consecutive")
                if nonces and last is not None and nonces[0] != last + 1:
                    raise OutboxError(f"{device}: replacements must continue pending nonce {last}")
                if nonces and counters.last_nonce != nonces[-1]:
                    raise OutboxError(f"{device}: counters do not match the replacements")
                self._db.execute("DELETE FROM entries WHERE device = ? AND nonce >= ?", (device, from_nonce))
                for e in replacements:
                    self._insert(e)
                self._write_counters(counters)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for e in old:
                self._account(e, -1)
            for e in replacements:
                self._account(e, +1)
            if dead is not None:
                self._dead += 1
                self._export_dead()

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._db.execute(
            "SELECT device, nonce, seq_first, seq_last, readings, tx_hash, raw, code, reason, committed, "
            "ts_ms FROM dead ORDER BY id"
        ).fetchall()
        return [
            DeadLetter(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bytes(r[6]), r[7], r[8], bool(r[9]), r[10])
            for r in rows
        ]

    # --- accounting ----------------------------------------------------------------------------
    def stats(self) -> OutboxStats:
        size = 0
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                size += p.stat().st_size
            except FileNotFoundError:
                pass
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
        used = (int(pages) - int(free)) * int(page)
        return OutboxStats(self._entries, self._readings, self._raw_bytes, size, used, self._dead)

    @property
    def pending_txs(self) -> int:
        """Entries held now (kept in memory: cheap enough to ask on every tick)."""
        return self._entries

    def compact(self) -> None:
        """Give freed pages back to the file system (cheap when the outbox is empty, as after a drain)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA incremental_vacuum")

    # --- internals -----------------------------------------------------------------------------
    def _delete_to_dead(self, entry: Entry, code: str, reason: str, committed: bool) -> None:
        cur = self._db.execute("DELETE FROM entries WHERE tx_hash = ?", (entry.tx_hash,))
        if cur.rowcount != 1:
            raise OutboxError(f"tx {entry.tx_hash.hex()} is not in the outbox")
        self._db.execute(
            "INSERT INTO dead (device, nonce, seq_first, seq_last, readings, tx_hash, raw, code, reason, "
            "committed, ts_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.device,
                entry.nonce,
                entry.seq_first,
                entry.seq_last,
                entry.readings,
                entry.tx_hash,
                entry.raw,
                code,
                reason,
                int(committed),
                int(time.time() * 1000),
            ),
        )

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _insert(self, e: Entry) -> None:
        self._db.execute(
            "INSERT INTO entries (device, nonce, seq_first, seq_last, readings, tx_hash, raw, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (e.device, e.nonce, e.seq_first, e.seq_last, e.readings, e.tx_hash, e.raw, e.created_ms),
        )

    def _write_counters(self, c: Counters) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO devices (device, pubkey, last_nonce, last_seq, last_ts_ms, synced) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (c.device, c.pubkey, c.last_nonce, c.last_seq, c.last_ts_ms, int(c.synced)),
        )

    def _account(self, e: Entry, sign: int) -> None:
        self._entries += sign
        self._readings += sign * e.readings
        self._raw_bytes += sign * len(e.raw)

    def _export_dead(self) -> None:
        """Append not-yet-exported dead letters to the JSON Lines file (fsynced), then mark them.

        A crash between the two steps exports a row twice on the next start: readers dedupe by ``tx``.
        """
        rows = self._db.execute(
            "SELECT id, device, nonce, seq_first, seq_last, readings, tx_hash, raw, code, reason, committed, "
            "ts_ms FROM dead WHERE exported = 0 ORDER BY id"
        ).fetchall()
        if not rows:
            return
        lines = [
            json.dumps(
                {
                    "device": r[1],
                    "nonce": r[2],
                    "seq_first": r[3],
                    "seq_last": r[4],
                    "readings": r[5],
                    "tx": bytes(r[6]).hex(),
                    "code": r[8],
                    "reason": r[9],
                    "committed": bool(r[10]),
                    "ts_ms": r[11],
                    "raw": bytes(r[7]).hex(),
                },
                separators=(",", ":"),
            )
            + "\n"
            for r in rows
        ]
        fd = os.open(self.dead_letter_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(lines).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._db.execute(f"UPDATE dead SET exported = 1 WHERE id <= {int(rows[-1][0])}")


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(
        str(r[0]),
        int(r[1]),
        int(r[2]),
        int(r[3]),
        int(r[4]),
        bytes(r[5]),
        bytes(r[6]),
        int(r[7]),
    )


def _counters(r: Sequence[Any]) -> Counters:
    return Counters(
        str(r[0]),
        bytes(r[1]),
        int(r[2]),
        int(r[3]),
        int(r[4]),
        bool(r[5]),
    )
