"""Report and export routes on an in-process node (model, downloads, issued reports, Parquet read back by pandas and
DuckDB when installed), their 4xx answers, and the OpenAPI document listing them."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from accounting import render
from accounting.report import payload_of, report_sha256
from tests.accounting.test_api import MAIN, acc, setup_site, submit

__all__ = ["acc"]


@pytest.mark.asyncio
async def test_report_routes(acc) -> None:  # type: ignore[no-untyped-def]
    c, client = acc
    await setup_site(c, client)
    r = await client.get("/v1/sites/hohhot/report?period=2026-01")
    assert r.status == 200
    model = await r.json()
    assert model["display"]["energy_mwh"] == "0.240"  # 24 h x 10 kWh
    for fmt, magic in (("pdf", b"%PDF-"), ("xlsx", b"PK"), ("html", b"<!doctype")):
        r = await client.get(f"/v1/sites/hohhot/report?period=2026-01&format={fmt}&lang=en")
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        data = await r.read()
        assert data.startswith(magic)
        assert render.extract(data)[1] == model
    await submit(client, c.admin_tx("owner", "report", payload_of(model)))
    sha = report_sha256(model)
    lst = await (await client.get("/v1/reports?site=hohhot")).json()
    assert [x["report"] for x in lst["reports"]] == [sha]
    one = await (await client.get(f"/v1/reports/{sha}")).json()
    assert one["co2e_g"] == model["key_figures"]["co2_location_ug"] // 10**6
    h = await (await client.get("/api/handles/88.123.45/site.hohhot")).json()
    assert any(v["type"] == "CEMP.CARBON" and sha in v["data"]["value"] for v in h["values"])
    for path, code in (
        ("/v1/sites/hohhot/report?period=2026-13", 400),
        ("/v1/sites/hohhot/report?period=2026-01&format=doc", 400),
        ("/v1/sites/hohhot/report?period=2026-01&lang=fr", 400),
        ("/v1/sites/nowhere/report?period=2026-01", 404),
        ("/v1/reports/xyz", 400),
        ("/v1/reports/" + "0" * 64, 404),
        ("/v1/sites/hohhot/export/secrets.parquet?period=2026-01", 400),
    ):
        r = await client.get(path)
        assert r.status == code, (path, await r.text())
        assert "message" in await r.json()
    paths = (await (await client.get("/openapi.json")).json())["paths"]
    for p in ("/v1/reports", "/v1/reports/{report_sha256}", "/v1/sites/{site_id}/report"):
        assert p in paths


@pytest.mark.asyncio
async def test_export_parquet(acc) -> None:  # type: ignore[no-untyped-def]
    c, client = acc
    await setup_site(c, client)
    tables = {}
    for t in ("readings", "hourly", "inventory"):
        r = await client.get(f"/v1/sites/hohhot/export/{t}.parquet?period=2026-01")
        assert r.status == 200
        tables[t] = pq.read_table(io.BytesIO(await r.read()))
    assert tables["readings"].num_rows == 24  # the 24 readings inside the period (the one before is not)
    assert sum(tables["hourly"].column("use_wh").to_pylist()) == 240_000
    inv = tables["inventory"].to_pylist()
    site = next(x for x in inv if x["row"] == "site")
    assert site["energy_wh"] == 240_000 and site["co2_location_ug"] == 240_000 * 647_900
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.register("hourly", tables["hourly"])
    (wh,) = con.execute("select sum(use_wh) from hourly where device = ?", [MAIN]).fetchone()
    assert wh == 240_000
