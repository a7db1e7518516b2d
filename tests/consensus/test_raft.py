"""Unit tests of the Raft state machine's API and driver contract (consensus.raft)."""

from __future__ import annotations

import ast
import dataclasses
import random
from pathlib import Path

import pytest

import consensus
from consensus import messages
from consensus.messages import (
    AppendEntries,
    ConfigChange,
    ConfigChangeOp,
    Entry,
    EntryKind,
    HardState,
    Index,
    Membership,
    NodeId,
    RequestVote,
    Snapshot,
    SnapshotMeta,
    Term,
    genesis_snapshot,
)
from consensus.raft import NotLeader, ProposalDropped, Raft, RaftConfig, Role
from tests.consensus.transcript import Env

ONE = NodeId("1")


def single(seed: int = 0, **kw: object) -> Raft:
    return Raft(RaftConfig(ONE, **kw), random.Random(seed), snapshot=genesis_snapshot(Membership((ONE,))))  # type: ignore[arg-type]


def cluster(n: int = 3) -> Env:
    env = Env()
    env.run(f"add-nodes {n}")
    env.run("campaign 1")
    env.run("stabilize quiet")
    return env


def test_single_voter_elects_itself_and_commits_at_once() -> None:
    r = single()
    r.campaign()
    assert r.role == Role.LEADER and r.term == 1
    rd = r.ready()
    assert rd is not None and rd.must_sync
    assert [e.kind for e in rd.entries] == [EntryKind.NOOP]
    # The leader's own entries may be handed out for applying in the same Ready that persists them.
    assert rd.committed_entries == rd.entries
    assert rd.hard_state == HardState(Term(1), ONE, Index(1))
    r.advance(rd)
    index = r.propose(b"tx")
    rd = r.ready()
    assert rd is not None and index == 2
    assert [e.data for e in rd.committed_entries] == [b"tx"]
    r.advance(rd)
    assert r.ready() is None and not r.has_ready()


def test_ready_advance_pairing_is_enforced() -> None:
    r = single()
    r.campaign()
    rd = r.ready()
    assert rd is not None
    with pytest.raises(RuntimeError):
        r.ready()
    r.advance(rd)
    with pytest.raises(RuntimeError):
        r.advance(rd)


def test_steps_between_ready_and_advance_show_up_in_the_next_ready() -> None:
    r = single()
    r.campaign()
    rd1 = r.ready()
    assert rd1 is not None
    r.propose(b"during")  # the driver is still persisting rd1
    r.advance(rd1)
    rd2 = r.ready()
    assert rd2 is not None
    assert [e.data for e in rd2.entries] == [b"during"]
    assert [e.data for e in rd2.committed_entries] == [b"during"]


def test_commit_only_change_needs_no_fsync() -> None:
    env = cluster()
    env.run("propose 1 x")
    env.run("process-ready 1")
    env.run("deliver-msgs 2")
    env.run("process-ready 2")
    env.run("deliver-msgs 1")  # commit advances on the leader: only the commit index changed
    rd = env.raft("1").ready()
    assert rd is not None and rd.hard_state is not None and not rd.entries
    assert not rd.must_sync


def test_followers_refuse_proposals_and_name_the_leader() -> None:
    env = cluster()
    with pytest.raises(NotLeader) as err:
        env.raft("2").propose(b"x")
    assert err.value.leader == "1"


def test_only_one_config_change_at_a_time() -> None:
    r = cluster().raft("1")
    r.propose_config(ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId("4")))
    with pytest.raises(ProposalDropped):
        r.propose_config(ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId("5")))
    # In a one-voter cluster a change commits as it is appended, so the next one is accepted at once.
    one = single()
    one.campaign()
    one.propose_config(ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId("2")))
    one.propose_config(ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId("3")))
    assert one.membership.learners == ("2", "3")


def test_new_leader_refuses_config_change_until_its_noop_commits() -> None:
    env = Env()
    env.run("add-nodes 3")
    env.run("campaign 1")
    for _ in range(2):  # pre-vote, then vote: leader with its no-op appended but not replicated
        env.run("process-ready 1")
        env.run("deliver-msgs 2 3")
        env.run("process-ready 2 3")
        env.run("deliver-msgs 1")
    r = env.raft("1")
    assert r.role == Role.LEADER and r.log.committed == 0
    with pytest.raises(ProposalDropped):
        r.propose_config(ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId("4")))
    env.run("stabilize quiet")
    assert r.log.committed == 1
    r.propose_config(ConfigChange(ConfigChangeOp.ADD_LEARNER, NodeId("4")))
    assert r.membership.learners == ("4",)  # in force on append, before it commits


def test_election_timeout_is_randomized_within_one_to_two_election_ticks() -> None:
    seen = set()
    members = Membership.of([ONE, NodeId("2"), NodeId("3")])
    for seed in range(60):
        r = Raft(
            RaftConfig(ONE, election_ticks=10, pre_vote=False),
            random.Random(seed),
            snapshot=genesis_snapshot(members),
        )
        ticks = 0
        while r.role == Role.FOLLOWER:
            r.tick()
            ticks += 1
        assert 10 <= ticks < 20
        seen.add(ticks)
    assert len(seen) >= 5


