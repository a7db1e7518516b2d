"""Every storage key, built in one place.

Namespaces (first byte):
- ``M`` meta (not part of the app hash): last applied height, state accumulator, genesis;
- ``B`` blocks by height, ``H`` block hash -> height, ``Q`` tx results by height (block store, not part
  of the app hash);
- ``R`` raft hard state and log (consensus driver; not part of the app hash);
- state namespaces (all part of the app hash): ``t`` tx location by tx hash, ``n`` sender nonce,
  ``d`` device record by handle, ``i`` device number -> handle, ``r`` readings by (device number, time, seq),
  ``a`` hourly aggregates by (device number, quantity, hour), ``o`` the readings txs behind each aggregate
  (device number, quantity, hour, tx hash -> readings of the tx in the hour), ``c`` counters, ``h`` handle
  records, ``x`` documents, ``f`` factor sets, ``p`` reports, ``w`` work orders, ``g`` governance (consortium node registry; people,
  data grants and data policies), ``s`` sites,
  their boundaries and ratings (accounting).

Integers in keys are fixed-width big-endian so that byte order equals numeric order.
"""

from __future__ import annotations

STATE_PREFIXES = b"tndiracghxfpwgso"

META = b"M"
BLOCK = b"B"
BLOCK_HASH = b"H"
RAFT = b"R"


def _u64(v: int) -> bytes:
    return v.to_bytes(8, "big")


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def is_state_key(key: bytes) -> bool:
    return len(key) > 0 and key[0] in STATE_PREFIXES


# meta
META_HEIGHT = b"Mheight"
META_STATE_ACC = b"Mstate-acc"
META_GENESIS = b"Mgenesis"
META_LAST_HASH = b"Mlast-hash"
META_STATE_BASE = b"Mstate-base"
"""Height of the state snapshot this node was installed from (absent on a node that replayed from genesis)."""


META_WATERMARK = b"Mwatermark"
"""Present once this store has a high-water-mark file beside it (``node.watermark``): the file going missing
is then damage, not an old data directory."""

META_SCHEMA = b"Mschema"
"""Storage schema version of this store, a decimal string (``node.migrations``); absent: version 0."""

KNOWN_META = {
    META_HEIGHT,
    META_STATE_ACC,
    META_GENESIS,
    META_LAST_HASH,
    META_STATE_BASE,
    META_WATERMARK,
    META_SCHEMA,
}
"""Fixed meta keys; ``Mcert`` + height and ``Mraft-applied`` are the others (``describe_key``)."""


def describe_key(key: bytes) -> str:
    """A person's name for a storage key, for error messages ("block 7", "raft log entry 12", ...)."""
    if not key:
        return "the start of the key space"
    p = key[:1]
    if p == BLOCK and len(key) == 9:
        return f"block {block_height_of(key)}"
    if p == b"Q" and len(key) == 9:
        return f"the tx results of block {block_height_of(key)}"
    if p == BLOCK_HASH:
        return f"the block-hash index entry {key[1:].hex()[:16]}"
    if key.startswith(b"Mcert") and len(key) == 13:
        return f"the commit certificate of block {int.from_bytes(key[5:], 'big')}"
    if key.startswith(b"Re") and len(key) == 10:
        return f"raft log entry {int.from_bytes(key[2:], 'big')}"
    if key.startswith(b"Rhs"):
        return "the raft hard state"
    if key.startswith(b"Rsnap"):
        return "the raft snapshot record"
    if p == META:
        return f"meta record {key[1:].decode(errors='replace')!r}"
    if is_state_key(key):
        return f"state key {key[:24]!r}"
    return f"key {key[:24]!r}"


def block(height: int) -> bytes:
    return BLOCK + _u64(height)


def block_height_of(key: bytes) -> int:
    return int.from_bytes(key[1:9], "big")


def block_by_hash(block_hash: bytes) -> bytes:
    return BLOCK_HASH + block_hash


def block_results(height: int) -> bytes:
    """Encoded ``TxResult`` list of a block (block store; its root is in the header)."""
    return b"Q" + _u64(height)


