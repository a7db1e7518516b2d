"""Single-node block production: cut, execute, sign, commit, vote.

Cutting rule: a block is cut at once when no block was cut during the last ``block_interval_ms`` (so a lone
tx on an idle node is not kept waiting); otherwise when ``block_max_txs`` are pending or the interval since
the last cut has passed, whichever comes first. Execution and the synced write run in a worker thread so the
API keeps admitting txs meanwhile; this task is the only writer of the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from node.chain import DecodedTx, Ledger, header_hash
from node.crypto import KeyPair
from node.mempool import Mempool
from node.types import Block

log = logging.getLogger(__name__)


class BlockProducer:
    def __init__(
        self,
        ledger: Ledger,
        mempool: Mempool,
        node_id: str,
        key: KeyPair,
        *,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        on_block: Callable[[Block], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.mempool = mempool
        self.node_id = node_id
        self.key = key
        self.wall_ms = wall_ms
        self.on_block = on_block
        self.last_cut = 0.0
        self.blocks = 0

    def produce(self, batch: list[DecodedTx]) -> Block:
        """Execute ``batch`` on the head, sign, commit with this node's vote. Runs in a worker thread."""
        led = self.ledger
        last_commit = led.cert(led.height) if led.height > 0 else ()
        t = max(self.wall_ms(), led.last_time_ms + 1)
        staged = led.execute(
            tuple(d.raw for d in batch),
            time_ms=t,
            proposer=self.node_id,
            term=0,
            last_commit=last_commit,
            decoded=list(batch),
        )
        block = led.sign_block(staged, self.key)
        vote = led.vote(header_hash(block.header), self.node_id, self.key)
        led.commit(block, staged, (vote,))
        return block

    async def run(self) -> None:
        interval = self.ledger.params.block_interval_ms / 1000
        max_txs = self.ledger.params.block_max_txs
        mp = self.mempool
        while True:
            await mp.changed.wait()
            since = time.monotonic() - self.last_cut
            if since < interval and len(mp) < max_txs:
                await asyncio.sleep(interval - since)
            batch = mp.take(max_txs)
            if not batch:
                continue
            self.last_cut = time.monotonic()
            block = await asyncio.to_thread(self.produce, batch)
            self.blocks += 1
            mp.committed([d.hash for d in batch], block.header.height, self.wall_ms())
            if self.on_block is not None:
                self.on_block(block)
