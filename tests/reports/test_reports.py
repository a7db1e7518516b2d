"""Reports: rendered (HTML, PDF, XLSX) and parsed back equal the computed numbers; the ``report`` tx anchors a report
and sets CEMP.CARBON; a report verifies against the chain and a tampered one is refused."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from accounting import kpi as kpim
from accounting import render
from accounting.inventory import compute, finish, fmt_t
from accounting.report import build, load_report, payload_of, report_json, report_sha256
from node.store import prefix_stop
from resolver.kinds import load_any
from tests.accounting.chain import HOUR_MS, SITE, Chain, boundary_payload, site_payload
from tests.accounting.test_inventory import BOUNDARY, CORE, MAIN, PIPE, T0

HEAT = "88.123.45/106.2.1"


def month_chain() -> Chain:
    ch = Chain()
    ch.factors()
    ch.ok(ch.admin("owner", "site", site_payload()))
    core, pipe, main, heat = ch.device(CORE), ch.device(PIPE), ch.device(MAIN), ch.device(HEAT)
    devs = [*BOUNDARY, (HEAT, "plate-heat-exchanger", "heat", "energy.import")]
    ch.ok(ch.admin("owner", "boundary", boundary_payload(1, T0 - 24 * HOUR_MS, devs, main=MAIN)))
    hours = 72
    ch.counter(core, T0, hours, [10_000 + 37 * h for h in range(hours)])
    ch.counter(pipe, T0, hours, 5_013)
    ch.counter(main, T0, hours, [16_000 + 41 * h for h in range(hours)])
    ch.counter(heat, T0, hours, 14_777)
    ch.devs = {CORE: core, PIPE: pipe, MAIN: main, HEAT: heat}  # type: ignore[attr-defined]
    return ch


def model_of(ch: Chain, period: str = "2026-01") -> tuple[dict[str, Any], dict[str, Any]]:
    raw = compute(ch.store, ch.head(), SITE, period, txs=True)
    inv = finish(raw)
    kp = kpim.compute_kpis({**raw, "digest": inv["digest"]})
    kp.pop("_baseline")
    return inv, build(inv, kp)


@pytest.fixture(scope="module")
def chain_model() -> tuple[Chain, dict[str, Any], dict[str, Any]]:
    ch = month_chain()
    inv, model = model_of(ch)
    return ch, inv, model


def _expected(inv: dict[str, Any]) -> dict[str, str]:
    tot = inv["site_total"]
    return {
        "energy_mwh": f"{tot['energy_wh'] / 10**6:.3f}",
        "co2_location_t": fmt_t(tot["co2_location_ug"]),
        "co2_market_t": fmt_t(tot["co2_market_ug"]),
    }


def test_model_figures_by_hand(chain_model: Any) -> None:
    _, inv, model = chain_model
    # main meter: 72 h of 16,000 + 41 h Wh = 1,152,000 + 41 x 2,556 = 1,256,796 Wh
    assert inv["site_total"]["energy_wh"] == 1_256_796
    assert model["display"]["energy_mwh"] == "1.257"
    # x 0.6479 t/MWh (Inner Mongolia 2023) = 0.814278 t; x 0.6096 = 0.766143 t
    assert model["display"]["co2_location_t"] == "0.814"
    assert model["display"]["co2_market_t"] == "0.766"
    assert model["display"]["heat_gj"] == "3.830"  # 72 x 14,777 Wh x 3.6 kJ/Wh = 3.830 GJ
    kf = model["key_figures"]
    assert kf["co2_location_ug"] == 1_256_796 * 647_900
    assert set(kf["devices"]) == {CORE, PIPE, MAIN, HEAT}
    ids = [s["id"] for s in model["sections"]]
    assert ids[:4] == ["iso", "scope2", "annex", "verification"]
    iso_labels = [it[0][1] for it in model["sections"][0]["items"]]
    for clause in ("(a)", "(c)", "(d)", "(e)", "(f)", "(j)", "(o)", "(r)", "(s)", "(t)"):
        assert any(x.startswith(clause) for x in iso_labels), clause
    # every factor row names value, year and document
    annex3 = model["sections"][2]["tables"][2]
    assert any(r[2] == "0.6479" and r[4] == "2023" and "公告" in r[5] for r in annex3["rows"])


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_html_parsed_back(chain_model: Any, lang: str) -> None:
    _, inv, model = chain_model
    data = render.render(model, "html", lang)
    fmt, back, printed = render.extract(data)
    assert fmt == "html" and back == model
    for k, v in _expected(inv).items():
        assert printed[k] == v
    s = data.decode()
    assert ("附表3" if lang == "zh" else "Annex table 3") in s
    assert CORE in s and model["key_figures"]["aggregates_root"] in s


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_pdf_text_parsed_back(chain_model: Any, lang: str) -> None:
    from pypdf import PdfReader

    _, inv, model = chain_model
    data = render.render(model, "pdf", lang)
    fmt, back, printed = render.extract(data)
    assert fmt == "pdf" and back == model
    reader = PdfReader(io.BytesIO(data))
    txt = "\n".join(p.extract_text() for p in reader.pages)
    plain = txt.replace(",", "")
    for k, v in _expected(inv).items():
        assert printed[k] == v
        assert v in plain
    if lang == "zh":
        # CJK text comes back as text (the font is embedded with its Unicode map), not as boxes
        for word in ("温室气体排放清单报告", "附表1", "基于位置", "核查"):
            assert word in txt, word
    else:
        assert "Annex table 1" in txt and "location-based" in txt
    assert report_sha256(model) in plain.replace("\n", "")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_xlsx_cells_parsed_back(chain_model: Any, lang: str) -> None:
    from openpyxl import load_workbook

    _, inv, model = chain_model
    data = render.render(model, "xlsx", lang)
    fmt, back, _printed = render.extract(data)
    assert fmt == "xlsx" and back == model
    wb = load_workbook(io.BytesIO(data))
    summary = {r[2]: r[1] for r in wb["summary"].iter_rows(values_only=True) if len(r) > 2 and r[2]}
    tot = inv["site_total"]
    assert summary["energy_mwh"] == pytest.approx(tot["energy_wh"] / 10**6, abs=5e-4)
    assert f"{summary['co2_location_t']:.3f}" == fmt_t(tot["co2_location_ug"])
    # the activity-data table lists each meter with its value
    rows = list(wb["verification"].iter_rows(values_only=True))
    core_row = next(r for r in rows if r[0] == CORE)
    dev = next(d for d in inv["devices"] if d["handle"] == CORE)
    assert core_row[4] == pytest.approx(dev["energy_wh"] / 10**6, abs=5e-4)
    assert dev["aggregates_root"] in core_row[8]


def _anchored_fn(ch: Chain) -> Any:
    def fn(sha: str) -> dict[str, Any] | None:
        r = load_report(ch.store, sha)
        return None if r is None else report_json(r)

    return fn


def _inventory_fn(ch: Chain) -> Any:
    return lambda site, period: finish(compute(ch.store, ch.head(), site, period, txs=True))


def test_issue_verify_and_tamper() -> None:
    ch = month_chain()
    inv, model = model_of(ch)
    sha = report_sha256(model)
    # a report signed by another org's admin is refused; the owner's is recorded and sets CEMP.CARBON
    res = ch.block(ch.admin("equipment", "report", payload_of(model)))
    assert res[0].code != 0 and "signed by" in res[0].reason
    ch.ok(ch.admin("owner", "report", payload_of(model)))
    res = ch.block(ch.admin("owner", "report", payload_of(model)))
    assert res[0].code != 0 and "already issued" in res[0].reason
    rec = load_report(ch.store, sha)
    assert rec is not None and rec.payload.co2_location_g == inv["site_total"]["co2_location_ug"] // 10**6
    building = load_any(ch.store, "88.123.45/site.hohhot")
    assert building is not None
    carbon = next(sv.value for sv in building.values if sv.value.type == "CEMP.CARBON")
    cv = json.loads(bytes(carbon.data))
    assert cv["report"] == sha and cv["period"] == "2026-01" and cv["co2e_g"] == rec.payload.co2_location_g

    for fmt in ("html", "pdf", "xlsx"):
        data = render.render(model, fmt, "zh")
        out = render.verify(data, _inventory_fn(ch), _anchored_fn(ch))
        assert out["match"], out["problems"]
        assert out["issued"] is not None and out["report_sha256"] == sha

    # tampered print (HTML figure changed): refused
    html_data = render.render(model, "html", "en").decode()
    v = model["display"]["co2_location_t"]
    bad = html_data.replace(f'data-key="co2_location_t">{render.num(v)}<', 'data-key="co2_location_t">0.500<')
    assert bad != html_data
    out = render.verify(bad.encode(), _inventory_fn(ch), _anchored_fn(ch))
    assert not out["match"] and any("printed co2_location_t" in p for p in out["problems"])

    # tampered model and print together (consistent file, wrong figures): the chain refuses it
    forged = json.loads(json.dumps(model))
    forged["key_figures"]["co2_location_ug"] -= 10**11
    forged["display"]["co2_location_t"] = fmt_t(forged["key_figures"]["co2_location_ug"])
    out = render.verify(render.render(forged, "xlsx", "en"), _inventory_fn(ch), _anchored_fn(ch))
    assert not out["match"]
    assert any(p.startswith("co2_location_ug") for p in out["problems"])
    assert out["issued"] is None  # its hash was never anchored

    # tampered XLSX cell: refused
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(render.render(model, "xlsx", "zh")))
    for row in wb["summary"].iter_rows():
        if len(row) > 2 and row[2].value == "energy_mwh":
            row[1].value = 0.001
    buf = io.BytesIO()
    wb.save(buf)
    out = render.verify(buf.getvalue(), _inventory_fn(ch), _anchored_fn(ch))
    assert not out["match"] and any("printed energy_mwh" in p for p in out["problems"])


def test_reports_index(chain_model: Any) -> None:
    from node import schema

    ch = month_chain()
    _, model = model_of(ch)
    ch.ok(ch.admin("owner", "report", payload_of(model)))
    p = schema.site_report_prefix(SITE)
    keys = [k for k, _ in ch.store.iterate(p, prefix_stop(p))]
    assert len(keys) == 1 and keys[0].endswith(bytes.fromhex(report_sha256(model)))
    assert re.fullmatch(r"[0-9a-f]{64}", report_sha256(model))


def _readings_txs(ch: Chain) -> dict[str, dict[bytes, list[int]]]:
    """device -> tx hash -> timestamps of its readings, from the committed blocks."""
    out: dict[str, dict[bytes, list[int]]] = {}
    for block, _ in ch.blocks:
        for raw in block.txs:
            d = ch.led.decode_tx(bytes(raw))
            if d.tx.kind == "readings":
                out.setdefault(d.payload.device, {})[d.hash] = [r.ts_ms for r in d.payload.readings]
    return out


def test_report_names_the_readings_txs_behind_its_figures() -> None:
    from accounting.inventory import device_txs, txs_root
    from accounting.report import check_txs

    ch = month_chain()
    core = ch.devs[CORE]  # type: ignore[attr-defined]
    # a February tx of the core meter is not behind January's figures; one that spans Jan 31 -> Feb 1 is
    feb = T0 + 31 * 24 * HOUR_MS
    ch.ok(core.batch(ch.c.chain, [(feb + 3 * HOUR_MS, "energy.import", 99_000, "Wh")]))
    ch.ok(core.batch(ch.c.chain, [(feb - HOUR_MS, "energy.import", 99_500, "Wh"), (feb + 5 * HOUR_MS, "energy.import", 99_900, "Wh")]))  # fmt: skip
    origins = _readings_txs(ch)
    inv, model = model_of(ch, "2026-01")
    jan_stop = feb
    for d in inv["devices"]:
        want = sorted(h for h, ts in origins[d["handle"]].items() if any(T0 <= t < jan_stop for t in ts))
        assert d["readings_tx_hashes"] == [h.hex() for h in want]
        assert d["readings_txs"] == len(want) and d["readings_txs_root"] == txs_root(want).hex()
        assert model["provenance"]["devices"][d["handle"]] == [h.hex() for h in want]
        assert device_txs(ch.store, SITE, "2026-01", d["handle"])["tx_hashes"] == [h.hex() for h in want]
    assert len(origins[CORE]) == 3 and inv["devices"][0]["handle"] == CORE
    assert inv["devices"][0]["readings_txs"] == 2  # the month's batch and the spanning one, not February's
    every = {bytes.fromhex(h) for hs in model["provenance"]["devices"].values() for h in hs}
    assert model["key_figures"]["readings_txs_root"] == txs_root(list(every)).hex()
    assert check_txs(model) == []
    # the HTML lists every hash; the PDF prints counts and roots and embeds the list
    page = render.render(model, "html", "en").decode()
    assert all(h.hex() in page for h in every)
    _, back, _ = render.extract(render.render(model, "pdf", "en"))
    assert back["provenance"] == model["provenance"]

    # a report whose list names another tx (file made consistent otherwise) is refused offline and by verify
    forged = json.loads(json.dumps(model))
    forged["provenance"]["devices"][CORE][0] = "ab" * 32
    assert any("do not hash to the stated root" in p for p in check_txs(forged))
    out = render.verify(render.render(forged, "html", "en"), _inventory_fn(ch), _anchored_fn(ch))
    assert not out["match"]
    # ... and one whose roots were recomputed over the forged list disagrees with the chain's
    forged_roots = json.loads(json.dumps(forged))
    hs = [bytes.fromhex(h) for h in forged_roots["provenance"]["devices"][CORE]]
    forged_roots["key_figures"]["devices"][CORE]["readings_txs_root"] = txs_root(hs).hex()
    every_f = {bytes.fromhex(h) for v in forged_roots["provenance"]["devices"].values() for h in v}
    forged_roots["key_figures"]["readings_txs_root"] = txs_root(list(every_f)).hex()
    assert check_txs(forged_roots) == []
    out = render.verify(render.render(forged_roots, "xlsx", "en"), _inventory_fn(ch), _anchored_fn(ch))
    assert not out["match"] and any(p.startswith("readings_txs_root") for p in out["problems"])
