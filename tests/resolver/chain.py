"""A ledger driven block by block in-process (no HTTP), for tx-kind tests; optionally with follower ledgers."""

from __future__ import annotations

import os
import time

from cemp import wiring
from node.chain import Ledger, header_hash, sign_tx
from node.crypto import KeyPair
from node.store import MemoryStore
from node.types import TxResult
from resolver.bootstrap import bootstrap_puts
from resolver.credentials import sign_challenge
from resolver.handles import node_tag
from resolver.kinds import Authority
from tests.support.testing import TestConsortium

SECRET = b"8fJ2kL5mN0pQ3rS6tU9vW1xY4zA7bC0d"


class Chain:
    def __init__(self, n_nodes: int = 3, followers: int = 0) -> None:
        self.c = TestConsortium.create(n_nodes=n_nodes)
        self.store = MemoryStore()
        self.led = Ledger(self.store, self.c.genesis, wiring.kinds())
        self.followers = [Ledger(MemoryStore(), self.c.genesis, wiring.kinds()) for _ in range(followers)]
        """Ledgers of other nodes: each applies every block the way a follower does (``apply_block``), which
        refuses a block whose results or state differ from the proposer's."""
        self.nid = self.c.genesis.nodes[0].node_id
        self.nonces: dict[bytes, int] = {}
        self.identity_key = KeyPair.generate()
        self.time_ms = int(time.time() * 1000)

    def block(self, *raws: bytes, time_ms: int | None = None) -> list[TxResult]:
        led = self.led
        t = time_ms if time_ms is not None else max(int(time.time() * 1000), led.last_time_ms + 1)
        staged = led.execute(
            tuple(raws), time_ms=t, proposer=self.nid, term=0, last_commit=led.cert(led.height)
        )
        block = led.sign_block(staged, self.c.node_keys[self.nid])
        h = header_hash(block.header)
        votes = tuple(led.vote(h, n, k) for n, k in self.c.node_keys.items())
        led.commit(block, staged, votes)
        for f in self.followers:
            f.apply_block(block, votes)
        return staged.results

    def signed(self, key: KeyPair, kind: str, payload: object) -> bytes:
        n = self.nonces.get(key.public, 0) + 1
        self.nonces[key.public] = n
        raw, _ = sign_tx(key, self.c.chain, kind, n, payload)
        return raw

    def admin(self, org: str, kind: str, payload: object) -> bytes:
        return self.c.admin_tx(org, kind, payload)

    def node(self, node_id: str, kind: str, payload: object) -> bytes:
        return self.signed(self.c.node_keys[node_id], kind, payload)

    def bootstrap(self) -> None:
        puts = bootstrap_puts("88.123.45", self.c.admins["owner"].public, SECRET, self.identity_key.public)
        res = self.block(*(self.admin("owner", "handle.put", p) for p in puts))
        assert all(r.code == 0 for r in res), res

    def session_authority(
        self, node_id: str, expiry_ms: int | None = None, key: KeyPair | None = None
    ) -> Authority:
        exp = expiry_ms if expiry_ms is not None else int(time.time() * 1000) + 600_000
        nonce = exp.to_bytes(8, "big") + node_tag(self.c.node_keys[node_id].public) + os.urandom(16)
        cnonce = os.urandom(16)
        sig = sign_challenge(key or self.identity_key, nonce, cnonce)
        return Authority("session", "88.123.45/admin", 301, nonce, cnonce, sig)  # type: ignore[arg-type]
