"""Device health and diagnosis: the score's reasons, rules that fire only when their signals agree, and the signals
read from a chain (flag rates, completeness, silence, drift against peers, a supply temperature's trend)."""

from __future__ import annotations

from typing import Any

import pytest

from energy import detect as dt
from energy import health as hl
from node.devices import load_device
from node.readings import Flag
from tests.accounting.chain import Chain

DAY = hl.DAY_MS
NOW = 1_768_406_400_000  # 2026-01-15 00:00 +08:00


def sig(**kw: Any) -> hl.Signals:
    base: dict[str, Any] = {
        "device": "88.1/tank",
        "kind": "meter.energy",
        "subsystem": "storage-tank",
        "now_ms": NOW,
        "window_ms": 7 * DAY,
        "last_ts_ms": NOW - 60_000,
        "interval_ms": 60_000,
        "polls": 7 * 1440,
        "readings": 7 * 1440 * 3,
    }
    base.update(kw)
    return hl.Signals(**base)


def test_healthy_device_scores_100() -> None:
    a = hl.assess(sig(use_trend_pct=2.0, peer_trend_pct=1.0, peers=3, supply_temp_change_k=0.2))
    assert a["score"] == 100 and a["grade"] == "good" and a["reasons"] == [] and a["causes"] == []


def test_tank_heat_loss_needs_both_signals() -> None:
    a = hl.assess(sig(use_trend_pct=25.0, peer_trend_pct=1.0, peers=3, supply_temp_change_k=0.3))
    assert [c["rule"] for c in a["causes"]] == ["tank_heat_loss"]
    assert "insulation" in a["causes"][0]["cause"] and "保温" in a["causes"][0]["cause_zh"]
    assert any("supply temperature flat" in b for b in a["causes"][0]["because"])
    assert a["score"] == 85 and [r["code"] for r in a["reasons"]] == ["peer_drift"]
    # supply temperature raised by 3 K: more consumption is explained by the hotter supply, not a loss
    b = hl.assess(sig(use_trend_pct=25.0, peer_trend_pct=1.0, peers=3, supply_temp_change_k=3.0))
    assert "tank_heat_loss" not in [c["rule"] for c in b["causes"]]
    # no temperature at all: the rule cannot agree
    c = hl.assess(sig(use_trend_pct=25.0, peer_trend_pct=1.0, peers=3))
    assert c["causes"] == []
    # the same drift on a boiler is a different cause
    d = hl.assess(sig(subsystem="core-heating", use_trend_pct=25.0, peer_trend_pct=1.0, peers=3))
    assert [x["rule"] for x in d["causes"]] == ["device_draws_more"]
    # the model says +20 % but the peers moved the same way: the site's demand, not the device
    e = hl.assess(
        sig(subsystem="core-heating", use_trend_pct=20.0, peer_trend_pct=18.0, peers=3, model_bias_pct=20)
    )
    assert [x["rule"] for x in e["causes"]] == ["site_wide_change"]


