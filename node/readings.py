"""The ``readings`` kind: a batch of measurements from one device, signed by that device's own key.

Checks (the same at admission and on apply, so a node never commits what it would refuse):
- the device is registered and the tx is signed by its current key;
- sequence numbers rise strictly within the batch and beyond the device's last committed one;
- timestamps lie between 2015-01-01 and block time + ``max_future_skew_ms``;
- quantities and units are short lower-case names; the batch is non-empty and within ``max_batch_readings``.
Apply writes every reading under (device, time, seq), folds it into hourly aggregates, and marks the tx as an origin
of each (device, quantity, hour) it touched (``schema.hourly_tx``), so reports can name the txs behind a figure.
"""

from __future__ import annotations

import re
from enum import IntFlag
from typing import Any

import msgpack

from node import codec, schema
from node.codec import INT64_MAX, INT64_MIN
from node.devices import load_device
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Env, Writer
from node.types import (
    DeviceRecord,
    HourlyAggregate,
    Nonce,
    Reading,
    ReadingBatch,
    SignedInt,
    TimestampMs,
    Tx,
)

EARLIEST_TS_MS = 1_420_070_400_000  # 2015-01-01T00:00:00Z
HOUR_MS = 3_600_000
QUANTITY_RE = re.compile(r"^[a-z][a-z0-9_.]{0,31}$")
UNIT_RE = re.compile(r"^[A-Za-z%][A-Za-z0-9%/._]{0,15}$")


class Flag(IntFlag):
    """Quality flags carried on each reading (set by the collector; never used to drop data)."""

    ESTIMATED = 1 << 0  # backfilled or interpolated
    ROLLOVER = 1 << 1  # counter wrapped
    METER_REPLACED = 1 << 2
    NEGATIVE_DELTA = 1 << 3
    SPIKE = 1 << 4  # beyond the physically possible
    STALE = 1 << 5  # value did not change when it should have
    GAP_BEFORE = 1 << 6  # readings missing before this one
    CLOCK_DRIFT = 1 << 7  # device clock differs from the agent's
    MANUAL = 1 << 8  # typed or confirmed by a person
    OCR_UNCERTAIN = 1 << 9
    SOURCE_ERROR = 1 << 10  # device answered with an error; value is a placeholder


_GOOD_QUANTITIES: set[str] = set()
_GOOD_UNITS: set[str] = set()
"""Quantity and unit names that matched their pattern once (a device sends the same few in every batch)."""


def _remember(names: set[str], name: str) -> None:
    if len(names) >= 4096:
        names.clear()
    names.add(name)


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


