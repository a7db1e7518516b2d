"""``cemp demo`` end to end: three node processes, the simulators and the collector agent; every source's
readings reach the chain, signed by the device's own key, and every node's data directory verifies. The demo
is run twice on one directory: the second run resumes the chain, the meters' counters continue (no reading
goes back), each org's Handle REST admin identity and its secret file are there, and the alarms can be listed.
The first run also shows the maintenance story: the injected fault (the storage tank meter goes silent), the
alarm the detectors raise on chain, and one work order walked from open to closed, each step with its tx hash."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cemp import wiring
from cemp.demo import DEVICES
from node import codec, schema
from node.readings import Flag, decode_reading_value
from node.state import StateView
from node.store import LevelDBStore
from node.types import DeviceRecord
from node.verify import verify_data_dir
from resolver.credentials import check_secret
from resolver.handles import load_record
from resolver.values import SecretHash
from tests.support import procs
from tests.support.testing import free_port

pytestmark = pytest.mark.slow


def _demo_port() -> int:
    port = free_port()
    while any(_busy(port + i) for i in range(3)):
        port = free_port()
    return port


def _run_demo(base: Path, port: int, duration_s: int) -> subprocess.CompletedProcess[str]:
    out = procs.run(  # on a timeout the demo's nodes are killed with it
        [
            sys.executable,
            "-m",
            "cemp.cli",
            "demo",
            "--dir",
            str(base),
            "--port",
            str(port),
            "--duration",
            str(duration_s),
        ],
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_demo_help_explains_ports_data_and_resuming() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "demo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for words in (
        "P, P+1 and P+2",
        "data/<node>/",
        "alarms.jsonl",
        "handle-admin.secret",
        "resuming:",
        "--fresh",
    ):
        assert words in out.stdout, words


def test_demo_runs_all_sources_into_the_chain(tmp_path: Path) -> None:
    port = _demo_port()
    first = _run_demo(tmp_path / "d", port, 100)
    _check_maintenance_walk(first.stdout)
    _check_forecast_and_plan(first.stdout)
    # Each org's REST admin: the username and the secret's file are printed; the file is private and its
    # secret is the one whose hash is on chain.
    secrets: dict[str, bytes] = {}
    for org, prefix in (("owner", "88.123.45"), ("equipment", "88.123.46"), ("regulator", "88.123.47")):
        f = tmp_path / "d" / "keys" / f"{org}.handle-admin.secret"
        assert f"username 300:{prefix}/admin" in first.stdout and str(f.resolve()) in first.stdout
        assert f.stat().st_mode & 0o777 == 0o600
        secrets[prefix] = f.read_bytes().strip()
    # the grant story: the engineer's read is refused, allowed while the grant holds, refused once it is revoked
    reads = re.findall(r"Zhang Min (?:\(equipment\) )?reads[^:]*: (.*)", first.stdout)
    assert len(reads) == 3, first.stdout[-3000:]
    assert reads[0].startswith("refused (not_authorized)") and reads[2].startswith("refused (not_authorized)")
    assert re.fullmatch(r"\d+ readings", reads[1]), reads
    # live figures from the node's and the collector's /metrics: height and accepted txs move between lines
    metrics = re.findall(
        r"metrics http://127\.0\.0\.1:\d+/metrics: height (\d+)  commit latency (?:p50 <= \d+ ms, mean \d+ ms|n/a)"
        r"  txs accepted (\d+) refused (\d+) \([^)]*\)  mempool \d+  leader changes \d+  \| collector "
        r"http://127\.0\.0\.1:\d+/metrics: open alarms (\d+)  outbox (\d+) txs  dead letters (\d+)",
        first.stdout,
    )
    assert len(metrics) >= 2, first.stdout[-3000:]
    assert int(metrics[-1][0]) > int(metrics[0][0]) and int(metrics[-1][1]) > int(metrics[0][1]) > 0, metrics
    assert "commit latency p50 <= " in first.stdout
    other = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "demo", "--dir", str(tmp_path / "d"), "--port", str(port + 10)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 2 and f"--port {port}" in other.stderr, (
        other.stderr
    )  # the genesis names the ports
    # resumes the same chain; 40 s: a bill photo left unread by the first run is OCR-ed here, which takes ~40 s
    # on a two-core machine at load 25
    out = _run_demo(tmp_path / "d", port, 40)
    assert "Handle REST admin" in out.stdout and "set up" not in out.stdout, "set up once, not on every run"
    assert "work order 1 is closed" in out.stdout and "fault injected:" not in out.stdout, (
        "one walk per chain"
    )
    first_counts = [int(x) for x in re.findall(r"readings on chain (\d+)", first.stdout)]
    counts = [int(x) for x in re.findall(r"readings on chain (\d+)", out.stdout)]
    assert first_counts and counts and counts[-1] > first_counts[-1] > 0, out.stdout[-2000:]
    # The chain keeps the documents of every run; OCR on a loaded machine (load 25 on 2 cores) can take longer
    # than both runs, so the demo is resumed in short runs until the bill is on chain or a deadline passes.
    # Each resumed run also shows that a photo not yet read is not lost across a restart.
    bills = [int(x) for x in re.findall(r"bills (\d+)", first.stdout + out.stdout)]
    deadline = time.monotonic() + 240
    while not (bills and max(bills) >= 1) and time.monotonic() < deadline:
        out = _run_demo(tmp_path / "d", port, 20)
        bills += [int(x) for x in re.findall(r"bills (\d+)", out.stdout)]
    assert bills and max(bills) >= 1, (
        "the first bill photo should be OCR'd and on chain: " + out.stdout[-2000:]
    )
    carbon = re.findall(
        r"carbon hohhot-complex \S+: electricity ([\d,.]+) kWh .* CO2 ([\d,.]+) kg location-based", out.stdout
    )
    assert carbon, "the demo should print the Hohhot site's live carbon figures: " + out.stdout[-2000:]
    assert "/v1/sites/hohhot-complex/inventory?period=" in out.stdout
    assert re.search(r"collector +http://127\.0\.0\.1:\d+/metrics", out.stdout)  # the agent's own metrics
    heights = set()
    for nid in ("owner-1", "equipment-1", "regulator-1"):
        rep = verify_data_dir(tmp_path / "d" / "data" / nid, wiring.kinds(), workers=0)
        assert rep.ok, rep.problem
        heights.add(rep.height)
    store = LevelDBStore(tmp_path / "d" / "data" / "regulator-1" / "ledger", create=False)
    try:
        for d in DEVICES:
            raw = store.get(schema.device(d.handle))
            assert raw is not None, f"{d.handle} not registered"
            if d.kind != "scanner.bill":
                assert codec.decode(DeviceRecord, raw).readings > 0, f"no readings from {d.name}"
        view = StateView(store)
        for prefix, secret in secrets.items():
            rec = load_record(view, f"{prefix}/admin")
            assert rec is not None, f"{prefix}/admin is not on chain"
            [seckey] = [sv.value for sv in rec.values if sv.value.index == 300]
            assert check_secret(codec.decode(SecretHash, bytes(seckey.data)), secret), (
                f"{prefix}: wrong secret file"
            )
        # Across the restart every cumulative counter continued: no energy reading went back, none was flagged so.
        counters = 0
        for d in DEVICES:
            rec = codec.decode(DeviceRecord, store.get(schema.device(d.handle)))  # type: ignore[arg-type]
            per_q: dict[str, list[tuple[int, int]]] = {}
            for _key, raw in store.iterate(
                *schema.reading_range(rec.devnum, 0, 2**62)
            ):  # time, then seq order
                q, val, _unit, flags = decode_reading_value(raw)
                if q.startswith("energy."):
                    per_q.setdefault(q, []).append((val, flags))
            for q, energy in per_q.items():
                counters += len(energy)
                values = [v for v, _ in energy]
                assert values == sorted(values), f"{d.name} {q}: a counter went back across the restart"
                assert not any(f & Flag.NEGATIVE_DELTA for _, f in energy), f"{d.name} {q}"
    finally:
        store.close()
    assert counters > 0
    # The walk is on every node's chain: alarm 1 and work order 1 closed, each step a committed tx.
    from cemp.demowalk import ENGINEER, MANAGER, OPERATOR
    from maintenance.alarms import alarm_history, load_alarm
    from maintenance.workorders import load_order, order_history
    from node.crypto import read_key_file

    people_keys = {
        n: bytes(read_key_file(tmp_path / "d" / "keys" / "people" / p.file).public)
        for n, p in (("engineer", ENGINEER), ("manager", MANAGER), ("operator", OPERATOR))
    }
    people = {
        people_keys["engineer"]: {"diagnose", "repair"},
        people_keys["manager"]: {"acknowledge", "open", "verify", "close"},
        people_keys["operator"]: {"assign"},
    }
    for nid in ("owner-1", "equipment-1", "regulator-1"):
        st = LevelDBStore(tmp_path / "d" / "data" / nid / "ledger", create=False)
        try:
            a, w = load_alarm(st, 1), load_order(st, 1)
            assert a is not None and a.state == "closed" and a.raised.rule == "silent"
            assert a.raised.device == "88.123.45/101.1.3" and a.raised.evidence and a.workorders == (1,)
            assert w is not None and w.state == "closed"
            steps = [(x.action, x.org) for x in order_history(st, 1)]
            assert steps == [
                ("open", "owner"),
                ("assign", "equipment"),
                ("diagnose", "equipment"),
                ("repair", "equipment"),
                ("comment", "regulator"),
                ("verify", "owner"),
                ("close", "owner"),
            ], steps
            hist = alarm_history(st, 1)
            assert [x.action for x in hist] == ["raise", "acknowledge", "assign", "close"]
            # people act with their own keys: the owner's energy manager, the equipment firm's operator and
            # maintenance engineer (the regulator's comment and the watcher's raise: admin keys)
            by_person = [(x.action, bytes(x.sender)) for x in [*hist, *order_history(st, 1)]]
            assert all(a in people[k] for a, k in by_person if k in people), by_person
            for k, actions in people.items():
                assert {a for a, kk in by_person if kk == k} == actions, (actions, by_person)
            for x in [*hist, *order_history(st, 1)]:
                assert st.get(schema.tx(x.tx_hash)) is not None
        finally:
            st.close()
    # The demo's alarms can be listed, each with what it means.
    alarms = subprocess.run(
        [sys.executable, "-m", "cemp.cli", "alarms", "--dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
    )
    assert alarms.returncode == 0 and "what they mean:" in alarms.stdout, alarms.stdout + alarms.stderr


def _check_maintenance_walk(stdout: str) -> None:
    assert "fault injected: the storage tank meter 88.123.45/101.1.3 stops answering" in stdout, stdout[
        -3000:
    ]
    raised = re.search(
        r"alarm (\d+) raised by equipment \(silent, \w+\): 88\.123\.45/101\.1\.3: .* tx ([0-9a-f]{64})",
        stdout,
    )
    assert raised, stdout[-3000:]
    assert re.search(r"  expected: a reading every 5 s", stdout) and "  observed: no reading for" in stdout
    steps = re.findall(r"(alarm|work order) (\d+): (\w+) +by (\w+) +-> (\w+) +tx ([0-9a-f]{64})", stdout)
    assert [(w, act, org, state) for w, _n, act, org, state, _tx in steps] == [
        ("alarm", "acknowledge", "owner", "acknowledged"),
        ("alarm", "assign", "equipment", "assigned"),
        ("work order", "open", "owner", "open"),
        ("work order", "assign", "equipment", "assigned"),
        ("work order", "diagnose", "equipment", "diagnosed"),
        ("work order", "repair", "equipment", "repaired"),
        ("work order", "comment", "regulator", "repaired"),
        ("work order", "verify", "owner", "verified"),
        ("work order", "close", "owner", "closed"),
        ("alarm", "close", "owner", "closed"),
    ], stdout[-4000:]
    assert len({tx for *_x, tx in steps}) == len(steps)


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _check_forecast_and_plan(stdout: str) -> None:
    """The forecast (rest of day, month, season; the model's held-out error) and tomorrow's charging plan, with
    figures computed from the history the new chain starts with, and the JSON addresses that serve them."""
    assert re.search(r"history: [\d,]+ readings on chain", stdout), stdout[-3000:]
    head = re.search(
        r"forecast hohhot-complex from \S+ \((\w+) model fitted on ([\d,]+) hours .* held-out CV\(RMSE\) "
        r"([\d.]+) %, NMBE ([-+][\d.]+) %",
        stdout,
    )
    assert head, stdout[-4000:]
    assert _num(head.group(2)) >= 28 * 24 and 0 < float(head.group(3)) < 15 and abs(float(head.group(4))) < 10
    rest = {
        m[0]: (_num(m[1]), _num(m[2]), _num(m[3]))
        for m in re.findall(
            r"rest of (day|month|season) +([\d,.]+) kWh ±[\d,.]+ kWh +([\d,.]+) yuan +([\d,.]+) tCO2", stdout
        )
    }
    assert set(rest) == {"day", "month", "season"}, stdout[-4000:]
    assert 0 < rest["day"][0] <= rest["month"][0] <= rest["season"][0]
    for kwh, yuan, t in rest.values():
        assert yuan > 0 and t * 1000 == pytest.approx(kwh * 0.6479, rel=0.01)
    assert re.search(r"forecast JSON http://127\.0\.0\.1:\d+/v1/sites/hohhot-complex/energy/forecast", stdout)
    assert re.search(r"charging plan \d{4}-\d\d-\d\d, storage tank [\d,]+ kWh_th", stdout), stdout[-3000:]
    best = re.search(r"least cost +([\d,.]+) yuan +([\d.]+) tCO2", stdout)
    flat = re.search(r"charging flat +([\d,.]+) yuan +([\d.]+) tCO2", stdout)
    habit = re.search(r"site's habit +([\d,.]+) yuan +([\d.]+) tCO2", stdout)
    assert best and flat and habit, stdout[-3000:]
    assert 0 < _num(best[1]) <= _num(flat[1]) and _num(best[1]) <= _num(habit[1])
    power = re.findall(r"boiler kW_e (\d\d)-(\d\d)h: ((?:[\d,]+ ){12})", stdout)
    assert len(power) == 2 and sum(_num(x) for _, _, row in power for x in row.split()) > 0, power
    assert re.search(r"plan JSON http://127\.0\.0\.1:\d+/v1/sites/hohhot-complex/energy/plan\?date=", stdout)


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
