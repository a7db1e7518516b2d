"""Anomaly detectors on data with a known truth: every injected fault raises the right finding (kind, device, start,
evidence), an episode is one finding however long it lasts and whatever window it is evaluated on, and normal
weather over simulated seasons raises few (false alarms counted per device-season, seeded)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pytest

from energy import detect as dt
from energy import models, weather
from node.readings import Flag

H = dt.HOUR_MS
OFFSET = 480  # Asia/Shanghai
SEASON_START = date(2025, 10, 15)
T0 = 1_760_457_600_000  # 2025-10-15 00:00 local (UTC+8)


@dataclass
class Season:
    times: list[datetime]
    temps: list[float]
    hour_ms: list[int]
    kwh: np.ndarray


def simulate(seed: int, days: int = 183, scale: float = 1.0) -> Season:
    """A heating device: a daily schedule, a heating slope below 15 °C, AR(1) hourly noise (φ 0.7, 4 %) and a
    day-to-day factor (2 %), on the seeded Hohhot climate: the kind of swings a healthy plant shows."""
    rng = random.Random(seed)
    clim = weather.hohhot_climate(SEASON_START, days, seed)
    times = [t for t, _ in clim]
    temps = [c for _, c in clim]
    sched = [0.6 + 0.4 * math.sin(math.pi * max(0, h - 6) / 16) if 6 <= h <= 22 else 0.6 for h in range(24)]
    out = np.empty(len(times))
    ar = 0.0
    day_f = 1.0
    for i, (t, c) in enumerate(zip(times, temps, strict=True)):
        if t.hour == 0:
            day_f = 1.0 + rng.gauss(0, 0.02)
        base = scale * (40 * sched[t.hour] + 6.0 * max(15.0 - c, 0.0))
        ar = 0.7 * ar + rng.gauss(0, 0.04 * math.sqrt(1 - 0.49))
        out[i] = max(0.0, base * day_f * (1 + ar))
    return Season(times, temps, [T0 + i * H for i in range(len(times))], out)


def fit(season: Season, train_days: int = 42) -> tuple[models.HourlyModel, dt.Baseline, np.ndarray]:
    """The hourly model fitted on the first weeks; the baseline from its residuals there; expectation for all."""
    n = train_days * 24
    bands = ["flat"] * len(season.times)
    m = models.fit_hourly(season.times[:n], season.temps[:n], season.kwh[:n], bands[:n], by="hour")
    exp = m.predict(season.times, season.temps, bands)
    hm = np.array(season.hour_ms[:n], dtype=np.int64)
    loc = hm + OFFSET * 60_000
    base = dt.Baseline.from_residuals((loc // H) % 24, season.kwh[:n], exp[:n], loc // dt.DAY_MS)
    return m, base, exp


def points(season: Season, kwh: np.ndarray, device: str = "88.1/dev") -> list[dt.HourPoint]:
    return [
        dt.HourPoint(h, float(v), (f"{device}#{i}",))
        for i, (h, v) in enumerate(zip(season.hour_ms, kwh, strict=True))
    ]


@pytest.fixture(scope="module")
def season() -> Season:
    return simulate(3)


@pytest.fixture(scope="module")
def fitted(season: Season) -> tuple[models.HourlyModel, dt.Baseline, np.ndarray]:
    return fit(season)


def test_normal_season_raises_few_false_alarms() -> None:
    """Eight seeded device-seasons of normal weather swings: the model detectors raise at most one finding per
    device-season on average (the figure bench/intelligence.py reports as false_alarms_per_season)."""
    counts = []
    for seed in range(8):
        s = simulate(100 + seed)
        _, base, exp = fit(s)
        fs = dt.check_model("88.1/dev", points(s, s.kwh), exp, base, offset_min=OFFSET)
        counts.append(len(fs))
    assert sum(counts) / len(counts) <= 1.0, counts


def test_consumption_rise_raises_out_of_band_once_with_evidence(
    season: Season, fitted: tuple[models.HourlyModel, dt.Baseline, np.ndarray]
) -> None:
    _, base, exp = fitted
    y = season.kwh.copy()
    start = 24 * 100 + 9  # day 100, 09:00 local
    y[start : start + 30] *= 1.6  # a valve stuck open for 30 hours
    fs = dt.check_model("88.1/dev", points(season, y), exp, base, offset_min=OFFSET)
    band = [
        f for f in fs if f.kind is dt.Kind.OUT_OF_BAND and abs(f.since_ms - season.hour_ms[start]) <= 3 * H
    ]
    assert len(band) == 1, [f.message for f in fs]
    f = band[0]
    assert f.since_ms >= season.hour_ms[start]
    assert not f.ongoing
    assert f.until_ms <= season.hour_ms[start + 30] + 3 * H
    assert f.observed is not None and f.expected is not None and f.observed > f.expected.high
    assert f.evidence[0] == f"88.1/dev#{(f.since_ms - T0) // H}"
    assert f.evidence_count >= 20
    assert "above the model's band" in f.message and "高于模型预期区间" in f.message_zh
    assert f.key == ("88.1/dev", "out_of_band", f.since_ms)


def test_episode_identity_is_stable_as_hours_arrive(
    season: Season, fitted: tuple[models.HourlyModel, dt.Baseline, np.ndarray]
) -> None:
    """Evaluated hour by hour on a sliding window, an ongoing fault is one identity: raised once."""
    _, base, exp = fitted
    y = season.kwh.copy()
    start = 24 * 120 + 14
    y[start:] *= 1.5
    pts = points(season, y)
    known: set[tuple[str, str, int]] = set()
    raised: list[dt.Finding] = []
    for end in range(start + 1, start + 72):
        lo = end - 14 * 24
        fs = dt.check_model("88.1/dev", pts[lo:end], exp[lo:end], base, offset_min=OFFSET)
        new = dt.new_only(fs, known)
        raised += new
        known |= {f.key for f in new}
    kinds = sorted(f.kind.value for f in raised)
    assert kinds == ["out_of_band", "step"], [f.message for f in raised]
    band = next(f for f in raised if f.kind is dt.Kind.OUT_OF_BAND)
    assert band.since_ms == season.hour_ms[start] and band.ongoing
    step = next(f for f in raised if f.kind is dt.Kind.STEP)
    assert step.detail["direction"] == "up" and step.ongoing
    assert season.hour_ms[start] - dt.DAY_MS < step.since_ms <= season.hour_ms[start]


def test_small_lasting_step_is_a_step_not_out_of_band(
    season: Season, fitted: tuple[models.HourlyModel, dt.Baseline, np.ndarray]
) -> None:
    """Lost insulation: +12 % every hour from day 90, inside the hourly band but lasting: the daily CUSUM finds it."""
    _, base, exp = fitted
    y = season.kwh.copy()
    start = 24 * 90  # local midnight
    y[start : start + 24 * 20] *= 1.12
    fs = dt.check_model("88.1/dev", points(season, y), exp, base, offset_min=OFFSET)
    steps = [f for f in fs if f.kind is dt.Kind.STEP and f.detail["direction"] == "up"]
    near = [f for f in steps if abs(f.since_ms - season.hour_ms[start]) <= 2 * dt.DAY_MS]
    assert len(near) == 1, [f.message for f in fs]
    assert near[0].observed is not None and near[0].expected is not None
    assert near[0].observed > near[0].expected.value * 1.05
    assert not near[0].ongoing and near[0].until_ms <= season.hour_ms[start + 24 * 20] + 6 * dt.DAY_MS


def test_drop_below_band(season: Season, fitted: tuple[models.HourlyModel, dt.Baseline, np.ndarray]) -> None:
    _, base, exp = fitted
    y = season.kwh.copy()
    start = 24 * 60 + 2
    y[start : start + 8] = 0.2 * y[start : start + 8]  # heaters tripped for 8 hours
    fs = dt.check_model("88.1/dev", points(season, y), exp, base, offset_min=OFFSET)
    low = [f for f in fs if f.kind is dt.Kind.OUT_OF_BAND and f.since_ms == season.hour_ms[start]]
    assert len(low) == 1 and low[0].detail["direction"] == "below"
    assert low[0].until_ms == season.hour_ms[start + 8]


def _counter(n: int, every_ms: int, w: int, start: int = 1_000_000) -> list[dt.Obs]:
    """A Wh counter read every ``every_ms`` with power ``w``."""
    return [dt.Obs(T0 + i * every_ms, i + 1, start + i * w * every_ms // H) for i in range(n)]


def test_negative_delta_and_over_rated_counter() -> None:
    rs = _counter(40, 60_000, 100_000)  # 100 kW, read every minute: +1,666 Wh a reading
    rs[10] = dt.Obs(rs[10].ts_ms, rs[10].seq, rs[10].value - 50_000)  # a glitch backwards
    rs[25] = dt.Obs(
        rs[25].ts_ms, rs[25].seq, rs[24].value + 900_000
    )  # and a jump; then it continues from there
    for i in range(26, 40):
        rs[i] = dt.Obs(rs[i].ts_ms, rs[i].seq, rs[i].value + 900_000 - 1666)
    fs = dt.check_counter("88.1/m", rs, rated_power_w=200_000, offset_min=OFFSET)
    assert [f.kind for f in fs] == [dt.Kind.NEGATIVE_DELTA, dt.Kind.OVER_RATED]
    neg, over = fs
    assert neg.since_ms == rs[10].ts_ms and neg.evidence == ("88.1/m#10", "88.1/m#11")
    assert neg.detail["largest_fall_wh"] > 48_000
    assert over.since_ms == rs[25].ts_ms and over.evidence == ("88.1/m#25", "88.1/m#26")
    assert over.observed is not None and over.observed > 200_000
    # rollover / replacement flags are the collector's explanation: not an anomaly
    replaced = [
        *rs[:10],
        *(
            dt.Obs(o.ts_ms, o.seq, 5 + (i * 1666), int(Flag.METER_REPLACED) if i == 0 else 0)
            for i, o in enumerate(rs[10:20])
        ),
    ]
    assert dt.check_counter("88.1/m", replaced, 200_000) == []
    # a healthy counter: nothing
    assert dt.check_counter("88.1/m", _counter(100, 60_000, 150_000), 200_000) == []


def test_power_over_rated() -> None:
    vals = [90_000, 95_000, 260_000, 270_000, 99_000, 98_000]
    rs = [dt.Obs(T0 + i * 60_000, i + 1, v) for i, v in enumerate(vals)]
    fs = dt.check_power("88.1/p", rs, rated_power_w=200_000)
    assert len(fs) == 1 and fs[0].since_ms == rs[2].ts_ms and fs[0].observed == 270_000
    assert fs[0].evidence == ("88.1/p#3", "88.1/p#4") and not fs[0].ongoing


def test_gaps_and_silence() -> None:
    rs = _counter(30, 60_000, 50_000)
    holed = rs[:10] + rs[20:]  # ten minutes missing
    fs = dt.check_gaps("88.1/m", holed, 60_000)
    assert len(fs) == 1 and fs[0].kind is dt.Kind.GAP
    assert fs[0].since_ms == rs[10].ts_ms and fs[0].until_ms == rs[20].ts_ms
    assert fs[0].evidence == ("88.1/m#10", "88.1/m#21") and fs[0].detail["missing_estimate"] == 10
    assert dt.check_gaps("88.1/m", rs, 60_000) == []
    last = rs[-1]
    assert dt.check_silent("88.1/m", last, last.ts_ms + 14 * 60_000, 60_000) == []
    s = dt.check_silent("88.1/m", last, last.ts_ms + 3 * H, 60_000)
    assert len(s) == 1 and s[0].since_ms == last.ts_ms + 60_000 and s[0].ongoing
    assert "silent for 3.0 h" in s[0].message and s[0].evidence == ("88.1/m#30",)
    # the same silence evaluated later is the same episode
    later = dt.check_silent("88.1/m", last, last.ts_ms + 5 * H, 60_000)
    assert later[0].key == s[0].key and dt.new_only(later, [s[0].key]) == []
    never = dt.check_silent("88.1/n", None, T0 + 2 * H, 60_000, registered_ms=T0)
    assert len(never) == 1 and never[0].evidence == ()


def test_hourly_from_counter_skips_falls_and_keeps_refs() -> None:
    rs = _counter(121, 60_000, 60_000)  # 60 kW for two hours, readings every minute from T0
    hs = dt.hourly_from_counter("88.1/m", rs)
    assert [h.hour_ms for h in hs] == [T0, T0 + H, T0 + 2 * H]
    assert sum(h.kwh for h in hs) == pytest.approx(120.0, abs=0.01)
    assert hs[1].refs[0] == "88.1/m#60" and hs[1].refs[-1] == "88.1/m#120"


def test_submeter_drift(season: Season) -> None:
    """Three sub-meters share the main meter's load (2 % losses); from day 50 one of them under-reads by 30 %."""
    rng = random.Random(5)
    shares = (0.5, 0.3, 0.18)
    subs: dict[str, list[dt.HourPoint]] = {f"88.1/s{k}": [] for k in range(3)}
    main = points(season, season.kwh, "88.1/main")
    for i, p in enumerate(main):
        for k, sh in enumerate(shares):
            v = p.kwh * sh * (1 + rng.gauss(0, 0.01))
            if k == 1 and i >= 24 * 50 + 7:
                v *= 0.7
            subs[f"88.1/s{k}"].append(dt.HourPoint(p.hour_ms, v, (f"88.1/s{k}#{i}",)))
    fs = dt.check_submeters("88.1/main", main, subs, expected_loss_frac=0.02, offset_min=OFFSET)
    assert len(fs) == 1, [f.message for f in fs]
    f = fs[0]
    assert f.kind is dt.Kind.SUBMETER_DRIFT and f.device == "88.1/main" and f.ongoing
    assert f.since_ms == season.hour_ms[24 * 50 + 7]
    assert f.observed == pytest.approx(11.0, abs=1.0)  # 2 % + 30 % of 30 %
    assert "88.1/s1" in f.message and "88.1/s1#1207" in f.evidence
    # without the fault: nothing over the whole season
    healthy = {
        d: [dt.HourPoint(p.hour_ms, main[i].kwh * shares[k], p.refs) for i, p in enumerate(ps)]
        for k, (d, ps) in enumerate(subs.items())
    }
    assert dt.check_submeters("88.1/main", main, healthy, expected_loss_frac=0.02) == []


