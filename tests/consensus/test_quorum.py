"""Unit tests for majority arithmetic and membership transitions (consensus.quorum, consensus.messages)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.messages import ConfigChange, ConfigChangeOp, Index, Membership, NodeId
from consensus.quorum import (
    InvalidConfigChange,
    VoteResult,
    apply_change,
    committed_index,
    has_quorum,
    majority,
    vote_result,
)

A, B, C, D, E = (NodeId(x) for x in "abcde")


def m(voters: str, learners: str = "") -> Membership:
    return Membership.of([NodeId(x) for x in voters], [NodeId(x) for x in learners])


@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_majority(n: int, q: int) -> None:
    assert majority(n) == q


def test_committed_index_is_the_majority_th_highest_match() -> None:
    three = m("abc")
    assert committed_index(three, {A: Index(5), B: Index(3), C: Index(1)}) == 3
    assert committed_index(three, {A: Index(5)}) == 0  # missing voters count as 0
    five = m("abcde")
    assert committed_index(five, {A: Index(9), B: Index(9), C: Index(2), D: Index(7), E: Index(1)}) == 7


def test_learners_and_strangers_never_count_towards_commit() -> None:
    mem = m("abc", "de")
    match = {A: Index(9), D: Index(9), E: Index(9), NodeId("zz"): Index(9)}
    assert committed_index(mem, match) == 0
    assert committed_index(mem, match | {B: Index(4)}) == 4


def test_vote_result() -> None:
    mem = m("abc", "d")
    assert vote_result(mem, {A: True}) is VoteResult.PENDING
    assert vote_result(mem, {A: True, B: True}) is VoteResult.WON
    assert vote_result(mem, {A: True, B: False}) is VoteResult.PENDING
    assert vote_result(mem, {A: True, B: False, C: False}) is VoteResult.LOST
    # a learner's vote does not count either way
    assert vote_result(mem, {A: True, D: True}) is VoteResult.PENDING
    even = m("abcd")
    assert vote_result(even, {A: True, B: True}) is VoteResult.PENDING
    assert vote_result(even, {A: True, B: False, C: False}) is VoteResult.LOST


def test_has_quorum() -> None:
    mem = m("abc", "d")
    assert has_quorum(mem, {A, B})
    assert not has_quorum(mem, {A, D})
    assert not has_quorum(m(""), {A})


def test_apply_change_each_op() -> None:
    base = m("abc")
    assert apply_change(base, ConfigChange(ConfigChangeOp.ADD_LEARNER, D)) == m("abc", "d")
    assert apply_change(base, ConfigChange(ConfigChangeOp.ADD_VOTER, D)) == m("abcd")
    assert apply_change(m("abc", "d"), ConfigChange(ConfigChangeOp.PROMOTE_LEARNER, D)) == m("abcd")
    assert apply_change(m("abc", "d"), ConfigChange(ConfigChangeOp.REMOVE_NODE, D)) == m("abc")
    assert apply_change(base, ConfigChange(ConfigChangeOp.REMOVE_NODE, A)) == m("bc")


@pytest.mark.parametrize(
    ("mem", "change"),
    [
        (m("abc"), ConfigChange(ConfigChangeOp.ADD_VOTER, A)),
        (m("abc", "d"), ConfigChange(ConfigChangeOp.ADD_LEARNER, D)),
        (m("abc"), ConfigChange(ConfigChangeOp.PROMOTE_LEARNER, A)),
        (m("abc"), ConfigChange(ConfigChangeOp.PROMOTE_LEARNER, D)),
        (m("abc"), ConfigChange(ConfigChangeOp.REMOVE_NODE, D)),
        (m("a", "b"), ConfigChange(ConfigChangeOp.REMOVE_NODE, A)),
    ],
)
def test_apply_change_rejects_invalid(mem: Membership, change: ConfigChange) -> None:
    with pytest.raises(InvalidConfigChange):
        apply_change(mem, change)


def test_membership_validation() -> None:
    with pytest.raises(ValueError):
        Membership((B, A))
    with pytest.raises(ValueError):
        Membership((A, A))
    with pytest.raises(ValueError):
        Membership((A,), (A,))
    assert D in m("abc", "d") and D not in m("abc")


@given(st.sampled_from(list(ConfigChangeOp)), st.text(min_size=1, max_size=40), st.binary(max_size=20))
def test_config_change_roundtrip(op: ConfigChangeOp, node: str, context: bytes) -> None:
    cc = ConfigChange(op, NodeId(node), context)
    if len(node.encode()) > 255:
        return
    assert ConfigChange.decode(cc.encode()) == cc


@pytest.mark.parametrize("raw", [b"", b"\x01", b"\x01\x00x", b"\x09\x01a", b"\x01\x05ab"])
def test_config_change_decode_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError):
        ConfigChange.decode(raw)


@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=7),
)
def test_committed_index_matches_a_direct_count(matches: list[int]) -> None:
    """The committed index is the largest i such that a strict majority of voters has match >= i."""
    voters = [NodeId(f"n{i}") for i in range(len(matches))]
    mem = Membership.of(voters)
    got = committed_index(mem, {v: Index(x) for v, x in zip(voters, matches, strict=True)})
    want = max(i for i in range(0, 51) if sum(1 for x in matches if x >= i) * 2 > len(matches))
    assert got == want
