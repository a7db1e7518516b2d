"""Carbon-efficiency code (碳效码): a grade 1-5 from K = intensity / benchmark intensity, and the ``rating`` kind.

The Zhejiang scheme: grade 1 for K <= 0.6, 2 for K <= 0.8, 3 for K <= 1.2, 4 for K <= 2.0, 5 above (lower is
better); thresholds are part of each rating, so a consortium can use another scheme. For a building, intensity is
kgCO2 per m² for the period and the benchmark is, by default, what a gas-fired boiler would emit per m² for the
same delivered heat (``benchmark="gas"``; ``coal`` or a fixed kgCO2/m² are the alternatives). Both K are stored:
location-based and market-based Scope 2.

The ``rating`` tx is signed by the admin key of the site's owner org or of the regulator. Checks (admission and
apply): the site exists, the period label parses for it, four ascending thresholds, and each grade is the grade
its K gives under them. Apply writes the rating record and sets ``CEMP.RATING`` (index 2101) on the site's
building handle through the resolver's record path, so resolving the building (or scanning its QR label) shows it.
"""

from __future__ import annotations

import io
import itertools
import json
from fractions import Fraction
from typing import Any

from accounting.baseline import BoilerParams
from accounting.model import RatingPayload, RatingRecord
from accounting.siterecord import SiteRecordKind
from accounting.sites import Reader
from node import codec, schema
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Env
from node.types import Hash32, ShortStr, Text, Tx
from resolver import idis

SCHEME = "cemp-k5-v1"
ZHEJIANG_THRESHOLDS_E3 = (600, 800, 1200, 2000)
BENCHMARKS = ("gas", "coal")


def grade(k_e6: int, thresholds_e3: tuple[int, ...]) -> int:
    for i, t in enumerate(thresholds_e3):
        if k_e6 <= t * 1000:
            return i + 1
    return len(thresholds_e3) + 1


def k_e6(actual: Fraction, benchmark: Fraction) -> int:
    """K × 10^6, rounded half-even (exact inputs, one rounding)."""
    if benchmark <= 0:
        raise CempError(
            Code.BAD_REQUEST, "the benchmark intensity is zero: no heat was delivered in the period"
        )
    return round(actual / benchmark * 10**6)


def compute_rating(
    inv: dict[str, Any],
    kpis: dict[str, Any],
    benchmark: str = "gas",
    thresholds_e3: tuple[int, ...] = ZHEJIANG_THRESHOLDS_E3,
    params: BoilerParams | None = None,
) -> dict[str, Any]:
    """K and grades of an inventory (``accounting.inventory.compute`` + ``finish``) and its KPIs."""
    tot = inv["site_total"]
    area = int(inv["site"]["floor_area_m2"])
    loc = Fraction(int(tot["co2_location_ug"]), 10**9) / area  # kg/m2
    mkt = Fraction(int(tot["co2_market_ug"]), 10**9) / area
    if benchmark in BENCHMARKS:
        b = kpis["_baseline"]
        bench = (b.coal_tco2 if benchmark == "coal" else b.gas_tco2) * 1000 / area
        what = f"{benchmark}-boiler baseline for the same heat, {float(bench):.3f} kgCO2/m2"
    else:
        try:
            bench = Fraction(benchmark)
        except (ValueError, ZeroDivisionError):
            raise CempError(
                Code.BAD_REQUEST, f"benchmark {benchmark!r}: use gas, coal or a kgCO2/m2 number"
            ) from None
        what = f"fixed benchmark {benchmark} kgCO2/m2"
    check_thresholds(thresholds_e3)
    kl, km = k_e6(loc, bench), k_e6(mkt, bench)
    return {
        "site_id": inv["site"]["site_id"],
        "period": inv["period"]["label"],
        "scheme": SCHEME,
        "thresholds_e3": list(thresholds_e3),
        "benchmark": what,
        "intensity_kgco2_per_m2": {"location": float(round(loc, 3)), "market": float(round(mkt, 3))},
        "benchmark_kgco2_per_m2": float(round(bench, 3)),
        "k_location_e6": kl,
        "k_market_e6": km,
        "k_location": f"{kl / 10**6:.3f}",
        "k_market": f"{km / 10**6:.3f}",
        "grade_location": grade(kl, thresholds_e3),
        "grade_market": grade(km, thresholds_e3),
        "inventory_sha256": inv["digest"],
    }


