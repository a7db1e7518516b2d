"""Cost of one read decision (``access.reads.AccessGate.decide``) when the data's org holds N grants to the
viewer's org, none of which covers the device asked for (the worst case: every grant is looked at).

``python bench/access_gate.py [--runs 2000]``; the last line is one JSON object: p50/p99 in ms per N.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from access.model import DataPolicyRecord, GrantPayload, GrantRecord
from access.reads import AccessGate, Viewer
from node import codec, schema
from node.store import MemoryStore
from node.types import Handle, Hash32, Height, ShortStr, Text, TimestampMs
from tests.support.testing import TestConsortium


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    c = TestConsortium.create()
    out: dict[str, float] = {}
    for n in (0, 64, 1024):
        st = MemoryStore()
        pol = DataPolicyRecord(ShortStr("equipment"), (ShortStr("readings"),), (), Height(1))
        w = {
            schema.META_GENESIS: codec.encode(c.genesis),
            schema.META_HEIGHT: (5).to_bytes(8, "big"),
            schema.data_policy("equipment"): codec.encode(pol),
        }
        for i in range(n):
            p = GrantPayload(
                ShortStr(f"g{i:04d}"),
                ShortStr("owner"),
                None,
                (ShortStr("readings"),),
                (Handle(f"88.123.46/9.{i}"),),
                (),
                TimestampMs(2_000_000_000_000),
                Text(""),
            )
            rec = GrantRecord(
                ShortStr("equipment"),
                p,
                Height(2),
                TimestampMs(1),
                Hash32(b"\0" * 32),
                Height(0),
                TimestampMs(0),
            )
            w[schema.grant("equipment", p.grant_id)] = codec.encode(rec)
        st.write(w, sync=False)  # type: ignore[arg-type]
        gate = AccessGate(st, c.genesis, "owner-1", b"k" * 32)
        v = Viewer(b"\1" * 32, "owner", "bench", ("auditor",))
        ts = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            refused = gate.decide(v, "equipment", "readings", "88.123.46/201.1.1")
            ts.append(time.perf_counter() - t0)
            assert refused is not None
        ts.sort()
        out[f"grants{n}_p50_ms"] = round(statistics.median(ts) * 1e3, 4)
        out[f"grants{n}_p99_ms"] = round(ts[int(len(ts) * 0.99)] * 1e3, 4)
        print(
            f"{n} grants: p50 {out[f'grants{n}_p50_ms']} ms, p99 {out[f'grants{n}_p99_ms']} ms",
            file=sys.stderr,
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
