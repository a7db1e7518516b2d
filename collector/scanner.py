"""The bill scanner agent, ledger import and a person's confirmation: everything that writes ``document`` txs.

``BillScanner`` watches an inbox folder for bill images (``.png``, ``.jpg``, ``.jpeg``). For each one it reads the
bytes, runs the offline OCR (``collector.ocr.bills.read_bill``), builds a ``document`` payload (the extracted fields,
the SHA-256 of the original bytes, review ``auto`` or ``needs_review``), signs it with the scanner's device key and
submits it with ``wait=commit`` to the first node that answers.

The folder is the durable outbox; the order of steps is what makes it crash-safe::

    image in inbox ─OCR─> sign ─write + fsync <image>.cemp-tx─> submit ─committed─> move image, then sidecar, to done/
                                                                        └─refused for good─> rejected/ + .reason.json

Invariants:
- an image leaves the inbox only after a node reported its tx committed (``done/``), or refused it for good at
  admission or marked it invalid in a block (``rejected/``, with a reason file); while no node answers, images wait;
- the signed tx is fsynced in the sidecar BEFORE it is sent, so after a crash the identical bytes are sent again
  (the node answers "committed" for a tx it already has) rather than re-signed with a new nonce, and a document is
  never doubled; the sidecar is replaced by a re-signed tx only when a node says its nonce was taken by another tx
  (``nonce_replayed``) or keeps calling it a gap;
- files are handled one at a time, oldest nonce first, so at most one signed tx is outstanding: a refused tx frees
  its nonce for the next image and there is nothing to re-order;
- the image is moved before its sidecar; a sidecar left alone in the inbox (crash between the two moves) follows
  its image into ``done/`` or ``rejected/``;
- a file is read only once its modification time is ``settle_s`` old (copy into the inbox, or better write
  elsewhere and rename into it).

``import_ledger_file`` turns each good row of a CSV/XLSX purchase ledger or settlement statement into a document
signed by an org admin (bad rows are reported with row/column/problem and not submitted; a row whose document id
is already on chain is skipped, so running the import twice writes nothing twice). ``confirm_document`` writes a
person's confirmation or correction as a new ``confirmed`` version. ``add_parser`` registers the ``scan-bills``,
``import-ledger`` and ``confirm-document`` commands on the ``cemp`` parser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from node import codec
from node.chain import ChainRef, sign_tx
from node.crypto import KeyPair, read_key_file
from node.documents import (
    DOC_TYPES,
    KIND,
    REVIEW_CONFIRMED,
    REVIEW_NEEDED,
    DocumentPayload,
    check_payload,
    field_values,
    make_fields,
    payload_id,
)
from node.errors import CempError, Code
from node.submit import Status, SubmitClient
from node.types import Handle, Hash32, ShortStr, Text, Tx

if TYPE_CHECKING:
    from collector.ocr.ledgers import LedgerRow

log = logging.getLogger("cemp.scanner")

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
SIDECAR_SUFFIX = ".cemp-tx"
REASON_SUFFIX = ".reason.json"
RECEIPT_SUFFIX = ".receipt.json"
DONE_DIR = "done"
REJECTED_DIR = "rejected"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# Refusals that may pass later (node busy or away, device registration or key change still pending, a lagging
# node): keep the signed tx and retry with backoff. The submission client (node/submit.py) classifies busy
# nodes, timeouts and unknown leaders itself; these are the refusals the scanner also waits out.
RETRY_CODES = frozenset(
    {Code.UNAVAILABLE, Code.TIMEOUT, Code.MEMPOOL_FULL, Code.UNKNOWN_DEVICE, Code.WRONG_DEVICE_KEY}
)
WAIT_REFUSALS = frozenset({"unknown_device", "wrong_device_key"})

Extractor = Callable[[bytes], Mapping[str, int | str]]
"""Image bytes -> flat document fields (``BillExtraction.to_document_fields``)."""


def ocr_bill_fields(image: bytes) -> Mapping[str, int | str]:
    """The default extractor: offline OCR of one bill image (raises ValueError when unreadable or incomplete)."""
    from collector.ocr.bills import read_bill

    return read_bill(image).to_document_fields()


def media_type_of(data: bytes, name: str) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    suffix = Path(name).suffix.lower()
    return "image/png" if suffix == ".png" else "image/jpeg"


def bill_payload(
    values: Mapping[str, int | str], image: bytes, media_type: str, device: str
) -> DocumentPayload:
    """A scanner's document payload from extracted fields; checked against the chain's stateless rules.

    Raises ValueError (or CempError from ``check_payload``) when the fields cannot form a valid document."""
    vals = dict(values)
    doc_type = str(vals.pop("doc_type", "electricity_bill"))
    review = str(vals.pop("review", REVIEW_NEEDED))
    digest = hashlib.sha256(image).digest()
    claimed = vals.pop("image_sha256", None)
    if claimed is not None and claimed != digest.hex():
        raise ValueError("the extractor's image_sha256 is not the SHA-256 of the image bytes")
    payload = DocumentPayload(
        doc_type=ShortStr(doc_type),
        source_sha256=Hash32(digest),
        media_type=Text(media_type),
        row=0,
        device=Handle(device),
        fields=make_fields(vals),
        review=ShortStr(review),
        supersedes=None,
    )
    _check_locally(payload)
    return payload


def _check_locally(payload: DocumentPayload) -> None:
    """What the node would refuse without looking at state: rules and encodable sizes."""
    check_payload(payload)
    codec.decode(DocumentPayload, codec.encode(payload))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, fsync the directory)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _unique(directory: Path, name: str) -> Path:
    """``directory/name``, or ``stem.N.suffix`` when a file of that name is already there."""
    dest = directory / name
    n = 1
    while dest.exists() or (directory / (dest.name + SIDECAR_SUFFIX)).exists():
        p = Path(name)
        dest = directory / f"{p.stem}.{n}{p.suffix}"
        n += 1
    return dest


# ---------------------------------------------------------------------------------------------------------------
# The scanner


@dataclass(frozen=True, slots=True)
class ScannerSettings:
    nodes: tuple[str, ...] = ("http://127.0.0.1:7001",)
    poll_interval_s: float = 2.0
    """How often the inbox is listed when it is idle."""
    settle_s: float = 1.0
    """A file is read only once it has not been modified for this long (it may still be being copied)."""
    commit_timeout_ms: int = 20_000
    request_timeout_s: float = 30.0
    retry_base_s: float = 0.2
    retry_max_s: float = 30.0
    gap_rounds: int = 3
    """A tx refused as a nonce gap this many times in a row is re-signed from the node's next nonce."""


