"""The corruption sweep: copies of a stopped node's files (a real cluster run), one change each, every one checked.

Changes: bit flips at seeded positions spread over every kind of file (LevelDB tables, write-ahead log, MANIFEST,
CURRENT, LevelDB's info LOG, the high-water mark, the genesis; the Raft log lives inside LevelDB's files), a
truncation of every file at seeded lengths (more for the write-ahead log), and the deletion of every file.
Each copy is verified (in process; a few also by the real ``cemp verify`` command) and classified:

- ``reported``: verify fails, with one line naming what and where;
- ``warning``: verify passes but warns about what changed;
- ``no effect``: verify's whole result (height, head hash, app hash, counts, warnings) equals the unmodified
  copy's: the change hit bytes nothing reads (LevelDB's info LOG, which it only writes; LOCK; block padding) or
  bytes LevelDB reads but cannot act on (it drops a bloom filter block that fails its checksum);
- ``UNDETECTED``: verify passes with a result that differs from the unmodified copy's;
- ``traceback``: an exception escaped, or verify fell back to its internal-error line.

The test requires 0 undetected and 0 tracebacks; ``no effect`` is allowed only for the file kinds above.
``CEMP_SWEEP_FLIPS`` sets the number of flips (default 520); run with ``-s`` to see the table.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cemp import wiring
from node.verify import INTERNAL, VerifyReport, verify_data_dir
from tests.integrity.conftest import NodeFiles
from tests.integrity.leveldb_files import file_kind

pytestmark = pytest.mark.slow

FLIPS = int(os.environ.get("CEMP_SWEEP_FLIPS", "520"))
SEED = int(os.environ.get("CEMP_SWEEP_SEED", "20261205"))
NO_EFFECT_OK = {"info LOG", "LOCK", "table .ldb", "write-ahead .log", "MANIFEST"}
"""Kinds where a flip can miss every byte LevelDB acts on: the info LOG and LOCK (never read), a table's bloom filter
block (dropped when its CRC fails), and the zero padding at the end of a 32 KiB block of a log-format file (the
write-ahead log, MANIFEST), which the reader skips. Even there, "no effect" needs verify's whole result to equal the
unmodified copy's."""
CEMP = str(Path(sys.executable).with_name("cemp"))


