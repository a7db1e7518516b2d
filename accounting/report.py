"""Inventory reports: one language-neutral data model, its hash, the ``report`` kind and the re-check of a report.

``build(inv, kpis)`` turns an inventory (``accounting.inventory.compute`` + ``finish``) and its KPIs into the report
model: key figures and sections of tables whose texts are ``[zh, en]`` pairs and whose numbers are exact decimal
strings. Every renderer (``accounting.render``: HTML, PDF, XLSX) draws from this model and nothing else, and embeds
it; ``report_sha256`` is the SHA-256 of its canonical JSON, the same on every node for the same committed state.

Content: ISO 14064-1:2018 clause 9.3.1 (a)-(t) and the 9.3.2 intensity ratios; the GHG Protocol dual Scope 2
view; the public-building guideline's annex tables 1-3 (emissions by source, activity data, factors); the MEE
verification tables (reported vs verified per source; activity data with its source, meter handle and
cross-check); on every figure the factor (value, year, document, set tx) and the on-chain data behind it (the
Merkle root over the hourly aggregates used per device and over all of them, the signed readings txs behind those
aggregates — count, root and, up to ``inventory.MAX_LISTED_TXS``, every hash — the txs of site, boundary, factor
sets and documents, and the committed state it was computed at). ``check_txs`` re-checks offline that the hashes a
report lists hash to the roots it states.

Issuing a report is a ``report`` tx (site owner's admin or the regulator) that anchors the report hash and its key
figures and sets ``CEMP.CARBON`` (index 2100) on the site's building handle through the resolver's record path.
``compare(model, inventory)`` re-derives the key figures from an inventory computed now and lists differences.
"""

from __future__ import annotations

import hashlib
import json
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from accounting.inventory import canonical, fmt_t, merkle_root, txs_root
from accounting.model import ReportPayload, ReportRecord
from accounting.siterecord import SiteRecordKind
from accounting.sites import Reader
from node import codec, schema
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Env
from node.types import Hash32, Height, ShortStr, Tx
from resolver import idis

SCHEMA = "cemp.report/1"
MAX_ROWS = 400
"""Breakdown rows a report prints (a season by day is 184); longer breakdowns are summarised by month."""


def _t(zh: str, en: str) -> list[str]:
    return [zh, en]


_Q3 = Decimal("0.001")


def mwh_str(wh: int) -> str:
    """Wh -> MWh with three decimals (half-even, display only)."""
    return str((Decimal(wh) / 10**6).quantize(_Q3, rounding=ROUND_HALF_EVEN))


def gj_str(wh: int) -> str:
    """Wh of heat -> GJ with three decimals (1 Wh = 3.6 kJ)."""
    return str((Decimal(wh) * Decimal("0.0000036")).quantize(_Q3, rounding=ROUND_HALF_EVEN))


def table(
    tid: str, title: list[str], columns: list[tuple[str, str, str]], rows: list[list[Any]]
) -> dict[str, Any]:
    """A table of the model: columns ``(zh, en, type)`` with type ``text`` or ``num`` (a decimal string)."""
    return {
        "id": tid,
        "title": title,
        "columns": [{"zh": z, "en": e, "type": t} for z, e, t in columns],
        "rows": rows,
    }


def section(
    sid: str,
    title: list[str],
    *,
    items: list[list[Any]] | None = None,
    tables: list[Any] | None = None,
    notes: list[list[str]] | None = None,
) -> dict[str, Any]:
    """A section: ``items`` are ``[label [zh, en], value]`` pairs, then tables, then notes."""
    return {"id": sid, "title": title, "items": items or [], "tables": tables or [], "notes": notes or []}


def _factor_of_year(inv: dict[str, Any], year: int) -> dict[str, Any] | None:
    for f in inv["factors"]:
        if f["year"] == year:
            return f
    return None


def _factor_text(f: dict[str, Any] | None, which: str) -> tuple[str, str, str]:
    """(value, description, set tx) of the location or residual factor of a year's entry."""
    if f is None or f.get("set") is None or f.get(which) is None:
        return "", "", ""
    g = f[which]
    s = f["set"]
    return (
        g["value"],
        f"{g['key']} {g['value']} {g['unit']}, {g['year']}, {g['source']} ({s['set_id']} v{s['version']})",
        s["tx"],
    )


GRAIN_ZH = {"hour": "小时", "day": "日", "month": "月", "quarter": "季度", "year": "年"}


