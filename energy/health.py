"""Device health and diagnosis: per device last contact, error and retry counts, quality-flag rates, drift against
its peers and the model, a 0–100 score with the reasons, and rules that name a likely cause when signals agree.

Two layers:
- ``Signals`` → ``assess(signals)``: pure. The score starts at 100 and loses the points each reason states (no
  contact, missing readings, source errors, quality flags, clock drift, drift against peers or the model, open
  anomaly findings); ``grade`` is good (≥ 85), watch (≥ 60) or poor. ``diagnose`` applies the rules in ``RULES``:
  each names the signals it needs and fires only when all of them agree, so one noisy signal never names a cause.
- ``signals_from_chain(snap, device, now_ms, ...)``: reads one snapshot of committed state: the device's readings
  in the window (at most ``MAX_SCAN`` looked at), the hourly aggregates of its energy counter and of its peers
  (devices of the same kind: their consumption trend is the weather- and occupancy-normalised yardstick), and a
  supply-temperature sensor's trend. Retry counts live in the collector agent, not on chain: they are taken when
  the caller passes them.

Trends compare the last ``RECENT_DAYS`` of the window with the days before. A reading with any quality flag
except ``ESTIMATED`` and ``MANUAL`` (which say where a value came from, not that it is doubtful) counts as flagged.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from energy import detect as dt
from node import codec, schema
from node.readings import Flag, decode_reading_value
from node.store import prefix_stop
from node.types import DeviceRecord, HourlyAggregate

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
RECENT_DAYS = 2
MAX_SCAN = 200_000
MAX_WINDOW_DAYS = 31
MAX_PEERS = 50
BENIGN = int(Flag.ESTIMATED | Flag.MANUAL)
FLAG_NAMES = {int(f): f.name.lower() for f in Flag if f.name}


@dataclass(frozen=True, slots=True)
class Signals:
    device: str
    kind: str
    subsystem: str
    now_ms: int
    window_ms: int
    last_ts_ms: int | None
    interval_ms: int | None
    """Median spacing of the device's polls in the window (distinct time stamps)."""
    polls: int
    """Distinct time stamps in the window."""
    readings: int
    flags: dict[str, int] = field(default_factory=dict)
    """Readings carrying each flag, by flag name."""
    flagged: int = 0
    """Readings with any doubtful flag (all but ``estimated`` and ``manual``)."""
    retries: int | None = None
    """Submission retries reported by the collector agent (not on chain), when known."""
    use_trend_pct: float | None = None
    """The device's consumption rate over the last days against the days before, percent."""
    peer_trend_pct: float | None = None
    """The median of the same for its peers."""
    peers: int = 0
    model_bias_pct: float | None = None
    """Recent measured − expected, percent of expected, when a model is at hand."""
    supply_temp_change_k: float | None = None
    """Change of the site's supply temperature over the same days, K."""
    findings: tuple[dt.Finding, ...] = ()
    truncated: bool = False
    """The window held more readings than were read: it was shortened to the newest ones."""

    @property
    def errors(self) -> int:
        return self.flags.get("source_error", 0)

    @property
    def completeness(self) -> float | None:
        if not self.interval_ms:
            return None
        expected = self.window_ms / self.interval_ms
        return min(1.0, self.polls / expected) if expected > 0 else None

    @property
    def peer_drift_pct(self) -> float | None:
        if self.use_trend_pct is None or self.peer_trend_pct is None:
            return None
        return (100 + self.use_trend_pct) / (100 + self.peer_trend_pct) * 100 - 100


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    points: int
    en: str
    zh: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "points": -self.points, "text": self.en, "text_zh": self.zh}


@dataclass(frozen=True, slots=True)
class Cause:
    rule: str
    en: str
    zh: str
    because: tuple[str, ...]
    """The signals that agreed (reason codes and measured facts)."""
    action_en: str
    action_zh: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "cause": self.en,
            "cause_zh": self.zh,
            "because": list(self.because),
            "action": self.action_en,
            "action_zh": self.action_zh,
        }


