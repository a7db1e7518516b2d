"""Read models of the explorer over committed state: block and tx lists, per-minute activity, search.

Invariants:
- lists page by cursor (a block height, or a (height, index) position), never by offset: a page reads the
  blocks it shows and no others, so it costs the same at height 10 and at height 10 million;
- every walk is bounded (``MAX_EMPTY_BLOCKS`` blocks per tx page, ``STATS_BUDGET_S`` of new work per stats call)
  and says where it stopped, so an idle or huge chain cannot make a request slow;
- committed blocks never change, so per-height summaries are cached (bounded LRU) and shared by all requests.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgpack

from node import codec, schema
from node.chain import Ledger, header_hash
from node.crypto import verify
from node.devices import load_device
from node.errors import CempError
from node.state import StateView
from node.store import prefix_stop
from node.types import DOMAIN_BLOCK, Block, BlockHeader, DeviceRecord, Tx, TxResult

MAX_EMPTY_BLOCKS = 2000
"""Blocks a tx-list page may walk past without finding a tx before it stops and offers "older"."""
STATS_BUDGET_S = 0.05
"""Time one stats call may spend summarising blocks it has not seen; the rest come on the next call."""
CACHE_BLOCKS = 20_000
CACHE_DECODED = 16
"""Decoded blocks and results kept (the head's neighbours are read by every home page)."""
HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class BlockRow:
    height: int
    hash: str
    time_ms: int
    proposer: str
    term: int
    txs: int
    readings: int | None
    """None in a header-only row (``ChainView.header_row``)."""
    invalid: int | None


@dataclass(frozen=True, slots=True)
class TxRow:
    hash: str
    height: int
    index: int
    time_ms: int
    kind: str
    sender: str
    ok: bool
    reason: str
    readings: int
    device: str
    """The signing device of a ``readings`` tx ("" for other kinds)."""


def readings_in(tx: Tx) -> tuple[str, int]:
    """Device and number of readings of a ``readings`` tx, from the payload's first fields (no full decode);
    ("", 0) for other kinds."""
    if tx.kind != "readings":
        return "", 0
    try:
        up = msgpack.Unpacker(raw=False)
        up.feed(tx.payload)
        if up.read_array_header() != 2:
            return "", 0
        device = up.unpack()
        return (device if isinstance(device, str) else ""), int(up.read_array_header())
    except (ValueError, msgpack.UnpackException, msgpack.OutOfData):
        return "", 0


def readings_in_raw(raw: bytes) -> int:
    """``readings_in`` straight from an encoded tx (``[chain_id, kind, sender, nonce, payload, sig]``), skipping
    the fields it does not need: block summaries count readings of every tx, so this runs a lot."""
    try:
        up = msgpack.Unpacker(raw=False)
        up.feed(raw)
        if up.read_array_header() != 6:
            return 0
        up.skip()
        if up.unpack() != "readings":
            return 0
        up.skip()
        up.skip()
        payload = up.unpack()
        if not isinstance(payload, bytes):
            return 0
        up = msgpack.Unpacker(raw=False)
        up.feed(payload)
        if up.read_array_header() != 2:
            return 0
        up.skip()
        return int(up.read_array_header())
    except (ValueError, msgpack.UnpackException, msgpack.OutOfData):
        return 0


def tx_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class ChainView:
    """Cached, bounded reads of one ledger for the pages."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._rows: OrderedDict[int, BlockRow] = OrderedDict()
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._results: OrderedDict[int, tuple[TxResult, ...]] = OrderedDict()

    # --- blocks -----------------------------------------------------------------------------------
    def block(self, height: int) -> Block | None:
        if not 0 < height <= self.ledger.height:
            return None
        hit = self._blocks.get(height)
        if hit is not None:
            return hit
        b = self.ledger.block(height)
        if b is not None:
            self._blocks[height] = b
            if len(self._blocks) > CACHE_DECODED:
                self._blocks.popitem(last=False)
        return b

    def results(self, height: int) -> tuple[TxResult, ...]:
        hit = self._results.get(height)
        if hit is None:
            hit = self._results[height] = self.ledger.results(height)
            if len(self._results) > CACHE_DECODED:
                self._results.popitem(last=False)
        return hit

    def row(self, height: int, block: Block | None = None) -> BlockRow | None:
        hit = self._rows.get(height)
        if hit is not None:
            self._rows.move_to_end(height)
            return hit
        b = block if block is not None else self.block(height)
        if b is None:
            return None
        readings = sum(readings_in_raw(raw) for raw in b.txs)
        invalid = sum(1 for r in self.results(height) if r.code != 0)
        h = b.header
        row = BlockRow(
            height,
            header_hash(h).hex(),
            h.time_ms,
            h.proposer,
            h.term,
            len(b.txs),
            readings,
            invalid,
        )
        self._rows[height] = row
        if len(self._rows) > CACHE_BLOCKS:
            self._rows.popitem(last=False)
        return row

    def blocks(self, before: int, limit: int, full: bool = True) -> list[BlockRow]:
        """Up to ``limit`` blocks below height ``before``, newest first. ``full=False`` reads headers only
        (``header_row``): a list page deep in a chain of big blocks then costs a few ms, not a decode and a
        Merkle check of every tx of 25 blocks."""
        out: list[BlockRow] = []
        h = min(before - 1, self.ledger.height)
        while h >= 1 and len(out) < limit:
            r = self.row(h) if full or h in self._rows else self.header_row(h)
            if r is not None:
                out.append(r)
            h -= 1
        return out

    def header_row(self, height: int) -> BlockRow | None:
        """A block's list row from its header and tx count alone (readings and invalid counts unknown).

        The header is checked as ``Ledger.vouch`` checks it, minus the txs: its hash must be the one the hash
        index records for this height and its proposer's signature must verify. Anything else falls back to
        the full, checked read, which names the damage."""
        raw = self.ledger.store.get(schema.block(height))
        if raw is None:
            return None
        try:
            up = msgpack.Unpacker(raw=False)
            up.feed(raw)
            if up.read_array_header() != 3:
                raise ValueError("not a block")
            start = up.tell()
            up.skip()
            header_raw = raw[start : up.tell()]
            signature = up.unpack()
            ntx = int(up.read_array_header())
            hd = codec.decode(BlockHeader, header_raw)
            h = header_hash(hd)
            pk = self.ledger.node_key(hd.proposer, hd.height)
            if (
                hd.height != height
                or self.ledger.store.get(schema.block_by_hash(h)) != height.to_bytes(8, "big")
                or pk is None
                or not isinstance(signature, bytes)
                or not verify(pk, DOMAIN_BLOCK, header_raw, signature)
            ):
                raise ValueError("header check failed")
        except (ValueError, CempError, msgpack.UnpackException, msgpack.OutOfData):
            return self.row(height)  # the checked read raises StorageError with the details
        return BlockRow(height, h.hex(), hd.time_ms, hd.proposer, hd.term, ntx, None, None)

    def resolve_block(self, ref: str) -> int | None:
        """Height of a block named by its height or its hash (hex), or None."""
        ref = ref.strip()
        if ref.isdigit() and len(ref) <= 19:
            h = int(ref)
            return h if 0 < h <= self.ledger.height else None
        if HEX64.match(ref):
            return self.ledger.height_of_hash(bytes.fromhex(ref[-64:]))
        return None

    # --- txs --------------------------------------------------------------------------------------
    def txs_of(self, block: Block, start: int = 0, stop: int | None = None) -> list[TxRow]:
        h = block.header
        results = self.results(h.height)
        out = []
        for i in range(start, len(block.txs) if stop is None else min(stop, len(block.txs))):
            out.append(self._tx_row(block, i, results))
        return out

    def _tx_row(self, block: Block, i: int, results: tuple[Any, ...]) -> TxRow:
        raw = block.txs[i]
        res = results[i] if i < len(results) else None
        try:
            tx = codec.decode(Tx, raw)
            kind, sender = str(tx.kind), tx.sender.hex()
            device, n = readings_in(tx)
        except Exception:  # a tx the codec refuses sits in its block marked invalid
            kind, sender, device, n = "?", "", "", 0
        return TxRow(
            tx_hash(raw),
            block.header.height,
            i,
            block.header.time_ms,
            kind,
            sender,
            res is not None and res.code == 0,
            "" if res is None else res.reason,
            n,
            device,
        )

    def txs(self, before: tuple[int, int] | None, limit: int) -> tuple[list[TxRow], tuple[int, int] | None]:
        """Txs before position ``before`` = (height, index), newest first, and the cursor of the next page
        (None at the chain's start). Walks at most ``MAX_EMPTY_BLOCKS`` blocks with no tx."""
        top: int = self.ledger.height
        h: int
        if before is None:
            h, idx = top, None
        else:
            h, idx = min(before[0], top), before[1]
            if before[0] > top:
                idx = None
        out: list[TxRow] = []
        empty = 0
        while h >= 1 and len(out) < limit:
            b = self.block(h)
            if b is None:
                break
            n = len(b.txs)
            stop = n if idx is None else min(idx, n)
            if stop == 0:
                empty += 1
                if empty >= MAX_EMPTY_BLOCKS:
                    return out, (h, 0)
            else:
                empty = 0
                results = self.results(h)
                i = stop - 1
                while i >= 0 and len(out) < limit:
                    out.append(self._tx_row(b, i, results))
                    i -= 1
                if len(out) >= limit:
                    return out, None if (h == 1 and i < 0) else (h, i + 1)
            h -= 1
            idx = None
        return out, None

    # --- activity per minute ---------------------------------------------------------------------
    def per_minute(self, minutes: int = 60, now_ms: int | None = None) -> dict[str, Any]:
        """Blocks, txs and readings per minute over the last ``minutes`` minutes, oldest first."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        end = now // 60_000 + 1
        start = end - minutes
        blocks = [0] * minutes
        txs = [0] * minutes
        readings = [0] * minutes
        h: int = self.ledger.height
        deadline = time.perf_counter() + STATS_BUDGET_S
        complete = True
        while h >= 1:
            if h not in self._rows and time.perf_counter() > deadline:
                complete = False  # the rest on the next call: summaries made so far are cached
                break
            r = self.row(h)
            if r is None:
                break
            m = r.time_ms // 60_000
            if m < start:
                break
            if m < end:
                blocks[m - start] += 1
                txs[m - start] += r.txs
                readings[m - start] += r.readings or 0  # header-only rows do not know their readings
            h -= 1
        return {
            "minutes": [(start + i) * 60 for i in range(minutes)],
            "blocks": blocks,
            "txs": txs,
            "readings": readings,
            "complete": complete,
        }

    # --- devices ---------------------------------------------------------------------------------
    def device(self, handle: str) -> DeviceRecord | None:
        return load_device(StateView(self.ledger.store), handle)

    def devices(self, after: str, limit: int, needle: str = "") -> tuple[list[DeviceRecord], str | None]:
        """Devices in handle order after ``after``; with ``needle``, those whose handle, kind or subsystem
        contains it (at most 5,000 records read). Returns the rows and the next cursor."""
        store = self.ledger.store
        start = schema.device(after) + b"\x00" if after else schema.DEVICE_PREFIX
        out: list[DeviceRecord] = []
        last = None
        for scanned, (k, v) in enumerate(store.iterate(start, prefix_stop(schema.DEVICE_PREFIX)), 1):
            d = codec.decode(DeviceRecord, v)
            last = k[1:].decode()
            if not needle or any(needle in s.lower() for s in (d.handle.lower(), d.kind, d.subsystem)):
                out.append(d)
                if len(out) >= limit:
                    return out, last
            if needle and scanned >= 5000:
                return out, last
        return out, None
