"""Anomaly detectors on signed readings: each a pure function of readings, the model's expectation and the rules,
returning ``Finding`` records that say what was expected, what was observed, since when, and which readings show it.

Detectors (``Kind``):
- ``out_of_band``: hourly consumption outside the model's band ``expected ± max(k·σ_h, floor)`` for at least
  ``band_min_hours`` consecutive hours on the same side (σ_h: the spread of the model's residuals at that local hour
  of day, ``Baseline.from_residuals``). Hourly residuals are autocorrelated, so one hour beyond 3σ is weak evidence
  (≈12 per 183-day season by chance); a run of hours is not.
- ``step``: a lasting shift of the residuals (a valve stuck open, lost insulation, a new load): a two-sided tabular
  CUSUM on each local day's residual sum, standardised by the spread of daily residual sums (``S⁺ = max(0, S⁺ + z − k)``,
  alarm at ``S > h``); the onset is the first day of the run that raised it. Daily sums take out most of the hourly
  autocorrelation; the current partial day counts once it has ``step_min_partial_hours`` hours.
- ``silent``: no reading for ``silent_factor`` × the expected interval up to "now" (the device is offline, or
  its agent is).
- ``gap``: a closed hole between two consecutive readings longer than ``gap_factor`` × the expected interval.
- ``negative_delta``: a counter that went down (without the collector's ``ROLLOVER``/``METER_REPLACED`` flag).
- ``over_rated``: a counter rising faster than the rated power allows, or a power reading above it.
- ``submeter_drift``: the sub-meters' sum drifting from the main meter: a local day's ``(main − Σ subs) / main``
  more than ``drift_tolerance`` away from its expected value (the distribution losses of a healthy day), counted
  only over hours where every meter has data.

Invariants:
- deterministic: the same inputs give the same findings in the same order (no clock, no randomness);
- a finding's identity is ``(device, kind, since_ms)``; an episode is one finding however many hours it lasts, and
  its start does not move as later data arrive, so an evaluator re-run every hour reports it once (``new_only``);
- evidence names readings as ``<tx hash hex>`` when the caller knows it, else ``<device>#<seq>``; at most
  ``MAX_EVIDENCE`` are kept (the first ones, which show the start), with the full count beside them;
- times are UTC milliseconds; local hours and days use the site's ``utc_offset_min``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from node.readings import Flag

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_EVIDENCE = 16
REL_FLOOR = 0.1
Arr = npt.NDArray[np.float64]


class Kind(StrEnum):
    OUT_OF_BAND = "out_of_band"
    STEP = "step"
    SILENT = "silent"
    GAP = "gap"
    NEGATIVE_DELTA = "negative_delta"
    OVER_RATED = "over_rated"
    SUBMETER_DRIFT = "submeter_drift"


SEVERITY: dict[Kind, str] = {
    Kind.OUT_OF_BAND: "warning",
    Kind.STEP: "warning",
    Kind.SILENT: "critical",
    Kind.GAP: "info",
    Kind.NEGATIVE_DELTA: "critical",
    Kind.OVER_RATED: "critical",
    Kind.SUBMETER_DRIFT: "warning",
}

# What each kind means, for people (en, zh).
MEANING: dict[Kind, tuple[str, str]] = {
    Kind.OUT_OF_BAND: (
        "consumption outside the model's expected band for several hours in a row",
        "能耗连续数小时超出模型预期区间",
    ),
    Kind.STEP: ("a lasting step change of consumption against the model", "能耗相对模型出现持续的阶跃变化"),
    Kind.SILENT: (
        "the device has sent no readings for a long time (offline)",
        "设备长时间未上报数据（离线）",
    ),
    Kind.GAP: ("readings are missing between two readings", "两次读数之间缺少数据"),
    Kind.NEGATIVE_DELTA: ("an energy counter went backwards", "电能计数器读数倒退"),
    Kind.OVER_RATED: (
        "a value beyond the device's rated power (physically implausible)",
        "数值超过设备额定功率（物理上不可能）",
    ),
    Kind.SUBMETER_DRIFT: ("the sub-meters' sum drifts away from the main meter", "分表之和偏离总表"),
}


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds of the detectors (defaults calibrated on simulated seasons: see tests/energy/test_detect.py)."""

    band_k: float = 3.0
    """Band half-width in residual standard deviations of that local hour."""
    band_floor_frac: float = 0.05
    """The band is at least this fraction of the expected value wide on each side (meter resolution, rounding)."""
    band_floor_abs: float = 0.5
    """... and at least this many kWh."""
    band_min_hours: int = 4
    """Consecutive hours outside the band on the same side that open an episode."""
    band_clear_hours: int = 3
    """Consecutive hours inside (or on the other side) that close it."""
    step_k: float = 0.5
    step_h: float = 5.0
    step_min_partial_hours: int = 6
    step_clear_days: int = 2
    """Days in a row without the shift that close a step episode."""
    step_min_shift_frac: float = 0.10
    """A step smaller than this fraction of the expected consumption is not reported (model bias, not a fault)."""
    silent_factor: float = 3.0
    silent_min_ms: int = 15 * 60_000
    gap_factor: float = 3.0
    gap_min_ms: int = 10 * 60_000
    rated_slack: float = 0.10
    """Timing slack on the rated-power check of a counter (poll jitter against the meter's update)."""
    rated_min_window_ms: int = 60_000
    """A counter rise is checked against rated power only over at least this long (the counter's resolution)."""
    drift_tolerance: float = 0.05
    drift_min_hours: int = 12


