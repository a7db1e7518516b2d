"""Majority arithmetic over a membership, and the single-node membership transitions.

Invariants kept:
- only voters count: learners and non-members never contribute to a commit index, an election or a
  check-quorum, whatever the caller passes in;
- ``apply_change`` changes the role of exactly one node, so any majority of the old voters and any majority
  of the new voters intersect (the single-server change rule of the Raft thesis §4.1); it rejects a change
  that would leave no voter;
- node ids are never reused. ``apply_change`` can only see the current membership, so it cannot tell a fresh
  id from one removed long ago; the membership layer above consensus (the on-chain node registry) must
  refuse a removed id.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from consensus.messages import ConfigChange, ConfigChangeOp, Index, Membership, NodeId


class InvalidConfigChange(ValueError):
    """The change does not apply to the current membership."""


def majority(voters: int) -> int:
    """Smallest number of voters that forms a quorum (1 of 1, 2 of 3, 3 of 4, 3 of 5)."""
    return voters // 2 + 1


def committed_index(membership: Membership, match: Mapping[NodeId, Index]) -> Index:
    """The largest index that a majority of voters has (voters missing from ``match`` count as 0)."""
    if not membership.voters:
        return Index(0)
    acked = sorted((match.get(v, Index(0)) for v in membership.voters), reverse=True)
    return acked[majority(len(acked)) - 1]


class VoteResult(enum.Enum):
    WON = "won"
    LOST = "lost"
    PENDING = "pending"


def vote_result(membership: Membership, votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON once a majority of voters granted, LOST once a majority can no longer be reached."""
    need = majority(len(membership.voters))
    granted = sum(1 for v in membership.voters if votes.get(v) is True)
    rejected = sum(1 for v in membership.voters if votes.get(v) is False)
    if membership.voters and granted >= need:
        return VoteResult.WON
    if len(membership.voters) - rejected < need or not membership.voters:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(membership: Membership, active: Collection[NodeId]) -> bool:
    """Whether the voters in ``active`` form a majority."""
    if not membership.voters:
        return False
    return sum(1 for v in membership.voters if v in active) >= majority(len(membership.voters))


def apply_change(membership: Membership, change: ConfigChange) -> Membership:
    """The membership after ``change``; raises InvalidConfigChange if it does not apply."""
    voters = set(membership.voters)
    learners = set(membership.learners)
    node = change.node
    match change.op:
        case ConfigChangeOp.ADD_VOTER:
            if node in voters or node in learners:
                raise InvalidConfigChange(f"{node} is already a member")
            voters.add(node)
        case ConfigChangeOp.ADD_LEARNER:
            if node in voters or node in learners:
                raise InvalidConfigChange(f"{node} is already a member")
            learners.add(node)
        case ConfigChangeOp.PROMOTE_LEARNER:
            if node not in learners:
                raise InvalidConfigChange(f"{node} is not a learner")
            learners.remove(node)
            voters.add(node)
        case ConfigChangeOp.REMOVE_NODE:
            if node not in voters and node not in learners:
                raise InvalidConfigChange(f"{node} is not a member")
            voters.discard(node)
            learners.discard(node)
            if not voters:
                raise InvalidConfigChange(f"removing {node} would leave no voter")
    return Membership.of(voters, learners)
