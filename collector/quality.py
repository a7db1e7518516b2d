"""Data quality at the source: stateful rules per device and quantity that set ``Flag`` bits and raise alarms.

Invariants:
- no rule ever drops a sample or changes its value: rules only OR ``node.readings.Flag`` bits into it. The
  one exception is a timestamp so far in the *future* that the chain would refuse the reading
  (``restamp_future_ms``): it is replaced by the agent's time and flagged ``CLOCK_DRIFT``, so the value
  still reaches the chain instead of the dead letters;
- rules are deterministic functions of the samples seen so far and the agent times passed in (no clock
  reads), so tests drive them with plain integers;
- each flagged event is counted (``QualityChecker.counts``) and raises an ``Alarm`` into the ``AlarmSink``;
  conditions that last (stale, clock drift, source errors) alarm when they start and when they clear, not
  on every poll.

Rules (``QuantityRules`` says which apply to a quantity):
- counters (``counter=True``, e.g. ``energy.import`` in Wh): a fall that wraps at ``wrap`` (register width ×
  scale) from the top ``rollover_window`` to the bottom is ``ROLLOVER``; a fall to near zero
  (``replacement_max``, default 1 % of the old value) is ``METER_REPLACED``; any other fall is
  ``NEGATIVE_DELTA``; a rise beyond ``max_per_hour`` × elapsed (rated power × time for a Wh counter) is a
  ``SPIKE``. After a spike or a fall the old baseline is kept for one more reading: if the next reading
  continues the old level the odd one was a glitch, otherwise the new level is taken;
- a counter that does not move while the device's ``power_quantity`` says it should have (≥ 2 ×
  ``resolution`` expected) is ``STALE``; any quantity equal for ``stale_polls`` readings in a row is ``STALE``;
- gauges outside ``[min_value, max_value]`` (e.g. power beyond rated) are a ``SPIKE``;
- a reading that arrives more than ``gap_factor`` × the expected interval after the previous one of its
  quantity (agent time, so a drifting device clock cannot fake or hide a gap) is ``GAP_BEFORE``: missed
  polls, source errors, an agent restart (``seed`` gives the last reading's time before it);
- across an agent restart, counters continue from the newest value signed before it (``seed_values``, kept in
  the outbox), so a counter that went backwards while the agent was down is ``NEGATIVE_DELTA`` too;
- a device that repeats a time stamp repeats an old measurement: ``STALE``;
- a device time more than ``max_clock_drift_ms`` from the agent's time is ``CLOCK_DRIFT``;
- backfilled samples (``estimated=True``) are ``ESTIMATED`` and go through the same rules except clock drift.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from collector.sources import Sample
from node.readings import Flag

log = logging.getLogger("cemp.collector.quality")


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alarm:
    device: str
    quantity: str
    """Quantity concerned, or ``*`` for the whole device (source errors)."""
    rule: str
    """``rollover``, ``meter_replaced``, ``negative_delta``, ``spike``, ``stale``, ``gap``, ``clock_drift``,
    ``source_error``, ``backfill``, ``dead_letter``."""
    severity: Severity
    message: str
    ts_ms: int
    """Agent time of the event."""


ALARM_RULES: dict[str, str] = {
    "gap": "readings of this quantity arrived later than the expected interval allows: missed polls, source "
    "errors or an agent restart (the reading after the gap carries GAP_BEFORE); informational",
    "negative_delta": "a cumulative counter went backwards (not a rollover, not a new meter), also across an "
    "agent restart: a wrong meter, a reset register or a simulator restarted from an old value; the reading "
    "carries NEGATIVE_DELTA and the old level is kept as the baseline for one more reading",
    "rollover": "a counter wrapped at its register width; the reading carries ROLLOVER (expected for old meters)",
    "meter_replaced": "a counter restarted near zero: probably a new meter; the reading carries METER_REPLACED",
    "spike": "a value outside its physical range, or a counter rising faster than the rated power allows; the "
    "reading carries SPIKE",
    "stale": "a value that does not change when it should (same value N polls in a row, a counter not moving "
    "under load, or a repeated device time stamp); raised when it starts and again when it clears",
    "clock_drift": "the device's clock differs from the agent's by more than allowed; far-future readings are "
    "restamped with the agent's time; raised when it starts and when it clears",
    "source_error": "the device (or its gateway) did not answer a poll; raised at the first failure and when it "
    "answers again",
    "backfill": "values the device stored during an outage were read back and signed (flagged ESTIMATED)",
    "invalid_sample": "the source produced a value the chain can never accept (bad quantity or unit name, out of "
    "int64, a time before 2015); a configuration problem; the sample is left out",
    "buffer_overflow": "unsigned readings were dropped because no node confirmed the device's counters for too "
    "long",
    "unknown_device": "the nodes refuse the device's readings because it is not registered; they stay in the "
    "outbox until it is",
    "wrong_device_key": "the nodes refuse the device's readings because they are signed with a key other than "
    "its registered one; they stay in the outbox",
    "dead_letter": "a signed tx was refused for good (e.g. a bad time stamp) and moved to the dead letters; later "
    "txs are re-signed so nothing after it is lost",
}
"""What each alarm rule means and what to do about it (``cemp alarms --rules`` prints this)."""


def alarm_to_json(a: Alarm) -> dict[str, object]:
    return {**asdict(a), "severity": a.severity.value}


def read_alarms(path: Path) -> list[Alarm]:
    """Alarms from an ``AlarmSink`` file, oldest first (a torn last line, from a crash, is skipped)."""
    out: list[Alarm] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                d = json.loads(line)
                out.append(
                    Alarm(
                        str(d["device"]),
                        str(d["quantity"]),
                        str(d["rule"]),
                        Severity(d["severity"]),
                        str(d["message"]),
                        int(d["ts_ms"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
    return out


LASTING = frozenset({"stale", "clock_drift", "source_error"})
"""Rules whose alarm opens (WARNING) when the condition starts and clears (INFO) when it ends."""


class AlarmSink:
    """Where alarms go: the log, a bounded in-memory list, an optional JSON-lines file (one alarm per line, read
    back by ``read_alarms`` and ``cemp alarms``) and an optional callback (e.g. a work-order hook)."""

    def __init__(
        self,
        callback: Callable[[Alarm], None] | None = None,
        *,
        keep: int = 10_000,
        logger: logging.Logger | None = None,
        path: Path | None = None,
    ) -> None:
        self.callback = callback
        self.alarms: deque[Alarm] = deque(maxlen=keep)
        self.counts: Counter[str] = Counter()
        self.open: dict[tuple[str, str, str], Alarm] = {}
        """Conditions that last and have not cleared yet, by (device, rule, quantity or ``*``)."""
        self.log = logger or log
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)
        self.counts[alarm.rule] += 1
        if alarm.rule in LASTING:
            # clock drift and source errors are device-wide (drift clears on "*"); stale is per quantity
            key = (alarm.device, alarm.rule, alarm.quantity if alarm.rule == "stale" else "*")
            if alarm.severity == Severity.INFO:
                self.open.pop(key, None)
            else:
                self.open[key] = alarm
        level = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}.get(
            alarm.severity, logging.ERROR
        )
        self.log.log(level, "alarm %s %s %s: %s", alarm.rule, alarm.device, alarm.quantity, alarm.message)
        if self.path is not None:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(alarm_to_json(alarm), ensure_ascii=False) + "\n")
            except OSError as e:
                self.log.warning("cannot append the alarm to %s: %s", self.path, e)
        if self.callback is not None:
            self.callback(alarm)

    def find(self, rule: str | None = None, device: str | None = None) -> list[Alarm]:
        return [
            a
            for a in self.alarms
            if (rule is None or a.rule == rule) and (device is None or a.device == device)
        ]


@dataclass(frozen=True, slots=True)
class QuantityRules:
    counter: bool = False
    """A cumulative register (energy, heat, volume) rather than an instantaneous value."""
    wrap: int | None = None
    """Counter modulus in value units: 2**register_bits × value units per register step."""
    rollover_window: float = 0.1
    """A wrap goes from the top fraction of ``wrap`` to the bottom fraction."""
    replacement_max: int | None = None
    """A counter that falls to at most this value is a new meter (default: 1 % of the old value)."""
    max_per_hour: int | None = None
    """Largest possible counter rise per hour (for a Wh counter: rated power in W)."""
    spike_tolerance: float = 1.25
    """Slack on ``max_per_hour`` for timing jitter between polls and meter updates."""
    resolution: int = 1
    """Smallest counter step in value units (e.g. 10 Wh for a 0.01 kWh register)."""
    min_value: int | None = None
    max_value: int | None = None
    """Physical range of a gauge (e.g. power up to rated); outside is a ``SPIKE``."""
    power_quantity: str | None = None
    """For a counter: the device's power quantity (W), to tell a stuck counter from an idle load."""
    stale_polls: int | None = None
    """``STALE`` after this many equal readings in a row (None: off)."""


