"""Degree-days, the weather CSV import, the seeded climate and the Guideline 14 metrics, against hand-computed
values."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta

import pytest

from energy import metrics, weather


def test_hdd_hand_values() -> None:
    assert weather.hdd(10.0) == 8.0
    assert weather.hdd(20.0) == 0.0
    assert weather.hdd(18.0) == 0.0
    assert weather.hdd(-12.5) == 30.5
    assert weather.hdd(10.0, base_c=15.0) == 5.0


def test_daily_means_and_hdd_from_hourly() -> None:
    t0 = datetime(2026, 1, 10)
    # day 1: 24 hours alternating -10 and -6 -> mean -8, HDD18 = 26; day 2: only 11 hours -> no mean
    hourly = [(t0 + timedelta(hours=h), -10.0 if h % 2 else -6.0) for h in range(24)]
    hourly += [(t0 + timedelta(days=1, hours=h), 0.0) for h in range(11)]
    assert weather.daily_means(hourly) == {date(2026, 1, 10): -8.0}
    assert weather.hdd_from_hourly(hourly) == {date(2026, 1, 10): 26.0}
    assert weather.hdd_from_hourly(hourly, base_c=-7.0) == {date(2026, 1, 10): 1.0}


def test_csv_import_ok() -> None:
    text = "# Hohhot station\ndate,mean_temp_c\n2026-01-02,-12.5\n\n2026-01-01, -10\n"
    rows = weather.read_daily_csv(text)
    assert [(r.day, r.mean_c) for r in rows] == [(date(2026, 1, 1), -10.0), (date(2026, 1, 2), -12.5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("day,temp\n2026-01-01,1\n", "line 1: header"),
        ("date,mean_temp_c\n2026-01-01,1\n2026-13-01,2\n", "line 3: date"),
        ("date,mean_temp_c\n2026-01-01,warm\n", "line 2: temperature 'warm'"),
        ("date,mean_temp_c\n2026-01-01,nan\n", "line 2: temperature nan"),
        ("date,mean_temp_c\n2026-01-01,71\n", "outside"),
        ("date,mean_temp_c\n2026-01-01,1\n2026-01-01,2\n", "line 3: date 2026-01-01 appears twice"),
        ("date,mean_temp_c\n2026-01-01,1,extra\n", "line 2: expected 2 fields"),
        ("date,mean_temp_c\n", "no days"),
    ],
)
def test_csv_import_rejects(text: str, message: str) -> None:
    with pytest.raises(weather.WeatherCSVError, match=message):
        weather.read_daily_csv(text)


def test_csv_size_bound() -> None:
    with pytest.raises(weather.WeatherCSVError, match="larger than"):
        weather.read_daily_csv("date,mean_temp_c\n" + "x" * weather.MAX_CSV_BYTES)


def test_climate_seeded_and_plausible() -> None:
    a = weather.hohhot_climate(date(2025, 10, 15), 182, seed=7)
    assert a == weather.hohhot_climate(date(2025, 10, 15), 182, seed=7)
    assert a != weather.hohhot_climate(date(2025, 10, 15), 182, seed=8)
    assert len(a) == 182 * 24
    means = weather.daily_means(a)
    jan = [m for d, m in means.items() if d.month == 1]
    assert -16 < sum(jan) / len(jan) < -6  # Hohhot January normal about -11 °C
    season_hdd = sum(weather.hdd(m) for m in means.values())
    assert 3300 < season_hdd < 4300  # JGJ 26 annual HDD18 about 4186, nearly all of it in the season
    # the diurnal swing has mean zero: the day's mean is the normal curve plus the day's anomaly
    day0 = [c for t, c in a[:24]]
    assert max(day0) - min(day0) == pytest.approx(weather.DIURNAL_RANGE_K, abs=0.02)


def test_metrics_hand_computed() -> None:
    y, yhat = [10.0, 12.0, 8.0, 10.0], [9.0, 12.0, 10.0, 10.0]
    # residuals 1, 0, -2, 0: SSE 5, sum -1, mean y 10
    assert metrics.cv_rmse(y, yhat) == pytest.approx(100 * math.sqrt(5 / 4) / 10)  # 11.180
    assert metrics.nmbe(y, yhat) == pytest.approx(-2.5)
    assert metrics.cv_rmse(y, yhat, p=1) == pytest.approx(12.9099, abs=1e-4)
    assert metrics.nmbe(y, yhat, p=1) == pytest.approx(-3.3333, abs=1e-4)
    r = metrics.report(y, yhat, 1)
    assert r["within_g14_bounds"] and r["n"] == 4 and r["p"] == 1
    assert not metrics.report([10.0, 10.0], [6.0, 14.0], 0)["within_g14_bounds"]  # CV(RMSE) 40 %
    with pytest.raises(ValueError):
        metrics.cv_rmse(y, yhat, p=4)
    with pytest.raises(ValueError):
        metrics.nmbe(y, yhat[:3])


def test_cli_hdd(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cemp import cli

    f = tmp_path / "w.csv"
    f.write_text("date,mean_temp_c\n2026-01-01,-10\n2026-01-02,20\n2026-01-03,8.5\n", encoding="utf-8")
    assert cli.main(["hdd", "--csv", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["days"] == {"2026-01-01": 28.0, "2026-01-02": 0.0, "2026-01-03": 9.5} and out["total"] == 37.5
    assert cli.main(["hdd", "--csv", str(f), "--base", "15"]) == 0
    assert "HDD15 over 3 days (2026-01-01 .. 2026-01-03): 31.50" in capsys.readouterr().out
    f.write_text("date,mean_temp_c\n2026-01-01,cold\n", encoding="utf-8")
    assert cli.main(["hdd", "--csv", str(f)]) == 1
    assert "line 2: temperature 'cold'" in capsys.readouterr().err
    assert cli.main(["hdd", "--csv", str(tmp_path / "none.csv")]) == 1
