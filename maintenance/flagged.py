"""The collector's data-quality findings as alarms: episodes of the quality flags the collector put on signed
readings (``node.readings.Flag``), as the watcher sees them on chain.

A run of consecutive readings of one device and quantity that carry a flag is one episode, identified by its
first reading's time (with device, rule and quantity), so the watcher raises it once however many polls it spans
and the chain refuses a second raise of it. Which flags, and why:

| flag | rule | severity | meaning |
|---|---|---|---|
| ``SPIKE`` | ``spike`` | warning | a value beyond the physically possible (the collector's plausibility limits) |
| ``SOURCE_ERROR`` | ``source_error`` | warning | the device answered with an error; the value is a placeholder |
| ``STALE`` | ``stale`` | warning | the value did not change when it should have (a frozen register) |
| ``CLOCK_DRIFT`` | ``clock_drift`` | info | the device's clock differs from the agent's |
| ``METER_REPLACED`` | ``meter_replaced`` | info | the counter restarted on a new meter: check the swap was booked |

Gaps, counters going back and silence are judged on the chain data itself by ``energy.detect`` (``check_gaps``,
``check_counter``, ``check_silent``), so ``GAP_BEFORE`` and ``NEGATIVE_DELTA`` are not raised twice from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from maintenance.alarms import make_raise
from maintenance.model import MAX_EVIDENCE, AlarmPayload
from node.readings import Flag

RULES: tuple[tuple[Flag, str, str, str], ...] = (
    (Flag.SPIKE, "spike", "warning", "a value within the device's plausible range"),
    (Flag.SOURCE_ERROR, "source_error", "warning", "the device answers the collector's polls without error"),
    (Flag.STALE, "stale", "warning", "the value changes as the plant runs"),
    (Flag.CLOCK_DRIFT, "clock_drift", "info", "the device's clock agrees with the collector's"),
    (Flag.METER_REPLACED, "meter_replaced", "info", "the same meter keeps counting"),
)
_ZH = {
    "spike": "读数超出物理上可能的范围",
    "source_error": "设备对采集请求返回错误，读数为占位值",
    "stale": "读数在应变化时保持不变",
    "clock_drift": "设备时钟与采集代理不一致",
    "meter_replaced": "计数器在新表上重新开始",
}
_EN = {
    "spike": "values beyond the physically possible",
    "source_error": "the device answered with errors (placeholder values)",
    "stale": "the value stopped changing",
    "clock_drift": "the device's clock drifts from the collector's",
    "meter_replaced": "the counter restarted on a new meter",
}


@dataclass(slots=True)
class Run:
    """An episode being seen: consecutive flagged readings of one (device, quantity, rule)."""

    since_ms: int
    last_ms: int
    count: int = 0
    evidence: list[str] = field(default_factory=list)
    """Tx hashes (hex) of the readings txs that carried it."""
    raised: bool = False


@dataclass(frozen=True, slots=True)
class QualityFinding:
    device: str
    quantity: str
    rule: str
    severity: str
    run: Run

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.device, f"{self.rule}:{self.quantity}", self.run.since_ms)

    def payload(self, offset_min: int = 480) -> AlarmPayload:
        r = self.run
        expected = next(e for f, rule, _s, e in RULES if rule == self.rule)
        n = f"{r.count} reading{'s' if r.count != 1 else ''}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.since_ms / 1000 + offset_min * 60))
        return make_raise(
            self.device,
            self.rule,
            r.since_ms,
            expected,
            f"{n} of {self.quantity} flagged {self.rule.upper()} by the collector since {when}",
            f"{self.device}: {_EN[self.rule]} ({self.quantity}, {n} since {when})",
            quantity=self.quantity,
            severity=self.severity,
            evidence=tuple(bytes.fromhex(h) for h in r.evidence[:MAX_EVIDENCE]),
            source="collector.quality",
            message_zh=f"{self.device}：{_ZH[self.rule]}（{self.quantity}，自 {when} 起 {r.count} 条）",
        )


class FlagEpisodes:
    """Open runs of each flag per (device, quantity), fed reading by reading in time order per device."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str, str], Run] = {}
        self.ended: list[tuple[tuple[str, str, str], Run]] = []
        """Runs that ended before they were raised (flagged, then clean, between two raises)."""

    def see(self, device: str, quantity: str, ts_ms: int, flags: int, ref: str) -> None:
        for flag, rule, _sev, _exp in RULES:
            k = (device, quantity, rule)
            run = self.runs.get(k)
            if flags & flag:
                if run is None:
                    run = self.runs[k] = Run(ts_ms, ts_ms)
                run.last_ms = max(run.last_ms, ts_ms)
                run.count += 1
                if ref and ref not in run.evidence and len(run.evidence) < MAX_EVIDENCE:
                    run.evidence.append(ref)
            elif run is not None and ts_ms > run.last_ms:
                del self.runs[k]  # a clean reading after the run ends it; a new run is a new episode
                if not run.raised:
                    self.ended.append((k, run))

    def unraised(self) -> list[QualityFinding]:
        """Episodes not raised yet (mark ``run.raised`` once the chain has it); ended ones are listed once."""
        sev = {rule: s for _f, rule, s, _e in RULES}
        out = [
            QualityFinding(d, q, rule, sev[rule], run)
            for (d, q, rule), run in [*self.ended, *self.runs.items()]
            if not run.raised
        ]
        self.ended = []
        return out
