"""Catch-up stops at the halt height (``node.catchup``): a node configured for a coordinated upgrade that is
behind a compacted Raft log fetches and applies blocks up to ``halt_height`` and no further, installs no state
snapshot above it, and does not record the snapshot's Raft index as applied; without the halt it goes all the way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cemp import wiring
from consensus.messages import Index, Membership, Snapshot, SnapshotMeta, Term
from node import codec
from node.catchup import CatchUp, FetchError, StateSnapshot
from node.chain import Ledger, header_hash
from node.raftstore import RAFT_APPLIED, SnapshotRef
from node.seams import SystemClock
from node.store import MemoryStore
from node.types import Block, Hash32, Height
from tests.support.testing import GENESIS_TIME_MS, TestConsortium


class LedgerFetcher:
    """A peer that is one ledger in memory; counts what it was asked for."""

    def __init__(self, led: Ledger) -> None:
        self.led = led
        self.asked: list[int] = []
        self.state_asked = 0

    def peers(self) -> list[str]:
        return ["peer"]

    async def block_raw(self, peer: str, ref: int | bytes) -> bytes | None:
        assert isinstance(ref, int)
        self.asked.append(ref)
        return self.led.block_raw(ref) if 0 < ref <= self.led.height else None

    async def state(self, peer: str, min_height: int) -> StateSnapshot:
        self.state_asked += 1
        raise FetchError("not offered in this test")

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def _direct(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _source(c: TestConsortium, n: int) -> Ledger:
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    nid = str(c.genesis.nodes[0].node_id)
    key = c.node_keys[nid]
    for h in range(1, n + 1):
        _, reg = c.register_device(f"88.123.45/9.{h}")
        staged = led.execute(
            (reg,),
            time_ms=GENESIS_TIME_MS + 1000 * h,
            proposer=nid,
            term=1,
            last_commit=led.cert(led.height) if led.height else (),
        )
        block = led.sign_block(staged, key)
        led.commit(block, staged, (led.vote(header_hash(block.header), nid, key),))
    return led


def _snapshot(src: Ledger, index: int) -> Snapshot:
    ref = SnapshotRef(Height(src.height), Hash32(src.last_hash))
    return Snapshot(SnapshotMeta(Index(index), Term(1), Membership(("owner-1",))), codec.encode(ref))


@pytest.mark.parametrize("mode", ["blocks", "state"])
def test_catch_up_stops_at_the_halt_height(mode: str) -> None:
    c = TestConsortium.create(1)
    src = _source(c, 10)
    fetcher = LedgerFetcher(src)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    applied: list[int] = []
    cu = CatchUp(
        "owner-1",
        led,
        fetcher,
        SystemClock(),
        _direct,
        mode=mode,
        on_block=lambda b: applied.append(int(b.header.height)),
        halt_height=4,
    )
    done = asyncio.run(cu.restore(_snapshot(src, 12)))
    assert done is False and led.height == 4 and applied == [1, 2, 3, 4]
    assert max(fetcher.asked) == 4  # nothing above the halt was even fetched
    assert fetcher.state_asked == 0  # a state snapshot above the halt is not installed
    assert (
        led.store.get(RAFT_APPLIED) is None
    )  # the snapshot's index is not applied: the next release goes on
    assert asyncio.run(cu.fetch_next()) is False  # fetching ahead stops there too
    assert led.height == 4

    # the next release, started without the halt, catches up the rest from where this one stopped
    nxt = CatchUp("owner-1", led, fetcher, SystemClock(), _direct, mode="blocks")
    assert asyncio.run(nxt.restore(_snapshot(src, 12))) is True
    assert led.height == 10 and led.app_hash == src.app_hash
    assert led.store.get(RAFT_APPLIED) == (12).to_bytes(8, "big")


def test_a_snapshot_below_the_halt_is_reached() -> None:
    c = TestConsortium.create(1)
    src = _source(c, 3)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    cu = CatchUp("owner-1", led, LedgerFetcher(src), SystemClock(), _direct, halt_height=4)
    assert asyncio.run(cu.restore(_snapshot(src, 5))) is True
    assert led.height == 3 and isinstance(led.block(3), Block)