def test_offline_link_fault_and_mapping() -> None:
    a = hl.assess(sig(last_ts_ms=NOW - 5 * 3_600_000))
    assert a["reasons"][0]["code"] == "no_contact" and a["score"] == 50 and a["grade"] == "poor"
    assert [c["rule"] for c in a["causes"]] == ["offline"]
    b = hl.assess(sig(polls=7 * 1440 // 2, flags={"source_error": 500, "gap_before": 40}, flagged=540))
    codes = [r["code"] for r in b["reasons"]]
    assert codes == ["missing_readings", "source_errors", "quality_flags"]
    assert [c["rule"] for c in b["causes"]] == ["link_fault"]
    assert b["signals"]["completeness_pct"] == 50.0 and b["signals"]["errors"] == 500
    neg = dt.Finding(
        "88.1/tank",
        dt.Kind.NEGATIVE_DELTA,
        NOW - DAY,
        NOW - DAY,
        True,
        None,
        None,
        "Wh",
        (),
        0,
        "fell",
        "回退",
    )
    c = hl.assess(sig(flags={"spike": 3}, flagged=3, findings=(neg,)))
    assert "register_mapping" in [x["rule"] for x in c["causes"]]
    assert any(r["code"] == "open_negative_delta" and r["points"] == -20 for r in c["reasons"])


def _feed(
    ch: Chain,
    dev: Any,
    days: int,
    kw: float,
    *,
    step_last: float = 1.0,
    drop_day: int | None = None,
    error_day: int | None = None,
) -> None:
    """A Wh counter read every 10 minutes for ``days`` days before NOW at ``kw``; the last two days × step_last."""
    value = 1_000_000
    for d in range(days):
        t0 = NOW - (days - d) * DAY
        rate = kw * (step_last if d >= days - 2 else 1.0)
        vals = []
        for k in range(144):
            value += round(rate * 1000 / 6)
            vals.append((t0 + k * 600_000, "energy.import", value, "Wh"))
        if d == drop_day:
            continue
        ch.ok(dev.batch(ch.c.chain, vals, int(Flag.SOURCE_ERROR) if d == error_day else 0))


def test_signals_from_chain_find_the_tank_and_the_bad_link() -> None:
    ch = Chain()
    tank, raw = ch.c.register_device("88.123.45/101.3.1", "meter.energy", "storage-tank")
    ch.ok(raw)
    peers = []
    for i in range(3):
        p, raw = ch.c.register_device(f"88.123.45/101.9.{i}", "meter.energy", "core-heating")
        ch.ok(raw)
        peers.append(p)
    temp, raw = ch.c.register_device("88.123.45/102.1.1", "sensor.temperature", "heat-exchanger")
    ch.ok(raw)
    _feed(ch, tank, 7, 300.0, step_last=1.3)
    _feed(ch, peers[0], 7, 500.0)
    _feed(ch, peers[1], 7, 800.0, drop_day=3, error_day=1)
    _feed(ch, peers[2], 7, 400.0)
    vals = [
        (NOW - 7 * DAY + k * 600_000, "temp.secondary_supply", 45_000 + (k % 6) * 10, "mdegC")
        for k in range(1008)
    ]
    for i in range(0, 1008, 144):
        ch.ok(temp.batch(ch.c.chain, vals[i : i + 144]))
    snap = ch.store.snapshot()
    try:
        dev = load_device(snap, tank.handle)
        assert dev is not None
        s = hl.signals_from_chain(snap, dev, NOW)
        a = hl.assess(s)
        assert s.interval_ms == 600_000 and s.peers == 3
        assert s.use_trend_pct == pytest.approx(30.0, abs=1.0)
        assert s.supply_temp_change_k is not None and abs(s.supply_temp_change_k) < 0.1
        assert [c["rule"] for c in a["causes"]] == ["tank_heat_loss"], a
        bad = load_device(snap, peers[1].handle)
        assert bad is not None
        b = hl.assess(hl.signals_from_chain(snap, bad, NOW))
        assert {"missing_readings", "source_errors"} <= {r["code"] for r in b["reasons"]}
        assert "link_fault" in [c["rule"] for c in b["causes"]]
        assert b["signals"]["errors"] == 144
        # an hour later nothing new arrived at a 10-minute interval: no contact
        late = hl.assess(hl.signals_from_chain(snap, dev, NOW + 3 * 3_600_000))
        assert late["reasons"][0]["code"] == "no_contact" and "offline" in [c["rule"] for c in late["causes"]]
        with pytest.raises(ValueError, match="window_days"):
            hl.signals_from_chain(snap, dev, NOW, window_days=99)
    finally:
        snap.release()


def test_counter_found_behind_other_quantities() -> None:
    """Hourly aggregates are keyed by quantity then hour: a device with many hours of ``current.l1`` (sorted
    first) still has its ``energy.import`` counter found."""
    ch = Chain()
    m, raw = ch.c.register_device("88.123.45/101.4.1", "meter.energy", "pump-room")
    ch.ok(raw)
    vals = []
    for h in range(100):
        ts = NOW - 100 * 3_600_000 + h * 3_600_000
        vals += [(ts, "current.l1", 5000, "mA"), (ts + 1, "energy.import", 1000 * h, "Wh")]
    ch.ok(m.batch(ch.c.chain, vals))
    snap = ch.store.snapshot()
    try:
        dev = load_device(snap, m.handle)
        assert dev is not None and hl._counter_quantity(snap, dev) == "energy.import"
    finally:
        snap.release()


def test_scan_bound_keeps_the_newest_readings() -> None:
    ch = Chain()
    m, raw = ch.c.register_device("88.123.45/101.5.1", "meter.energy", "pump-room")
    ch.ok(raw)
    _feed(ch, m, 3, 100.0)  # 432 readings, one every 10 minutes
    snap = ch.store.snapshot()
    try:
        dev = load_device(snap, m.handle)
        assert dev is not None
        s = hl.signals_from_chain(snap, dev, NOW, max_scan=100)
        assert s.truncated and s.readings == 100 and s.polls == 100
        assert s.window_ms == 100 * 600_000  # the newest 100 readings' span up to now
        assert s.completeness == pytest.approx(1.0)
        assert not hl.signals_from_chain(snap, dev, NOW).truncated
    finally:
        snap.release()
