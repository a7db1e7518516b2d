"""The batched fleet evaluator finds what the per-device detectors find: a seeded fleet of counters read every
minute, each device with its model expectation and baseline, evaluated hour by hour both ways, with injected faults
of every kind (consumption up 60 %, a counter going back, a gap, a device falling silent, a rise beyond rated
power) and a rollover that is no fault. The findings (device, kind, episode start, message) must be equal, and
every injected fault found."""

from __future__ import annotations

import numpy as np

from energy import detect as dt
from energy.fleet import Fleet, Member
from node.readings import Flag

HOUR = dt.HOUR_MS
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
N = 24
WINDOW = 14 * 24
PAST = 10 * 24
HOURS = 40


def _expected(i: int, hour_ms: np.ndarray) -> np.ndarray:
    h = (hour_ms // HOUR) % 24
    return (5.0 + i) * (1.0 + 0.4 * np.sin(2 * np.pi * h / 24))


def test_fleet_finds_what_the_per_device_detectors_find() -> None:
    rng = np.random.default_rng(5)
    past_ms = T0 + np.arange(PAST, dtype=np.int64) * HOUR
    members, windows, expects = [], [], []
    for i in range(N):
        e = _expected(i, past_ms)
        y = e * (1 + rng.normal(0, 0.03, PAST))
        base = dt.Baseline.from_residuals((past_ms // HOUR) % 24 + 0, y, e, past_ms // dt.DAY_MS)
        members.append(Member(f"dev{i}", 60_000, rated_power_w=(5.0 + i) * 1.4 * 1000 * 3, baseline=base))
        windows.append(
            dt.HourSeries.of([dt.HourPoint(int(t), float(v)) for t, v in zip(past_ms, y, strict=True)])
        )
        expects.append(e)
    fleet = Fleet(members, WINDOW)
    for i in range(N):
        fleet.seed(i, windows[i], expects[i])
    last = [dt.Obs(int(past_ms[-1]) + HOUR - 60_000, 1, 10**9 + i) for i in range(N)]
    known: set[tuple[str, str, int]] = set()
    per_device: list[dt.Finding] = []
    batched: list[dt.Finding] = []
    for k in range(HOURS):
        h0 = T0 + (PAST + k) * HOUR
        now = h0 + HOUR
        new: list[dt.Readings] = []
        for i in range(N):
            kwh = float(_expected(i, np.array([h0]))[0]) * (1 + rng.normal(0, 0.03))
            if i == 0 and k >= 3:
                kwh *= 1.6  # consumption up 60 %
            steps = np.round(kwh * 1000 / 60 * (1 + rng.normal(0, 0.01, 60))).astype(np.int64)
            ts = h0 + np.arange(60, dtype=np.int64) * 60_000
            flags = np.zeros(61, dtype=np.int64)
            if i == 1 and k == 5:
                steps[30] = -5000  # the counter goes back
            if i == 4 and k == 7:
                steps[20] = int(members[4].rated_power_w or 0)  # a minute's rise at 60x the rated power
            if i == 5 and k == 8:
                steps[40] = -(10**6)  # a rollover, flagged by the collector: no fault
                flags[41] = int(Flag.ROLLOVER)
            keep = np.ones(60, dtype=bool)
            if i == 2 and k == 9:
                keep[10:35] = False  # 25 minutes without readings
            if i == 3 and k >= 12:
                keep[:] = False  # silent from hour 12
            prev = last[i]
            vals = prev.value + np.cumsum(steps)
            r = dt.Readings(
                f"dev{i}",
                np.concatenate([[prev.ts_ms], ts[keep]]),
                np.arange(prev.seq, prev.seq + 1 + int(keep.sum()), dtype=np.int64),
                np.concatenate([[prev.value], vals[keep]]),
                np.concatenate([[0], flags[1:][keep]]),
            )
            new.append(r)
            last[i] = r.obs(len(r) - 1)
        # the per-device path, as bench/intelligence.py evaluated before the fleet
        for i, r in enumerate(new):
            m = members[i]
            found = dt.check_counter(m.device, r, m.rated_power_w)
            found += dt.check_gaps(m.device, r, m.interval_ms)
            found += dt.check_silent(m.device, r.obs(len(r) - 1), now, m.interval_ms)
            hp = dt.hourly_from_counter(m.device, r)
            if hp:
                windows[i] = windows[i].then(hp, WINDOW)
                expects[i] = np.concatenate([expects[i], _expected(i, np.array([p.hour_ms for p in hp]))])[
                    -WINDOW:
                ]
            assert m.baseline is not None
            found += dt.check_model(m.device, windows[i], expects[i], m.baseline)
            fresh = dt.new_only(found, known)
            known.update(f.key for f in fresh)
            per_device += fresh
        batched += fleet.step(new, now, _expected)

    def key(fs: list[dt.Finding]) -> list[tuple[str, str, int, str]]:
        return sorted((f.device, f.kind.value, f.since_ms, f.message) for f in fs)

    assert key(batched) == key(per_device)
    kinds = {(f.device, f.kind.value) for f in batched}
    for want in (
        ("dev0", "out_of_band"),
        ("dev1", "negative_delta"),
        ("dev2", "gap"),
        ("dev3", "silent"),
        ("dev4", "over_rated"),
    ):
        assert want in kinds, (want, kinds)
    assert not any(f.device == "dev5" for f in batched)  # the rollover
