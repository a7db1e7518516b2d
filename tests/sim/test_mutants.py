"""The whole-node simulator catches the bugs it exists to catch: each mutant breaks one durability or
certificate rule of a real node, and the simulator must report it within a bounded number of seeds, with a replay
command, and the failure must replay exactly.

- ``skip-fsync``: the Raft store writes hard state and entries without syncing them; a power failure then loses
  a vote or an acknowledged entry (two leaders in a term, or two blocks at a height);
- ``apply-before-persist``: the driver sends a Ready's messages and applies its committed blocks before it
  persists the Ready's entries and hard state, so acks and votes promise state that a power failure takes back;
- ``stale-certificate``: the leader signs a block whose commit certificate holds votes on an older block when the
  parent's votes are not in yet, and the ledger accepts votes on any recent block (the independent certificate
  check sees it).

The first two are caught at once by the check that acks and votes are durable when sent; ``skip-fsync`` is also
shown caught end to end with that check off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from consensus.messages import Entry, HardState, Snapshot
from consensus.raft import Ready
from node.chain import ChainError, Ledger, header_hash, quorum
from node.crypto import verify
from node.driver import ConsensusDriver
from node.raftstore import RaftStore
from node.types import DOMAIN_VOTE, CommitSig
from tests.sim.world import SimFailure, World, replay, run_seed

_save = RaftStore.save


def save_without_fsync(
    self: RaftStore, hs: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None
) -> None:
    real = self.store.write
    self.store.write = lambda changes, *, sync: real(changes, sync=False)  # type: ignore[method-assign]
    try:
        _save(self, hs, entries, snapshot)
    finally:
        del self.store.write  # type: ignore[method-assign]


async def apply_before_persist(self: ConsensusDriver, rd: Ready) -> None:
    for m in rd.messages:
        self.transport.send(m.to, m)
    if rd.committed_entries:
        self.apply_q.extend(rd.committed_entries)
        self.apply_idle.clear()
        self.apply_wake.set()
        await self._drain_applies()
    if rd.snapshot is not None:
        await self._restore(rd.snapshot)
        self.app_applied = max(self.app_applied, int(rd.snapshot.meta.index))
    if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
        self.raftstore.save(rd.hard_state, rd.entries, rd.snapshot)
    self.raft.advance(rd)
    if rd.soft_state is not None:
        self._on_soft_state(rd.soft_state.leader)
    await self._maybe_compact()


def cert_from_any_recent_quorum(self: ConsensusDriver) -> tuple[CommitSig, ...] | None:
    led = self.ledger
    if led.height == 0:
        return ()
    need = quorum(len(led.active))
    for (height, _), got in sorted(self.votes.items(), reverse=True):
        members = [s for n, s in got.items() if n in led.active]
        if height <= led.height and len(members) >= need:
            return tuple(sorted(members, key=lambda s: s.node_id))[:need]
    return None


def check_commit_on_any_recent_block(
    self: Ledger, block_hash: bytes, sigs: tuple[CommitSig, ...], what: str
) -> None:
    recent = {bytes(block_hash)}
    for h in range(max(1, self.height - 3), self.height + 1):
        b = self.block(h)
        if b is not None:
            recent.add(bytes(header_hash(b.header)))
    good = {
        s.node_id
        for s in sigs
        if s.node_id in self.active
        and any(verify(self.nodes[s.node_id].pubkey, DOMAIN_VOTE, bh, s.signature) for bh in recent)
    }
    if len(good) < quorum(len(self.active)):
        raise ChainError(f"{what}: {len(good)} votes, a majority needs {quorum(len(self.active))}")


MUTANTS: dict[str, tuple[list[tuple[object, str, Callable[..., Any]]], int]] = {
    "skip-fsync": ([(RaftStore, "save", save_without_fsync)], 300),
    "apply-before-persist": ([(ConsensusDriver, "_handle_ready", apply_before_persist)], 300),
    "stale-certificate": (
        [
            (ConsensusDriver, "_cert_for_head", cert_from_any_recent_quorum),
            (Ledger, "check_commit", check_commit_on_any_recent_block),
        ],
        50,
    ),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_simulator_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    patches, budget = MUTANTS[name]
    for owner, attr, broken in patches:
        monkeypatch.setattr(owner, attr, broken)
    caught_within(name, budget)


def test_lost_fsync_is_caught_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the check that acks are durable when sent, the consequence of a skipped fsync is still found: a
    power failure takes back entries a follower acknowledged, the leader never resends them, and the cluster does
    not converge (or two blocks meet at a height)."""
    monkeypatch.setattr(RaftStore, "save", save_without_fsync)
    monkeypatch.setattr(World, "check_durable_sends", False)
    caught_within("skip-fsync (end to end)", 60)


def caught_within(name: str, budget: int) -> None:
    for seed in range(budget):
        try:
            run_seed(seed)
        except SimFailure as failure:
            text = str(failure)
            assert f"python -m tests.sim {seed}" in text and "nemesis schedule" in text
            with pytest.raises(SimFailure) as again:
                replay(seed)
            assert str(again.value) == text  # the failure replays exactly
            print(f"mutant {name}: caught by seed {seed}: {text.splitlines()[0]}")
            return
    pytest.fail(f"mutant {name} survived {budget} seeds")
