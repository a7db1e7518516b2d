"""The checks can fail: known bugs injected into Raft (or into the driver) are caught.

Each mutant replaces one piece of ``consensus.raft.Raft`` (or of the test driver's storage) with a broken
copy. The simulator must report a violation within a bounded number of seeds, with the seed and schedule
in the message, and the failure must replay; the figure-8 transcript must notice the commitment bug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from consensus import quorum
from consensus.messages import Index, RequestVote, RequestVoteResponse
from consensus.raft import Raft, Ready, Role
from tests.consensus import harness
from tests.consensus.sim import SimFailure, replay, run_seed
from tests.consensus.transcript import run_file

TESTDATA = Path(__file__).parent / "testdata"


def vote_without_log_check(self: Raft, msg: RequestVote) -> None:
    """Grants votes to candidates with stale logs (breaks Leader Completeness, §5.4.1)."""
    can_vote = (
        self.vote == msg.from_
        or (self.vote is None and self.leader is None)
        or (msg.pre_vote and msg.term > self.term)
    )
    if can_vote:
        self._send(RequestVoteResponse(msg.term, self.id, msg.from_, True, msg.pre_vote))
        if not msg.pre_vote:
            self.vote = msg.from_
    else:
        self._send(RequestVoteResponse(self.term, self.id, msg.from_, False, msg.pre_vote))


def vote_twice(self: Raft, msg: RequestVote) -> None:
    """Forgets that it already voted in this term (breaks Election Safety)."""
    if self.log.is_up_to_date(msg.last_index, msg.last_term):
        self._send(RequestVoteResponse(msg.term, self.id, msg.from_, True, msg.pre_vote))
        if not msg.pre_vote:
            self.vote = msg.from_
    else:
        self._send(RequestVoteResponse(self.term, self.id, msg.from_, False, msg.pre_vote))


def commit_by_counting_old_terms(self: Raft) -> bool:
    """Commits entries of earlier terms by counting replicas (the Figure 8 bug)."""
    match = {n: p.match for n, p in self._progress.items()}
    match[self.id] = self.log.last_index
    n = quorum.committed_index(self.membership, match)
    if n <= self.log.committed:
        return False
    self.log.commit_to(n)
    return True


_original_handle_append = Raft._handle_append


def commit_beyond_verified(self: Raft, msg: object) -> None:
    """A follower trusts the leader's commit index beyond what the message proved it holds."""
    _original_handle_append(self, msg)  # type: ignore[arg-type]
    if self.role == Role.FOLLOWER and msg.commit > self.log.committed:  # type: ignore[attr-defined]
        self.log.commit_to(Index(min(msg.commit, self.log.last_index)))  # type: ignore[attr-defined]


def never_grant(self: Raft, msg: RequestVote) -> None:
    """Rejects every vote request: safe, but no leader is ever elected again (breaks liveness)."""
    self._send(RequestVoteResponse(self.term, self.id, msg.from_, False, msg.pre_vote))


_original_persist = harness.MemoryStorage.persist


def persist_without_vote(self: harness.MemoryStorage, rd: Ready) -> None:
    """Driver bug: writes term and commit but not the vote."""
    if rd.hard_state is not None:
        rd = replace(rd, hard_state=replace(rd.hard_state, vote=None))
    _original_persist(self, rd)


def persist_dropping_last_entry(self: harness.MemoryStorage, rd: Ready) -> None:
    """Driver bug: loses the last entry of a batch (as with a write that was not synced)."""
    if rd.entries and rd.hard_state is None:
        rd = replace(rd, entries=rd.entries[:-1])
    _original_persist(self, rd)


MUTANTS: dict[str, tuple[object, str, Callable[..., object], int]] = {
    "vote-without-log-check": (Raft, "_handle_vote_request", vote_without_log_check, 200),
    "vote-twice": (Raft, "_handle_vote_request", vote_twice, 200),
    "commit-beyond-verified": (Raft, "_handle_append", commit_beyond_verified, 200),
    "never-grant-votes": (Raft, "_handle_vote_request", never_grant, 50),
    "driver-forgets-vote": (harness.MemoryStorage, "persist", persist_without_vote, 400),
    "driver-loses-entry": (harness.MemoryStorage, "persist", persist_dropping_last_entry, 50),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_simulator_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, attr, broken, budget = MUTANTS[name]
    monkeypatch.setattr(owner, attr, broken)
    for seed in range(budget):
        try:
            run_seed(seed)
        except SimFailure as failure:
            text = str(failure)
            assert f"replay({seed})" in text and "nemesis schedule" in text
            with pytest.raises(SimFailure) as again:
                replay(seed)
            assert str(again.value) == text  # the failure replays exactly
            return
    pytest.fail(f"mutant {name} survived {budget} seeds")


def test_figure8_transcript_catches_commitment_by_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, actual = run_file(TESTDATA / "figure8.txt")
    assert actual == expected
    monkeypatch.setattr(Raft, "_maybe_commit", commit_by_counting_old_terms)
    try:
        expected, actual = run_file(TESTDATA / "figure8.txt")
    except AssertionError as e:  # the log refuses to truncate the wrongly committed entry
        assert "committed" in str(e)
        return
    assert actual != expected