@dataclass(frozen=True, slots=True)
class QualityConfig:
    expected_interval_ms: int
    """How often a quantity should arrive (the poll interval, or a pushing device's period)."""
    gap_factor: float = 1.5
    max_clock_drift_ms: int = 30_000
    restamp_future_ms: int = 240_000
    """A device time further ahead than this is replaced by the agent's (the chain allows 300 s)."""
    rules: Mapping[str, QuantityRules] = field(default_factory=dict)
    default: QuantityRules = field(default_factory=QuantityRules)

    def for_quantity(self, quantity: str) -> QuantityRules:
        return self.rules.get(quantity, self.default)


@dataclass(frozen=True, slots=True)
class _Point:
    value: int
    ts: int
    """Device time of the reading."""
    seen: int
    """Agent time it arrived (its own time for a backfilled value)."""

    def elapsed_to(self, later: _Point) -> int:
        """Time between two readings; the larger of device and agent view, so a drifting or restamped
        clock never makes a plausible rise look impossible."""
        return max(later.ts - self.ts, later.seen - self.seen, 0)


@dataclass(slots=True)
class _QState:
    last: _Point
    base: _Point
    """Counter baseline: the last reading believed to be on the true level."""
    suspect: _Point | None = None
    """A counter reading that left the baseline implausibly, awaiting confirmation by the next one."""
    same: int = 1
    stale: bool = False
    seeded: bool = False
    """``last`` is the value signed before an agent restart (``seed_values``), not one seen by this process."""