def commit_cert(height: int) -> bytes:
    """Commit votes collected for a block after it was applied (block H's certificate is in H+1's header
    too; this keeps the newest block's certificate until H+1 exists)."""
    return b"Mcert" + _u64(height)


# state
def tx(tx_hash: bytes) -> bytes:
    return b"t" + tx_hash


def nonce(sender: bytes) -> bytes:
    return b"n" + sender


def device(handle: str) -> bytes:
    return b"d" + handle.encode()


DEVICE_PREFIX = b"d"


def device_number(num: int) -> bytes:
    return b"i" + _u32(num)


def counter(name: str) -> bytes:
    return b"c" + name.encode()


def reading(devnum: int, ts_ms: int, seq: int) -> bytes:
    return b"r" + _u32(devnum) + _u64(ts_ms) + _u64(seq)


def reading_keys(devnum: int, stamps: list[tuple[int, int]]) -> list[bytes]:
    """``reading(devnum, ts_ms, seq)`` for each (ts_ms, seq) of one device (a batch's keys at once)."""
    p = b"r" + _u32(devnum)
    return [p + ts.to_bytes(8, "big") + seq.to_bytes(8, "big") for ts, seq in stamps]


def reading_range(devnum: int, start_ms: int, stop_ms: int) -> tuple[bytes, bytes]:
    """[start, stop) key range of a device's readings between two timestamps."""
    return b"r" + _u32(devnum) + _u64(start_ms), b"r" + _u32(devnum) + _u64(stop_ms)


def parse_reading_key(key: bytes) -> tuple[int, int, int]:
    return (
        int.from_bytes(key[1:5], "big"),
        int.from_bytes(key[5:13], "big"),
        int.from_bytes(key[13:21], "big"),
    )


def hourly(devnum: int, quantity: str, hour: int) -> bytes:
    return b"a" + _u32(devnum) + quantity.encode() + b"\x00" + _u64(hour)


def hourly_range(devnum: int, quantity: str, start_hour: int, stop_hour: int) -> tuple[bytes, bytes]:
    p = b"a" + _u32(devnum) + quantity.encode() + b"\x00"
    return p + _u64(start_hour), p + _u64(stop_hour)


def hourly_device_prefix(devnum: int) -> bytes:
    return b"a" + _u32(devnum)


def parse_hourly_key(key: bytes) -> tuple[int, str, int]:
    devnum = int.from_bytes(key[1:5], "big")
    q, _, hour = key[5:].partition(b"\x00")
    return devnum, q.decode(), int.from_bytes(hour, "big")


def hourly_tx(devnum: int, quantity: str, hour: int, tx_hash: bytes) -> bytes:
    """Marks that the readings tx ``tx_hash`` holds readings of (device, quantity, hour): the origin of the hour's
    aggregate, so a figure computed from aggregates can name the signed txs behind it. Value: how many (msgpack
    int)."""
    return b"o" + _u32(devnum) + quantity.encode() + b"\x00" + _u64(hour) + tx_hash


def hourly_tx_range(devnum: int, quantity: str, start_hour: int, stop_hour: int) -> tuple[bytes, bytes]:
    """[start, stop) key range of the ``hourly_tx`` marks of a device's quantity between two hours."""
    p = b"o" + _u32(devnum) + quantity.encode() + b"\x00"
    return p + _u64(start_hour), p + _u64(stop_hour)


MEMBER_PREFIX = b"gnode/"
NODE_KEYS_PREFIX = b"gkeys/"
"""Node key histories (``node.keyrotation``), beside the member registry in the ``g`` namespace."""
ADMIN_KEYS_PREFIX = b"gadmin/"
"""Org admin key histories (``node.adminkeys``), by org name."""


def admin_keys(org: str) -> bytes:
    """Admin key history of an org whose genesis admin key was rotated."""
    return ADMIN_KEYS_PREFIX + org.encode()


