"""Unit tests for the in-memory Raft log (consensus.log)."""

from __future__ import annotations

import pytest

from consensus.log import Log, LogSafetyError
from consensus.messages import (
    ConfigChange,
    ConfigChangeOp,
    Entry,
    EntryKind,
    Index,
    Membership,
    NodeId,
    Snapshot,
    SnapshotMeta,
    Term,
    genesis_snapshot,
)

GENESIS = genesis_snapshot(Membership.of([NodeId("a"), NodeId("b"), NodeId("c")]))


def e(term: int, index: int, data: bytes = b"x") -> Entry:
    return Entry(Term(term), Index(index), EntryKind.NORMAL, data)


def conf(term: int, index: int, op: ConfigChangeOp, node: str) -> Entry:
    return Entry(Term(term), Index(index), EntryKind.CONFIG, ConfigChange(op, NodeId(node)).encode())


def log_of(*terms: int) -> Log:
    return Log(GENESIS, [e(t, i + 1) for i, t in enumerate(terms)])


def test_restored_log_is_stable_and_bounded() -> None:
    log = log_of(1, 1, 2)
    assert (log.first_index, log.last_index, log.last_term) == (1, 3, 2)
    assert log.term_at(0) == 0 and log.term_at(3) == 2 and log.term_at(4) is None
    assert log.unstable_entries() == () and log.unstable_snapshot() is None
    assert log.slice(2, 4) == (e(1, 2), e(2, 3))
    with pytest.raises(IndexError):
        log.slice(0, 2)
    with pytest.raises(IndexError):
        log.slice(2, 5)


def test_entries_must_be_contiguous_with_nondecreasing_terms() -> None:
    with pytest.raises(ValueError):
        Log(GENESIS, [e(1, 2)])
    with pytest.raises(ValueError):
        Log(GENESIS, [e(2, 1), e(1, 2)])


def test_try_append_checks_prev_and_truncates_only_conflicts() -> None:
    log = log_of(1, 1, 1, 1)
    assert log.try_append(Index(5), Term(1), [e(1, 6)]) is None  # gap
    assert log.try_append(Index(4), Term(2), [e(2, 5)]) is None  # term mismatch at prev
    # A stale, shorter message that agrees with the log changes nothing (and vouches for 3 only).
    assert log.try_append(Index(1), Term(1), [e(1, 2), e(1, 3)]) == 3
    assert log.last_index == 4 and log.unstable_entries() == ()
    # A conflict at 3 replaces the suffix from 3 on.
    assert log.try_append(Index(2), Term(1), [e(1, 3), e(2, 4, b"new"), e(2, 5)]) == 5
    assert [x.term for x in log.all_entries()] == [1, 1, 1, 2, 2]
    assert log.entry(4).data == b"new"
    assert log.stable_index == 3
    assert log.unstable_entries() == (e(2, 4, b"new"), e(2, 5))


def test_committed_entries_are_never_truncated() -> None:
    log = log_of(1, 1, 1)
    log.commit_to(Index(2))
    with pytest.raises(LogSafetyError):
        log.try_append(Index(1), Term(1), [e(2, 2)])
    with pytest.raises(LogSafetyError):
        log.commit_to(Index(9))
    log.commit_to(Index(1))  # never lowers
    assert log.committed == 2


def test_stable_to_ignores_entries_replaced_meanwhile() -> None:
    log = log_of(1)
    log.append([e(1, 2), e(1, 3)])
    handed_out = log.unstable_entries()
    log.try_append(Index(1), Term(1), [e(2, 2)])  # replaced before the driver reported back
    log.stable_to(handed_out[-1].index, handed_out[-1].term)
    assert log.stable_index == 1
    assert log.unstable_entries() == (e(2, 2),)
    log.stable_to(Index(2), Term(2))
    assert log.unstable_entries() == ()


def test_find_conflict_by_term() -> None:
    log = log_of(1, 1, 3, 3, 5)
    assert log.find_conflict_by_term(Index(5), Term(4)) == (4, 3)
    assert log.find_conflict_by_term(Index(5), Term(2)) == (2, 1)
    assert log.find_conflict_by_term(Index(9), Term(9)) == (5, 5)  # clipped to the last index
    assert log.find_conflict_by_term(Index(5), Term(0)) == (0, 0)  # down to the snapshot base


def test_is_up_to_date_compares_last_term_then_length() -> None:
    log = log_of(1, 2)
    assert log.is_up_to_date(Index(1), Term(3))
    assert log.is_up_to_date(Index(2), Term(2))
    assert not log.is_up_to_date(Index(1), Term(2))
    assert not log.is_up_to_date(Index(9), Term(1))


def test_membership_follows_config_entries_including_truncation() -> None:
    log = log_of(1)
    log.append([conf(1, 2, ConfigChangeOp.ADD_LEARNER, "d")])
    assert log.membership.learners == ("d",)
    log.append([conf(1, 3, ConfigChangeOp.PROMOTE_LEARNER, "d"), e(1, 4)])
    assert log.membership.voters == ("a", "b", "c", "d")
    assert log.membership_at(2).learners == ("d",) and log.last_config_index == 3
    log.try_append(Index(2), Term(1), [e(2, 3)])  # the promotion is overwritten: back to learner
    assert log.membership.learners == ("d",) and log.last_config_index == 2
    log.try_append(Index(1), Term(1), [e(2, 2)])
    assert log.membership == GENESIS.meta.membership and log.last_config_index == 0


def test_compact_keeps_the_suffix_and_the_membership() -> None:
    log = log_of(1)
    log.append([conf(1, 2, ConfigChangeOp.ADD_LEARNER, "d"), e(1, 3), e(2, 4)])
    log.stable_to(Index(4), Term(2))
    log.commit_to(Index(4))
    with pytest.raises(ValueError):
        log.compact(Index(3), b"s")  # not applied yet
    log.applied_to(Index(3))
    snap = log.compact(Index(3), b"s")
    abc = [NodeId("a"), NodeId("b"), NodeId("c")]
    assert snap.meta == SnapshotMeta(Index(3), Term(1), Membership.of(abc, [NodeId("d")]))
    assert (log.first_index, log.last_index, log.term_at(3), log.term_at(2)) == (4, 4, 1, None)
    assert log.membership.learners == ("d",)
    with pytest.raises(ValueError):
        log.compact(Index(3), b"s")  # nothing new to compact


def test_restore_replaces_everything_and_is_unstable_until_persisted() -> None:
    log = log_of(1, 1)
    log.commit_to(Index(1))
    snap = Snapshot(SnapshotMeta(Index(7), Term(3), Membership.of([NodeId("x")])), b"app")
    log.restore(snap)
    assert (log.last_index, log.last_term, log.committed, log.membership.voters) == (7, 3, 7, ("x",))
    assert log.unstable_snapshot() == snap and log.unstable_entries() == ()
    assert log.to_apply() == ()
    log.stable_snapshot_to(Index(7))
    assert log.unstable_snapshot() is None
    with pytest.raises(LogSafetyError):
        log.restore(Snapshot(SnapshotMeta(Index(5), Term(3), Membership.of([NodeId("x")]))))


def test_to_apply_hands_out_committed_entries_in_order() -> None:
    log = log_of(1, 1, 1)
    assert log.to_apply() == ()
    log.commit_to(Index(2))
    assert [x.index for x in log.to_apply()] == [1, 2]
    log.applied_to(Index(2))
    assert log.to_apply() == ()
    with pytest.raises(LogSafetyError):
        log.applied_to(Index(3))
