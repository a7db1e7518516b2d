"""The ``document`` kind: fields extracted from a bill, receipt or ledger row, bound to the SHA-256 of the source.

A document is sent either by a registered bill scanner (a device whose ``DeviceRecord.kind`` is ``scanner.bill``,
signing with its own device key, like ``readings``) or by an org admin key (ledger imports, and a person's
confirmation or correction of what a scanner read).

Identity: ``document_id = sha256(b"CEMP/document-id/v1\\x00" || source_sha256 || doc_type || 0x00 || u64be(row))``
where ``row`` is 0 for a whole-file document (a bill or receipt image) and the 1-based spreadsheet row for a ledger
row. The same file (byte for byte) of the same type and row is therefore always the same document, whoever sends
it; a re-exported ledger is a different file and gets different ids.

Invariants (``check`` runs the same rules at admission and on apply, so a node never commits what it refuses):
- every quantity is an integer (``DocField.int_value``: Wh, fen, micro-yuan/kWh, permille); the codec has no floats;
- a field holds exactly one of ``int_value`` and ``text``; names are lower-case dotted identifiers, strictly
  ascending (unique, and one encoding per set of fields); at most ``MAX_FIELDS``; text without control characters;
  names carried by the payload itself (``doc_type``, ``review`` ...) are not fields; each doc type has required
  fields of a given type, and ISO dates (``YYYY-MM-DD``) where a field name says so;
- a device may send only the whole-file doc types, with review ``auto`` or ``needs_review``, naming itself in
  ``device``; only an org admin may send ``confirmed`` or ledger rows;
- the first version of an id is written once: a second document with the same id is ``ALREADY_EXISTS``, except a
  new version with review ``confirmed``, sent by the admin of the org that owns the document (the scanner's org,
  or the importing admin's org), whose ``supersedes`` names the tx of the current version (so a correction made
  on a stale screen is refused), and which keeps the media type and device of the version it supersedes;
- every version stays in state (``schema.document_version``); ``schema.document`` holds the current one; a
  document is in the review queue (``schema.document_review``) exactly while its current version says
  ``needs_review``.

Adding a doc type (``DOC_TYPES``) changes what nodes accept: every node of a chain must run the same table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from node import codec, schema
from node.crypto import sha256
from node.devices import load_device
from node.errors import CempError, Code
from node.state import StateView
from node.store import prefix_stop
from node.txkinds import Env, Writer, acting_org
from node.types import Handle, Hash32, Height, PublicKey, ShortStr, SignedInt, Text, Tx

if TYPE_CHECKING:
    from node.server import Node

KIND = "document"
DOMAIN_DOCUMENT_ID = b"CEMP/document-id/v1\x00"
SCANNER_KIND = "scanner.bill"
MAX_FIELDS = 64
MAX_MEDIA_TYPE = 255
# Used with fullmatch (``$`` would also match before a trailing newline).
NAME_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")  # explicit ranges: no Unicode-database version in consensus
RESERVED_NAMES = frozenset(
    {"doc_type", "review", "source_sha256", "image_sha256", "media_type", "supersedes"}
)
DATE_FIELDS = frozenset({"period_start", "period_end", "pay_date"})

REVIEW_AUTO = "auto"
REVIEW_NEEDED = "needs_review"
REVIEW_CONFIRMED = "confirmed"
REVIEWS = (REVIEW_AUTO, REVIEW_NEEDED, REVIEW_CONFIRMED)


@dataclass(frozen=True, slots=True)
class DocType:
    name: str
    per_row: bool
    """True: one document per ledger row (``row`` >= 1); False: one per file (``row`` == 0)."""
    scanner: bool
    """Whether a ``scanner.bill`` device may send it (ledger rows come only from an org admin)."""
    required: Mapping[str, type]
    """Fields that must be present, and whether each is an ``int`` or a ``str`` (text)."""


_PERIOD: dict[str, type] = {"period_start": str, "period_end": str, "energy_wh": int}
DOC_TYPES: dict[str, DocType] = {
    d.name: d
    for d in (
        DocType("electricity_bill", False, True, {"account": str, **_PERIOD, "amount_fen": int}),
        DocType("payment_receipt", False, True, {"account": str, "amount_fen": int}),
        DocType("purchase_ledger_row", True, False, _PERIOD),
        DocType("settlement_row", True, False, _PERIOD),
        # Green-power instruments for market-based Scope 2 (accounting): an energy attribute certificate (GEC 绿证)
        # or a green-power purchase contract, assigned to one site (``site`` = its site id) by an org admin.
        DocType("green_certificate", False, False, {"site": str, "certificate_id": str, **_PERIOD}),
        DocType("green_contract", False, False, {"site": str, "contract_id": str, **_PERIOD}),
    )
}


@dataclass(frozen=True, slots=True)
class DocField:
    """One extracted value: exactly one of ``int_value`` and ``text`` is set."""

    name: ShortStr
    """Lower-case dotted name, e.g. ``energy_wh`` or ``tariff.peak.price_uyuan_per_kwh``."""
    int_value: SignedInt | None
    """An integer in the base unit its name ends with (``_wh``, ``_fen``, ``_uyuan_per_kwh``, ``_permille``)."""
    text: Text | None
    """Text as read (account numbers stay text: leading zeros matter); dates as ``YYYY-MM-DD``."""


@dataclass(frozen=True, slots=True)
class DocumentPayload:
    """Payload of a ``document`` tx."""

    doc_type: ShortStr
    """A key of ``DOC_TYPES``: ``electricity_bill``, ``payment_receipt``, ``purchase_ledger_row``, ``settlement_row``,
    ``green_certificate``, ``green_contract``."""
    source_sha256: Hash32
    """SHA-256 of the original file exactly as received (the image, or the whole ledger file)."""
    media_type: Text
    """Media type of that file: ``image/png``, ``image/jpeg``, ``text/csv``, the XLSX type ..."""
    row: int
    """0 for a whole-file document; the 1-based spreadsheet row for a ledger row (part of the id)."""
    device: Handle | None
    """The scanner that read the source: required when the sender is a device key (it must be this device's)."""
    fields: tuple[DocField, ...]
    """Strictly ascending by name."""
    review: ShortStr
    """``auto`` (every check passed), ``needs_review`` (something is flagged) or ``confirmed`` (by a person)."""
    supersedes: Hash32 | None
    """None for the first version; for a confirmation, the tx hash of the version it replaces."""


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """State of one version of a document (``schema.document`` holds the current one)."""

    id: Hash32
    version: int
    """1 for the first submission, then +1 per confirmation or correction."""
    payload: DocumentPayload
    sender: PublicKey
    org: ShortStr
    """Org that owns the document: the scanner's org, or the org whose admin sent the first version."""
    tx_hash: Hash32
    height: Height
    """Height of the block that wrote this version."""
    created_height: Height
    """Position of version 1 (height, tx index): the key of the creation and review indexes."""
    created_index: int


def document_id(source_sha256: bytes, doc_type: str, row: int) -> Hash32:
    """The document's id (see the module docstring)."""
    return sha256(DOMAIN_DOCUMENT_ID + source_sha256 + doc_type.encode() + b"\x00" + row.to_bytes(8, "big"))


def payload_id(p: DocumentPayload) -> Hash32:
    return document_id(p.source_sha256, p.doc_type, p.row)


def make_fields(values: Mapping[str, int | str]) -> tuple[DocField, ...]:
    """``{name: int | str}`` -> fields in the canonical (ascending) order. Raises ValueError for other types."""
    out = []
    for name in sorted(values):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ValueError(f"field {name!r}: {type(v).__name__} is not an int or str")
        if isinstance(v, int):
            out.append(DocField(ShortStr(name), SignedInt(v), None))
        else:
            out.append(DocField(ShortStr(name), None, Text(v)))
    return tuple(out)


def field_values(fields: tuple[DocField, ...]) -> dict[str, int | str]:
    return {f.name: f.int_value if f.int_value is not None else (f.text or "") for f in fields}


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


def load_document(view: Reader, doc_id: bytes, version: int | None = None) -> DocumentRecord | None:
    raw = view.get(schema.document(doc_id) if version is None else schema.document_version(doc_id, version))
    return None if raw is None else codec.decode(DocumentRecord, raw)


def _bad(message: str) -> CempError:
    return CempError(Code.INVALID_PAYLOAD, message)


def check_payload(p: DocumentPayload) -> DocType:
    """Stateless rules: doc type, row, media type, review value, fields. Returns the doc type."""
    dt = DOC_TYPES.get(p.doc_type)
    if dt is None:
        raise _bad(f"unknown doc_type {p.doc_type!r}; known: {', '.join(sorted(DOC_TYPES))}")
    if dt.per_row and p.row < 1:
        raise _bad(f"a {p.doc_type} document needs its 1-based row number in the source file (row >= 1)")
    if not dt.per_row and p.row != 0:
        raise _bad(f"a {p.doc_type} document is one per file: row must be 0, got {p.row}")
    if len(p.media_type) > MAX_MEDIA_TYPE or not MEDIA_TYPE_RE.fullmatch(p.media_type):
        raise _bad(f"media_type {p.media_type[:80]!r} is not a lower-case type/subtype such as image/jpeg")
    if p.review not in REVIEWS:
        raise _bad(f"review {p.review!r} must be one of {', '.join(REVIEWS)}")
    if p.review != REVIEW_CONFIRMED and p.supersedes is not None:
        raise _bad("only a confirmed version may supersede another (review must be 'confirmed')")
    if not p.fields:
        raise _bad("a document needs at least one field")
    if len(p.fields) > MAX_FIELDS:
        raise CempError(Code.TOO_LARGE, f"document has {len(p.fields)} fields; the limit is {MAX_FIELDS}")
    prev = ""
    for i, f in enumerate(p.fields):
        if not NAME_RE.fullmatch(f.name):
            raise _bad(f"field {i}: name {f.name!r} is not lower-case letters, digits and _ in dotted parts")
        if f.name in RESERVED_NAMES:
            raise _bad(f"field {i}: {f.name!r} is carried by the payload itself, not as a field")
        if f.name <= prev:
            raise _bad(
                f"field {i}: {f.name!r} is {'a duplicate' if f.name == prev else 'out of order'}; "
                "names must be unique and ascending"
            )
        prev = f.name
        if (f.int_value is None) == (f.text is None):
            raise _bad(f"field {f.name!r}: set exactly one of int_value and text")
        if f.text is not None and _CONTROL_RE.search(f.text):
            raise _bad(f"field {f.name!r}: text holds control characters")
    values = field_values(p.fields)
    for name, tp in dt.required.items():
        if name not in values:
            raise _bad(f"a {p.doc_type} document needs the field {name!r}")
        if not isinstance(values[name], tp):
            raise _bad(f"field {name!r} must be {'an integer' if tp is int else 'text'}")
    for name in sorted(DATE_FIELDS.intersection(values)):  # sorted: the reason text is hashed in results_root
        v = values[name]
        if not isinstance(v, str) or not ISO_DATE_RE.fullmatch(v):
            raise _bad(f"field {name!r} must be a date as YYYY-MM-DD, got {v!r}")
        try:
            date.fromisoformat(v)
        except ValueError:
            raise _bad(f"field {name!r}: {v!r} is not a calendar date") from None
    start, end = values.get("period_start"), values.get("period_end")
    if isinstance(start, str) and isinstance(end, str) and end < start:
        raise _bad(f"period_end {end} is before period_start {start}")
    return dt


@dataclass(frozen=True, slots=True)
class _Decision:
    org: str
    head: DocumentRecord | None
    """The current version when this tx adds a new one, else None."""


class DocumentKind:
    name = KIND
    payload_type = DocumentPayload

    def read_scope(self, view: StateView, p: DocumentPayload) -> tuple[str, str, str | None] | None:
        """A document tx shows its org's document (``node.txkinds.ReadScope``)."""
        rec = load_document(view, payload_id(p))
        if rec is None:
            return None
        return (str(rec.org), "documents", str(p.device) if p.device is not None else None)

    def _decide(self, view: StateView, env: Env, tx: Tx, p: DocumentPayload) -> _Decision:
        dt = check_payload(p)
        admin = acting_org(env, tx)  # an org admin key, or a person acting for the org
        # Who sends: an org admin key, or the registered key of the scanner named in the payload.
        if p.device is not None:
            dev = load_device(view, p.device)
            if dev is None:
                raise CempError(Code.UNKNOWN_DEVICE, f"device {p.device} is not registered")
            if dev.kind != SCANNER_KIND:
                raise CempError(
                    Code.NOT_AUTHORIZED,
                    f"device {p.device} is a {dev.kind}; only {SCANNER_KIND} devices read documents",
                )
            if admin is None and dev.pubkey != tx.sender:
                raise CempError(
                    Code.WRONG_DEVICE_KEY,
                    f"documents from {p.device} must be signed by its registered key {dev.pubkey.hex()[:16]}...",
                )
            if admin is not None and admin.name != dev.org:
                raise CempError(
                    Code.NOT_AUTHORIZED, f"device {p.device} belongs to {dev.org}, not to {admin.name}"
                )
            org = dev.org
        elif admin is not None:
            org = admin.name
        else:
            raise CempError(
                Code.NOT_AUTHORIZED,
                "a document is signed by an org admin key, or by a scanner that names itself in 'device'",
            )
        if admin is None:
            if not dt.scanner:
                raise CempError(Code.NOT_AUTHORIZED, f"{p.doc_type} documents come from an org admin only")
            if p.review == REVIEW_CONFIRMED:
                raise CempError(
                    Code.NOT_AUTHORIZED, "only an org admin may mark a document confirmed (a person's review)"
                )
        doc_id = payload_id(p)
        head = load_document(view, doc_id)
        if head is None:
            if p.supersedes is not None:
                raise CempError(
                    Code.NOT_FOUND, f"document {doc_id.hex()} does not exist; there is nothing to supersede"
                )
            return _Decision(org, None)
        if p.supersedes is None:
            raise CempError(
                Code.ALREADY_EXISTS,
                f"document {doc_id.hex()} already exists (version {head.version}, block {head.height}); "
                "a correction must be confirmed by an org admin and name the version it supersedes",
            )
        if admin is None or admin.name != head.org:
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"document {doc_id.hex()} belongs to {head.org}; only {head.org}'s admin may confirm or correct it",
            )
        if p.supersedes != head.tx_hash:
            raise CempError(
                Code.ALREADY_EXISTS,
                f"document {doc_id.hex()} is at version {head.version} (tx {head.tx_hash.hex()[:16]}...); "
                "this correction names another version: reload the document and review it again",
            )
        if p.media_type != head.payload.media_type or p.device != head.payload.device:
            raise _bad("a new version keeps the media_type and device of the version it supersedes")
        return _Decision(head.org, head)

    @staticmethod
    def _record(env: Env, tx: Tx, p: DocumentPayload, d: _Decision) -> DocumentRecord:
        created = (d.head.created_height, d.head.created_index) if d.head else (env.height, env.tx_index)
        return DocumentRecord(
            id=payload_id(p),
            version=d.head.version + 1 if d.head else 1,
            payload=p,
            sender=tx.sender,
            org=ShortStr(d.org),
            tx_hash=env.tx_hash,
            height=env.height,
            created_height=Height(created[0]),
            created_index=created[1],
        )

    def check(self, view: StateView, env: Env, tx: Tx, p: DocumentPayload) -> None:
        self._decide(view, env, tx, p)

    def admit(self, view: StateView, env: Env, tx: Tx, p: DocumentPayload) -> dict[bytes, bytes]:
        # The pending head makes a second document with the same id wait behind (or be refused by) this one.
        rec = self._record(env, tx, p, self._decide(view, env, tx, p))
        return {schema.document(rec.id): codec.encode(rec)}

    def apply(self, state: Writer, env: Env, tx: Tx, p: DocumentPayload) -> None:
        rec = self._record(env, tx, p, self._decide(state, env, tx, p))  # type: ignore[arg-type]
        raw = codec.encode(rec)
        state.put(schema.document(rec.id), raw)
        state.put(schema.document_version(rec.id, rec.version), raw)
        if rec.version == 1:
            state.put(schema.document_created(rec.created_height, rec.created_index), rec.id)
            state.put(schema.document_typed(p.doc_type, rec.created_height, rec.created_index), rec.id)
        review_key = schema.document_review(rec.created_height, rec.created_index)
        if p.review == REVIEW_NEEDED:
            state.put(review_key, rec.id)
        else:
            state.delete(review_key)

    def describe(self, p: DocumentPayload) -> dict[str, Any]:
        return {
            "id": payload_id(p).hex(),
            "doc_type": p.doc_type,
            "source_sha256": p.source_sha256.hex(),
            "media_type": p.media_type,
            "row": p.row,
            "device": p.device,
            "fields": field_values(p.fields),
            "review": p.review,
            "supersedes": p.supersedes.hex() if p.supersedes is not None else None,
        }