@dataclass(frozen=True, slots=True)
class Obs:
    """One stored reading as the detectors see it."""

    ts_ms: int
    seq: int
    value: int
    flags: int = 0
    ref: str = ""
    """Evidence id: the tx hash (hex) that carried it, when known; empty means ``<device>#<seq>``."""


@dataclass(frozen=True, slots=True)
class HourPoint:
    """One hour's consumption of a device (kWh) and the readings it was computed from."""

    hour_ms: int
    """UTC start of the hour."""
    kwh: float
    refs: tuple[str, ...] = ()


_RESET = int(Flag.ROLLOVER | Flag.METER_REPLACED)
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Readings:
    """One device's readings of one quantity as columns, in sequence order: the fast form the detectors work on
    (``Readings.of`` builds it from ``Obs``; every detector accepts either)."""

    device: str
    ts_ms: I64
    seq: I64
    value: I64
    flags: I64
    refs: tuple[str, ...] | None = None
    """Per reading, the tx hash (hex) that carried it; None: readings are named ``<device>#<seq>``."""

    @classmethod
    def of(cls, device: str, obs: Sequence[Obs]) -> Readings:
        n = len(obs)
        refs = tuple(o.ref for o in obs) if any(o.ref for o in obs) else None
        return cls(
            device,
            np.fromiter((o.ts_ms for o in obs), dtype=np.int64, count=n),
            np.fromiter((o.seq for o in obs), dtype=np.int64, count=n),
            np.fromiter((o.value for o in obs), dtype=np.int64, count=n),
            np.fromiter((o.flags for o in obs), dtype=np.int64, count=n),
            refs,
        )

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    def ref(self, i: int) -> str:
        if self.refs is not None and self.refs[i]:
            return self.refs[i]
        return f"{self.device}#{int(self.seq[i])}"

    def obs(self, i: int) -> Obs:
        return Obs(int(self.ts_ms[i]), int(self.seq[i]), int(self.value[i]), int(self.flags[i]), self.ref(i))


def _cols(device: str, readings: Sequence[Obs] | Readings) -> Readings:
    return readings if isinstance(readings, Readings) else Readings.of(device, readings)


@dataclass(frozen=True, slots=True)
class HourSeries:
    """Hourly consumption as columns (the fast form of a list of ``HourPoint``)."""

    hour_ms: I64
    kwh: Arr
    refs: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, points: Sequence[HourPoint]) -> HourSeries:
        n = len(points)
        return cls(
            np.fromiter((p.hour_ms for p in points), dtype=np.int64, count=n),
            np.fromiter((p.kwh for p in points), dtype=np.float64, count=n),
            tuple(p.refs for p in points),
        )

    def __len__(self) -> int:
        return int(self.hour_ms.size)

    def then(self, points: Sequence[HourPoint], keep: int) -> HourSeries:
        """This series with ``points`` appended, keeping the last ``keep`` hours (a sliding window)."""
        more = HourSeries.of(points)
        return HourSeries(
            np.concatenate([self.hour_ms, more.hour_ms])[-keep:],
            np.concatenate([self.kwh, more.kwh])[-keep:],
            (self.refs + more.refs)[-keep:],
        )