class ReadingsKind:
    name = "readings"
    payload_type = ReadingBatch

    def read_scope(self, view: StateView, batch: ReadingBatch) -> tuple[str, str, str | None] | None:
        """A batch shows its device's readings (``node.txkinds.ReadScope``)."""
        dev = load_device(view, batch.device)
        return None if dev is None else (str(dev.org), "readings", str(dev.handle))

    def _device(self, view: StateView, tx: Tx, batch: ReadingBatch) -> DeviceRecord:
        dev = load_device(view, batch.device)
        if dev is None:
            raise CempError(Code.UNKNOWN_DEVICE, f"device {batch.device} is not registered")
        if dev.pubkey != tx.sender:
            raise CempError(
                Code.WRONG_DEVICE_KEY,
                f"readings for {batch.device} must be signed by its registered key {dev.pubkey.hex()[:16]}...",
            )
        return dev

    def _check_readings(self, env: Env, dev: DeviceRecord, batch: ReadingBatch) -> None:
        rs = batch.readings
        if not rs:
            raise CempError(Code.INVALID_PAYLOAD, "a readings batch must hold at least one reading")
        limit = env.params.max_batch_readings
        if len(rs) > limit:
            raise CempError(Code.TOO_LARGE, f"batch holds {len(rs)} readings; the limit is {limit}")
        latest = env.time_ms + env.params.max_future_skew_ms
        prev = dev.last_seq
        good_q, good_u = _GOOD_QUANTITIES, _GOOD_UNITS
        for i, r in enumerate(rs):
            if r.seq <= prev:
                what = "the device's last committed" if i == 0 else "the previous reading's"
                raise CempError(
                    Code.SEQUENCE_BACKWARDS,
                    f"reading {i}: sequence {r.seq} is not above {what} sequence {prev}",
                )
            prev = r.seq
            if not EARLIEST_TS_MS <= r.ts_ms <= latest:
                raise CempError(
                    Code.BAD_TIMESTAMP,
                    f"reading {i}: timestamp {r.ts_ms} ms is outside [2015-01-01, block time + "
                    f"{env.params.max_future_skew_ms // 1000} s]",
                )
            if r.quantity not in good_q:
                if not QUANTITY_RE.match(r.quantity):
                    raise CempError(
                        Code.INVALID_PAYLOAD,
                        f"reading {i}: quantity {r.quantity!r} is not a short lower-case name",
                    )
                _remember(good_q, r.quantity)
            if r.unit not in good_u:
                if not UNIT_RE.match(r.unit):
                    raise CempError(
                        Code.INVALID_PAYLOAD, f"reading {i}: unit {r.unit!r} is not a short unit name"
                    )
                _remember(good_u, r.unit)
            if r.flags >= 1 << 32:
                raise CempError(Code.INVALID_PAYLOAD, f"reading {i}: flags must fit in 32 bits")

    def check(self, view: StateView, env: Env, tx: Tx, batch: ReadingBatch) -> None:
        self._check_readings(env, self._device(view, tx, batch), batch)

    def admit(self, view: StateView, env: Env, tx: Tx, batch: ReadingBatch) -> dict[bytes, bytes]:
        dev = self._device(view, tx, batch)
        self._check_readings(env, dev, batch)
        return {schema.device(batch.device): codec.encode(self._advanced(dev, batch))}

    @staticmethod
    def _advanced(dev: DeviceRecord, batch: ReadingBatch) -> DeviceRecord:
        last = batch.readings[-1]
        return DeviceRecord(
            dev.handle,
            dev.pubkey,
            dev.org,
            dev.kind,
            dev.subsystem,
            dev.devnum,
            dev.registered_height,
            Nonce(last.seq),
            TimestampMs(max(dev.last_ts_ms, max(r.ts_ms for r in batch.readings))),
            dev.readings + len(batch.readings),
        )

    def apply(self, state: Writer, env: Env, tx: Tx, batch: ReadingBatch) -> None:
        dev = load_device(state, batch.device)  # type: ignore[arg-type]
        assert dev is not None  # check() ran first
        self._write(state, env, dev, batch)

    def check_and_apply(self, state: Writer, env: Env, tx: Tx, batch: ReadingBatch) -> None:
        """``check`` then ``apply`` with one device lookup (the hot path of every block)."""
        dev = self._device(state, tx, batch)  # type: ignore[arg-type]
        self._check_readings(env, dev, batch)
        self._write(state, env, dev, batch)

    def _write(self, state: Writer, env: Env, dev: DeviceRecord, batch: ReadingBatch) -> None:
        devnum = dev.devnum
        batch_rs = batch.readings
        groups: dict[tuple[str, int], list[Reading]] = {}
        for r in batch_rs:
            groups.setdefault((r.quantity, r.ts_ms // HOUR_MS), []).append(r)
        # (device, ts, seq) is new: seq rises strictly per device, so no earlier write used these keys.
        pack = msgpack.Packer(use_bin_type=True).pack  # one packer for the batch (packb makes one per call)
        keys = schema.reading_keys(devnum, [(r.ts_ms, r.seq) for r in batch_rs])
        state.put_new_many(
            dict(zip(keys, [pack((r.quantity, r.value, r.unit, r.flags)) for r in batch_rs], strict=True))
        )
        for (quantity, hour), rs in groups.items():
            akey = schema.hourly(devnum, quantity, hour)
            raw = state.get(akey)
            agg = codec.decode(HourlyAggregate, raw) if raw is not None else None
            state.put(akey, codec.encode(fold(agg, rs)))
            # a tx is applied once, and its groups are distinct (quantity, hour) pairs: this key is new; its value
            # is how many of the tx's readings landed in the hour
            state.put_new(schema.hourly_tx(devnum, quantity, hour, env.tx_hash), _pack(len(rs)))
        state.put(schema.device(batch.device), codec.encode(self._advanced(dev, batch)))

    def describe(self, batch: ReadingBatch) -> dict[str, Any]:
        return {
            "device": batch.device,
            "readings": [
                {
                    "seq": r.seq,
                    "ts_ms": r.ts_ms,
                    "quantity": r.quantity,
                    "value": r.value,
                    "unit": r.unit,
                    "flags": r.flags,
                }
                for r in batch.readings
            ],
        }


def fold(agg: HourlyAggregate | None, rs: list[Reading]) -> HourlyAggregate:
    """Fold readings of one (device, quantity, hour) into its aggregate (``rs`` non-empty, in batch order).

    The same as folding them one by one: the first value is that of the earliest reading with the smallest
    timestamp (if it is below the aggregate's), the last that of the latest reading with the largest timestamp
    (if at or above the aggregate's); the total saturates once, at the end."""
    values = [r.value for r in rs]
    stamps = [r.ts_ms for r in rs]
    lo_ts, hi_ts = min(stamps), max(stamps)
    if agg is None:
        count, total, lo, hi = 0, 0, values[0], values[0]
        fts, fv, lts, lv, flagged = stamps[0], values[0], stamps[0], values[0], 0
    else:
        count, total, lo, hi = agg.count, agg.total, agg.minimum, agg.maximum
        fts, fv, lts, lv, flagged = (
            agg.first_ts_ms,
            agg.first_value,
            agg.last_ts_ms,
            agg.last_value,
            agg.flagged,
        )
    count += len(rs)
    total += sum(values)
    lo = min(lo, min(values))
    hi = max(hi, max(values))
    if lo_ts < fts:
        fts, fv = lo_ts, values[stamps.index(lo_ts)]
    if hi_ts >= lts:
        lts, lv = hi_ts, values[len(stamps) - 1 - stamps[::-1].index(hi_ts)]
    flagged += sum(1 for r in rs if r.flags)
    total = max(INT64_MIN, min(INT64_MAX, total))  # saturate: deterministic and always encodable
    return HourlyAggregate(
        count,
        SignedInt(total),
        SignedInt(lo),
        SignedInt(hi),
        TimestampMs(fts),
        SignedInt(fv),
        TimestampMs(lts),
        SignedInt(lv),
        flagged,
    )


def decode_reading_value(raw: bytes) -> tuple[str, int, str, int]:
    q, v, u, f = msgpack.unpackb(raw, raw=False, use_list=False)
    return q, v, u, f