def test_findings_are_deterministic_and_json(
    season: Season, fitted: tuple[models.HourlyModel, dt.Baseline, np.ndarray]
) -> None:
    _, base, exp = fitted
    y = season.kwh.copy()
    y[2000:2040] *= 1.7
    a = dt.check_model("88.1/dev", points(season, y), exp, base, offset_min=OFFSET)
    b = dt.check_model("88.1/dev", points(season, y), exp, base, offset_min=OFFSET)
    assert a == b and a
    j = a[0].to_json()
    assert set(j) >= {
        "device",
        "kind",
        "expected",
        "observed",
        "since_ms",
        "evidence",
        "message",
        "message_zh",
    }
    assert j["expected"]["unit"] == "kWh/h"
    with pytest.raises(ValueError, match="expected values"):
        dt.check_model("88.1/dev", points(season, y)[:5], exp[:4], base)


def test_local_day_boundary_helper() -> None:
    assert (T0 + OFFSET * 60_000) % dt.DAY_MS == 0  # T0 is a local midnight


def test_columnar_forms_give_the_same_findings(
    season: Season, fitted: tuple[models.HourlyModel, dt.Baseline, np.ndarray]
) -> None:
    """``Readings`` / ``HourSeries`` are the fast forms; the array fast path of ``check_counter`` must agree with
    the reading-by-reading walk on seeded random counters with and without faults."""
    rng = random.Random(8)
    for trial in range(60):
        rs = _counter(50, 60_000, rng.randrange(10_000, 150_000))
        for _ in range(rng.randrange(0, 3)):
            i = rng.randrange(1, 50)
            jump = rng.choice([-30_000, 400_000, 5])
            rs[i] = dt.Obs(rs[i].ts_ms, rs[i].seq, rs[i].value + jump, rng.choice([0, 0, int(Flag.ROLLOVER)]))
        cols = dt.Readings.of("88.1/m", rs)
        fast = dt.check_counter("88.1/m", cols, 200_000)
        assert fast == dt._walk_counter("88.1/m", rs, 200_000, dt.Rules(), 480), trial
        assert dt.check_gaps("88.1/m", cols, 60_000) == dt.check_gaps("88.1/m", rs, 60_000)
        assert dt.hourly_from_counter("88.1/m", cols) == dt.hourly_from_counter("88.1/m", rs)
    _, base, exp = fitted
    y = season.kwh.copy()
    y[3000:3050] *= 1.5
    pts = points(season, y)
    assert dt.check_model("88.1/dev", dt.HourSeries.of(pts), exp, base) == dt.check_model(
        "88.1/dev", pts, exp, base
    )
    with pytest.raises(ValueError, match="time order"):
        dt.check_model("88.1/dev", pts[::-1], exp, base)


def test_hourly_from_counter_names_tx_hashes_when_known() -> None:
    rs = [
        dt.Obs(T0 + i * 600_000, i + 1, 1000 * i, 0, f"{'ab' if i < 4 else 'cd'}{'0' * 62}")
        for i in range(13)
    ]
    hs = dt.hourly_from_counter("88.1/m", rs)
    assert [len(h.refs) for h in hs] == [2, 1, 1]
    assert hs[0].refs == ("ab" + "0" * 62, "cd" + "0" * 62)
