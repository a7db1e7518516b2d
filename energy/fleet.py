"""Alarm evaluation for many devices at once: the detectors of ``energy.detect`` run over a fleet's new readings as
a few array operations on all devices together, and the exact per-device detector runs only where the arrays show
something it could report.

State: each device's last reading, and its hourly consumption and the model's expectation on one shared hourly grid
(the last ``window_h`` hours, NaN where a device has no hour), with each hour's evidence. Per call of ``step`` (new
readings of every device, as ``detect.Readings`` columns):

- counters: consecutive deltas of all devices in one array; ``check_counter`` runs only for a device with a fall
  (not across a rollover or meter replacement) or a rise beyond its rated power;
- gaps and silence: ``check_gaps`` only for a device with a delta longer than its gap limit, ``check_silent`` only
  for a device whose last reading is older than its silence limit;
- hourly consumption from the counters, summed per (device, hour) with ``bincount``, as
  ``detect.hourly_from_counter`` sums it (same hours, values and evidence);
- model: the band sides of every device-hour in one matrix; a device can have an ``out_of_band`` episode only with
  ``band_min_hours`` hours in a row on one side, and a ``step`` only where the plain CUSUM of its daily residual
  sums crosses ``step_h`` (the episode logic of ``detect`` starts from that CUSUM); ``check_model`` runs only for
  those devices, on the device's hours of the grid.

The pre-filters are conservative (they never skip a device the exact detector would report), so the findings are
those of the per-device detectors on the same data (``tests/energy/test_fleet.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from energy import detect as dt

HOUR_MS = dt.HOUR_MS
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Member:
    device: str
    interval_ms: int
    """How often the device reports."""
    rated_power_w: float | None = None
    baseline: dt.Baseline | None = None
    """The model's residual spreads; None: no model checks for this device."""


