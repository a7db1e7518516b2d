"""Alarms can be listed with what they mean: the JSON-lines file an ``AlarmSink`` writes, ``cemp alarms``, and a
catalogue (``ALARM_RULES``) that covers every rule the collector raises."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cemp.cli import main
from collector.quality import (
    ALARM_RULES,
    Alarm,
    AlarmSink,
    QualityChecker,
    QualityConfig,
    QuantityRules,
    Severity,
    read_alarms,
)
from collector.sources import Sample

ROOT = Path(__file__).resolve().parents[2]


def raised_rules() -> set[str]:
    """Rule names passed as literals to ``Alarm(...)``, ``_flag(...)`` and ``_alarm(...)`` in collector/."""
    rules: set[str] = set()
    for path in (ROOT / "collector").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            pos = {"Alarm": 2, "_flag": 1, "_alarm": 1}.get(name)
            if pos is not None and len(node.args) > pos:
                arg = node.args[pos]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    rules.add(arg.value)
    return rules


def test_every_raised_rule_is_explained() -> None:
    raised = raised_rules() | {"unknown_device", "wrong_device_key"}  # raised with the node's refusal code
    assert {"gap", "negative_delta", "stale", "dead_letter", "backfill"} <= raised  # the scan finds them
    missing = raised - set(ALARM_RULES)
    assert not missing, f"alarm rules without an explanation in collector.quality.ALARM_RULES: {missing}"


def test_the_sink_file_reads_back_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a" / "alarms.jsonl"
    sink = AlarmSink(path=path)
    checker = QualityChecker(
        "88.123.45/101.1.1", QualityConfig(1000, rules={"energy.import": QuantityRules(counter=True)}), sink
    )
    checker.check([Sample("energy.import", 5_000, "Wh", 1_760_000_000_000)], 1_760_000_000_000)
    checker.check([Sample("energy.import", 4_000, "Wh", 1_760_000_001_000)], 1_760_000_001_000)
    with open(path, "a") as f:
        f.write('{"device": "x", "rule": "ga')  # a crash in the middle of a line
    got = read_alarms(path)
    assert [a.rule for a in got] == ["negative_delta"]
    assert got[0].device == "88.123.45/101.1.1" and "fell by 1000 Wh" in got[0].message
    assert got == list(sink.alarms)


def test_cemp_alarms_lists_them_with_their_meaning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = AlarmSink(path=tmp_path / "collector" / "alarms.jsonl")
    sink.emit(Alarm("88.123.45/101.2.1", "energy.import", "negative_delta", Severity.WARNING, "fell", 1))
    for i in range(3):
        sink.emit(Alarm("88.123.45/101.1.1", "energy.import", "gap", Severity.INFO, f"gap {i}", 2 + i))
    assert main(["alarms", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4 alarms" in out and "negative_delta" in out
    assert f"gap (3): {ALARM_RULES['gap']}" in out
    assert f"negative_delta (1): {ALARM_RULES['negative_delta']}" in out
    assert main(["alarms", "--dir", str(tmp_path), "--rule", "gap", "--last", "2", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["message"] for r in rows] == ["gap 1", "gap 2"] and rows[0]["meaning"] == ALARM_RULES["gap"]
    assert main(["alarms", "--rules"]) == 0
    out = capsys.readouterr().out
    assert all(rule in out for rule in ALARM_RULES)
    assert main(["alarms", "--dir", str(tmp_path / "nowhere")]) == 2