def payload_of(r: dict[str, Any]) -> RatingPayload:
    return RatingPayload(
        ShortStr(r["site_id"]),
        ShortStr(r["period"]),
        ShortStr(r["scheme"]),
        tuple(r["thresholds_e3"]),
        Text(r["benchmark"][:1024]),
        int(r["k_location_e6"]),
        int(r["k_market_e6"]),
        int(r["grade_location"]),
        int(r["grade_market"]),
        Hash32(bytes.fromhex(r["inventory_sha256"])),
    )


def check_thresholds(t: tuple[int, ...]) -> None:
    if len(t) != 4 or any(b <= a for a, b in itertools.pairwise(t)) or t[0] <= 0 or t[-1] > 10**6:
        raise CempError(
            Code.INVALID_PAYLOAD,
            "thresholds_e3 must be four ascending positive numbers, e.g. 600, 800, 1200, 2000",
        )


def load_rating(view: Reader, site_id: str, period: str) -> RatingRecord | None:
    raw = view.get(schema.rating(site_id, period))
    return None if raw is None else codec.decode(RatingRecord, raw)


def rating_value(p: RatingPayload, tx_hash: bytes) -> dict[str, Any]:
    """The JSON object stored as CEMP.RATING (strings and integers only)."""
    return {
        "grade": str(p.grade_location),
        "grade_market": str(p.grade_market),
        "scheme": p.scheme,
        "period": p.period,
        "site": p.site_id,
        "k_location": f"{p.k_location_e6 / 10**6:.3f}",
        "k_market": f"{p.k_market_e6 / 10**6:.3f}",
        "inventory": p.inventory_sha256.hex(),
        "tx": tx_hash.hex(),
    }


class RatingKind(SiteRecordKind):
    """``rating``: records a site's grade for a period; sets CEMP.RATING on the building handle."""

    name = "rating"
    what = "a rating"
    payload_type = RatingPayload

    def check_payload(self, view: StateView, env: Env, tx: Tx, p: RatingPayload) -> None:
        if not idis._NAME_RE.match(p.scheme):
            raise CempError(Code.INVALID_PAYLOAD, f"scheme {p.scheme!r} must be a short lower-case name")
        check_thresholds(p.thresholds_e3)
        if not 0 <= p.k_location_e6 <= 10**12 or not 0 <= p.k_market_e6 <= 10**12:
            raise CempError(Code.INVALID_PAYLOAD, "K values must be between 0 and 10^6")
        for what, k, g in (
            ("location", p.k_location_e6, p.grade_location),
            ("market", p.k_market_e6, p.grade_market),
        ):
            if grade(k, p.thresholds_e3) != g:
                raise CempError(
                    Code.INVALID_PAYLOAD,
                    f"grade_{what} {g} does not follow from K = {k / 10**6:.6f} under thresholds {p.thresholds_e3}",
                )

    def handle_value(self, p: RatingPayload, env: Env) -> Any:
        return idis.string_value(
            idis.RATING_INDEX, idis.RATING, json.dumps(rating_value(p, env.tx_hash), sort_keys=True)
        )

    def records(self, p: RatingPayload, org: str, env: Env) -> dict[bytes, bytes]:
        rec = RatingRecord(p, ShortStr(org), env.tx_hash, env.height, env.time_ms)
        return {schema.rating(p.site_id, p.period): codec.encode(rec)}

    def describe(self, p: RatingPayload) -> dict[str, Any]:
        return {**rating_value(p, b""), "thresholds_e3": list(p.thresholds_e3), "benchmark": p.benchmark}


def label(url: str, kind: str, title: str = "") -> bytes:
    """A QR label (``svg`` or ``png``) encoding ``url`` (the building handle's resolution address)."""
    import segno

    qr = segno.make(url, error="m")
    buf = io.BytesIO()
    if kind == "svg":
        qr.save(buf, kind="svg", scale=6, border=2, title=title or None)
    elif kind == "png":
        qr.save(buf, kind="png", scale=8, border=2)
    else:
        raise CempError(Code.BAD_REQUEST, f"label format {kind!r}: use svg or png")
    return buf.getvalue()


RATING_KIND = RatingKind()
