"""A leader's block proposal that a later leader overwrote must not stop that node from cutting blocks again.

Found by the big-block cluster test on a loaded machine: under leader churn, a node proposed a block at log index
i, lost leadership, the next leader's NOOP took index i, and when the node led again it never cut another block
(``staged`` was cleared only by a NORMAL entry, and only the stuck node would have proposed one); its txs stayed
"pending" for ever, on every node.
"""

from __future__ import annotations

import time
from typing import Any, cast

from cemp import wiring
from consensus.messages import Entry, EntryKind, Index, Term
from node.chain import Ledger
from node.driver import ConsensusDriver, _Staged
from node.mempool import Mempool
from node.store import MemoryStore
from node.types import Hash32
from tests.support.testing import TestConsortium


async def test_a_proposal_overwritten_by_a_noop_is_settled_and_its_txs_wait_again() -> None:
    c = TestConsortium.create(n_nodes=3)
    nid = str(c.genesis.nodes[0].node_id)
    ledger = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    mempool = Mempool(ledger)
    driver = ConsensusDriver(nid, c.node_keys[nid], ledger, mempool, {})
    _, raw = c.register_device("88.123.45/101.1.1")
    d = ledger.decode_tx(raw)
    ledger.check_signature(d)
    mempool.admit(d, int(time.time() * 1000))
    batch = mempool.take(10)
    assert [x.hash for x in batch] == [d.hash] and len(mempool) == 0
    # This node, as leader, proposed a block with the tx at index 2 ...
    dummy = cast(Any, None)
    driver.staged = _Staged(2, Hash32(b"\x01" * 32), dummy, dummy, batch)
    # ... and a later leader's NOOP is what got committed at index 2.
    await driver._apply_entry(Entry(Term(3), Index(2), EntryKind.NOOP))
    assert driver.staged is None, "a settled proposal still blocks block cutting"
    assert d.hash in mempool.pending and not mempool.inflight, "the tx of the lost block must wait again"


async def test_only_an_entry_at_or_past_the_proposal_settles_it() -> None:
    c = TestConsortium.create(n_nodes=3)
    nid = str(c.genesis.nodes[0].node_id)
    ledger = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    mempool = Mempool(ledger)
    driver = ConsensusDriver(nid, c.node_keys[nid], ledger, mempool, {})
    dummy = cast(Any, None)
    driver.staged = _Staged(2, Hash32(b"\x01" * 32), dummy, dummy, [])
    await driver._apply_entry(Entry(Term(3), Index(1), EntryKind.NOOP))
    assert driver.staged is not None, "an entry before the proposal's index does not settle it"
    await driver._apply_entry(Entry(Term(3), Index(3), EntryKind.NOOP))
    assert driver.staged is None