@dataclass(slots=True)
class ScanStats:
    committed: int = 0
    rejected: int = 0
    resubmitted: int = 0
    """Sidecar txs found at start or after a failed attempt and sent again, byte for byte."""
    resigned: int = 0
    unreachable: int = 0
    """Passes that stopped because no node took the tx."""


@dataclass(frozen=True, slots=True)
class Signed:
    image: Path
    raw: bytes
    tx: Tx
    payload: DocumentPayload

    @property
    def sidecar(self) -> Path:
        return self.image.with_name(self.image.name + SIDECAR_SUFFIX)

    @property
    def tx_hash(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


class BillScanner:
    """One scanner device: an inbox folder, its device key and handle, and the nodes to submit to."""

    def __init__(
        self,
        inbox: Path,
        key: KeyPair,
        device: str,
        settings: ScannerSettings | None = None,
        *,
        extract: Extractor = ocr_bill_fields,
        chain: ChainRef | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.inbox = Path(inbox)
        self.done = self.inbox / DONE_DIR
        self.rejected = self.inbox / REJECTED_DIR
        self.key = key
        self.device = device
        self.settings = settings or ScannerSettings()
        self.extract = extract
        self.chain = chain
        self.clock = clock
        self.rng = rng or random.Random()
        self.next_nonce: int | None = None
        self.stats = ScanStats()
        self._gaps = 0
        self._last_pass_blocked = False
        self._session: aiohttp.ClientSession | None = None
        self._nodes: SubmitClient | None = None
        for d in (self.inbox, self.done, self.rejected):
            d.mkdir(parents=True, exist_ok=True)

    # --- lifecycle -------------------------------------------------------------------------------------------
    @property
    def nodes(self) -> SubmitClient:
        if self._nodes is None:
            timeout = aiohttp.ClientTimeout(
                total=self.settings.request_timeout_s + self.settings.commit_timeout_ms / 1000, connect=5
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
            self._nodes = SubmitClient.over_http(
                self.settings.nodes,
                self._session,
                chain_id=self.chain.chain_id if self.chain else None,
                genesis_hash=self.chain.genesis_hash.hex() if self.chain else None,
                rng=self.rng,
                backoff_base_s=self.settings.retry_base_s,
                backoff_cap_s=self.settings.retry_max_s,
            )
        return self._nodes

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session, self._nodes = None, None

    async def run(self, stop: asyncio.Event) -> None:
        """Scan until ``stop`` is set: right away after progress, backing off while no node takes a tx."""
        fails = 0
        try:
            while not stop.is_set():
                waiting = await self.scan_once()
                if waiting and self._last_pass_blocked:
                    fails += 1
                    delay = self.nodes.backoff.delay(fails)
                else:
                    fails = 0
                    delay = self.settings.poll_interval_s
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can swallow a cancel
                        await stop.wait()
        finally:
            await self.aclose()

    # --- one pass ----------------------------------------------------------------------------------------------
    def ready_images(self) -> list[Path]:
        """Images in the inbox old enough to read: those with a sidecar first (oldest nonce), then by name."""
        now = self.clock()
        signed: list[tuple[int, Path]] = []
        fresh: list[Path] = []
        for p in self.inbox.iterdir():
            if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            sidecar = p.with_name(p.name + SIDECAR_SUFFIX)
            if sidecar.exists():
                signed.append((self._sidecar_nonce(sidecar), p))
            elif now - p.stat().st_mtime >= self.settings.settle_s:
                fresh.append(p)
        return [p for _, p in sorted(signed)] + sorted(fresh)

    @staticmethod
    def _sidecar_nonce(sidecar: Path) -> int:
        try:
            return int(codec.decode(Tx, sidecar.read_bytes()).nonce)
        except (CempError, OSError):
            return 0

    async def scan_once(self) -> int:
        """Handle every ready image once, in order; stop at the first one no node takes (nonce order).

        Returns how many images are still waiting in the inbox."""
        self._last_pass_blocked = False
        self._adopt_orphan_sidecars()
        images = self.ready_images()
        for i, image in enumerate(images):
            try:
                finished = await self._handle(image)
            except FileNotFoundError:
                continue  # taken out of the inbox by someone else since the listing
            except CempError as e:  # no node for the chain id or nonce look-up (``Unreachable``)
                if e.code not in RETRY_CODES:
                    raise
                log.warning("no node took %s (%s); it waits in %s", image.name, e.message, self.inbox)
                finished = False
            if not finished:
                self.stats.unreachable += 1
                self._last_pass_blocked = True
                return len(images) - i
        return 0

    async def _handle(self, image: Path) -> bool:
        """Prepare (or reload) the signed tx of one image and deliver it. True when the image left the inbox."""
        signed = await self.prepare(image)
        if signed is None:
            return True
        return await self.deliver(signed)

    async def _ensure_chain(self) -> None:
        if self.chain is None:
            self.chain = await self.nodes.chain()
        if self.next_nonce is None:
            self.next_nonce = await self.nodes.next_nonce(self.key.public)

    async def prepare(self, image: Path) -> Signed | None:
        """The image's signed tx: reloaded from its sidecar, or OCR + sign + durable sidecar. None if rejected."""
        data = image.read_bytes()
        sidecar = image.with_name(image.name + SIDECAR_SUFFIX)
        if sidecar.exists():
            signed = self._load_sidecar(image, sidecar, data)
            if signed is not None:
                self.stats.resubmitted += 1
                return signed
        await self._ensure_chain()
        try:
            values = await asyncio.to_thread(self.extract, data)
            payload = bill_payload(values, data, media_type_of(data, image.name), self.device)
        except (ValueError, CempError) as e:
            msg = e.message if isinstance(e, CempError) else str(e)
            self._reject(image, None, "unreadable", f"no document could be made from the image: {msg}", data)
            return None
        return self._sign(image, payload)

    def _sign(self, image: Path, payload: DocumentPayload) -> Signed:
        assert self.chain is not None and self.next_nonce is not None
        raw, _ = sign_tx(self.key, self.chain, KIND, self.next_nonce, payload)
        self.next_nonce += 1
        signed = Signed(image, raw, codec.decode(Tx, raw), payload)
        # Durable BEFORE it is sent: a restart must resend these bytes, never sign the image again.
        write_durably(signed.sidecar, raw)
        return signed

    def _load_sidecar(self, image: Path, sidecar: Path, data: bytes) -> Signed | None:
        try:
            raw = sidecar.read_bytes()
            tx = codec.decode(Tx, raw)
            payload = codec.decode(DocumentPayload, tx.payload)
        except (CempError, OSError) as e:
            log.warning("%s: unreadable sidecar (%s); signing the image again", sidecar.name, e)
            sidecar.unlink(missing_ok=True)
            return None
        if payload.source_sha256 != hashlib.sha256(data).digest() or tx.sender != self.key.public:
            log.warning(
                "%s: sidecar is for other bytes or another key; signing the image again", sidecar.name
            )
            sidecar.unlink(missing_ok=True)
            return None
        return Signed(image, raw, tx, payload)

    async def deliver(self, signed: Signed) -> bool:
        """Submit until committed or refused for good; False when no node takes it now (try again later)."""
        for _ in range(4):  # re-signing after a taken nonce is bounded; the next pass tries again
            outcome = await self.nodes.submit_once(signed.raw, timeout_ms=self.settings.commit_timeout_ms)
            if not outcome.final or outcome.code in WAIT_REFUSALS:
                log.info(
                    "%s: %s (%s); will resend the same tx", signed.image.name, outcome.status, outcome.message
                )
                return False
            if outcome.status == Status.COMMITTED:
                self._gaps = 0
                self.next_nonce = max(self.next_nonce or 0, signed.tx.nonce + 1)
                if outcome.ok:
                    self._finish(signed, outcome.body)
                else:
                    code = str(Code(outcome.result_code).name.lower())
                    self._reject(signed.image, signed, code, f"committed invalid: {outcome.reason}", None)
                return True
            err = outcome.error
            assert err is not None
            if err.code == Code.NONCE_GAP:
                self._gaps += 1
                if self._gaps < self.settings.gap_rounds:
                    return False
            elif err.code != Code.NONCE_REPLAYED:
                # Refused for good at admission: its nonce is free again (it was the only one outstanding).
                self._reject(signed.image, signed, err.code.name.lower(), err.message, None)
                self.next_nonce = signed.tx.nonce
                return True
            # The nonce was taken (or the node keeps calling it a gap): the same payload under the node's next nonce.
            self._gaps = 0
            self.next_nonce = await self.nodes.next_nonce(self.key.public)
            signed.sidecar.unlink(missing_ok=True)
            signed = self._sign(signed.image, signed.payload)
            self.stats.resigned += 1
            log.info("%s: re-signed with nonce %d (%s)", signed.image.name, signed.tx.nonce, err.message)
        return False

    # --- moving files ------------------------------------------------------------------------------------------
    def _finish(self, signed: Signed, body: dict[str, Any]) -> None:
        dest = _unique(self.done, signed.image.name)
        receipt = {
            "file": signed.image.name,
            "document_id": payload_id(signed.payload).hex(),
            "tx": body["tx"],
            "height": body["height"],
            "review": signed.payload.review,
            "fields": field_values(signed.payload.fields),
        }
        write_durably(
            dest.with_name(dest.name + RECEIPT_SUFFIX), json.dumps(receipt, ensure_ascii=False).encode()
        )
        self._move(signed.image, dest)
        self.stats.committed += 1
        log.info(
            "%s committed at height %s as document %s",
            signed.image.name,
            body["height"],
            receipt["document_id"],
        )

    def _reject(
        self, image: Path, signed: Signed | None, code: str, message: str, data: bytes | None
    ) -> None:
        dest = _unique(self.rejected, image.name)
        digest = payload_id(signed.payload).hex() if signed else None
        reason = {
            "file": image.name,
            "code": code,
            "message": message,
            "source_sha256": hashlib.sha256(data if data is not None else image.read_bytes()).hexdigest(),
            "document_id": digest,
            "tx": signed.tx_hash if signed else None,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_durably(
            dest.with_name(dest.name + REASON_SUFFIX), json.dumps(reason, ensure_ascii=False).encode()
        )
        self._move(image, dest)
        self.stats.rejected += 1
        log.warning("%s rejected: %s: %s", image.name, code, message)

    def _move(self, image: Path, dest: Path) -> None:
        """Image first, then its sidecar (a lone sidecar is adopted on the next pass), then fsync both dirs."""
        sidecar = image.with_name(image.name + SIDECAR_SUFFIX)
        os.replace(image, dest)
        if sidecar.exists():
            os.replace(sidecar, dest.with_name(dest.name + SIDECAR_SUFFIX))
        _fsync_dir(dest.parent)
        _fsync_dir(image.parent)

    def _adopt_orphan_sidecars(self) -> None:
        for sidecar in self.inbox.glob("*" + SIDECAR_SUFFIX):
            image_name = sidecar.name[: -len(SIDECAR_SUFFIX)]
            if (self.inbox / image_name).exists():
                continue
            for d in (self.done, self.rejected):
                if (d / image_name).exists() and not (d / sidecar.name).exists():
                    os.replace(sidecar, d / sidecar.name)
                    _fsync_dir(d)
                    break
            else:
                log.warning("%s has no image next to it; leaving it in place", sidecar.name)


# ---------------------------------------------------------------------------------------------------------------
# Ledger import


@dataclass(slots=True)
class ImportReport:
    file: str
    source_sha256: str
    doc_type: str
    rows: int = 0
    """Good rows in the file (each one document)."""
    committed: int = 0
    already: int = 0
    """Rows whose document was already on chain (an earlier import of the same file)."""
    bad_rows: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_rows and not self.refused and self.committed + self.already == self.rows

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "source_sha256": self.source_sha256,
            "doc_type": self.doc_type,
            "rows": self.rows,
            "committed": self.committed,
            "already": self.already,
            "bad_rows": self.bad_rows,
            "refused": self.refused,
            "ok": self.ok,
        }


def ledger_row_payload(
    row: LedgerRow, doc_type: str, source: bytes, media_type: str, file_name: str
) -> DocumentPayload:
    """One ``collector.ocr.ledgers.LedgerRow`` as a document payload (integers in Wh, fen, micro-yuan/kWh)."""
    values: dict[str, int | str] = {
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
        "energy_wh": row.energy_wh,
        "file_name": file_name[-1024:],
    }
    for name in ("account", "amount_fen", "price_uyuan_per_kwh", "supplier", "reference"):
        v = getattr(row, name)
        if v is not None:
            values[name] = v
    if row.warnings:
        values["warnings"] = "; ".join(row.warnings)[:1024]
    return DocumentPayload(
        doc_type=ShortStr(doc_type),
        source_sha256=Hash32(source),
        media_type=Text(media_type),
        row=row.row,
        device=None,
        fields=make_fields(values),
        review=ShortStr(REVIEW_NEEDED if row.warnings else "auto"),
        supersedes=None,
    )


async def _exists(nodes: SubmitClient, doc_id: bytes) -> bool:
    try:
        await nodes.get(f"/v1/documents/{doc_id.hex()}")
    except CempError as e:
        if e.code == Code.NOT_FOUND:
            return False
        raise
    return True


_RESIGN_CODES = frozenset({c.name.lower() for c in RETRY_CODES} | {"nonce_gap", "nonce_replayed"})
Pending = list[tuple[DocumentPayload, bytes | None]]
"""Rows still to commit, each with its signed tx while that tx may still be on its way (else None: sign anew)."""


def _read_rows(path: Path, doc_type: str, sheet: str | None, report: ImportReport) -> list[DocumentPayload]:
    from collector.ocr.ledgers import LedgerRow, open_ledger

    data = path.read_bytes()
    source = hashlib.sha256(data).digest()
    report.source_sha256 = source.hex()
    xlsx = path.suffix.lower() in (".xlsx", ".xlsm")
    ledger = open_ledger(data, fmt="xlsx" if xlsx else "csv", sheet=sheet)
    media = XLSX_MEDIA_TYPE if xlsx else "text/csv"
    todo: list[DocumentPayload] = []
    for item in ledger:
        if not isinstance(item, LedgerRow):
            report.bad_rows.append(
                {"row": item.row, "column": item.column, "problem": item.problem, "value": item.value}
            )
            continue
        payload = ledger_row_payload(item, doc_type, source, media, path.name)
        try:
            _check_locally(payload)
        except CempError as e:
            report.bad_rows.append({"row": item.row, "column": "", "problem": e.message, "value": ""})
            continue
        todo.append(payload)
    return todo


async def _submit_chunk(
    nodes: SubmitClient,
    key: KeyPair,
    chain: ChainRef,
    part: Pending,
    report: ImportReport,
    done: Callable[[], object],
) -> Pending:
    """Sign what needs signing from the node's next nonce, submit as one batch, sort the answers; returns the
    rows to try again."""
    nonce = await nodes.next_nonce(key.public)
    raws: list[bytes] = []
    for p, raw in part:
        if raw is None:  # a tx that may still be on its way is resent as is (identical bytes are idempotent)
            raw, _ = sign_tx(key, chain, KIND, nonce, p)
            nonce += 1
        raws.append(raw)
    try:
        results = await nodes.submit_batch(raws)
    except CempError as e:
        if e.code not in RETRY_CODES:
            raise
        return [(p, None) for p, _ in part]
    retry: Pending = []
    for (p, _), raw, out in zip(part, raws, results, strict=True):
        if out.status in (Status.TIMEOUT, Status.LEADER_UNKNOWN):
            retry.append((p, raw))  # admitted, not committed within the wait: resend the same bytes
            continue
        if out.status == Status.RETRY_AFTER or (out.status == Status.REFUSED and out.code in _RESIGN_CODES):
            retry.append((p, None))
            continue
        if out.status == Status.COMMITTED:
            code, message = Code(out.result_code).name.lower(), out.reason
        else:
            code, message = out.code, out.message
        if code in ("ok", "already_exists"):
            report.committed += code == "ok"
            report.already += code == "already_exists"
        else:
            report.refused.append({"row": p.row, "code": code, "message": message})
        done()
    return retry


async def import_ledger_file(
    path: Path,
    key: KeyPair,
    urls: Sequence[str],
    doc_type: str = "purchase_ledger_row",
    *,
    sheet: str | None = None,
    chunk: int = 200,
    max_rounds: int = 6,
    progress: bool | None = None,
    session: aiohttp.ClientSession | None = None,
    rng: random.Random | None = None,
) -> ImportReport:
    """Import one ledger file: every good row becomes one admin-signed document; see the module docstring.

    ``progress`` None shows a bar only on a terminal. Raises ``collector.ocr.ledgers.LedgerFormatError`` when
    the file as a whole cannot be read, CempError when no node answers."""
    from tqdm import tqdm

    if doc_type not in DOC_TYPES or not DOC_TYPES[doc_type].per_row:
        row_types = sorted(n for n, d in DOC_TYPES.items() if d.per_row)
        raise ValueError(f"doc type {doc_type!r} is not a ledger row type ({', '.join(row_types)})")
    report = ImportReport(str(path), "", doc_type)
    todo = _read_rows(path, doc_type, sheet, report)
    report.rows = len(todo)
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120, connect=5))
    bar = tqdm(
        total=len(todo), unit="row", desc=path.name, disable=None if progress is None else not progress
    )
    try:
        nodes = SubmitClient.over_http(urls, sess, rng=rng, backoff_base_s=0.2, backoff_cap_s=5.0)
        chain = await nodes.chain()
        pending: Pending = []
        for p in todo:
            if await _exists(nodes, payload_id(p)):  # imported before: nothing to sign
                report.already += 1
                bar.update(1)
            else:
                pending.append((p, None))
        for attempt in range(max_rounds):
            if not pending:
                break
            if attempt:
                await nodes.clock.sleep(nodes.backoff.delay(attempt))
            retry: Pending = []
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                retry += await _submit_chunk(nodes, key, chain, part, report, lambda: bar.update(1))
            pending = retry
        for p, _ in pending:
            report.refused.append(
                {"row": p.row, "code": "unavailable", "message": "not committed after retries"}
            )
    finally:
        bar.close()
        if own:
            await sess.close()
    return report


# ---------------------------------------------------------------------------------------------------------------
# A person's confirmation or correction


def bill_checks(values: Mapping[str, int | str]) -> list[str]:
    """Names of the bill cross-checks (``collector.ocr.bills.run_checks``) that the fields fail, in integers."""
    from collector.ocr.bills import AMOUNT_TOLERANCE_FEN, READING_TOLERANCE_WH, line_amount_fen

    def num(name: str) -> int | None:
        v = values.get(name)
        return v if isinstance(v, int) else None

    failed = []
    prev, cur, mult, energy = (
        num("previous_reading_wh"),
        num("current_reading_wh"),
        num("multiplier"),
        num("energy_wh"),
    )
    if prev is not None and cur is not None and cur < prev:
        failed.append("reading_order")
    if None not in (prev, cur, mult, energy):
        assert prev is not None and cur is not None and mult is not None and energy is not None
        if abs(energy - (cur - prev) * mult) > READING_TOLERANCE_WH:
            failed.append("reading")
    segments = sorted({n.split(".")[1] for n in values if re.fullmatch(r"tariff\.[a-z]+\.energy_wh", n)})
    lines = [(num(f"tariff.{s}.energy_wh"), num(f"tariff.{s}.price_uyuan_per_kwh")) for s in segments]
    if (
        len(lines) > 1
        and energy is not None
        and abs(sum(e or 0 for e, _ in lines) - energy) > READING_TOLERANCE_WH
    ):
        failed.append("tariff_sum")
    amount = num("amount_fen")
    if lines and amount is not None and all(e is not None and p is not None for e, p in lines):
        expected = sum(line_amount_fen(e, p) for e, p in lines if e is not None and p is not None)
        if abs(expected - amount) > AMOUNT_TOLERANCE_FEN:
            failed.append("amount")
    start, end = values.get("period_start"), values.get("period_end")
    if isinstance(start, str) and isinstance(end, str):
        try:
            days = (date.fromisoformat(end) - date.fromisoformat(start)).days
        except ValueError:
            days = -1
        if not 0 <= days <= 92:
            failed.append("period")
    return failed


def apply_corrections(
    current: Mapping[str, int | str],
    sets: Sequence[str] = (),
    set_texts: Sequence[str] = (),
    unsets: Sequence[str] = (),
) -> dict[str, int | str]:
    """Fields after a person's ``--set name=value`` (an int field stays an int; a new field is an int if the
    value is one), ``--set-text name=value`` (always text) and ``--unset name``. Raises ValueError."""
    out = dict(current)
    for spec, force_text in [(s, False) for s in sets] + [(s, True) for s in set_texts]:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--set {spec!r}: expected NAME=VALUE")
        old = out.get(name)
        if force_text or isinstance(old, str) or (old is None and not re.fullmatch(r"-?\d+", value.strip())):
            out[name] = value
        else:
            try:
                out[name] = int(value.strip())
            except ValueError:
                raise ValueError(f"{name} holds an integer (base units); {value!r} is not one") from None
    for name in unsets:
        if name not in out:
            raise ValueError(f"--unset {name}: the document has no such field")
        del out[name]
    return out


async def confirm_document(
    doc_id: str,
    key: KeyPair,
    urls: Sequence[str],
    *,
    sets: Sequence[str] = (),
    set_texts: Sequence[str] = (),
    unsets: Sequence[str] = (),
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """Write the current version of a document, with corrections, as a new ``confirmed`` version.

    Returns ``{"document": id, "version": n, "checks_failed": [...], "result": <node answer>}``."""
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=5))
    try:
        nodes = SubmitClient.over_http(urls, sess)
        doc = await nodes.get(f"/v1/documents/{doc_id}")
        values = apply_corrections(doc["fields"], sets, set_texts, unsets)
        failed: list[str] = []
        if doc["doc_type"] in ("electricity_bill", "payment_receipt"):
            failed = bill_checks(values)
            if "flagged" in values:
                values["flagged"] = ""  # a person looked at every field
            if "checks_failed" in values:
                values["checks_failed"] = ",".join(failed)
        payload = DocumentPayload(
            doc_type=ShortStr(doc["doc_type"]),
            source_sha256=Hash32(bytes.fromhex(doc["source_sha256"])),
            media_type=Text(doc["media_type"]),
            row=int(doc["row"]),
            device=Handle(doc["device"]) if doc["device"] is not None else None,
            fields=make_fields(values),
            review=ShortStr(REVIEW_CONFIRMED),
            supersedes=Hash32(bytes.fromhex(doc["tx"])),
        )
        _check_locally(payload)
        chain = await nodes.chain()
        nonce = await nodes.next_nonce(key.public)
        raw, _ = sign_tx(key, chain, KIND, nonce, payload)
        res = (await nodes.submit_signed(raw)).body
        return {"document": doc_id, "version": doc["version"] + 1, "checks_failed": failed, "result": res}
    finally:
        if own:
            await sess.close()