class Fleet:
    def __init__(
        self, members: Sequence[Member], window_h: int, rules: dt.Rules = dt.Rules(), offset_min: int = 480
    ) -> None:
        self.members = list(members)
        self.n = len(self.members)
        self.window_h = window_h
        self.rules = rules
        self.offset_min = offset_min
        self.index = {m.device: i for i, m in enumerate(self.members)}
        self.end_hour: int | None = None
        """The grid's last hour (UTC hour number); the grid is ``end_hour - window_h + 1 .. end_hour``."""
        self.y = np.full((self.n, window_h), np.nan)
        self.e = np.full((self.n, window_h), np.nan)
        self.refs = np.empty((self.n, window_h), dtype=object)
        self.last: list[dt.Obs | None] = [None] * self.n
        self.known: set[tuple[str, str, int]] = set()
        self.rated = np.array([m.rated_power_w if m.rated_power_w else np.inf for m in self.members])
        self.gap_limit = np.array(
            [max(rules.gap_factor * m.interval_ms, rules.gap_min_ms) for m in self.members], dtype=np.float64
        )
        self.silent_limit = np.array(
            [max(rules.silent_factor * m.interval_ms, rules.silent_min_ms) for m in self.members]
        )
        self.modelled = np.array([m.baseline is not None for m in self.members])
        sig = [m.baseline.rel_sigma_by_hour if m.baseline else (1.0,) * 24 for m in self.members]
        self.rel_by_hour = np.maximum(np.array(sig) * rules.band_k, rules.band_floor_frac)  # (n, 24)
        self.floor = np.array(
            [m.baseline.mean_kwh * dt.REL_FLOOR if m.baseline else 0.0 for m in self.members]
        )
        self.sigma_day = np.array([m.baseline.rel_sigma_day if m.baseline else 1.0 for m in self.members])

    # -- the hourly grid

    def _hours(self) -> I64:
        assert self.end_hour is not None
        return np.arange(self.end_hour - self.window_h + 1, self.end_hour + 1, dtype=np.int64)

    def _advance_to(self, hour: int) -> None:
        if self.end_hour is None:
            self.end_hour = hour
            return
        k = hour - self.end_hour
        if k <= 0:
            return
        k = min(k, self.window_h)
        self.y[:, :-k] = self.y[:, k:]
        self.e[:, :-k] = self.e[:, k:]
        self.refs[:, :-k] = self.refs[:, k:]
        self.y[:, -k:] = np.nan
        self.e[:, -k:] = np.nan
        self.refs[:, -k:] = None
        self.end_hour = hour

    def seed(self, i: int, hours: dt.HourSeries, expected: npt.NDArray[np.float64]) -> None:
        """Device ``i``'s past hours and the model's expectation for them (hours in time order)."""
        if len(hours):
            self._advance_to(max(int(hours.hour_ms[-1]) // HOUR_MS, self.end_hour or 0))
        self._put(
            i, hours.hour_ms // HOUR_MS, hours.kwh, list(hours.refs), np.asarray(expected, dtype=np.float64)
        )

    def _put(
        self,
        i: int,
        hours: I64,
        kwh: npt.NDArray[np.float64],
        refs: list[tuple[str, ...]],
        exp: npt.NDArray[np.float64],
    ) -> None:
        assert self.end_hour is not None
        col = hours - (self.end_hour - self.window_h + 1)
        for c, v, r, x in zip(col.tolist(), kwh.tolist(), refs, exp.tolist(), strict=True):
            if c < 0:
                continue  # older than the window
            if np.isnan(self.y[i, c]):
                self.y[i, c], self.e[i, c], self.refs[i, c] = v, x, r
            else:  # more of an hour already seen (its readings came in two calls)
                self.y[i, c] += v
                self.refs[i, c] = tuple(dict.fromkeys((*self.refs[i, c], *r)))

    def series(self, i: int) -> tuple[dt.HourSeries, npt.NDArray[np.float64]]:
        """Device ``i``'s hours on the grid (present ones) and their expectations."""
        have = ~np.isnan(self.y[i])
        return (
            dt.HourSeries(self._hours()[have] * HOUR_MS, self.y[i][have], tuple(self.refs[i][have].tolist())),
            self.e[i][have],
        )

    # -- one evaluation

    def step(
        self,
        readings: Sequence[dt.Readings],
        now_ms: int,
        expect: Callable[[int, I64], npt.NDArray[np.float64]],
    ) -> list[dt.Finding]:
        """Judge the new readings (``readings[i]`` of member ``i``, each in time order and starting with the
        device's previous reading when there is one, as the per-device detectors see a counter) at ``now_ms``;
        ``expect(i, hour_ms)`` is the model's consumption of member ``i`` for those hours. Returns the findings
        not raised before (each episode once)."""
        rules, off = self.rules, self.offset_min
        lens = np.array([len(r) for r in readings], dtype=np.int64)
        found: list[dt.Finding] = []
        if lens.sum():
            ts = np.concatenate([r.ts_ms for r in readings])
            val = np.concatenate([r.value for r in readings])
            flags = np.concatenate([r.flags for r in readings])
            dev = np.repeat(np.arange(self.n), lens)
            same = dev[1:] == dev[:-1]
            dv, dts, dn = np.diff(val), np.diff(ts), dev[1:]
            reset = (flags[1:] & dt._RESET) != 0
            suspect = same & ~reset & (dv < 0)
            window = np.maximum(dts, rules.rated_min_window_ms)
            suspect |= (
                same & ~reset & (dts > 0) & (dv > self.rated[dn] * window / HOUR_MS * (1 + rules.rated_slack))
            )
            for i in np.unique(dn[suspect]).tolist():
                m = self.members[i]
                found += dt.check_counter(m.device, readings[i], m.rated_power_w, rules, off)
            for i in np.unique(dn[same & (dts > self.gap_limit[dn])]).tolist():
                m = self.members[i]
                found += dt.check_gaps(m.device, readings[i], m.interval_ms, rules, off)
            self._hourly(readings, ts, val, flags, dev, same, expect)
            for i, r in enumerate(readings):
                if len(r):
                    self.last[i] = r.obs(len(r) - 1)
        for i in range(self.n):
            last = self.last[i]
            if last is not None and now_ms - last.ts_ms > self.silent_limit[i]:
                m = self.members[i]
                found += dt.check_silent(m.device, last, now_ms, m.interval_ms, rules, off)
        for i in self._model_candidates().tolist():
            hs, e = self.series(i)
            b = self.members[i].baseline
            assert b is not None
            found += dt.check_model(self.members[i].device, hs, e, b, rules, off)
        fresh = dt.new_only(found, self.known)
        self.known.update(f.key for f in fresh)
        return fresh

    def _hourly(
        self,
        readings: Sequence[dt.Readings],
        ts: I64,
        val: I64,
        flags: I64,
        dev: I64,
        same: npt.NDArray[np.bool_],
        expect: Callable[[int, I64], npt.NDArray[np.float64]],
    ) -> None:
        """Each device's new hours (``detect.hourly_from_counter``'s sums and evidence) onto the grid."""
        dv = np.diff(val)
        ok = same & (dv >= 0) & ((flags[1:] & dt._RESET) == 0)
        idx = np.flatnonzero(ok) + 1  # the later reading of each counted delta (global index)
        if idx.size == 0:
            return
        hour = ts[idx] // HOUR_MS
        key = dev[idx] * (1 << 40) + hour
        uniq, start, inv = np.unique(key, return_index=True, return_inverse=True)
        sums = np.bincount(inv.ravel(), weights=dv[idx - 1].astype(np.float64)) * 1e-3
        self._advance_to(int(hour.max()))
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in readings])])
        ends = [*start[1:].tolist(), idx.size]
        per_dev: dict[int, tuple[list[int], list[float], list[tuple[str, ...]]]] = {}
        for k, lo, hi, kwh in zip(uniq.tolist(), start.tolist(), ends, sums.tolist(), strict=True):
            i, h = k >> 40, k & ((1 << 40) - 1)
            r = readings[i]
            base = int(offsets[i])
            first, last = int(idx[lo]) - 1 - base, int(idx[hi - 1]) - base
            if r.refs is None:
                refs: tuple[str, ...] = (r.ref(first), r.ref(last))
            else:
                refs = tuple(dict.fromkeys(r.ref(j) for j in (first, *(idx[lo:hi] - base).tolist())))
            hs, ks, rs = per_dev.setdefault(i, ([], [], []))
            hs.append(h)
            ks.append(kwh)
            rs.append(refs)
        for i, (hs, ks, rs) in per_dev.items():
            hours = np.array(hs, dtype=np.int64)
            exp = expect(i, hours * HOUR_MS) if self.modelled[i] else np.zeros(len(hs))
            self._put(i, hours, np.array(ks), rs, np.asarray(exp, dtype=np.float64))

    def _model_candidates(self) -> I64:
        """Members whose hours could hold an ``out_of_band`` or ``step`` episode (a superset of those that do)."""
        if self.end_hour is None or not self.modelled.any():
            return np.zeros(0, dtype=np.int64)
        rules = self.rules
        hm = self._hours() * HOUR_MS
        lh, ld = dt._local(hm, self.offset_min)
        y, e = self.y, self.e
        have = ~np.isnan(y) & self.modelled[:, None]
        rel = self.rel_by_hour[:, lh]
        half = np.maximum(rel * np.maximum(np.abs(e), self.floor[:, None]), rules.band_floor_abs)
        with np.errstate(invalid="ignore"):
            up = have & (y > e + half)
            down = have & (y < e - half)
        cand = np.zeros(self.n, dtype=bool)
        L = rules.band_min_hours
        for side in (up, down):
            c = np.concatenate([np.zeros((self.n, 1)), np.cumsum(side, axis=1)], axis=1)
            cand |= ((c[:, L:] - c[:, :-L]) >= L).any(axis=1)
        # daily sums of the present hours, per local day of the grid (days are runs of columns)
        first = np.flatnonzero(np.concatenate([[True], ld[1:] != ld[:-1]]))
        r = np.where(have, y - e, 0.0)
        ee = np.where(have, e, 0.0)
        rsum = np.add.reduceat(r, first, axis=1)
        esum = np.add.reduceat(ee, first, axis=1)
        cnt = np.add.reduceat(have.astype(np.int64), first, axis=1)
        # each device's last day is the one of its last present hour: a partial day counts there only
        last_col = np.where(have.any(axis=1), self.window_h - 1 - np.argmax(have[:, ::-1], axis=1), -1)
        last_day = np.searchsorted(first, last_col, side="right") - 1
        usable = cnt >= 24
        days = np.arange(first.size)
        usable |= (days[None, :] == last_day[:, None]) & (cnt >= rules.step_min_partial_hours)
        usable &= cnt > 0
        scale = (
            self.sigma_day[:, None]
            * np.maximum(np.abs(esum), np.maximum(self.floor, 1e-9)[:, None] * np.minimum(cnt, 24))
            * np.sqrt(24 / np.minimum(np.maximum(cnt, 1), 24))
        )
        z = np.divide(rsum, scale, out=np.zeros_like(rsum), where=scale > 0)
        for sign in (1.0, -1.0):
            inc = np.where(usable, sign * z - rules.step_k, 0.0)
            s = np.concatenate([np.zeros((self.n, 1)), np.cumsum(inc, axis=1)], axis=1)
            drawup = s - np.minimum.accumulate(s, axis=1)
            cand |= (drawup > rules.step_h).any(axis=1)
        return np.flatnonzero(cand & self.modelled)