def _fmt_ms(ms: int) -> tuple[str, str]:
    h = ms / HOUR_MS
    if h >= 48:
        return f"{h / 24:.1f} days", f"{h / 24:.1f} 天"
    if h >= 1:
        return f"{h:.1f} h", f"{h:.1f} 小时"
    return f"{ms / 60_000:.0f} min", f"{ms / 60_000:.0f} 分钟"


def reasons(s: Signals) -> list[Reason]:
    out: list[Reason] = []
    iv = s.interval_ms or 60_000
    if s.last_ts_ms is None:
        out.append(Reason("never_reported", 60, "no reading on chain yet", "链上尚无读数"))
    else:
        quiet = s.now_ms - s.last_ts_ms
        if quiet > max(3 * iv, 15 * 60_000):
            en, zh = _fmt_ms(quiet)
            out.append(Reason("no_contact", 50, f"no contact for {en}", f"已 {zh} 无联系"))
    c = s.completeness
    if c is not None and c < 0.95:
        pts = min(30, round((1 - c) * 100))
        out.append(
            Reason(
                "missing_readings",
                pts,
                f"{(1 - c) * 100:.0f} % of expected polls missing in the window",
                f"窗口内缺少 {(1 - c) * 100:.0f}% 的应有读数",
            )
        )
    if s.readings:
        er = s.errors / s.readings
        if er > 0.001:
            out.append(
                Reason(
                    "source_errors",
                    min(30, round(er * 300) + 5),
                    f"{s.errors} readings were source errors ({er * 100:.1f} %)",
                    f"{s.errors} 条读数为数据源故障（{er * 100:.1f}%）",
                )
            )
        fr = s.flagged / s.readings
        if fr > 0.01:
            out.append(
                Reason(
                    "quality_flags",
                    min(20, round(fr * 200)),
                    f"{fr * 100:.1f} % of readings carry quality flags ({_top_flags(s)})",
                    f"{fr * 100:.1f}% 的读数带质量标记（{_top_flags(s)}）",
                )
            )
        if s.flags.get("clock_drift", 0):
            out.append(
                Reason(
                    "clock_drift",
                    10,
                    f"device clock drifted ({s.flags['clock_drift']} readings)",
                    f"设备时钟偏差（{s.flags['clock_drift']} 条读数）",
                )
            )
    if s.retries is not None and s.polls and s.retries / s.polls > 0.05:
        out.append(Reason("retries", 10, f"{s.retries} submission retries", f"{s.retries} 次提交重试"))
    pd = s.peer_drift_pct
    if pd is not None and abs(pd) > 10:
        out.append(
            Reason(
                "peer_drift",
                15,
                f"consumption {pd:+.0f} % against its {s.peers} peers' trend",
                f"能耗相对 {s.peers} 台同类设备的趋势变化 {pd:+.0f}%",
            )
        )
    if s.model_bias_pct is not None and abs(s.model_bias_pct) > 10:
        out.append(
            Reason(
                "model_drift",
                15,
                f"consumption {s.model_bias_pct:+.0f} % against the model",
                f"能耗相对模型偏差 {s.model_bias_pct:+.0f}%",
            )
        )
    for f in s.findings:
        if f.ongoing:
            pts = {"critical": 20, "warning": 10}.get(dt.SEVERITY[f.kind], 5)
            out.append(Reason(f"open_{f.kind.value}", pts, f.message, f.message_zh))
    return out


def _top_flags(s: Signals) -> str:
    top = sorted(((n, k) for k, n in s.flags.items() if k not in ("estimated", "manual")), reverse=True)[:3]
    return ", ".join(f"{k} {n}" for n, k in top)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    needs: Callable[[Signals, set[str]], tuple[str, ...] | None]
    """The agreeing signals (for the record), or None when the rule does not apply."""
    en: str
    zh: str
    action_en: str
    action_zh: str


