"""OCR field accuracy on generated bills: ``python -m collector.ocr.accuracy --seeds 10``.

Generates bills with ``billgen`` (whose printed fields are the ground truth), reads them back with
``bills.read_bill`` and counts, per field, the bills on which it was read exactly right, and the wrong fields that
were not flagged for review (the number that must stay at zero). Kept apart from ``bills`` so the reader does not
depend on the generator.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.ocr import billgen
from collector.ocr.billgen import BillFields, Variant
from collector.ocr.bills import CORE_FIELDS, EXTRA_FIELDS, BillExtraction, read_bill
from collector.ocr.engine import OcrEngine, default_engine


def field_matches(extraction: BillExtraction, truth: BillFields, name: str) -> bool:
    """Whether one field was read (not derived) and equals the printed ground truth."""
    fv = getattr(extraction, name)
    if fv.source not in ("ocr", "confirmed"):
        return False
    got = fv.value
    want = getattr(truth, name)
    if name == "tariff":
        return got is not None and tuple(
            (ln.segment, ln.energy_wh, ln.price_uyuan_per_kwh) for ln in got
        ) == tuple((ln.segment, ln.energy_wh, ln.price_uyuan_per_kwh) for ln in want)
    return bool(got == want)


@dataclass(frozen=True, slots=True)
class AccuracyReport:
    variant: str
    bills: int
    correct: dict[str, int]
    """Per field: bills on which it was extracted exactly right."""
    core_min: int
    """The worst bill's count of correct CORE_FIELDS (out of 9)."""
    silent_errors: int
    """Wrong fields that were *not* flagged for review: the number that must stay at zero."""
    flagged_bills: int
    seconds: float


def measure_accuracy(
    n_seeds: int,
    variants: Sequence[Variant] = ("clean", "photo", "small"),
    *,
    engine: OcrEngine | None = None,
    first_seed: int = 0,
    out: Callable[[str], None] | None = print,
) -> list[AccuracyReport]:
    """OCR ``n_seeds`` generated bills per variant and count exact field matches; prints a table."""
    eng = engine or default_engine()
    names = CORE_FIELDS + EXTRA_FIELDS
    reports = []
    for variant in variants:
        correct = dict.fromkeys(names, 0)
        core_min = len(CORE_FIELDS)
        silent = flagged = 0
        t0 = time.perf_counter()
        for seed in range(first_seed, first_seed + n_seeds):
            bill = billgen.generate(seed, variant)
            x = read_bill(bill.image, engine=eng)
            core_ok = 0
            for name in names:
                ok = field_matches(x, bill.fields, name)
                correct[name] += ok
                core_ok += ok and name in CORE_FIELDS
                if not ok and not getattr(x, name).needs_review:
                    silent += 1
            core_min = min(core_min, core_ok)
            flagged += x.needs_review
        report = AccuracyReport(
            variant, n_seeds, correct, core_min, silent, flagged, round(time.perf_counter() - t0, 2)
        )
        reports.append(report)
        if out is not None:
            cells = " ".join(f"{name}={correct[name]}/{n_seeds}" for name in names)
            out(
                f"{variant:6} {cells} | worst bill core {core_min}/9 | flagged bills {flagged} | "
                f"silent errors {silent} | {report.seconds / n_seeds:.2f} s/bill"
            )
    return reports


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OCR field accuracy on generated bills")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    reports = measure_accuracy(args.seeds, engine=OcrEngine(threads=args.threads), first_seed=args.first_seed)
    summary = {
        r.variant: {
            "bills": r.bills,
            "core_field_accuracy": round(
                sum(r.correct[n] for n in CORE_FIELDS) / (r.bills * len(CORE_FIELDS)), 4
            ),
            "all_field_accuracy": round(sum(r.correct.values()) / (r.bills * len(r.correct)), 4),
            "worst_bill_core": r.core_min,
            "silent_errors": r.silent_errors,
            "flagged_bills": r.flagged_bills,
            "s_per_bill": round(r.seconds / r.bills, 3),
        }
        for r in reports
    }
    print(json.dumps({"bench": "ocr_bill_accuracy", "seeds": args.seeds, "variants": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
