"""Node key rotation on the apply path (``node.keyrotation``): who may rotate, when it counts, and that from the
effective height a follower takes blocks and votes signed with the new key only (and before it, the old only)."""

from __future__ import annotations

from cemp import wiring
from node.chain import ChainError, Ledger, header_hash, sign_tx
from node.crypto import KeyPair
from node.keyrotation import DOMAIN_KEY_POSSESSION, NodeKeyRotation, claim_message
from node.store import MemoryStore
from node.types import Block, Height, PublicKey, ShortStr
from node.verify import verify_store
from tests.support.testing import GENESIS_TIME_MS, TestConsortium

T0 = GENESIS_TIME_MS + 3_600_000


def produce(led: Ledger, proposer: str, raws: list[bytes], block_key: KeyPair, vote_key: KeyPair) -> Block:
    staged = led.execute(
        tuple(raws),
        time_ms=T0 + 1000 * (led.height + 1),
        proposer=proposer,
        term=0,
        last_commit=led.cert(led.height) if led.height else (),
    )
    block = led.sign_block(staged, block_key)
    led.commit(block, staged, (led.vote(header_hash(block.header), proposer, vote_key),))
    return block


def rotation(
    c: TestConsortium,
    nid: str,
    sender: KeyPair,
    nonce: int,
    new: KeyPair,
    at: int,
    signer: KeyPair | None = None,
) -> bytes:
    pos = (signer or new).sign(
        DOMAIN_KEY_POSSESSION, claim_message(c.chain.genesis_hash, nid, new.public, at)
    )
    raw, _ = sign_tx(
        sender,
        c.chain,
        "node.key_rotate",
        nonce,
        NodeKeyRotation(ShortStr(nid), PublicKey(new.public), Height(at), pos),
    )
    return raw


def test_rotation_switches_blocks_and_votes_at_the_effective_height() -> None:
    c = TestConsortium.create()
    nid = str(c.genesis.nodes[0].node_id)
    old, new = c.node_keys[nid], KeyPair.generate()
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    follower = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    b1 = produce(led, nid, [rotation(c, nid, old, 1, new, 3)], old, old)
    assert led.results(1)[0].code == 0, led.results(1)
    assert led.node_key(nid, 2) == old.public and led.node_key(nid, 3) == new.public
    follower.apply_block(b1)
    assert follower.node_key(nid, 3) == new.public  # every node learns the same switch from the same block

    # block 2 signed with the new key, before it counts: refused
    probe = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    probe.apply_block(b1)
    bad2 = produce(probe, nid, [], new, new)
    try:
        follower.apply_block(bad2)
        raise AssertionError("a block signed with the new key before the effective height was taken")
    except ChainError as e:
        assert "proposer signature" in str(e)
    b2 = produce(led, nid, [], old, old)
    follower.apply_block(b2)

    # block 3 (the effective height) signed with the old key: refused; with the new one: taken
    fork = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    for b in (b1, b2):
        fork.apply_block(b)
    stale = produce(fork, nid, [], old, old)
    try:
        follower.apply_block(stale)
        raise AssertionError("a block signed with the old key at the effective height was taken")
    except ChainError as e:
        assert "proposer signature" in str(e)
    b3 = produce(led, nid, [], new, new)
    follower.apply_block(b3)
    h3 = header_hash(b3.header)
    try:  # a vote on block 3 by the old key does not count
        follower.check_commit(h3, (follower.vote(h3, nid, old),), "block 3 votes", height=3)
        raise AssertionError("a vote on block 3 by the old key was counted")
    except ChainError as e:
        assert "vote of node" in str(e)
    follower.check_commit(h3, (follower.vote(h3, nid, new),), "block 3 votes", height=3)
    b2_hash = header_hash(b2.header)  # and on block 2 the old key still counts, the new one does not
    follower.check_commit(b2_hash, (follower.vote(b2_hash, nid, old),), "block 2 votes", height=2)
    try:
        follower.check_commit(b2_hash, (follower.vote(b2_hash, nid, new),), "block 2 votes", height=2)
        raise AssertionError("a vote on block 2 by the new key was counted")
    except ChainError as e:
        assert "vote of node" in str(e)

    # the same chain with every signature right: replayed and verified from the genesis alone
    good = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    g1 = produce(good, nid, [rotation(c, nid, old, 1, new, 3)], old, old)
    g2 = produce(good, nid, [], old, old)
    g3 = produce(good, nid, [], new, new)
    g4 = produce(good, nid, [], new, new)
    replica = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    for b in (g1, g2, g3, g4):
        replica.apply_block(b)
    assert replica.app_hash == good.app_hash
    rep = verify_store(good.store, wiring.kinds())
    assert rep.ok, rep.problem


def test_who_may_rotate_and_when() -> None:
    c = TestConsortium.create(3)
    nid = "owner-1"
    old = c.node_keys[nid]
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    other = c.node_keys["equipment-1"]
    new = KeyPair.generate()
    nonces: dict[bytes, int] = {}

    def nonce(k: KeyPair) -> int:
        nonces[k.public] = nonces.get(k.public, 0) + 1  # a refused tx with a good signature uses its nonce
        return nonces[k.public]

    cases = [
        (
            lambda h: rotation(c, nid, other, nonce(other), new, h + 4),
            "sent by its current key or by org owner",
        ),
        (
            lambda h: rotation(c, nid, c.admins["equipment"], nonce(c.admins["equipment"]), new, h + 4),
            "org owner",
        ),
        (lambda h: rotation(c, nid, old, nonce(old), new, h + 1), "must be 2 to"),  # committed in h: too soon
        (lambda h: rotation(c, nid, old, nonce(old), new, h + 4, KeyPair.generate()), "proof of possession"),
        (lambda h: rotation(c, nid, old, nonce(old), other, h + 4), "belongs to node equipment-1"),
        (lambda h: rotation(c, nid, old, nonce(old), old, h + 4), "used this key before"),
        (lambda h: rotation(c, "nobody", old, nonce(old), new, h + 4), "not a member"),
    ]
    for make, says in cases:
        produce(led, nid, [make(led.height + 1)], old, old)
        r = led.results(led.height)[0]
        assert r.code != 0 and says in r.reason, (says, r)
    # the org admin may rotate (a lost node key); a second rotation waits for the first to take effect
    admin_raw = rotation(c, nid, c.admins["owner"], nonce(c.admins["owner"]), new, led.height + 5)
    produce(led, nid, [admin_raw], old, old)
    assert led.results(led.height)[0].code == 0, led.results(led.height)
    again = rotation(c, nid, old, nonce(old), KeyPair.generate(), led.height + 5)
    produce(led, nid, [again], old, old)
    r = led.results(led.height)[0]
    assert r.code != 0 and "pending" in r.reason, r