# ---------------------------------------------------------------------------------------------------------------
# Commands


def _key(path: str) -> KeyPair:
    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    return read_key_file(Path(path), passphrase)


def _urls(spec: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in spec.split(",") if u.strip())
    if not urls:
        raise SystemExit("--nodes needs at least one URL")
    return urls


def cmd_scan_bills(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = ScannerSettings(nodes=_urls(args.nodes), poll_interval_s=args.poll, settle_s=args.settle)
    scanner = BillScanner(Path(args.inbox), _key(args.key), args.device, settings)

    async def main() -> int:
        if args.once:
            try:
                waiting = await scanner.scan_once()
            finally:
                await scanner.aclose()
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if args.duration is not None:
                loop.call_later(args.duration, stop.set)
            await scanner.run(stop)
            waiting = len(scanner.ready_images())
        st = scanner.stats
        print(
            json.dumps({"committed": st.committed, "rejected": st.rejected, "waiting": waiting}), flush=True
        )
        return 0

    return asyncio.run(main())


def cmd_import_ledger(args: argparse.Namespace) -> int:
    from collector.ocr.ledgers import LedgerFormatError

    try:
        report = asyncio.run(
            import_ledger_file(
                Path(args.file),
                _key(args.key),
                _urls(args.nodes),
                args.doc_type,
                sheet=args.sheet,
                progress=False if args.quiet else None,
            )
        )
    except (LedgerFormatError, OSError, ValueError) as e:
        print(f"import-ledger: {e}", file=sys.stderr)
        return 2
    except CempError as e:
        print(json.dumps(e.to_json()), file=sys.stderr)
        return 1
    for bad in report.bad_rows:
        print(
            f"row {bad['row']}, column {bad['column']!r}: {bad['problem']} (value {bad['value']!r})",
            file=sys.stderr,
        )
    for r in report.refused:
        print(f"row {r['row']}: refused: {r['code']}: {r['message']}", file=sys.stderr)
    print(json.dumps(report.to_json(), ensure_ascii=False))
    return 0 if report.ok else 1


def cmd_confirm_document(args: argparse.Namespace) -> int:
    try:
        out = asyncio.run(
            confirm_document(
                args.id,
                _key(args.key),
                _urls(args.nodes),
                sets=args.set or (),
                set_texts=args.set_text or (),
                unsets=args.unset or (),
            )
        )
    except ValueError as e:
        print(f"confirm-document: {e}", file=sys.stderr)
        return 2
    except CempError as e:
        print(json.dumps(e.to_json()), file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False))
    if out["checks_failed"]:
        print(
            f"note: confirmed although these checks fail: {', '.join(out['checks_failed'])}", file=sys.stderr
        )
    return 0 if out["result"]["result"]["ok"] else 1