def member(node_id: str) -> bytes:
    """Registry record of a consortium node added or removed on chain."""
    return MEMBER_PREFIX + node_id.encode()


# people, data grants and data policies (``access``): under ``g`` (governance) beside the node registry.
PERSON_PREFIX = b"gperson/"
GRANT_PREFIX = b"ggrant/"
DATA_POLICY_PREFIX = b"gpolicy/"


def person(pubkey: bytes) -> bytes:
    """A person's account (``access.model.PersonRecord``) by public key."""
    return PERSON_PREFIX + pubkey


def grant(grantor: str, grant_id: str) -> bytes:
    """A data grant (``access.model.GrantRecord``) by grantor org and grant id; ``grants_of`` lists an org's."""
    return GRANT_PREFIX + grantor.encode() + b"/" + grant_id.encode()


def grants_of(grantor: str) -> bytes:
    return GRANT_PREFIX + grantor.encode() + b"/"


def data_policy(org: str) -> bytes:
    """Which kinds of an org's data are members-only (``access.model.DataPolicyRecord``)."""
    return DATA_POLICY_PREFIX + org.encode()


HANDLE_RECORD_PREFIX = b"hr"


def handle_record(norm_handle: str) -> bytes:
    """Handle record (``resolver.values.HandleRecord``) by upper-cased handle; iterating ``hr<PREFIX>/`` lists a
    prefix's handles in order."""
    return HANDLE_RECORD_PREFIX + norm_handle.encode()


def handle_change(norm_handle: str, version: int) -> bytes:
    """Entry ``version`` (1, 2, ...) of a handle's change log (``resolver.values.HandleChange``)."""
    return b"hl" + norm_handle.encode() + b"\x00" + _u64(version)


# documents (``node.documents``): ``xd`` head record by document id, ``xv`` every version, and three indexes by the
# position (height, tx index) of the document's first version: all documents, per doc type, and those waiting for
# a person's review.
DOCUMENT_PREFIX = b"xd"
DOCUMENT_CREATED_PREFIX = b"xc"
DOCUMENT_REVIEW_PREFIX = b"xq"


def document(doc_id: bytes) -> bytes:
    """Current (highest) version of a document (``node.documents.DocumentRecord``)."""
    return DOCUMENT_PREFIX + doc_id


def document_version(doc_id: bytes, version: int) -> bytes:
    """Version ``version`` (1, 2, ...) of a document; kept after it is superseded."""
    return b"xv" + doc_id + _u32(version)


def document_versions_range(doc_id: bytes) -> tuple[bytes, bytes]:
    return b"xv" + doc_id, b"xv" + doc_id + b"\xff" * 4


def document_created(height: int, index: int) -> bytes:
    """Creation index: document id by the position of its first version (key order = commit order)."""
    return DOCUMENT_CREATED_PREFIX + _u64(height) + _u32(index)


def document_type_prefix(doc_type: str) -> bytes:
    return b"xt" + doc_type.encode() + b"\x00"


def document_typed(doc_type: str, height: int, index: int) -> bytes:
    """Creation index per doc type: document id by position of its first version."""
    return document_type_prefix(doc_type) + _u64(height) + _u32(index)


def document_review(height: int, index: int) -> bytes:
    """Review queue: present while the document's current version has review ``needs_review``."""
    return DOCUMENT_REVIEW_PREFIX + _u64(height) + _u32(index)


# accounting (``accounting.sites``, ``accounting.factors``, ``accounting.rating``). Site ids are short lower-case
# names without NUL, so ``id + 0x00`` ends an id unambiguously.
SITE_PREFIX = b"ss"


def site(site_id: str) -> bytes:
    """Current version of a site (``accounting.model.SiteRecord``); iterating ``ss`` lists sites by id."""
    return SITE_PREFIX + site_id.encode()


def site_version(site_id: str, version: int) -> bytes:
    """Version ``version`` (1, 2, ...) of a site; kept after it is superseded."""
    return b"sv" + site_id.encode() + b"\x00" + _u32(version)