def test_same_seed_same_behaviour() -> None:
    def run(seed: int) -> list[str]:
        members = Membership.of([ONE, NodeId("2"), NodeId("3")])
        r = Raft(RaftConfig(ONE), random.Random(seed), snapshot=genesis_snapshot(members))
        out: list[str] = []
        for t in range(60):
            r.tick()
            rd = r.ready()
            if rd is not None:
                out.extend(f"t={t} {m!r}" for m in rd.messages)
                r.advance(rd)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_restart_restores_term_vote_log_and_redelivers_unapplied_commits() -> None:
    members = Membership.of([ONE, NodeId("2"), NodeId("3")])
    entries = [Entry(Term(1), Index(1), EntryKind.NOOP), Entry(Term(2), Index(2), EntryKind.NORMAL, b"a")]
    r = Raft(
        RaftConfig(ONE),
        random.Random(1),
        snapshot=genesis_snapshot(members),
        hard_state=HardState(Term(3), NodeId("2"), Index(2)),
        entries=entries,
        applied=Index(1),
    )
    assert (r.term, r.vote, r.role, r.log.last_index) == (3, "2", Role.FOLLOWER, 2)
    rd = r.ready()
    assert rd is not None and rd.hard_state is None and rd.entries == ()
    assert rd.committed_entries == (entries[1],)


def test_restart_with_the_app_behind_the_stored_snapshot_replays_it() -> None:
    """The driver persisted a snapshot and crashed before restoring its application from it."""
    members = Membership.of([ONE, NodeId("2"), NodeId("3")])
    snap = Snapshot(SnapshotMeta(Index(5), Term(2), members), b"state@5")
    entries = [
        Entry(Term(2), Index(6), EntryKind.NORMAL, b"f"),
        Entry(Term(2), Index(7), EntryKind.NORMAL, b"g"),
    ]
    r = Raft(
        RaftConfig(ONE),
        random.Random(1),
        snapshot=snap,
        hard_state=HardState(Term(2), None, Index(6)),
        entries=entries,
        applied=Index(3),
    )
    rd = r.ready()
    assert rd is not None
    assert rd.snapshot == snap and rd.entries == tuple(
        entries
    )  # rewritten whole: the snapshot replaces the log
    assert rd.committed_entries == (entries[0],)
    r.advance(rd)
    assert (r.log.applied, r.log.stable_index, r.log.unstable_snapshot()) == (6, 7, None)
    assert r.ready() is None


@pytest.mark.parametrize(
    ("hs", "applied"),
    [
        (HardState(Term(1), None, Index(5)), None),  # commit beyond the stored log
        (HardState(Term(0), None, Index(0)), None),  # term below the last entry's term
        (HardState(Term(1), None, Index(1)), Index(2)),  # applied beyond commit
    ],
)
def test_restart_rejects_inconsistent_storage(hs: HardState, applied: Index | None) -> None:
    members = Membership.of([ONE])
    with pytest.raises(ValueError):
        Raft(
            RaftConfig(ONE),
            random.Random(1),
            snapshot=genesis_snapshot(members),
            hard_state=hs,
            entries=[Entry(Term(1), Index(1), EntryKind.NOOP), Entry(Term(1), Index(2), EntryKind.NOOP)],
            applied=applied,
        )


def test_message_for_another_node_is_refused() -> None:
    r = single()
    with pytest.raises(ValueError):
        r.step(RequestVote(Term(1), NodeId("2"), NodeId("3"), Index(0), Term(0)))


def test_a_second_leader_in_one_term_is_detected() -> None:
    r = single()
    r.campaign()
    with pytest.raises(AssertionError):
        r.step(AppendEntries(Term(1), NodeId("2"), ONE, Index(0), Term(0), (), Index(0)))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        RaftConfig(ONE, election_ticks=2, heartbeat_ticks=2)
    with pytest.raises(ValueError):
        RaftConfig(ONE, max_entries_per_msg=0)


def test_wire_types_are_frozen_slotted_dataclasses() -> None:
    classes = [
        getattr(messages, name)
        for name in messages.__all__
        if isinstance(getattr(messages, name), type) and dataclasses.is_dataclass(getattr(messages, name))
    ]
    assert len(classes) >= 13
    for cls in classes:
        params = cls.__dataclass_params__
        assert params.frozen, cls
        assert "__slots__" in cls.__dict__, cls
        for f in dataclasses.fields(cls):
            assert f.name != "type", cls


ALLOWED_IMPORTS = {"__future__", "enum", "random", "dataclasses", "typing", "collections.abc", "consensus"}


@pytest.mark.parametrize("path", sorted(Path(consensus.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_consensus_is_pure(path: Path) -> None:
    """No I/O, no clock, no threads, no node.*: only the standard modules above and consensus itself."""
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} needs a module docstring"
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] in {n.split(".")[0] for n in ALLOWED_IMPORTS}, (path.name, name)
            assert name != "collections" or (
                isinstance(node, ast.ImportFrom) and node.module == "collections.abc"
            )
        # randomness only through an injected random.Random: no module-level random functions
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            assert node.attr == "Random", (path.name, node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Random":
            pytest.fail(f"{path.name} constructs its own Random")


def test_follower_restored_from_an_old_backup_is_sent_the_entries_again() -> None:
    """A follower whose log regressed (its data directory restored from a backup) answers appends with a
    rejection at an index the leader already counts as matched; the leader probes from the end of what the
    follower now holds instead of ignoring it as stale."""
    import copy

    env = cluster()
    env.run("propose 1 a")
    env.run("stabilize quiet")
    backup = copy.deepcopy((env.nodes["3"].storage, env.nodes["3"].app))
    for p in ("b", "c", "d"):
        env.run(f"propose 1 {p}")
    env.run("stabilize quiet")
    leader = env.raft("1")
    assert env.nodes["3"].app.applied == leader.log.last_index
    env.run("crash 3")
    n = env.nodes["3"]
    n.storage, n.app = backup
    env.run("restart 3")
    assert env.nodes["3"].app.applied < leader.log.last_index
    env.run("propose 1 e")
    env.run("stabilize quiet")
    assert env.nodes["3"].app.applied == leader.log.last_index
    assert env.nodes["3"].app.digest == env.nodes["2"].app.digest