def _utc(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _note(n: str) -> list[str]:
    """A factor note of the inventory in both languages."""
    import re

    m = re.fullmatch(r"no set for data year (\d{4}) on chain; the latest earlier set \((\d{4})\) is used", n)
    if m:
        return _t(f"链上无 {m.group(1)} 年因子集；采用此前最新的 {m.group(2)} 年因子集", n)
    m = re.fullmatch(r"factors of data year (\d{4})", n)
    if m:
        return _t(f"{m.group(1)} 年因子", n)
    return _t(n, n)


def _dash(v: Any) -> str:
    return "—" if v is None else str(v)


def key_figures(inv: dict[str, Any]) -> dict[str, Any]:
    """The figures a report anchors and ``cemp report verify`` re-derives (integers and hex only)."""
    tot = inv["site_total"]
    prov = inv.get("provenance")
    devices = {
        d["handle"]: {
            "energy_wh": d["energy_wh"],
            "aggregates": d["aggregates"],
            "aggregates_root": d["aggregates_root"],
            **(
                {"readings_txs": d["readings_txs"], "readings_txs_root": d["readings_txs_root"]}
                if prov is not None
                else {}
            ),
        }
        for d in inv["devices"]
    }
    return {
        "energy_wh": tot["energy_wh"],
        "heat_wh": tot["heat_wh"],
        "green_wh": tot["green_wh"],
        "co2_location_ug": tot["co2_location_ug"],
        "co2_market_ug": tot["co2_market_ug"],
        "activity_source": tot["activity_source"],
        "aggregates_root": aggregates_root(inv),
        "readings_txs": None if prov is None else prov["readings_txs"],
        "readings_txs_root": None if prov is None else prov["readings_txs_root"],
        "devices": devices,
        "factor_sets": sorted({f["set"]["set_id"] for f in inv["factors"] if f.get("set")}),
    }


def aggregates_root(inv: dict[str, Any]) -> str:
    """One Merkle root over the per-device aggregate roots (leaves: handle ‖ root), in handle order."""
    leaves = [d["handle"].encode() + bytes.fromhex(d["aggregates_root"]) for d in inv["devices"]]
    return merkle_root(leaves).hex()


def build(inv: dict[str, Any], kpis: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report model of a finished inventory computed with ``txs`` (see the module docstring)."""
    if "provenance" not in inv:
        raise ValueError(
            "a report is built from an inventory computed with txs=True (it names the readings txs)"
        )
    site, per, asof, tot = inv["site"], inv["period"], inv["as_of"], inv["site_total"]
    kf = key_figures(inv)
    years = [f["year"] for f in inv["factors"]]
    loc_texts = [_factor_text(f, "location") for f in inv["factors"]]
    res_texts = [_factor_text(f, "residual") for f in inv["factors"]]
    loc_desc = "; ".join(sorted({t[1] for t in loc_texts if t[1]}))
    res_desc = "; ".join(sorted({t[1] for t in res_texts if t[1]}))
    heights = [b["height"] for b in inv["boundaries"]] + [site["height"]]
    heights += [f["set"]["height"] for f in inv["factors"] if f.get("set")]
    first_block = min(heights) if heights else 0
    agg_total = sum(d["aggregates"] for d in inv["devices"])
    onchain = (
        f"hourly aggregates of {len(inv['devices'])} meters ({agg_total} aggregates), Merkle root "
        f"{kf['aggregates_root']}, from {kf['readings_txs']} signed readings txs (Merkle root "
        f"{kf['readings_txs_root']}), committed state at block {asof['height']} ({asof['block_hash'][:16]}…, app hash "
        f"{asof['app_hash'][:16]}…)"
    )
    elec_wh, heat_wh = tot["energy_wh"], tot["heat_wh"]
    zero = "0.000"
    src_used = {
        "meters": _t("计量表读数（逐时汇总）", "meter readings (hourly aggregates)"),
        "settlement": _t("供电企业结算单", "supplier settlement statements"),
        "ledger": _t("采购台账", "purchase ledger"),
    }[tot["activity_source"]]

    # --- ISO 14064-1 clause 9.3.1 -------------------------------------------------------------------------------
    iso = section(
        "iso",
        _t("ISO 14064-1:2018 第9.3.1条 报告内容", "ISO 14064-1:2018 clause 9.3.1 content"),
        items=[
            [_t("(a) 报告组织", "(a) Reporting organisation"), f"{site['org']} — {site['name']}"],
            [
                _t("(b) 负责人", "(b) Responsible person"),
                _t(
                    f"{site['org']} 组织管理员（签名密钥见报告交易）",
                    f"admin of org {site['org']} (the key that signs the report tx)",
                ),
            ],
            [
                _t("(c) 报告期", "(c) Reporting period"),
                f"{per['label']}: {per['first_day']} – {per['last_day']} ({per['hours']} h)",
            ],
            [
                _t("(d) 组织边界", "(d) Organisational boundary"),
                _t(
                    f"运营控制：场所 {site['site_id']}，建筑标识 {site['building']}，{site['address']}，{site['floor_area_m2']} m²",
                    f"operational control: site {site['site_id']}, building handle {site['building']}, {site['address']}, {site['floor_area_m2']} m²",
                ),
            ],
            [
                _t(
                    "(e) 报告边界与间接排放重要性准则",
                    "(e) Reporting boundary, significance of indirect emissions",
                ),
                _t(
                    f"边界版本 {', '.join(str(b['version']) for b in inv['boundaries']) or '—'}（见“边界”表）；外购电力与热力视为重要",
                    f"boundary versions {', '.join(str(b['version']) for b in inv['boundaries']) or '—'} (see the boundary table); imported electricity and heat are significant",
                ),
            ],
            [
                _t("(f) 直接排放（类别1）", "(f) Direct emissions (Category 1)"),
                _t(
                    "0 tCO2e：边界内无燃料燃烧、工艺排放或已计量的制冷剂逸散",
                    "0 tCO2e: no fuel combustion, process emissions or metered refrigerant leakage in the boundary",
                ),
            ],
            [_t("(g) 生物质CO2", "(g) Biogenic CO2"), _t("无", "none")],
            [_t("(h) 清除量", "(h) Removals"), _t("未量化", "not quantified")],
            [
                _t("(i) 排除的重要排放源", "(i) Excluded significant sources"),
                _t(
                    "无；类别3–6未量化（不在本平台的数据范围内）",
                    "none; categories 3–6 not quantified (outside the platform's data)",
                ),
            ],
            [
                _t("(j) 间接排放（类别2：输入能源）", "(j) Indirect emissions (Category 2: imported energy)"),
                _t(
                    f"基于位置 {tot['co2_location_t']} tCO2，基于市场 {tot['co2_market_t']} tCO2",
                    f"location-based {tot['co2_location_t']} tCO2, market-based {tot['co2_market_t']} tCO2",
                ),
            ],
            [
                _t("(k)(l) 基准年", "(k)(l) Base year"),
                _t("未设定基准年；无重新计算", "no base year set; no recalculation"),
            ],
            [
                _t("(m)(n) 量化方法", "(m)(n) Quantification approach"),
                _t(
                    "排放 = 活动数据 × 排放因子，整数精确运算（Wh × 因子×10^6 = 微克），仅显示时四舍六入；方法未变更",
                    "E = AD × EF in exact integers (Wh × factor×10^6 = micrograms), rounded half-even for display only; no change of approach",
                ),
            ],
            [_t("(o) 排放因子", "(o) Emission factors"), loc_desc or "—"],
            [
                _t("(p)(q) 不确定性", "(p)(q) Uncertainty"),
                _t(
                    f"数据缺口 {inv['data_quality']['gap_hours']} 小时，标记读数 {inv['data_quality']['flagged_readings']}，估算读数 {inv['data_quality']['estimated_readings']}；电网因子的不确定性未量化",
                    f"{inv['data_quality']['gap_hours']} gap hours, {inv['data_quality']['flagged_readings']} flagged and {inv['data_quality']['estimated_readings']} estimated readings; grid-factor uncertainty not quantified",
                ),
            ],
            [
                _t("(r) 符合性声明", "(r) Statement of conformity"),
                _t(
                    "按 ISO 14064-1:2018 第9.3.1条内容编制；未经第三方核查前不声称符合",
                    "prepared with the content of ISO 14064-1:2018 clause 9.3.1; no claim of conformity before third-party verification",
                ),
            ],
            [
                _t("(s) 核查状态", "(s) Verification status"),
                _t(
                    "未经第三方核查；任何人可用 cemp report verify 依链上数据复核",
                    "not third-party verified; anyone can re-check it against the chain with cemp report verify",
                ),
            ],
            [
                _t("(t) GWP", "(t) GWP"),
                _t("仅CO2（GWP = 1，IPCC AR5/AR6）", "CO2 only (GWP 1, IPCC AR5/AR6)"),
            ],
        ],
    )

    # --- GHG Protocol dual Scope 2 -------------------------------------------------------------------------------
    loc_vals = ", ".join(sorted({t[0] for t in loc_texts if t[0]}))
    res_vals = ", ".join(sorted({t[0] for t in res_texts if t[0]}))
    scope2 = section(
        "scope2",
        _t(
            "GHG Protocol 范围二：基于位置与基于市场", "GHG Protocol Scope 2: location-based and market-based"
        ),
        tables=[
            table(
                "scope2",
                _t("范围二双报告", "Scope 2 dual reporting"),
                [
                    ("方法", "Method", "text"),
                    ("电量 MWh", "Electricity MWh", "num"),
                    ("绿电 MWh", "Green power MWh", "num"),
                    ("因子 tCO2/MWh", "Factor tCO2/MWh", "text"),
                    ("因子来源", "Factor source", "text"),
                    ("tCO2", "tCO2", "num"),
                ],
                [
                    [
                        _t("基于位置", "location-based"),
                        mwh_str(elec_wh),
                        zero,
                        loc_vals,
                        loc_desc,
                        tot["co2_location_t"],
                    ],
                    [
                        _t("基于市场", "market-based"),
                        mwh_str(elec_wh),
                        mwh_str(tot["green_wh"]),
                        f"0 / {res_vals}",
                        _t(
                            f"绿证与绿电合同覆盖部分为0，其余为剩余组合代理因子：{res_desc}",
                            f"0 for certificates and contracts, the rest at the residual-mix proxy: {res_desc}",
                        ),
                        tot["co2_market_t"],
                    ],
                ],
            )
        ],
        notes=[
            _t(
                f"未使用的绿电 {mwh_str(tot['green_unused_wh'])} MWh（不结转）",
                f"unused green power {mwh_str(tot['green_unused_wh'])} MWh (never carried over)",
            )
        ]
        + [_note(f["note"]) for f in inv["factors"] if f.get("note")],
    )

    # --- annex tables 1-3 ----------------------------------------------------------------------------------------
    sources = [
        (_t("化石燃料燃烧", "fossil fuel combustion"), zero),
        (_t("外购电力（基于位置）", "purchased electricity (location-based)"), tot["co2_location_t"]),
        (_t("外购热力", "purchased heat"), zero),
    ]
    annex1 = table(
        "annex1",
        _t("附表1 二氧化碳排放量汇总", "Annex table 1: CO2 emissions by source"),
        [("排放源", "Source", "text"), ("tCO2", "tCO2", "num"), ("链上数据", "On-chain data", "text")],
        [[s, v, onchain if i == 1 else "—"] for i, (s, v) in enumerate(sources)]
        + [[_t("合计", "total"), tot["co2_location_t"], f"inventory {inv['digest'][:16]}…"]],
    )
    annex2 = table(
        "annex2",
        _t("附表2 活动数据", "Annex table 2: activity data"),
        [
            ("排放源", "Source", "text"),
            ("数值", "Value", "num"),
            ("单位", "Unit", "text"),
            ("数据来源", "Data source", "text"),
        ],
        [
            [_t("化石燃料", "fossil fuel"), zero, "t / Nm3", _t("边界内无", "none in the boundary")],
            [_t("外购电力", "purchased electricity"), mwh_str(elec_wh), "MWh", src_used],
            [
                _t("外购热力", "purchased heat"),
                zero,
                "GJ",
                _t(
                    "无外购热力（热量由电锅炉自产）", "none purchased (heat produced by the electric boilers)"
                ),
            ],
            [
                _t("自产热量（参考）", "heat delivered (memo)"),
                gj_str(heat_wh),
                "GJ",
                _t("热量表", "heat meters"),
            ],
        ],
    )
    annex3 = table(
        "annex3",
        _t("附表3 排放因子", "Annex table 3: emission factors"),
        [
            ("年份", "Year", "text"),
            ("因子", "Factor", "text"),
            ("数值", "Value", "num"),
            ("单位", "Unit", "text"),
            ("因子年份", "Data year", "text"),
            ("文件", "Document", "text"),
            ("因子集交易", "Set tx", "text"),
        ],
        [
            [
                str(f["year"]),
                f[w]["key"],
                f[w]["value"],
                f[w]["unit"],
                str(f[w]["year"]),
                f[w]["source"] + f" ({f['set']['document']})",
                f["set"]["tx"],
            ]
            for f in inv["factors"]
            if f.get("set")
            for w in ("location", "residual")
            if f.get(w)
        ],
    )
    annex = section(
        "annex",
        _t("公共建筑指南附表1–3", "Public-building guideline annex tables 1–3"),
        tables=[annex1, annex2, annex3],
    )

    # --- verification tables -------------------------------------------------------------------------------------
    rec = inv["reconciliation"]

    def cross(name: str) -> str:
        s = rec[name]
        if not s["documents"]:
            return "—"
        return f"{mwh_str(s['energy_wh'])} MWh ({s['difference_permille']} ‰, {len(s['documents'])} docs)"

    verif_rows = [[s, v, v, "0.000"] for s, v in sources] + [
        [_t("合计", "total"), tot["co2_location_t"], tot["co2_location_t"], "0.000"]
    ]
    verif = table(
        "verification",
        _t("核查结论：报告值与核查值（按排放源）", "Conclusion: reported vs verified per source"),
        [
            ("排放源", "Source", "text"),
            ("报告值 tCO2", "Reported tCO2", "num"),
            ("核查值 tCO2", "Verified tCO2", "num"),
            ("差异 tCO2", "Difference tCO2", "num"),
        ],
        verif_rows,
    )
    ad_rows = []
    for d in inv["devices"]:
        ad_rows.append(
            [
                d["handle"],
                d["subsystem"],
                d["carrier"],
                d["role"],
                mwh_str(d["energy_wh"]) if d["carrier"] == "electricity" else gj_str(d["energy_wh"]),
                "MWh" if d["carrier"] == "electricity" else "GJ",
                _t("计量表（逐时汇总）", "meter (hourly aggregates)"),
                cross("settlement")
                if d["role"] == "main" or not any(x["role"] == "main" for x in inv["devices"])
                else "—",
                f"{d['aggregates']} / {d['aggregates_root']}",
                fmt_t(d["co2_location_ug"]) if d["carrier"] == "electricity" else "—",
            ]
        )
    ad = table(
        "activity",
        _t("活动数据：来源、计量表标识与交叉核对", "Activity data: source, meter handle and cross-check"),
        [
            ("计量表标识", "Meter handle", "text"),
            ("子系统", "Subsystem", "text"),
            ("能源", "Carrier", "text"),
            ("角色", "Role", "text"),
            ("数值", "Value", "num"),
            ("单位", "Unit", "text"),
            ("来源", "Source", "text"),
            ("结算单核对", "Statement cross-check", "text"),
            ("汇总数 / Merkle根", "Aggregates / Merkle root", "text"),
            ("tCO2（位置）", "tCO2 (location)", "num"),
        ],
        ad_rows,
    )
    recon = table(
        "reconciliation",
        _t("数据来源优先级与核对", "Activity-data priority and reconciliation"),
        [
            ("来源", "Source", "text"),
            ("MWh", "MWh", "num"),
            ("覆盖", "Coverage", "text"),
            ("与计量差异 ‰", "vs meters ‰", "text"),
            ("文件", "Documents", "text"),
        ],
        [
            [
                _t("计量表", "meters"),
                mwh_str(rec["meters"]["energy_wh"]),
                f"{rec['meters']['coverage_permille'] / 10:.1f} % h",
                "0",
                "—",
            ],
            [
                _t("结算单", "statements"),
                mwh_str(rec["settlement"]["energy_wh"]),
                f"{rec['settlement']['days_covered']}/{rec['settlement']['days_elapsed']} d",
                _dash(rec["settlement"]["difference_permille"]),
                " ".join(x["tx"][:12] for x in rec["settlement"]["documents"][:20]),
            ],
            [
                _t("采购台账", "ledger"),
                mwh_str(rec["ledger"]["energy_wh"]),
                f"{rec['ledger']['days_covered']}/{rec['ledger']['days_elapsed']} d",
                _dash(rec["ledger"]["difference_permille"]),
                " ".join(x["tx"][:12] for x in rec["ledger"]["documents"][:20]),
            ],
        ],
    )
    verification = section(
        "verification",
        _t("核查表", "Verification tables"),
        tables=[verif, ad, recon],
        notes=[
            _t(f"采用：{rec['used']}；原因：{rec['why']}", f"used: {rec['used']}; why: {rec['why']}"),
            _t(
                "核查值 = 任何节点依链上数据重新计算的值（cemp report verify）",
                "verified = re-derived from any node's chain (cemp report verify)",
            ),
        ],
    )

    # --- breakdown, subsystems -----------------------------------------------------------------------------------
    bd = inv["breakdown"]
    breakdown = section(
        "breakdown",
        _t("分期明细", "Breakdown"),
        tables=[
            table(
                "breakdown",
                _t(f"按{GRAIN_ZH.get(per['grain'], per['grain'])}", f"by {per['grain']}"),
                [
                    ("期间", "Period", "text"),
                    ("电量 MWh", "Electricity MWh", "num"),
                    ("热量 GJ", "Heat GJ", "num"),
                    ("tCO2（位置）", "tCO2 (location)", "num"),
                    ("tCO2（市场）", "tCO2 (market)", "num"),
                ],
                [
                    [
                        r["label"],
                        mwh_str(r["energy_wh"]),
                        gj_str(r["heat_wh"]),
                        r["co2_location_t"],
                        r["co2_market_t"],
                    ]
                    for r in bd[:MAX_ROWS]
                ],
            ),
            table(
                "subsystems",
                _t("按子系统", "By subsystem"),
                [
                    ("子系统", "Subsystem", "text"),
                    ("电量 MWh", "Electricity MWh", "num"),
                    ("tCO2（位置）", "tCO2 (location)", "num"),
                ],
                [[s["subsystem"], mwh_str(s["energy_wh"]), s["co2_location_t"]] for s in inv["subsystems"]],
            ),
        ],
    )

    # --- intensity (9.3.2) and KPIs ------------------------------------------------------------------------------
    kitems: list[list[Any]] = []
    if kpis:
        it = kpis["intensity"]
        kitems = [
            [_t("电耗强度 kWh/m²", "Electricity kWh/m²"), str(kpis["electricity_kwh_per_m2"])],
            [
                _t("碳排放强度 kgCO2/m²（位置/市场）", "Intensity kgCO2/m² (location/market)"),
                f"{it['kgco2_per_m2_location']} / {it['kgco2_per_m2_market']}",
            ],
            [
                _t("度日归一 kgCO2/(m²·1000 HDD)", "HDD-normalised kgCO2/(m²·1000 HDD)"),
                f"{it['kgco2_per_m2_1000hdd_location']} / {it['kgco2_per_m2_1000hdd_market']}",
            ],
            [
                _t("平均/峰值热负荷 W/m²（参考50）", "Average/peak heat W/m² (reference 50)"),
                f"{kpis['power']['heat_avg_w_per_m2']} / {kpis['power']['heat_peak_w_per_m2']}",
            ],
            [
                _t("燃煤/燃气锅炉基准 tCO2", "Coal/gas boiler baseline tCO2"),
                f"{kpis['baseline'].get('coal_tco2')} / {kpis['baseline'].get('gas_tco2')}",
            ],
            [
                _t("相对燃煤/燃气的减排（位置）tCO2", "Avoided vs coal/gas (location) tCO2"),
                f"{kpis['avoided_tco2']['vs_coal_location']} / {kpis['avoided_tco2']['vs_gas_location']}",
            ],
            [_t("电费 元/m²", "Electricity cost yuan/m²"), str(kpis["cost"]["electricity_yuan_per_m2"])],
        ]
    intensity = section(
        "intensity",
        _t("强度指标（ISO 14064-1 第9.3.2条）", "Intensity ratios (ISO 14064-1 clause 9.3.2)"),
        items=kitems,
    )

    # --- on-chain anchors ----------------------------------------------------------------------------------------
    anchors = [
        [_t("站点交易", "site tx"), f"{site['tx']} @ {site['height']}"],
        *[
            [_t(f"边界 v{b['version']}", f"boundary v{b['version']}"), f"{b['tx']} @ {b['height']}"]
            for b in inv["boundaries"]
        ],
        *[
            [_t(f"因子集 {sid}", f"factor set {sid}"), txh]
            for sid, txh in sorted(
                {
                    (f["set"]["set_id"], f"{f['set']['tx']} @ {f['set']['height']}")
                    for f in inv["factors"]
                    if f.get("set")
                }
            )
        ],
        [_t("区块范围", "block range"), f"{first_block} – {asof['height']}"],
        [
            _t("状态（区块/哈希/应用哈希）", "state (block / hash / app hash)"),
            f"{asof['height']} / {asof['block_hash']} / {asof['app_hash']}",
        ],
        [_t("汇总数据 Merkle 根", "Merkle root over the aggregates"), kf["aggregates_root"]],
        [
            _t("读数交易（数量 / Merkle 根）", "readings txs (count / Merkle root)"),
            f"{kf['readings_txs']} / {kf['readings_txs_root']}",
        ],
        [_t("清单摘要 SHA-256", "inventory SHA-256"), inv["digest"]],
    ]
    chain = section("chain", _t("链上数据", "On-chain data"), items=anchors)
    prov = inv["provenance"]
    tx_rows = [
        [d["handle"], str(i + 1), h]
        for d in inv["devices"]
        for i, h in enumerate(d["readings_tx_hashes"] or [])
    ]
    txs = section(
        "txs",
        _t("附：读数交易", "Annex: readings txs"),
        items=[
            [
                _t(d["handle"], d["handle"]),
                _t(
                    f"{d['readings_txs']} 笔交易，Merkle 根 {d['readings_txs_root']}",
                    f"{d['readings_txs']} txs, Merkle root {d['readings_txs_root']}",
                ),
            ]
            for d in inv["devices"]
        ],
        tables=[
            {
                **table(
                    "readings_txs",
                    _t(
                        "计算所用汇总数据背后的签名读数交易", "Signed readings txs behind the aggregates used"
                    ),
                    [
                        ("计量表标识", "Meter handle", "text"),
                        ("序号", "No.", "text"),
                        ("交易哈希", "Tx hash", "text"),
                    ],
                    tx_rows,
                ),
                "print": "html-xlsx",
            }
        ]
        if prov["listed"]
        else [],
        notes=[
            _t(
                "每个 Merkle 根为按字节升序排列的交易哈希（各 32 字节）的 RFC 6962 根；交易及其包含证明见 "
                "GET /v1/txs/{hash}；cemp report txs FILE 列出本报告所列哈希；cemp report verify FILE 由链重新推导。",
                "Each root is the RFC 6962 Merkle root over the tx hashes (32 bytes each) in ascending byte order; a "
                "tx and its inclusion proof: GET /v1/txs/{hash}; cemp report txs FILE lists the hashes this report "
                "names; cemp report verify FILE re-derives them from the chain.",
            ),
            *(
                []
                if prov["listed"]
                else [_t(f"交易数 {prov['readings_txs']} 超过可列数量，仅给出数量和根", prov["note"])]
            ),
        ],
    )

    boundary_rows = [
        [
            f"v{b['version']}",
            _utc(b["applies_from_ms"]),
            _utc(b["applies_to_ms"]),
            d["handle"],
            d["subsystem"],
            d["carrier"],
            b["main_meter"] or "—",
        ]
        for b in inv["boundaries"]
        for d in b["devices"]
    ]
    boundary = section(
        "boundary",
        _t("报告边界", "Reporting boundary"),
        tables=[
            table(
                "boundary",
                _t("边界设备", "Boundary devices"),
                [
                    ("版本", "Version", "text"),
                    ("起", "From", "text"),
                    ("止", "To", "text"),
                    ("设备标识", "Device handle", "text"),
                    ("子系统", "Subsystem", "text"),
                    ("能源", "Carrier", "text"),
                    ("总表", "Main meter", "text"),
                ],
                boundary_rows,
            )
        ],
    )
    model: dict[str, Any] = {
        "schema": SCHEMA,
        "site": {
            k: site[k]
            for k in (
                "site_id",
                "name",
                "org",
                "building",
                "floor_area_m2",
                "address",
                "province",
                "grid_region",
            )
        },
        "period": {k: per[k] for k in ("label", "kind", "first_day", "last_day", "hours", "grain")},
        "as_of": asof,
        "inventory_sha256": inv["digest"],
        "years": years,
        "key_figures": kf,
        "display": {
            "energy_mwh": mwh_str(elec_wh),
            "heat_gj": gj_str(heat_wh),
            "co2_location_t": tot["co2_location_t"],
            "co2_market_t": tot["co2_market_t"],
        },
        "sections": [iso, scope2, annex, verification, breakdown, intensity, boundary, chain, txs],
        "provenance": {
            "listed": prov["listed"],
            "devices": {d["handle"]: d["readings_tx_hashes"] for d in inv["devices"]}
            if prov["listed"]
            else {},
        },
    }
    return model


def report_sha256(model: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(model)).hexdigest()


def check_txs(model: dict[str, Any]) -> list[str]:
    """Offline: the tx hashes a report lists hash to the roots it states (per device and over all of them)."""
    prov = model.get("provenance")
    kf = model["key_figures"]
    if prov is None:
        return ["the report names no readings txs (made before reports listed them)"]
    if not prov.get("listed"):
        return []
    out = []
    every: set[bytes] = set()
    for handle, hashes in sorted(prov["devices"].items()):
        try:
            hs = [bytes.fromhex(h) for h in hashes]
        except (TypeError, ValueError):
            out.append(f"device {handle}: a listed tx hash is not hex")
            continue
        every.update(hs)
        want = kf["devices"].get(handle, {})
        if len(hs) != want.get("readings_txs") or txs_root(hs).hex() != want.get("readings_txs_root"):
            out.append(f"device {handle}: the {len(hs)} listed txs do not hash to the stated root")
    if len(every) != kf.get("readings_txs") or txs_root(list(every)).hex() != kf.get("readings_txs_root"):
        out.append("the listed readings txs do not hash to the report's readings-txs root")
    return out


def compare(model: dict[str, Any], inv: dict[str, Any]) -> list[str]:
    """Differences between a report's key figures and those of an inventory computed now (empty: they match)."""
    want, got = model["key_figures"], key_figures(inv)
    out = check_txs(model)
    for k in (
        "energy_wh",
        "heat_wh",
        "green_wh",
        "co2_location_ug",
        "co2_market_ug",
        "activity_source",
        "aggregates_root",
        "readings_txs",
        "readings_txs_root",
        "factor_sets",
    ):
        if want.get(k) != got.get(k):
            out.append(f"{k}: report {want.get(k)}, chain {got.get(k)}")
    for h in sorted(set(want["devices"]) | set(got["devices"])):
        a, b = want["devices"].get(h), got["devices"].get(h)
        if a != b:
            out.append(f"device {h}: report {a}, chain {b}")
    disp = {
        "energy_mwh": mwh_str(got["energy_wh"]),
        "heat_gj": gj_str(got["heat_wh"]),
        "co2_location_t": fmt_t(got["co2_location_ug"]),
        "co2_market_t": fmt_t(got["co2_market_ug"]),
    }
    for k, v in disp.items():
        if model["display"].get(k) != v:
            out.append(f"printed {k}: report {model['display'].get(k)}, chain {v}")
    return out


# --- the report kind ------------------------------------------------------------------------------------------------


def payload_of(model: dict[str, Any]) -> ReportPayload:
    kf = model["key_figures"]
    return ReportPayload(
        ShortStr(model["site"]["site_id"]),
        ShortStr(model["period"]["label"]),
        Hash32(bytes.fromhex(report_sha256(model))),
        Hash32(bytes.fromhex(model["inventory_sha256"])),
        Height(int(model["as_of"]["height"])),
        int(kf["energy_wh"]),
        int(kf["heat_wh"]),
        int(kf["co2_location_ug"]) // 10**6,
        int(kf["co2_market_ug"]) // 10**6,
        Hash32(bytes.fromhex(kf["aggregates_root"])),
        Hash32(bytes.fromhex(kf["readings_txs_root"])),
    )


def carbon_value(p: ReportPayload, tx_hash: bytes) -> dict[str, Any]:
    """The JSON object stored as CEMP.CARBON (strings and integers only)."""
    return {
        "period": p.period,
        "site": p.site_id,
        "co2e_g": p.co2_location_g,
        "co2e_market_g": p.co2_market_g,
        "energy_wh": p.energy_wh,
        "heat_wh": p.heat_wh,
        "method": "location",
        "report": p.report_sha256.hex(),
        "inventory": p.inventory_sha256.hex(),
        "as_of_height": int(p.as_of_height),
        "tx": tx_hash.hex(),
    }


def load_report(view: Reader, report_sha256_hex: str) -> ReportRecord | None:
    raw = view.get(schema.report(bytes.fromhex(report_sha256_hex)))
    return None if raw is None else codec.decode(ReportRecord, raw)


def report_json(r: ReportRecord) -> dict[str, Any]:
    return {
        **carbon_value(r.payload, r.tx_hash),
        "org": r.org,
        "height": r.height,
        "time_ms": r.time_ms,
        "aggregates_root": r.payload.aggregates_root.hex(),
        "readings_txs_root": r.payload.readings_txs_root.hex(),
    }


class ReportKind(SiteRecordKind):
    """``report``: anchors an issued report's hash and key figures; sets CEMP.CARBON on the building handle."""

    name = "report"
    what = "a report"
    payload_type = ReportPayload
    records_in_admit = True  # a second tx issuing the same report is refused from the mempool on

    def check_payload(self, view: StateView, env: Env, tx: Tx, p: ReportPayload) -> None:
        if not 0 < p.as_of_height < env.height:
            raise CempError(
                Code.INVALID_PAYLOAD,
                f"as_of_height {p.as_of_height} must be a committed height below {env.height}",
            )
        for name in ("energy_wh", "heat_wh", "co2_location_g", "co2_market_g"):
            if not 0 <= getattr(p, name) < 2**62:
                raise CempError(Code.INVALID_PAYLOAD, f"{name} must be a non-negative integer below 2^62")
        if view.get(schema.report(p.report_sha256)) is not None:
            raise CempError(Code.ALREADY_EXISTS, f"report {p.report_sha256.hex()} is already issued")

    def handle_value(self, p: ReportPayload, env: Env) -> Any:
        return idis.string_value(
            idis.CARBON_INDEX, idis.CARBON, json.dumps(carbon_value(p, env.tx_hash), sort_keys=True)
        )

    def records(self, p: ReportPayload, org: str, env: Env) -> dict[bytes, bytes]:
        rec = ReportRecord(p, ShortStr(org), env.tx_hash, env.height, env.time_ms)
        return {
            schema.report(p.report_sha256): codec.encode(rec),
            schema.site_report(p.site_id, p.period, p.report_sha256): b"",
        }

    def describe(self, p: ReportPayload) -> dict[str, Any]:
        return {
            **carbon_value(p, b""),
            "aggregates_root": p.aggregates_root.hex(),
            "readings_txs_root": p.readings_txs_root.hex(),
        }


def list_reports(view: Any, site_id: str | None, limit: int = 500) -> list[ReportRecord]:
    from node.store import prefix_stop

    p = schema.site_report_prefix(site_id)
    out = []
    for k, _ in view.iterate(p, prefix_stop(p), reverse=True, limit=limit):
        r = load_report(view, k[-32:].hex())
        if r is not None:
            out.append(r)
    return out