def _tank_heat_loss(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    up = s.peer_drift_pct is not None and s.peer_drift_pct > 10
    up_model = s.model_bias_pct is not None and s.model_bias_pct > 10
    flat = s.supply_temp_change_k is not None and abs(s.supply_temp_change_k) < 1.0
    if "tank" in s.subsystem and (up or up_model) and flat:
        assert s.supply_temp_change_k is not None
        what = f"peers {s.peer_drift_pct:+.0f} %" if up else f"model {s.model_bias_pct:+.0f} %"
        return (f"consumption up ({what})", f"supply temperature flat ({s.supply_temp_change_k:+.1f} K)")
    return None


def _stale_register(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    if s.readings and s.flags.get("stale", 0) / s.readings > 0.05 and (s.peer_trend_pct or 0) > -50:
        return (f"{s.flags['stale']} stale readings", "peers still consume")
    return None


def _link_fault(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    if {"source_errors", "missing_readings"} <= codes or (
        "source_errors" in codes and s.flags.get("gap_before")
    ):
        return ("source errors", "missing polls / gaps")
    return None


def _offline(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    if "no_contact" in codes:
        return ("no contact",)
    return None


def _register_mapping(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    neg = s.flags.get("negative_delta", 0) + sum(1 for f in s.findings if f.kind is dt.Kind.NEGATIVE_DELTA)
    spikes = s.flags.get("spike", 0) + sum(1 for f in s.findings if f.kind is dt.Kind.OVER_RATED)
    if neg and spikes:
        return (f"{neg} counter falls", f"{spikes} rises beyond rated power")
    return None


def _device_draws_more(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    if "tank" in s.subsystem:
        return None  # the tank has its own rule
    pd, mb = s.peer_drift_pct, s.model_bias_pct
    if pd is not None and pd > 10 and (mb is None or mb > 10):
        return (f"consumption {pd:+.0f} % against peers",) + (
            (f"{mb:+.0f} % against the model",) if mb else ()
        )
    return None


def _site_wide(s: Signals, codes: set[str]) -> tuple[str, ...] | None:
    pd = s.peer_drift_pct
    if s.model_bias_pct is not None and s.model_bias_pct > 10 and pd is not None and abs(pd) <= 5:
        return (f"{s.model_bias_pct:+.0f} % against the model", "its peers moved the same way")
    return None


RULES: tuple[Rule, ...] = (
    Rule(
        "tank_heat_loss",
        _tank_heat_loss,
        "heat is escaping from the storage tank: failed insulation, or a valve passing when it should be shut",
        "储热罐热量散失：保温层失效，或阀门内漏",
        "inspect the tank's insulation (thermal camera) and check the bypass and charging valves for passing",
        "检查储热罐保温（红外热像），检查旁通阀和充热阀是否内漏",
    ),
    Rule(
        "stale_register",
        _stale_register,
        "the meter's register is frozen (or its current transformer is disconnected) while the load runs",
        "表计寄存器冻结（或互感器脱开），而负荷仍在运行",
        "read the meter's display on site and compare with the register; check the CT wiring",
        "现场读取表计显示值与寄存器比对；检查互感器接线",
    ),
    Rule(
        "link_fault",
        _link_fault,
        "poor communication with the device: bus wiring, termination or an address conflict",
        "设备通讯不良：总线接线、终端电阻或地址冲突",
        "check the RS-485/Modbus wiring, termination and unit addresses; look at the agent's error log",
        "检查 RS-485/Modbus 接线、终端电阻和站号；查看采集代理的错误日志",
    ),
    Rule(
        "offline",
        _offline,
        "the device or its collector link is offline",
        "设备或其采集链路离线",
        "check the device's power, the gateway and the collector agent; peers silent too means the agent or network",
        "检查设备供电、网关和采集代理；同类设备也无数据则为代理或网络故障",
    ),
    Rule(
        "register_mapping",
        _register_mapping,
        "the counter jumps both ways: a wrong register mapping, word order or scale, or a meter swapped without record",
        "计数器双向跳变：寄存器映射、字序或倍率错误，或表计更换未登记",
        "check the device profile (register, word order, scale) against the meter's manual",
        "对照表计手册核对设备配置（寄存器、字序、倍率）",
    ),
    Rule(
        "device_draws_more",
        _device_draws_more,
        "this unit draws more than its peers for the same weather: fouling, a failing element or a changed setpoint",
        "同样天气下该设备能耗高于同类：结垢、元件老化或设定值被改",
        "compare its setpoints with its peers'; inspect heating elements and heat-exchanger fouling",
        "与同类设备比对设定值；检查加热元件和换热器结垢",
    ),
    Rule(
        "site_wide_change",
        _site_wide,
        "the whole site's demand changed (weather or occupancy), not this device",
        "全站需求变化（天气或使用情况），并非该设备故障",
        "no action on the device; check the model's weather input and the site's occupancy",
        "设备无需处理；核对模型的天气输入与场所使用情况",
    ),
)


def diagnose(s: Signals, codes: set[str] | None = None) -> list[Cause]:
    codes = codes if codes is not None else {r.code for r in reasons(s)}
    out = []
    for rule in RULES:
        because = rule.needs(s, codes)
        if because:
            out.append(Cause(rule.name, rule.en, rule.zh, because, rule.action_en, rule.action_zh))
    return out


def assess(s: Signals) -> dict[str, Any]:
    """Score, grade, reasons and likely causes of one device."""
    rs = reasons(s)
    score = max(0, 100 - sum(r.points for r in rs))
    grade = "good" if score >= 85 else "watch" if score >= 60 else "poor"
    return {
        "device": s.device,
        "kind": s.kind,
        "subsystem": s.subsystem,
        "score": score,
        "grade": grade,
        "reasons": [r.to_json() for r in rs],
        "causes": [c.to_json() for c in diagnose(s, {r.code for r in rs})],
        "signals": {
            "now_ms": s.now_ms,
            "window_ms": s.window_ms,
            "truncated": s.truncated,
            "last_contact_ms": s.last_ts_ms,
            "interval_ms": s.interval_ms,
            "polls": s.polls,
            "readings": s.readings,
            "completeness_pct": None if s.completeness is None else round(s.completeness * 100, 2),
            "errors": s.errors,
            "retries": s.retries,
            "flags": dict(sorted(s.flags.items())),
            "flagged_pct": round(100 * s.flagged / s.readings, 3) if s.readings else None,
            "use_trend_pct": _r(s.use_trend_pct),
            "peer_trend_pct": _r(s.peer_trend_pct),
            "peer_drift_pct": _r(s.peer_drift_pct),
            "peers": s.peers,
            "model_bias_pct": _r(s.model_bias_pct),
            "supply_temp_change_k": _r(s.supply_temp_change_k),
            "open_findings": [f.to_json() for f in s.findings if f.ongoing],
        },
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


# ---------------------------------------------------------------------------------------------------- chain


def _devices(snap: Any) -> list[DeviceRecord]:
    return [
        codec.decode(DeviceRecord, v)
        for _, v in snap.iterate(schema.DEVICE_PREFIX, prefix_stop(schema.DEVICE_PREFIX), limit=10_000)
    ]


def _counter_quantity(snap: Any, dev: DeviceRecord) -> str | None:
    """The device's energy counter: the first of these quantities it has hourly aggregates of."""
    for q in ("energy.import", "energy.total", "energy.heat"):
        lo, hi = schema.hourly_range(dev.devnum, q, 0, 1 << 62)
        if any(True for _ in snap.iterate(lo, hi, limit=1)):
            return q
    return None


def _trend(
    snap: Any, dev: DeviceRecord, quantity: str, now_ms: int, window_ms: int, mean: bool
) -> float | None:
    """Percent change of the hourly rate (counter deltas, or the mean for a gauge) over the last ``RECENT_DAYS``
    against the rest of the window; for a gauge with ``mean`` the change in its own unit instead."""
    h1 = now_ms // HOUR_MS
    h0 = (now_ms - window_ms) // HOUR_MS
    split = h1 - RECENT_DAYS * 24
    lo, hi = schema.hourly_range(dev.devnum, quantity, h0, h1)
    recent: list[float] = []
    before: list[float] = []
    for k, v in snap.iterate(lo, hi, limit=MAX_WINDOW_DAYS * 24):
        hour = schema.parse_hourly_key(k)[2]
        a = codec.decode(HourlyAggregate, v)
        x = a.total / a.count if mean else a.last_value - a.first_value
        if not mean and x < 0:
            continue
        (recent if hour >= split else before).append(float(x))
    if len(recent) < 6 or len(before) < 6:
        return None
    r, b = statistics.fmean(recent), statistics.fmean(before)
    if mean:
        return r - b
    return None if b <= 0 else (r / b - 1) * 100


def signals_from_chain(
    snap: Any,
    dev: DeviceRecord,
    now_ms: int,
    window_days: int = 7,
    retries: int | None = None,
    rated_power_w: float | None = None,
    max_scan: int = MAX_SCAN,
) -> Signals:
    """Everything ``assess`` needs about ``dev`` from one snapshot of committed state. Readings are read newest
    first, at most ``max_scan`` of them: when the window holds more, it shrinks to the span those cover (the
    signals then say ``truncated``)."""
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be between 1 and {MAX_WINDOW_DAYS}")
    window = window_days * DAY_MS
    lo, hi = schema.reading_range(dev.devnum, now_ms - window, now_ms + 1)
    flags: Counter[str] = Counter()
    flagged = readings = 0
    stamps: list[int] = []
    counter: list[dt.Obs] = []
    cq = _counter_quantity(snap, dev)
    for k, v in snap.iterate(lo, hi, reverse=True, limit=max_scan):
        _, ts, seq = schema.parse_reading_key(k)
        q, val, _unit, fl = decode_reading_value(v)
        readings += 1
        if not stamps or stamps[-1] != ts:
            stamps.append(ts)
        if fl:
            for bit, name in FLAG_NAMES.items():
                if fl & bit:
                    flags[name] += 1
            if fl & ~BENIGN:
                flagged += 1
        if q == cq:
            counter.append(dt.Obs(ts, seq, val, fl))
    stamps.reverse()
    counter.reverse()
    truncated = readings >= max_scan and bool(stamps)
    if truncated:
        window = now_ms - stamps[0]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    interval = int(statistics.median(gaps)) if gaps else None
    findings: list[dt.Finding] = []
    last_ts = dev.last_ts_ms if dev.readings else None
    if counter:
        findings += dt.check_counter(dev.handle, counter, rated_power_w)
    if interval:
        last = dt.Obs(last_ts, dev.last_seq, 0) if last_ts is not None else None
        findings += dt.check_silent(dev.handle, last, now_ms, interval)
    use = peer = None
    npeers = 0
    devices = _devices(snap)
    if cq is not None:
        use = _trend(snap, dev, cq, now_ms, window, mean=False)
        trends: list[float] = []
        for p in devices[: MAX_PEERS * 4]:
            if p.handle == dev.handle or p.kind != dev.kind or len(trends) >= MAX_PEERS:
                continue
            pq = _counter_quantity(snap, p)
            t = _trend(snap, p, pq, now_ms, window, mean=False) if pq else None
            if t is not None:
                trends.append(t)
        npeers = len(trends)
        peer = statistics.median(trends) if trends else None
    supply = None
    for p in devices:
        if "temperature" in p.kind or p.kind.startswith("sensor"):
            for q in ("temp.secondary_supply", "temp.supply", "temp.primary_supply"):
                supply = _trend(snap, p, q, now_ms, window, mean=True)
                if supply is not None:
                    supply /= 1000  # mdegC -> K
                    break
        if supply is not None:
            break
    return Signals(
        dev.handle,
        dev.kind,
        dev.subsystem,
        now_ms,
        window,
        last_ts,
        interval,
        len(stamps),
        readings,
        dict(flags),
        flagged,
        retries,
        use,
        peer,
        npeers,
        None,
        supply,
        tuple(f for f in findings if f.ongoing or f.kind is not dt.Kind.SILENT),
        truncated,
    )