class QualityChecker:
    """Quality state of one device. Feed it each poll's samples in time order; it returns them flagged."""

    def __init__(self, device: str, config: QualityConfig, sink: AlarmSink) -> None:
        self.device = device
        self.config = config
        self.sink = sink
        self.counts: Counter[str] = Counter()
        """Rule name → number of readings it flagged (plus ``source_error`` polls)."""
        self._q: dict[str, _QState] = {}
        self._seed_ts: int | None = None
        self._drifting = False
        self._failing: int = 0

    def seed(self, last_ts_ms: int) -> None:
        """Time of the newest reading signed before a restart, so the first reading after it shows the gap."""
        if last_ts_ms > 0:
            self._seed_ts = last_ts_ms

    def seed_values(self, values: Mapping[str, tuple[int, int]]) -> None:
        """The newest signed (value, ts_ms) of each cumulative counter before a restart: the first reading after
        it is compared with them, so a counter that went backwards meanwhile is ``NEGATIVE_DELTA`` (or a
        rollover, or a new meter), not only a gap."""
        for quantity, (value, ts) in values.items():
            if quantity not in self._q:
                p = _Point(value, ts, ts)
                self._q[quantity] = _QState(p, p, seeded=True)

    def last_ts(self) -> int | None:
        """Newest reading time seen for any quantity (or the seed)."""
        ts = [s.last.ts for s in self._q.values()]
        if self._seed_ts is not None:
            ts.append(self._seed_ts)
        return max(ts) if ts else None

    def source_failed(self, agent_ms: int, error: str) -> None:
        self.counts["source_error"] += 1
        self._failing += 1
        if self._failing == 1:
            self._alarm("*", "source_error", Severity.WARNING, f"poll failed: {error}", agent_ms)

    def check(self, samples: Sequence[Sample], agent_ms: int, *, estimated: bool = False) -> list[Sample]:
        """Flag one poll's samples (or a backfill's, ``estimated=True``); returns them in the same order."""
        if self._failing and not estimated:
            self._alarm(
                "*",
                "source_error",
                Severity.INFO,
                f"answering again after {self._failing} failed polls",
                agent_ms,
            )
            self._failing = 0
        prev_raw = {q: st.last.value for q, st in self._q.items()}
        current = {s.quantity: s.value for s in samples}
        out: list[Sample] = []
        drift_now = False
        for s in samples:
            flags = s.flags
            if estimated:
                flags |= Flag.ESTIMATED
            else:
                s, flags, drifted = self._clock(s, flags, agent_ms)
                drift_now = drift_now or drifted
            seen = s.ts_ms if estimated else agent_ms
            flags = self._stateful(s, flags, agent_ms, _Point(s.value, s.ts_ms, seen), prev_raw, current)
            out.append(replace(s, flags=int(flags)) if flags != s.flags else s)
        if not estimated and samples and not drift_now and self._drifting:
            self._drifting = False
            self._alarm(
                "*", "clock_drift", Severity.INFO, "device clock agrees with the agent again", agent_ms
            )
        return out

    # --- rules -----------------------------------------------------------------------------------
    def _clock(self, s: Sample, flags: int, agent_ms: int) -> tuple[Sample, int, bool]:
        skew = s.ts_ms - agent_ms
        if abs(skew) <= self.config.max_clock_drift_ms:
            return s, flags, False
        self.counts["clock_drift"] += 1
        restamp = skew > self.config.restamp_future_ms
        if not self._drifting:
            self._drifting = True
            self._alarm(
                s.quantity,
                "clock_drift",
                Severity.WARNING,
                f"device time differs from the agent's by {skew / 1000:+.1f} s"
                + ("; readings stamped with the agent's time" if restamp else ""),
                agent_ms,
            )
        if restamp:
            s = replace(s, ts_ms=agent_ms)
        return s, flags | Flag.CLOCK_DRIFT, True

    def _stateful(
        self,
        s: Sample,
        flags: int,
        agent_ms: int,
        p: _Point,
        prev_raw: dict[str, int],
        current: dict[str, int],
    ) -> int:
        rules = self.config.for_quantity(s.quantity)
        st = self._q.get(s.quantity)
        v = s.value
        low = rules.min_value is not None and v < rules.min_value
        high = rules.max_value is not None and v > rules.max_value
        if low or high:
            flags |= Flag.SPIKE
            self._flag(
                s.quantity,
                "spike",
                Severity.WARNING,
                f"{v} {s.unit} is outside the physical range [{rules.min_value}, {rules.max_value}]",
                agent_ms,
            )
        if st is None:
            if self._seed_ts is not None and p.seen - self._seed_ts > self.gap_ms():
                flags |= Flag.GAP_BEFORE
                self._flag(s.quantity, "gap", Severity.INFO, self._gap_text(p.seen - self._seed_ts), agent_ms)
            self._q[s.quantity] = _QState(p, p)
            return flags
        if p.ts == st.last.ts and p.seen > st.last.seen:
            # The device repeated an old measurement (same time stamp): keep it, flag it, learn nothing.
            self._flag(s.quantity, "stale", Severity.INFO, f"time stamp {p.ts} did not advance", agent_ms)
            return flags | Flag.STALE
        if p.seen - st.last.seen > self.gap_ms():
            flags |= Flag.GAP_BEFORE
            self._flag(s.quantity, "gap", Severity.INFO, self._gap_text(p.seen - st.last.seen), agent_ms)
        if rules.counter:
            flags |= self._counter(s, p, rules, st, agent_ms, prev_raw, current)
        # Same value N readings in a row.
        st.same = st.same + 1 if v == st.last.value else 1
        stuck = rules.stale_polls is not None and st.same >= rules.stale_polls
        if stuck:
            flags |= Flag.STALE
        is_stale = bool(flags & Flag.STALE)
        if is_stale:
            self.counts["stale"] += 1
            if not st.stale:
                why = f"same value for {st.same} readings" if stuck else "counter not moving under load"
                self._alarm(s.quantity, "stale", Severity.WARNING, f"{why} ({v} {s.unit})", agent_ms)
        elif st.stale:
            self._alarm(s.quantity, "stale", Severity.INFO, "value moving again", agent_ms)
        st.stale = is_stale
        st.last = p
        st.seeded = False
        return flags

    def _counter(
        self,
        s: Sample,
        p: _Point,
        rules: QuantityRules,
        st: _QState,
        agent_ms: int,
        prev_raw: dict[str, int],
        current: dict[str, int],
    ) -> int:
        v, q = s.value, s.quantity
        if st.suspect is not None:
            sus, st.suspect = st.suspect, None
            if not self._plausible(v - st.base.value, st.base.elapsed_to(p), rules) and self._plausible(
                v - sus.value, sus.elapsed_to(p), rules
            ):
                st.base = sus  # the jump was real: continue from the new level
        base = st.base
        flags: int = 0
        delta = v - base.value
        elapsed = base.elapsed_to(p)
        if delta < 0:
            wrap = rules.wrap
            if (
                wrap is not None
                and base.value >= wrap * (1 - rules.rollover_window)
                and v <= wrap * rules.rollover_window
            ):
                flags = Flag.ROLLOVER
                self._flag(
                    q, "rollover", Severity.INFO, f"counter wrapped at {wrap} ({base.value} → {v})", agent_ms
                )
            elif v <= (rules.replacement_max if rules.replacement_max is not None else base.value // 100):
                flags = Flag.METER_REPLACED
                self._flag(
                    q,
                    "meter_replaced",
                    Severity.WARNING,
                    f"counter restarted near zero ({base.value} → {v} {s.unit}): new meter?",
                    agent_ms,
                )
            else:
                across = " since the last value signed before the agent restarted" if st.seeded else ""
                self._flag(
                    q,
                    "negative_delta",
                    Severity.WARNING,
                    f"counter fell by {-delta} {s.unit}{across} ({base.value} → {v})",
                    agent_ms,
                )
                st.suspect = p
                return Flag.NEGATIVE_DELTA
            st.base = p
            return flags
        if not self._plausible(delta, elapsed, rules):
            self._flag(
                q,
                "spike",
                Severity.WARNING,
                f"counter rose {delta} {s.unit} in {elapsed / 1000:.1f} s; at most "
                f"{rules.max_per_hour} per hour is possible",
                agent_ms,
            )
            st.suspect = p
            return Flag.SPIKE
        if delta == 0 and rules.power_quantity is not None:
            powers = [
                x
                for x in (prev_raw.get(rules.power_quantity), current.get(rules.power_quantity))
                if x is not None
            ]
            if powers and min(powers) > 0:
                expected = min(powers) * st.last.elapsed_to(p) // 3_600_000
                if expected >= 2 * rules.resolution:
                    flags = Flag.STALE
        st.base = p
        return flags

    @staticmethod
    def _plausible(delta: int, elapsed_ms: int, rules: QuantityRules) -> bool:
        if delta < 0:
            return False
        if rules.max_per_hour is None:
            return True
        limit = rules.max_per_hour * max(elapsed_ms, 0) / 3_600_000 * rules.spike_tolerance
        return delta <= limit + 2 * rules.resolution

    def gap_ms(self) -> float:
        return self.config.expected_interval_ms * self.config.gap_factor

    def _gap_text(self, dt_ms: int) -> str:
        missed = max(1, round(dt_ms / self.config.expected_interval_ms) - 1)
        return f"{dt_ms / 1000:.2f} s since the previous reading (about {missed} missed)"

    def _flag(self, quantity: str, rule: str, severity: Severity, message: str, agent_ms: int) -> None:
        self.counts[rule] += 1
        self._alarm(quantity, rule, severity, message, agent_ms)

    def _alarm(self, quantity: str, rule: str, severity: Severity, message: str, agent_ms: int) -> None:
        self.sink.emit(Alarm(self.device, quantity, rule, severity, message, agent_ms))