KIND_IMPL = DocumentKind()


# --- reads: ``documents_routes(node)`` is a ``node.server.RouteProvider`` (listed in ``cemp.wiring.ROUTES``) ---


def _query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if not raw:
        return default
    if not (len(raw) <= 20 and raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise CempError(Code.BAD_REQUEST, f"query parameter {name}={raw!r} is not an integer in [{lo}, {hi}]")
    return int(raw)


def _hex32(s: str, what: str) -> bytes:
    try:
        b = bytes.fromhex(s) if len(s) <= 64 else b""
    except ValueError:
        raise CempError(Code.BAD_REQUEST, f"{what} {s[:80]!r} is not hex") from None
    if len(b) != 32:
        raise CempError(Code.BAD_REQUEST, f"{what} must be 32 bytes (64 hex chars)")
    return b


class DocumentsAPI:
    """``GET /v1/documents/{id}[?version=N]`` and ``GET /v1/documents?doc_type=&review=&limit=&before=``.

    Reads come from committed state only. The list is newest first by the position of each document's first
    version; ``next`` in the answer is the ``before`` cursor of the following page.
    """

    MAX_SCAN = 20_000

    def __init__(self, node: Node) -> None:
        self.node = node

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/documents", self.list_documents),
            web.get("/v1/documents/{id}", self.get_document),
        ]

    def _json(self, rec: DocumentRecord) -> dict[str, Any]:
        admins = self.node.ledger.admin_keys()
        admin = admins.ever(rec.sender)  # an admin key then (it may have been rotated since)
        return {
            **KIND_IMPL.describe(rec.payload),
            "version": rec.version,
            "org": rec.org,
            "sender": rec.sender.hex(),
            "sender_role": "admin" if admin is not None else self._sender_role(rec),
            "tx": rec.tx_hash.hex(),
            "height": rec.height,
            "created_height": rec.created_height,
        }

    def _sender_role(self, rec: DocumentRecord) -> str:
        """``device`` (the scanner's own key) or ``person`` (someone acting for the org, ``access``)."""
        if rec.payload.device is not None:
            dev = load_device(StateView(self.node.ledger.store), rec.payload.device)
            if dev is not None and dev.pubkey == rec.sender:
                return "device"
        return "person"

    async def get_document(self, request: web.Request) -> web.Response:
        doc_id = _hex32(request.match_info["id"], "document id")
        store = self.node.ledger.store
        head = load_document(StateView(store), doc_id)
        if head is None:
            raise CempError(Code.NOT_FOUND, f"no document {doc_id.hex()} on this chain")
        self.node.reads.require(request, head.org, "documents", device=head.payload.device)
        version = _query_int(request, "version", head.version, 1, head.version)
        rec = head if version == head.version else load_document(StateView(store), doc_id, version)
        assert rec is not None
        history = []
        lo, hi = schema.document_versions_range(doc_id)
        for _, raw in store.iterate(lo, hi):
            v = codec.decode(DocumentRecord, raw)
            history.append(
                {"version": v.version, "tx": v.tx_hash.hex(), "height": v.height, "review": v.payload.review}
            )
        return web.json_response({**self._json(rec), "current_version": head.version, "history": history})

    async def list_documents(self, request: web.Request) -> web.Response:
        doc_type = request.query.get("doc_type") or None
        review = request.query.get("review") or None
        if doc_type is not None and doc_type not in DOC_TYPES:
            raise CempError(
                Code.BAD_REQUEST, f"doc_type {doc_type!r} is not one of {', '.join(sorted(DOC_TYPES))}"
            )
        if review is not None and review not in REVIEWS:
            raise CempError(Code.BAD_REQUEST, f"review {review!r} is not one of {', '.join(REVIEWS)}")
        limit = _query_int(request, "limit", 50, 1, 1000)
        if review == REVIEW_NEEDED:
            prefix = schema.DOCUMENT_REVIEW_PREFIX
        elif doc_type is not None:
            prefix = schema.document_type_prefix(doc_type)
        else:
            prefix = schema.DOCUMENT_CREATED_PREFIX
        stop = prefix_stop(prefix)
        before = request.query.get("before")
        if before:
            height, sep, index = before.partition("-")
            if not (
                sep
                and 0 < len(height) <= 19
                and 0 < len(index) <= 10
                and (height + index).isascii()
                and height.isdigit()
                and index.isdigit()
                and int(height) < 1 << 63
                and int(index) < 1 << 32
            ):
                raise CempError(Code.BAD_REQUEST, f"before={before[:60]!r} is not a cursor like 12-0")
            stop = prefix + int(height).to_bytes(8, "big") + int(index).to_bytes(4, "big")
        snap = self.node.ledger.store.snapshot()
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        more = False
        withheld = 0
        try:
            for n, (key, doc_id) in enumerate(snap.iterate(prefix, stop, reverse=True)):
                if n >= self.MAX_SCAN or len(out) >= limit:
                    more = True
                    break
                raw = snap.get(schema.document(doc_id))
                assert raw is not None, "a document index entry without its document"
                rec = codec.decode(DocumentRecord, raw)
                pos = key[len(prefix) :]
                cursor = f"{int.from_bytes(pos[:8], 'big')}-{int.from_bytes(pos[8:12], 'big')}"
                if doc_type is not None and rec.payload.doc_type != doc_type:
                    continue
                if review is not None and rec.payload.review != review:
                    continue
                if not self.node.reads.allows(request, rec.org, "documents", device=rec.payload.device):
                    withheld += 1  # a list leaves out what this request may not read, and says how many
                    continue
                out.append(self._json(rec))
        finally:
            snap.release()
        return web.json_response({"documents": out, "next": cursor if more else None, "withheld": withheld})


def documents_routes(node: Node) -> list[web.RouteDef]:
    """A ``node.server.RouteProvider``: the documents read routes of one node."""
    return DocumentsAPI(node).routes()


__all__ = [
    "DOC_TYPES",
    "DocField",
    "DocType",
    "DocumentKind",
    "DocumentPayload",
    "DocumentRecord",
    "check_payload",
    "document_id",
    "documents_routes",
    "field_values",
    "load_document",
    "make_fields",
]