@dataclass(frozen=True)
class Change:
    what: str  # flip / truncate / delete
    rel: str  # file, relative to the node's root
    arg: int = 0  # flip: byte offset * 8 + bit; truncate: new length

    def apply(self, root: Path) -> None:
        p = root / self.rel
        if self.what == "delete":
            p.unlink()
        elif self.what == "truncate":
            with open(p, "r+b") as f:
                f.truncate(self.arg)
        else:
            data = bytearray(p.read_bytes())
            data[self.arg // 8] ^= 1 << (self.arg % 8)
            p.write_bytes(bytes(data))


NOT_CHAIN = {"access.secret"}
"""Files of a node that hold no chain data, so verify does not read them: the sign-in token secret (``access.tokens``;
a damaged or missing one is replaced at start and only ends sign-in sessions, ``tests/access/test_reads.py``)."""


def files_of(node: NodeFiles) -> list[str]:
    out = [
        str(p.relative_to(node.root))
        for p in sorted(node.data_dir.rglob("*"))
        if p.is_file() and p.name not in NOT_CHAIN
    ]
    return [*out, node.genesis.name]


def plan(node: NodeFiles) -> list[Change]:
    rng = random.Random(SEED)
    files = files_of(node)
    sizes = {f: (node.root / f).stat().st_size for f in files}
    by_kind: dict[str, list[str]] = {}
    for f in files:
        if sizes[f] > 0:
            by_kind.setdefault(file_kind(Path(f).name), []).append(f)
    kinds = sorted(by_kind)
    changes = []
    for i in range(FLIPS):
        f = rng.choice(by_kind[kinds[i % len(kinds)]])
        changes.append(Change("flip", f, rng.randrange(sizes[f] * 8)))
    for f in files:
        if sizes[f] == 0:
            continue
        n = 12 if f.endswith(".log") else 3
        for cut in sorted({0, *(rng.randrange(sizes[f]) for _ in range(n - 1))}):
            changes.append(Change("truncate", f, cut))
    changes += [Change("delete", f) for f in files]
    return changes


def fingerprint(rep: VerifyReport) -> tuple[object, ...]:
    return (
        rep.ok,
        rep.height,
        rep.head_hash,
        rep.app_hash,
        rep.blocks,
        rep.txs,
        rep.state_keys,
        rep.raft_entries,
        tuple(rep.warnings),
    )


def classify(rep: VerifyReport, base: tuple[object, ...]) -> str:
    if rep.problem.startswith(INTERNAL):
        return "traceback"
    if not rep.ok:
        return "reported"
    if fingerprint(rep) == base:
        return "no effect"
    if rep.warnings and (rep.height, rep.head_hash, rep.app_hash) == base[1:4]:
        return "warning"
    return "UNDETECTED"


OUTCOMES = ("reported", "warning", "no effect", "UNDETECTED", "traceback")


def table(counts: Counter[tuple[str, str, str]]) -> str:
    rows = sorted({(k, w) for k, w, _ in counts})
    head = f"{'file kind':<18} {'change':<9}" + "".join(f"{o:>11}" for o in OUTCOMES) + f"{'total':>8}"
    lines = [head, "-" * len(head)]
    for k, w in rows:
        n = [counts[(k, w, o)] for o in OUTCOMES]
        lines.append(f"{k:<18} {w:<9}" + "".join(f"{x:>11}" for x in n) + f"{sum(n):>8}")
    tot = [sum(v for (_, _, o), v in counts.items() if o == oc) for oc in OUTCOMES]
    lines.append(f"{'all':<18} {'':<9}" + "".join(f"{x:>11}" for x in tot) + f"{sum(tot):>8}")
    return "\n".join(lines)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """Where the copies go: memory-backed when the machine has it (LevelDB's recovery on each open syncs files,
    and hundreds of opens would otherwise wait on the disk), else the test's temporary directory."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="cemp-sweep-", dir=shm))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def test_corruption_sweep(stopped_node: NodeFiles, scratch: Path) -> None:
    tmp_path = scratch
    pristine = stopped_node.copy(tmp_path / "pristine")
    base_rep = verify_data_dir(pristine.data_dir, wiring.kinds(), workers=0, genesis_file=pristine.genesis)
    assert base_rep.ok, base_rep.problem
    base = fingerprint(base_rep)
    changes = plan(stopped_node)
    assert sum(c.what == "flip" for c in changes) >= min(FLIPS, 500)
    counts: Counter[tuple[str, str, str]] = Counter()
    bad: list[str] = []
    by_process: list[tuple[Change, VerifyReport]] = []
    for i, ch in enumerate(changes):
        copy = stopped_node.copy(tmp_path / f"c{i}")
        ch.apply(copy.root)
        try:
            rep = verify_data_dir(copy.data_dir, wiring.kinds(), workers=0, genesis_file=copy.genesis)
            outcome = classify(rep, base)
        except Exception as e:
            outcome, rep = "traceback", VerifyReport(False, 0, problem=f"{type(e).__name__}: {e}")
        kind = file_kind(Path(ch.rel).name)
        counts[(kind, ch.what, outcome)] += 1
        if outcome in ("UNDETECTED", "traceback") or (outcome == "no effect" and kind not in NO_EFFECT_OK):
            bad.append(f"{ch} -> {outcome}: {rep.problem or rep.warnings}")
        if outcome == "reported" and "\n" in rep.problem:
            bad.append(f"{ch}: the problem is not one line: {rep.problem!r}")
        if i % (len(changes) // 6) == 3:
            by_process.append((ch, rep))
        shutil.rmtree(copy.root)
    print(
        f"\ncorruption sweep: {len(changes)} changes (seed {SEED}), each on its own copy of a stopped node's files"
    )
    print(table(counts))
    # A few as the real command: same verdict, one JSON line, no traceback.
    for j, (ch, rep) in enumerate(by_process):
        node = stopped_node.copy(tmp_path / f"p{j}")
        ch.apply(node.root)
        proc = subprocess.run(
            [CEMP, "verify", "--data-dir", str(node.data_dir), "--quiet", "--genesis", str(node.genesis)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in proc.stderr, (ch, proc.stderr)
        doc = json.loads(proc.stdout.strip())
        assert proc.returncode == (0 if rep.ok else 1) and doc["ok"] == rep.ok, (ch, doc, rep)
    assert not bad, "\n".join(bad[:30])