def add_parser(subparsers: Any) -> None:
    """Register ``scan-bills``, ``import-ledger`` and ``confirm-document`` on an argparse sub-parsers object."""
    sb = subparsers.add_parser(
        "scan-bills",
        help="watch a folder for bill images: OCR, sign with the scanner's key, submit; done/ after commit",
        description="The inbox is the durable outbox: an image moves to DIR/done only after its document tx "
        "committed, or to DIR/rejected with a .reason.json. Write files elsewhere and rename them into DIR.",
    )
    sb.add_argument("--inbox", required=True, help="folder to watch (done/ and rejected/ are created in it)")
    sb.add_argument("--key", required=True, help="the scanner's device key file")
    sb.add_argument(
        "--device", required=True, help="the scanner's handle, e.g. 88.123.45/900.1 (kind scanner.bill)"
    )
    sb.add_argument("--nodes", required=True, help="node API URLs, comma-separated, tried in order")
    sb.add_argument("--poll", type=float, default=2.0, help="seconds between inbox scans when idle")
    sb.add_argument("--settle", type=float, default=1.0, help="a file must be unmodified this long")
    sb.add_argument("--once", action="store_true", help="one pass over the inbox, then exit")
    sb.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sb.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sb.set_defaults(func=cmd_scan_bills)

    il = subparsers.add_parser(
        "import-ledger",
        help="import a CSV/XLSX purchase ledger or settlement statement: one admin-signed document per row",
        description="Bad rows are reported (row, column, problem) and not submitted; rows already on chain are "
        "skipped, so importing the same file again writes nothing twice. Exit 0 when every row is on chain.",
    )
    il.add_argument("file", help="the .csv or .xlsx file")
    il.add_argument("--key", required=True, help="an org admin key file")
    il.add_argument("--nodes", required=True, help="node API URLs, comma-separated")
    il.add_argument(
        "--doc-type",
        default="purchase_ledger_row",
        choices=sorted(n for n, d in DOC_TYPES.items() if d.per_row),
    )
    il.add_argument("--sheet", default=None, help="XLSX sheet name (default: the first)")
    il.add_argument("--quiet", action="store_true", help="no progress bar")
    il.set_defaults(func=cmd_import_ledger)

    cd = subparsers.add_parser(
        "confirm-document",
        help="a person's confirmation or correction of a document: a new 'confirmed' version",
        description="Reads the current version, applies the corrections and submits it as a confirmed version "
        "signed by the owning org's admin. Values are base units: Wh, fen, micro-yuan/kWh, dates YYYY-MM-DD.",
    )
    cd.add_argument("id", help="document id (64 hex chars)")
    cd.add_argument("--set", action="append", metavar="NAME=VALUE", help="correct a field (repeatable)")
    cd.add_argument(
        "--set-text", action="append", metavar="NAME=VALUE", help="set a field as text (repeatable)"
    )
    cd.add_argument("--unset", action="append", metavar="NAME", help="remove a field (repeatable)")
    cd.add_argument("--key", required=True, help="the owning org's admin key file")
    cd.add_argument("--nodes", required=True, help="node API URLs, comma-separated")
    cd.set_defaults(func=cmd_confirm_document)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cemp", description="CEMP document commands")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