def boundary_prefix(site_id: str) -> bytes:
    return b"sb" + site_id.encode() + b"\x00"


def boundary(site_id: str, effective_ms: int) -> bytes:
    """Boundary version in force from ``effective_ms`` (``accounting.model.BoundaryRecord``); key order is
    time order."""
    return boundary_prefix(site_id) + _u64(effective_ms)


def boundary_head(site_id: str) -> bytes:
    """The latest boundary version of a site (a copy of its ``boundary`` record), for the kinds' point reads."""
    return b"sh" + site_id.encode()


def rating_prefix(site_id: str) -> bytes:
    return b"sr" + site_id.encode() + b"\x00"


def rating(site_id: str, period: str) -> bytes:
    """Latest carbon-efficiency rating of a site for a period (``accounting.model.RatingRecord``)."""
    return rating_prefix(site_id) + period.encode()


def report(report_sha256: bytes) -> bytes:
    """An issued report by its hash (``accounting.model.ReportRecord``)."""
    return b"sy" + report_sha256


def site_report_prefix(site_id: str | None) -> bytes:
    return b"sp" if site_id is None else b"sp" + site_id.encode() + b"\x00"


def site_report(site_id: str, period: str, report_sha256: bytes) -> bytes:
    """Index of a site's issued reports: site, period, hash (empty value; the record is under ``report``)."""
    return site_report_prefix(site_id) + period.encode() + b"\x00" + report_sha256


FACTOR_SET_PREFIX = b"fs"


def factor_set(set_id: str) -> bytes:
    """Current version of a factor set (``accounting.model.FactorSetRecord``)."""
    return FACTOR_SET_PREFIX + set_id.encode()


def factor_set_version(set_id: str, version: int) -> bytes:
    return b"fv" + set_id.encode() + b"\x00" + _u32(version)


FACTOR_YEAR_PREFIX = b"fy"


def factor_year(data_year: int) -> bytes:
    """Data year -> id of the factor set for that year; key order is year order."""
    return FACTOR_YEAR_PREFIX + data_year.to_bytes(2, "big")


# maintenance (``maintenance.alarms``, ``maintenance.workorders``): alarms and inspection work orders under ``w``.
# Numbers are assigned in commit order (1, 2, ...); a step's index counts the steps before it (raise/open is 0).
ALARM_PREFIX = b"wa"
WORKORDER_PREFIX = b"wo"


def maint_counter(what: bytes) -> bytes:
    """Last number given to an alarm (``a``) or a work order (``o``): a u32."""
    return b"wn" + what


def alarm(number: int) -> bytes:
    """Current state of alarm ``number`` (``maintenance.model.AlarmRecord``); key order is number order."""
    return ALARM_PREFIX + _u32(number)


def alarm_step(number: int, step: int) -> bytes:
    """Step ``step`` of alarm ``number``'s history (``maintenance.model.Step``)."""
    return b"ws" + _u32(number) + _u32(step)


def alarm_steps_prefix(number: int) -> bytes:
    return b"ws" + _u32(number)


def alarm_episode(episode: bytes) -> bytes:
    """The alarm that recorded an episode (sha256 of device, rule, quantity, start): kept for ever."""
    return b"we" + episode


def alarm_open_slot(slot: bytes) -> bytes:
    """The not-yet-closed alarm of a (device, rule, quantity) slot (sha256 of them), if any."""
    return b"wl" + slot


def workorder(number: int) -> bytes:
    """Current state of work order ``number`` (``maintenance.model.WorkOrderRecord``)."""
    return WORKORDER_PREFIX + _u32(number)


def workorder_step(number: int, step: int) -> bytes:
    return b"wt" + _u32(number) + _u32(step)


def workorder_steps_prefix(number: int) -> bytes:
    return b"wt" + _u32(number)


CALIBRATION_PREFIX = b"wc"


def calibration(handle: str) -> bytes:
    """A meter's latest calibration (``maintenance.model.CalibrationRecord``); iterating ``wc`` lists meters."""
    return CALIBRATION_PREFIX + handle.encode()
