"""Runs every transcript under testdata/ and diffs its output; ``CEMP_REWRITE=1`` regenerates the outputs.

Invariant: a transcript passes only if every command's output is byte-for-byte what the file says.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.consensus.transcript import rewrite_requested, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path) -> None:
    expected, actual = run_file(path)
    if rewrite_requested():
        path.write_text(actual)
        return
    if actual != expected:
        diff = "\n".join(
            difflib.unified_diff(expected.split("\n"), actual.split("\n"), "expected", "actual", lineterm="")
        )
        pytest.fail(f"{path.name} differs (CEMP_REWRITE=1 regenerates):\n{diff}")
