"""From a detector's ``Finding`` (``energy.detect``) to an alarm ``raise``: what was expected, what happened, since
when, and which committed txs show it, in the bounded texts the chain takes.

Evidence: a finding names readings by tx hash (hex) when its caller knew them, else ``<device>#<seq>``; only tx
hashes can be evidence on chain, so the others are counted in the observed text. The episode's identity is the
finding's (device, kind, since), with the quantity the caller analysed.
"""

from __future__ import annotations

import re

from energy.detect import Finding
from maintenance.alarms import make_raise
from maintenance.model import MAX_EVIDENCE, AlarmPayload

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _num(v: float) -> str:
    return f"{v:,.1f}" if abs(v) < 1e6 else f"{v:,.0f}"


def expected_text(f: Finding) -> str:
    e = f.expected
    if e is not None and f.kind.value in ("silent", "gap") and e.unit == "s":
        return f"a reading every {e.value:g} s, never more than {e.high:g} s apart"
    if e is None:
        return f"normal behaviour: {f.message.split(':', 1)[0]} reporting within the expected interval"
    if e.high == float("inf"):
        return f"at least {_num(e.low)} {e.unit} (the last plausible value)"
    if e.low == e.high == e.value:
        return f"{_num(e.value)} {e.unit}"
    return f"{_num(e.value)} {e.unit} (band {_num(e.low)}–{_num(e.high)} {e.unit})"


def observed_text(f: Finding, dropped: int) -> str:
    obs = "no readings" if f.observed is None else f"{_num(f.observed)} {f.unit}"
    if f.kind.value in ("silent", "gap") and f.observed is not None and f.unit == "s":
        obs = f"no reading for {_num(f.observed)} s"
    n = f.evidence_count
    more = [f"{n} reading{'s' if n != 1 else ''} show{'' if n != 1 else 's'} it"]
    if dropped:
        more.append(f"{dropped} of the listed ones are not yet matched to txs")
    if f.ongoing:
        more.append("still going on")
    return f"{obs} ({'; '.join(more)})"


def evidence_hashes(f: Finding) -> tuple[tuple[bytes, ...], int]:
    hashes: list[bytes] = []
    dropped = 0
    for ref in f.evidence:
        if _HEX64.fullmatch(ref):
            h = bytes.fromhex(ref)
            if h not in hashes:
                hashes.append(h)
        else:
            dropped += 1
    return tuple(hashes[:MAX_EVIDENCE]), dropped


def raise_from_finding(f: Finding, quantity: str = "energy.import") -> AlarmPayload:
    ev, dropped = evidence_hashes(f)
    return make_raise(
        f.device,
        f.kind.value,
        f.since_ms,
        expected_text(f),
        observed_text(f, dropped),
        f.message,
        quantity=quantity,
        severity=f.severity or _severity(f),
        evidence=ev,
        source="energy.detect",
        message_zh=f.message_zh,
    )


def _severity(f: Finding) -> str:
    from energy.detect import SEVERITY

    return SEVERITY[f.kind]