@dataclass(frozen=True, slots=True)
class Expected:
    value: float
    low: float
    high: float
    unit: str

    def to_json(self) -> dict[str, Any]:
        return {"value": _r(self.value), "low": _r(self.low), "high": _r(self.high), "unit": self.unit}


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly episode of one device."""

    device: str
    kind: Kind
    since_ms: int
    """When the episode started (UTC ms): its identity with device and kind."""
    until_ms: int
    """The last time the data showed it (the end of the data when ``ongoing``)."""
    ongoing: bool
    """The episode had not cleared at the end of the data looked at."""
    expected: Expected | None
    observed: float | None
    unit: str
    evidence: tuple[str, ...]
    evidence_count: int
    message: str
    message_zh: str
    severity: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.device, self.kind.value, self.since_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "kind": self.kind.value,
            "severity": self.severity or SEVERITY[self.kind],
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "ongoing": self.ongoing,
            "expected": self.expected.to_json() if self.expected else None,
            "observed": None if self.observed is None else _r(self.observed),
            "unit": self.unit,
            "evidence": list(self.evidence),
            "evidence_count": self.evidence_count,
            "message": self.message,
            "message_zh": self.message_zh,
            "meaning": MEANING[self.kind][0],
            "meaning_zh": MEANING[self.kind][1],
            "detail": self.detail,
        }


def _r(v: float) -> float:
    return round(float(v), 3)


def ref_of(device: str, o: Obs) -> str:
    return o.ref or f"{device}#{o.seq}"


def _evidence(refs: Iterable[str]) -> tuple[tuple[str, ...], int]:
    seen: dict[str, None] = {}
    for r in refs:
        seen.setdefault(r, None)
    allr = list(seen)
    return tuple(allr[:MAX_EVIDENCE]), len(allr)


def _iso(ts_ms: int, offset_min: int) -> str:
    """Local time as ``YYYY-MM-DD HH:MM`` (pure arithmetic, so messages are deterministic)."""
    from datetime import UTC, datetime, timedelta

    t = datetime.fromtimestamp(ts_ms / 1000, UTC) + timedelta(minutes=offset_min)
    return t.strftime("%Y-%m-%d %H:%M")


def _dur(ms: int) -> tuple[str, str]:
    h = ms / HOUR_MS
    if h >= 48:
        return f"{h / 24:.1f} days", f"{h / 24:.1f} 天"
    if h >= 1:
        return f"{h:.1f} h", f"{h:.1f} 小时"
    return f"{ms / 60_000:.0f} min", f"{ms / 60_000:.0f} 分钟"


def new_only(findings: Iterable[Finding], known: Iterable[tuple[str, str, int]]) -> list[Finding]:
    """The findings whose identity is not among ``known`` (the episodes already raised)."""
    seen = set(known)
    return [f for f in findings if f.key not in seen]


# ---------------------------------------------------------------------------------------------------- counters


def hourly_from_counter(
    device: str, readings: Sequence[Obs] | Readings, kwh_per_unit: float = 1e-3
) -> list[HourPoint]:
    """Hourly consumption from an energy counter's readings (Wh by default): each rise between consecutive readings
    belongs to the hour of the later reading. Falls, and deltas across a rollover or meter replacement, are left
    out (``check_counter`` reports them). Hours with no delta are absent, not zero. Each hour's evidence is the
    tx hashes of its readings, or, for readings named by sequence, the first and last of them (the device's
    sequence numbers in between are implied)."""
    r = _cols(device, readings)
    if len(r) < 2:
        return []
    dv = np.diff(r.value)
    ok = (dv >= 0) & ((r.flags[1:] & _RESET) == 0)
    idx = np.flatnonzero(ok) + 1  # the later reading of each counted delta
    if idx.size == 0:
        return []
    hours = r.ts_ms[idx] - r.ts_ms[idx] % HOUR_MS
    uniq, start = np.unique(hours, return_index=True)
    sums = np.add.reduceat(dv[idx - 1].astype(np.float64), start) * kwh_per_unit
    ends = [*start[1:].tolist(), idx.size]
    out = []
    for h, kwh, lo, hi in zip(uniq.tolist(), sums.tolist(), start.tolist(), ends, strict=True):
        first, last = int(idx[lo]) - 1, int(idx[hi - 1])
        if r.refs is None:
            refs: tuple[str, ...] = (r.ref(first), r.ref(last))
        else:
            refs = tuple(dict.fromkeys(r.ref(k) for k in (first, *idx[lo:hi].tolist())))
        out.append(HourPoint(h, kwh, refs))
    return out


def check_counter(
    device: str,
    readings: Sequence[Obs] | Readings,
    rated_power_w: float | None,
    rules: Rules = Rules(),
    offset_min: int = 480,
) -> list[Finding]:
    """Negative deltas and rises beyond rated power of a Wh counter; consecutive offending readings are one
    episode. A healthy counter is cleared by array arithmetic; only a series with a suspect delta is walked
    reading by reading."""
    r = _cols(device, readings)
    if len(r) < 2:
        return []
    dv = np.diff(r.value)
    dts = np.diff(r.ts_ms)
    reset = (r.flags[1:] & _RESET) != 0
    suspect = (dv < 0) & ~reset
    if rated_power_w is not None:
        window = np.maximum(dts, rules.rated_min_window_ms)
        suspect |= ~reset & (dts > 0) & (dv > rated_power_w * window / HOUR_MS * (1 + rules.rated_slack))
    if not suspect.any():
        return []
    return _walk_counter(device, [r.obs(i) for i in range(len(r))], rated_power_w, rules, offset_min)


def _walk_counter(
    device: str, readings: Sequence[Obs], rated_power_w: float | None, rules: Rules, offset_min: int
) -> list[Finding]:
    out: list[Finding] = []
    neg: list[tuple[Obs, Obs]] = []
    over: list[tuple[Obs, Obs, float]] = []
    base: Obs | None = None
    for b in readings:
        a, base = base, b
        if a is None:
            continue
        if b.flags & _RESET:
            _close_counter(device, neg, over, rated_power_w, out, offset_min)
            continue
        if b.value < a.value:
            neg.append((a, b))
            base = a  # measure the next rise from the last plausible value
            continue
        dt = b.ts_ms - a.ts_ms
        if rated_power_w is not None and dt > 0:
            window = max(dt, rules.rated_min_window_ms)
            limit = rated_power_w * window / HOUR_MS * (1 + rules.rated_slack)
            if b.value - a.value > limit:
                over.append((a, b, (b.value - a.value) * HOUR_MS / dt))
                continue
        _close_counter(device, neg, over, rated_power_w, out, offset_min)
    _close_counter(device, neg, over, rated_power_w, out, offset_min, ongoing=True)
    return sorted(out, key=lambda f: (f.since_ms, f.kind.value))


def _close_counter(
    device: str,
    neg: list[tuple[Obs, Obs]],
    over: list[tuple[Obs, Obs, float]],
    rated: float | None,
    out: list[Finding],
    offset_min: int,
    ongoing: bool = False,
) -> None:
    if neg:
        a, b = neg[0]
        drop = max(x.value - y.value for x, y in neg)
        ev, n = _evidence(r for x, y in neg for r in (ref_of(device, x), ref_of(device, y)))
        when = _iso(b.ts_ms, offset_min)
        out.append(
            Finding(
                device,
                Kind.NEGATIVE_DELTA,
                b.ts_ms,
                neg[-1][1].ts_ms,
                ongoing,
                Expected(a.value, a.value, math.inf, "Wh"),
                float(b.value),
                "Wh",
                ev,
                n,
                f"{device}: the energy counter went back from {a.value} Wh to {b.value} Wh at {when} "
                f"({len(neg)} reading(s), largest fall {drop} Wh); a counter only rises: check the meter or its "
                "register mapping",
                f"{device}：电能计数器于 {when} 由 {a.value} Wh 回退到 {b.value} Wh（{len(neg)} 条读数，最大回退 "
                f"{drop} Wh）；计数器只应增加，请检查表计或寄存器映射",
                detail={"readings": len(neg), "largest_fall_wh": drop},
            )
        )
        neg.clear()
    if over:
        a, b, _ = over[0]
        peak = max(p for _, _, p in over)
        assert rated is not None
        ev, n = _evidence(r for x, y, _ in over for r in (ref_of(device, x), ref_of(device, y)))
        when = _iso(b.ts_ms, offset_min)
        out.append(
            Finding(
                device,
                Kind.OVER_RATED,
                b.ts_ms,
                over[-1][1].ts_ms,
                ongoing,
                Expected(rated, 0.0, rated, "W"),
                peak,
                "W",
                ev,
                n,
                f"{device}: the counter rose at {peak / 1000:,.1f} kW average from {when}, beyond the rated "
                f"{rated / 1000:,.1f} kW ({len(over)} reading(s)); a jump like this is a meter or wiring fault, not "
                "consumption",
                f"{device}：自 {when} 起计数器平均增速 {peak / 1000:,.1f} kW，超过额定功率 {rated / 1000:,.1f} kW"
                f"（{len(over)} 条读数）；这是表计或接线故障，不是实际用能",
                detail={"readings": len(over), "peak_w": _r(peak)},
            )
        )
        over.clear()


def check_power(
    device: str, readings: Sequence[Obs], rated_power_w: float, rules: Rules = Rules(), offset_min: int = 480
) -> list[Finding]:
    """Power readings (W) above the rated power; consecutive ones are one episode."""
    out: list[Finding] = []
    run: list[Obs] = []
    for o in [*readings, None]:
        if o is not None and o.value > rated_power_w * (1 + rules.rated_slack):
            run.append(o)
            continue
        if run:
            peak = max(x.value for x in run)
            ev, n = _evidence(ref_of(device, x) for x in run)
            when = _iso(run[0].ts_ms, offset_min)
            out.append(
                Finding(
                    device,
                    Kind.OVER_RATED,
                    run[0].ts_ms,
                    run[-1].ts_ms,
                    o is None,
                    Expected(rated_power_w, 0.0, rated_power_w, "W"),
                    float(peak),
                    "W",
                    ev,
                    n,
                    f"{device}: power {peak / 1000:,.1f} kW from {when} is beyond the rated "
                    f"{rated_power_w / 1000:,.1f} kW ({len(run)} reading(s))",
                    f"{device}：自 {when} 起功率 {peak / 1000:,.1f} kW，超过额定功率 {rated_power_w / 1000:,.1f} kW"
                    f"（{len(run)} 条读数）",
                    detail={"readings": len(run)},
                )
            )
            run = []
    return out


# ---------------------------------------------------------------------------------------------------- time


def check_gaps(
    device: str,
    readings: Sequence[Obs] | Readings,
    interval_ms: int,
    rules: Rules = Rules(),
    offset_min: int = 480,
) -> list[Finding]:
    """Closed holes between consecutive readings longer than ``gap_factor`` × the expected interval."""
    limit = max(rules.gap_factor * interval_ms, rules.gap_min_ms)
    r = _cols(device, readings)
    out: list[Finding] = []
    for i in np.flatnonzero(np.diff(r.ts_ms) > limit).tolist():
        a, b = r.obs(i), r.obs(i + 1)
        gap = b.ts_ms - a.ts_ms
        missing = max(round(gap / interval_ms) - 1, 1)
        en, zh = _dur(gap)
        t0, t1 = _iso(a.ts_ms, offset_min), _iso(b.ts_ms, offset_min)
        out.append(
            Finding(
                device,
                Kind.GAP,
                a.ts_ms + interval_ms,
                b.ts_ms,
                False,
                Expected(interval_ms / 1000, 0.0, limit / 1000, "s"),
                gap / 1000,
                "s",
                (ref_of(device, a), ref_of(device, b)),
                2,
                f"{device}: no readings for {en} between {t0} and {t1} (about {missing} missing at one every "
                f"{interval_ms // 1000} s)",
                f"{device}：{t0} 至 {t1} 之间 {zh} 无读数（按每 {interval_ms // 1000} 秒一条，约缺 {missing} 条）",
                detail={"missing_estimate": missing},
            )
        )
    return out


def check_silent(
    device: str,
    last: Obs | None,
    now_ms: int,
    interval_ms: int,
    rules: Rules = Rules(),
    offset_min: int = 480,
    registered_ms: int | None = None,
) -> list[Finding]:
    """The device has sent nothing for ``silent_factor`` × its interval up to ``now_ms``. The episode starts one
    interval after the last reading (or after registration, for a device that never sent anything)."""
    limit = max(rules.silent_factor * interval_ms, rules.silent_min_ms)
    from_ms = last.ts_ms if last is not None else registered_ms
    if from_ms is None or now_ms - from_ms <= limit:
        return []
    quiet = now_ms - from_ms
    en, zh = _dur(quiet)
    t0 = _iso(from_ms, offset_min)
    if last is None:
        msg = (
            f"{device}: registered at {t0} and silent since ({en})",
            f"{device}：{t0} 登记后一直无数据（{zh}）",
        )
    else:
        msg = (
            f"{device}: silent for {en}, last reading at {t0}; it should report every {interval_ms // 1000} s: "
            "check power, network and the collector agent",
            f"{device}：已 {zh} 无数据，最后一条读数在 {t0}；应每 {interval_ms // 1000} 秒上报一次：请检查供电、网络"
            "和采集代理",
        )
    return [
        Finding(
            device,
            Kind.SILENT,
            from_ms + interval_ms,
            now_ms,
            True,
            Expected(interval_ms / 1000, 0.0, limit / 1000, "s"),
            quiet / 1000,
            "s",
            (ref_of(device, last),) if last is not None else (),
            1 if last is not None else 0,
            msg[0],
            msg[1],
        )
    ]


# ---------------------------------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Baseline:
    """The spread of a device's model residuals relative to the prediction: per local hour of day, and of local-day
    sums. Relative, because a meter's noise grows with its load: a band learned in mild autumn weeks must widen in
    January."""

    rel_sigma_by_hour: tuple[float, ...]
    """1.4826 × MAD of ``(y − ŷ) / ŷ`` per local hour of day (24 values)."""
    rel_sigma_day: float
    """Spread of ``Σ(y − ŷ) / Σŷ`` over complete local days."""
    n: int
    mean_kwh: float = 0.0
    """Mean measured consumption per hour on the baseline hours: relative spreads are taken against at least
    ``REL_FLOOR`` of it, so a device the model expects to be nearly off (a pipe heater on a mild day) is not
    judged by its percentage error on nothing."""

    @classmethod
    def from_residuals(
        cls,
        local_hours: Sequence[int] | npt.NDArray[np.int64],
        measured: Sequence[float] | Arr,
        predicted: Sequence[float] | Arr,
        day_ids: Sequence[int] | npt.NDArray[np.int64],
    ) -> Baseline:
        """Robust spreads of the model's residuals on baseline hours (held-out hours are the honest choice; fitted
        hours are narrower by about p/n). ``day_ids`` groups the hours into local days; days with fewer than 24
        hours are left out of the daily spread."""
        h = np.asarray(local_hours, dtype=np.int64)
        y = np.asarray(measured, dtype=np.float64)
        e = np.asarray(predicted, dtype=np.float64)
        d = np.asarray(day_ids, dtype=np.int64)
        if not (h.size == y.size == e.size == d.size) or y.size < 48:
            raise ValueError(
                "a baseline needs at least 48 hours, each with its measurement, prediction and local day"
            )
        mean = float(np.mean(np.abs(y)))
        floor = max(mean * REL_FLOOR, 1e-9)
        rel = (y - e) / np.maximum(np.abs(e), floor)
        overall = _spread(rel)
        sig = []
        for k in range(24):
            x = rel[h == k]
            sig.append(_spread(x) if x.size >= 5 else overall)
        _, inv, cnt = np.unique(d, return_inverse=True, return_counts=True)
        rs = np.bincount(inv, weights=y - e).astype(np.float64)
        es = np.maximum(np.bincount(inv, weights=np.abs(e)).astype(np.float64), 24 * floor)
        full = cnt == 24
        sd = _spread(rs[full] / es[full]) if full.sum() >= 5 else overall
        return cls(tuple(max(s, 1e-6) for s in sig), max(sd, 1e-6), int(y.size), mean)

    def to_json(self) -> dict[str, Any]:
        return {
            "rel_sigma_by_hour": [round(s, 5) for s in self.rel_sigma_by_hour],
            "rel_sigma_day": round(self.rel_sigma_day, 5),
            "n": self.n,
            "mean_kwh": _r(self.mean_kwh),
        }


def _mad(x: Arr) -> float:
    if x.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _spread(x: Arr) -> float:
    """Root mean square about zero (a model's systematic misfit counts as spread), of the values clipped to
    ±5 robust σ (a fault in the baseline weeks does not widen the band much)."""
    if x.size == 0:
        return 0.0
    lim = 5 * max(_mad(x), 1e-12) + abs(float(np.median(x)))
    return float(np.sqrt(np.mean(np.clip(x, -lim, lim) ** 2)))


def _local(
    hour_ms: npt.NDArray[np.int64], offset_min: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    loc = hour_ms + offset_min * 60_000
    return (loc // HOUR_MS) % 24, loc // DAY_MS


def check_model(
    device: str,
    hours: Sequence[HourPoint] | HourSeries,
    expected: Sequence[float] | Arr,
    baseline: Baseline,
    rules: Rules = Rules(),
    offset_min: int = 480,
) -> list[Finding]:
    """``out_of_band`` and ``step`` findings of one device's hourly consumption against the model's expectation
    (``expected[i]`` for ``hours[i]``, kWh). Hours must be in time order."""
    if len(hours) != len(expected):
        raise ValueError(f"{len(hours)} hours but {len(expected)} expected values")
    if len(hours) == 0:
        return []
    hs = hours if isinstance(hours, HourSeries) else HourSeries.of(hours)
    hm, y, refs = hs.hour_ms, hs.kwh, hs.refs
    if hm.size > 1 and bool((np.diff(hm) <= 0).any()):
        raise ValueError("hours must be in time order, each once")
    e = np.asarray(expected, dtype=np.float64)
    lh, ld = _local(hm, offset_min)
    rel = np.maximum(np.asarray(baseline.rel_sigma_by_hour)[lh] * rules.band_k, rules.band_floor_frac)
    floor = baseline.mean_kwh * REL_FLOOR
    half = np.maximum(rel * np.maximum(np.abs(e), floor), rules.band_floor_abs)
    side = np.where(y > e + half, 1, np.where(y < e - half, -1, 0)).astype(np.int64)
    out = _band_episodes(device, refs, hm, y, e, half, side, rules, offset_min)
    out += _steps(device, refs, hm, y, e, ld, baseline, rules, offset_min)
    return sorted(out, key=lambda f: (f.since_ms, f.kind.value))


def _band_episodes(
    device: str,
    refs: Sequence[tuple[str, ...]],
    hm: npt.NDArray[np.int64],
    y: Arr,
    e: Arr,
    half: Arr,
    side: npt.NDArray[np.int64],
    rules: Rules,
    offset_min: int,
) -> list[Finding]:
    out: list[Finding] = []
    n = side.size
    i = 0
    # An episode: band_min_hours consecutive hours on one side (consecutive in time, not just in the list);
    # it lasts until band_clear_hours hours in a row are not on that side, or the data have a hole that long.
    nz = np.flatnonzero(side)  # most hours are inside the band: visit only the others
    while i < n:
        p = int(np.searchsorted(nz, i))
        if p >= nz.size:
            break
        i = int(nz[p])
        s = int(side[i])
        j = i
        while j + 1 < n and side[j + 1] == s and hm[j + 1] - hm[j] == HOUR_MS:
            j += 1
        if j - i + 1 < rules.band_min_hours:
            i = j + 1
            continue
        end = j  # last hour on the side
        k = j + 1
        calm = 0
        while k < n and calm < rules.band_clear_hours:
            if hm[k] - hm[k - 1] > rules.band_clear_hours * HOUR_MS:
                break
            if side[k] == s:
                end, calm = k, 0
            else:
                calm += 1
            k += 1
        ongoing = end >= n - rules.band_clear_hours and k >= n and calm < rules.band_clear_hours
        idx = [m for m in range(i, end + 1) if side[m] == s]
        exp_mean = float(e[idx].mean())
        half_mean = float(half[idx].mean())
        obs_mean = float(y[idx].mean())
        ev, cnt = _evidence(r for m in idx for r in refs[m])
        since = int(hm[i])
        t0 = _iso(since, offset_min)
        word, zh = ("above", "高于") if s > 0 else ("below", "低于")
        pct = 100 * (obs_mean - exp_mean) / exp_mean if exp_mean > 0 else math.inf
        dur_en, dur_zh = _dur(int(hm[end] - hm[i]) + HOUR_MS)
        out.append(
            Finding(
                device,
                Kind.OUT_OF_BAND,
                since,
                int(hm[end]) + HOUR_MS,
                ongoing,
                Expected(exp_mean, exp_mean - half_mean, exp_mean + half_mean, "kWh/h"),
                obs_mean,
                "kWh/h",
                ev,
                cnt,
                f"{device}: since {t0}, {len(idx)} h {word} the model's band over {dur_en}: "
                f"{obs_mean:,.1f} kWh/h against {exp_mean:,.1f} ± {half_mean:,.1f} expected ({pct:+.0f} %)",
                f"{device}：自 {t0} 起 {dur_zh} 内有 {len(idx)} 小时{zh}模型预期区间：实际 {obs_mean:,.1f} kWh/h，"
                f"预期 {exp_mean:,.1f} ± {half_mean:,.1f}（{pct:+.0f}%）",
                detail={
                    "hours_outside": len(idx),
                    "direction": word,
                    "pct": _r(pct) if math.isfinite(pct) else None,
                },
            )
        )
        i = k
    return out


def _steps(
    device: str,
    refs: Sequence[tuple[str, ...]],
    hm: npt.NDArray[np.int64],
    y: Arr,
    e: Arr,
    ld: npt.NDArray[np.int64],
    baseline: Baseline,
    rules: Rules,
    offset_min: int,
) -> list[Finding]:
    first = np.flatnonzero(np.concatenate([[True], ld[1:] != ld[:-1]]))  # hours in time order: days are runs
    cnt = np.diff(np.append(first, ld.size))
    rsum = np.add.reduceat(y - e, first)
    esum = np.add.reduceat(e, first)
    ysum = np.add.reduceat(y, first)
    usable = cnt >= 24
    usable[-1] |= bool(cnt[-1] >= rules.step_min_partial_hours)
    # A day's residual sum against its spread; a partial day (the current one) is scaled as if its hours were
    # independent (sqrt(c/24) more relative spread): conservative for autocorrelated hours, so it rarely fires early.
    scale = (
        baseline.rel_sigma_day
        * np.maximum(np.abs(esum), max(baseline.mean_kwh * REL_FLOOR, 1e-9) * np.minimum(cnt, 24))
        * np.sqrt(24 / np.minimum(np.maximum(cnt, 1), 24))
    )
    zl: list[float] = (rsum / scale).tolist()
    use: list[bool] = usable.tolist()
    k_, h_ = rules.step_k, rules.step_h
    out: list[Finding] = []
    for sign in (1, -1):
        # Tabular CUSUM; once it raises, the episode stays open (and is not raised again) while the days keep
        # showing the shift, and closes after ``step_clear_days`` usable days in a row without it; then the sum
        # starts again from zero.
        s = 0.0
        start = -1
        open_at: int | None = None  # index in ``out`` of the open episode
        calm = 0
        for d in range(len(zl)):
            if not use[d]:
                continue
            zd = sign * zl[d]
            if open_at is None and s == 0.0 and zd <= k_:
                continue  # the common case: nothing accumulating
            if open_at is not None:
                calm = calm + 1 if zd < k_ else 0
                if calm >= rules.step_clear_days:
                    out[open_at] = replace(out[open_at], until_ms=int(hm[first[d]]) - (calm - 1) * DAY_MS)
                    open_at, s, start, calm = None, 0.0, -1, 0
                continue
            s_new = max(0.0, s + zd - k_)
            if s == 0.0 and s_new > 0.0:
                start = d
            s = s_new
            if s == 0.0:
                start = -1
            elif s > h_:
                idx = [k for k in range(start, d + 1) if use[k]]
                nh = max(int(cnt[idx].sum()), 1)
                shift, exp = float(rsum[idx].sum()) / nh, float(esum[idx].sum()) / nh
                if abs(shift) < rules.step_min_shift_frac * max(exp, baseline.mean_kwh * REL_FLOOR):
                    continue  # a real but small bias of the model, not a fault worth a person's time
                open_at, calm = len(out), 0
                out.append(
                    _step_finding(device, refs, hm, first, cnt, idx, ysum, esum, sign, baseline, offset_min)
                )
        if open_at is not None:
            out[open_at] = replace(out[open_at], ongoing=True, until_ms=int(hm[-1]) + HOUR_MS)
    return out


def _step_finding(
    device: str,
    refs: Sequence[tuple[str, ...]],
    hm: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
    cnt: npt.NDArray[np.int64],
    idx: list[int],
    ysum: Arr,
    esum: Arr,
    sign: int,
    baseline: Baseline,
    offset_min: int,
) -> Finding:
    nh = int(cnt[idx].sum())
    obs = float(ysum[idx].sum()) / nh
    exp = float(esum[idx].sum()) / nh
    half = 2 * baseline.rel_sigma_day * exp
    lo = int(first[idx[0]])
    hi = int(first[idx[-1]] + cnt[idx[-1]] - 1)
    since = int(hm[lo])
    ev, n = _evidence(r for m in (lo, hi) for r in refs[m])
    pct = 100 * (obs - exp) / exp if exp > 0 else math.inf
    word, zh = ("up", "上升") if sign > 0 else ("down", "下降")
    t0 = _iso(since, offset_min)
    return Finding(
        device,
        Kind.STEP,
        since,
        int(hm[hi]) + HOUR_MS,
        False,
        Expected(exp, exp - half, exp + half, "kWh/h"),
        obs,
        "kWh/h",
        ev,
        n,
        f"{device}: consumption stepped {word} from about {t0}: {obs:,.1f} kWh/h on average over {len(idx)} day(s) "
        f"against {exp:,.1f} expected by the model ({pct:+.0f} %), a lasting shift rather than weather",
        f"{device}：约自 {t0} 起能耗{zh}：{len(idx)} 天平均 {obs:,.1f} kWh/h，模型预期 {exp:,.1f}（{pct:+.0f}%），"
        "属持续性变化而非天气波动",
        detail={"days": len(idx), "direction": word, "pct": _r(pct) if math.isfinite(pct) else None},
    )


# ---------------------------------------------------------------------------------------------------- sub-meters


def check_submeters(
    main: str,
    main_hours: Sequence[HourPoint],
    subs: dict[str, Sequence[HourPoint]],
    expected_loss_frac: float = 0.0,
    rules: Rules = Rules(),
    offset_min: int = 480,
) -> list[Finding]:
    """Per local day, ``(main − Σ subs) / main`` over the hours where every meter has data, against the healthy
    value ``expected_loss_frac``; consecutive days beyond ``drift_tolerance`` are one episode (reported on the main
    meter's handle, naming the sub-meters)."""
    if not subs:
        return []
    maps = {d: {p.hour_ms: p for p in ps} for d, ps in subs.items()}
    rows = [
        (p, [m[p.hour_ms] for m in maps.values()])
        for p in main_hours
        if all(p.hour_ms in m for m in maps.values())
    ]
    if not rows:
        return []
    hm = np.array([p.hour_ms for p, _ in rows], dtype=np.int64)
    mk = np.array([p.kwh for p, _ in rows])
    sk = np.array([sum(q.kwh for q in qs) for _, qs in rows])
    _, ld = _local(hm, offset_min)
    days, first, cnt = np.unique(ld, return_index=True, return_counts=True)
    inv = np.searchsorted(days, ld)
    msum = np.bincount(inv, weights=mk, minlength=days.size)
    ssum = np.bincount(inv, weights=sk, minlength=days.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(msum > 0, (msum - ssum) / np.where(msum > 0, msum, 1.0), np.nan)
    bad = (
        (cnt >= rules.drift_min_hours)
        & np.isfinite(frac)
        & (np.abs(frac - expected_loss_frac) > rules.drift_tolerance)
    )
    out: list[Finding] = []
    d = 0
    while d < days.size:
        if not bad[d]:
            d += 1
            continue
        j = d
        while j + 1 < days.size and bad[j + 1] and days[j + 1] == days[j] + 1:
            j += 1
        lo, hi = int(first[d]), int(first[j] + cnt[j] - 1)
        m_tot, s_tot = float(msum[d : j + 1].sum()), float(ssum[d : j + 1].sum())
        f_obs = (m_tot - s_tot) / m_tot if m_tot > 0 else math.nan
        # the first hour of the episode whose own difference was outside the tolerance: the drift's start
        hf = (mk[lo : hi + 1] - sk[lo : hi + 1]) / np.where(mk[lo : hi + 1] > 0, mk[lo : hi + 1], 1.0)
        off = np.nonzero(np.abs(hf - expected_loss_frac) > rules.drift_tolerance)[0]
        since_i = lo + int(off[0]) if off.size else lo
        refs = [*rows[since_i][0].refs, *(r for q in rows[since_i][1] for r in q.refs), *rows[hi][0].refs]
        ev, n = _evidence(refs)
        t0 = _iso(int(hm[since_i]), offset_min)
        names = ", ".join(sorted(subs))
        ongoing = j == days.size - 1
        out.append(
            Finding(
                main,
                Kind.SUBMETER_DRIFT,
                int(hm[since_i]),
                int(hm[hi]) + HOUR_MS,
                ongoing,
                Expected(
                    expected_loss_frac * 100,
                    (expected_loss_frac - rules.drift_tolerance) * 100,
                    (expected_loss_frac + rules.drift_tolerance) * 100,
                    "%",
                ),
                f_obs * 100,
                "%",
                ev,
                n,
                f"{main}: from about {t0} the sub-meters ({names}) add up to {s_tot:,.0f} kWh against "
                f"{m_tot:,.0f} kWh on the main meter over {j - d + 1} day(s): a difference of {f_obs * 100:.1f} % "
                f"where {expected_loss_frac * 100:.1f} ± {rules.drift_tolerance * 100:.0f} % is normal; a meter is "
                "drifting, missing or an unmetered load appeared",
                f"{main}：约自 {t0} 起，分表（{names}）合计 {s_tot:,.0f} kWh，总表 {m_tot:,.0f} kWh（{j - d + 1} 天），"
                f"差值 {f_obs * 100:.1f}%，正常为 {expected_loss_frac * 100:.1f} ± {rules.drift_tolerance * 100:.0f}%；"
                "可能有表计漂移、缺失或新增未计量负荷",
                detail={
                    "days": j - d + 1,
                    "submeters": sorted(subs),
                    "main_kwh": _r(m_tot),
                    "sub_kwh": _r(s_tot),
                },
            )
        )
        d = j + 1
    return out
