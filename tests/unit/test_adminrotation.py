"""Org admin key rotation on the apply path (``node.adminrotation``, ``node.adminkeys``): who may rotate, the proof
of possession bound to the genesis hash, the switch from the next block on every node alike, the old key refused
on admission and on apply (``KEY_RETIRED``, a tx of it still in a mempool too), keys never reused, the read gate and
the audit trail following it, and ``verify`` replaying it from the genesis."""

from __future__ import annotations

from access.audit import Filters, scan
from access.model import GrantPayload, PersonPut
from access.reads import AccessGate
from cemp import wiring
from node.adminrotation import DOMAIN_ADMIN_POSSESSION, OrgAdminRotation, admin_claim_message
from node.chain import Ledger, header_hash, sign_tx
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.membership import DOMAIN_MEMBERSHIP, Approval, MembershipChange, MembershipTx, approval_message
from node.mempool import Mempool
from node.state import StateView
from node.store import MemoryStore
from node.types import Block, DeviceRegistration, Handle, PublicKey, ShortStr, Text, TimestampMs
from node.verify import verify_store
from tests.support.testing import GENESIS_TIME_MS, TestConsortium

T0 = GENESIS_TIME_MS + 3_600_000


def produce(led: Ledger, c: TestConsortium, raws: list[bytes]) -> Block:
    nid = str(c.genesis.nodes[0].node_id)
    key = c.node_keys[nid]
    staged = led.execute(
        tuple(raws),
        time_ms=T0 + 1000 * (led.height + 1),
        proposer=nid,
        term=0,
        last_commit=led.cert(led.height) if led.height else (),
    )
    block = led.sign_block(staged, key)
    bh = header_hash(block.header)
    led.commit(block, staged, tuple(led.vote(bh, n, k) for n, k in sorted(c.node_keys.items())))
    return block


def tx(led: Ledger, key: KeyPair, c: TestConsortium, kind: str, payload: object) -> bytes:
    nonce = led.nonce_of(StateView(led.store), key.public) + 1
    raw, _ = sign_tx(key, c.chain, kind, nonce, payload)
    return raw


def rotation(
    c: TestConsortium,
    org: str,
    old: bytes,
    new: KeyPair,
    *,
    signer: KeyPair | None = None,
    gh: bytes | None = None,
) -> OrgAdminRotation:
    msg = admin_claim_message(gh if gh is not None else c.chain.genesis_hash, org, old, new.public)
    return OrgAdminRotation(
        ShortStr(org), PublicKey(new.public), (signer or new).sign(DOMAIN_ADMIN_POSSESSION, msg)
    )


def device(handle: str) -> DeviceRegistration:
    return DeviceRegistration(
        Handle(handle), PublicKey(KeyPair.generate().public), ShortStr("meter.energy"), ShortStr("core")
    )


def admit(led: Ledger, mp: Mempool, raw: bytes) -> CempError | None:
    d = led.decode_tx(raw)
    led.check_signature(d)
    try:
        mp.admit(d, T0 + 1000 * (led.height + 1))
    except CempError as e:
        return e
    return None


def test_rotation_switches_the_admin_key_from_the_next_block() -> None:
    c = TestConsortium.create(3)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    follower = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    old, new = c.admins["owner"], KeyPair.generate()

    # block 1: the rotation, then (same block) a device the old key registers: still the admin in block 1
    raws = [
        tx(led, old, c, "org.admin_rotate", rotation(c, "owner", old.public, new)),
    ]
    raws.append(sign_tx(old, c.chain, "device.register", 2, device("88.123.45/1.1"))[0])
    b1 = produce(led, c, raws)
    assert [r.code for r in led.results(1)] == [0, 0], led.results(1)
    follower.apply_block(b1)
    for lg in (led, follower):  # every node takes the same key from the same height
        assert lg.admin_keys(1).key_of("owner") == old.public
        assert lg.admin_keys(2).key_of("owner") == new.public
        assert lg.admin_keys(2).retired(old.public) is not None

    # mempool before block 2: the old key is refused with KEY_RETIRED, the new one admitted
    mp = Mempool(led)
    err = admit(led, mp, tx(led, old, c, "device.register", device("88.123.45/1.2")))
    assert err is not None and err.code == Code.KEY_RETIRED and "sign with it" in err.message, err
    assert admit(led, mp, tx(led, new, c, "device.register", device("88.123.45/1.3"))) is None

    # block 2: old key refused on apply (KEY_RETIRED), new key registers a device and a person; other orgs go on
    raws2 = [
        sign_tx(old, c.chain, "device.register", 3, device("88.123.45/1.4"))[0],
        tx(led, new, c, "device.register", device("88.123.45/1.5")),
        sign_tx(new, c.chain, "person.put", 2, PersonPut(KeyPair.generate().public, Text("Li"), ()))[0],
        tx(led, c.admins["equipment"], c, "device.register", device("88.123.46/2.1")),
    ]
    b2 = produce(led, c, raws2)
    codes = [r.code for r in led.results(2)]
    assert codes == [Code.KEY_RETIRED, 0, 0, 0], led.results(2)
    follower.apply_block(b2)
    assert follower.app_hash == led.app_hash
    assert [r.code for r in follower.results(2)] == codes

    # a node restarted on the same store, and a replay from the genesis (cemp verify), agree
    again = Ledger(led.store, c.genesis, wiring.kinds())
    assert again.admin_keys().key_of("owner") == new.public
    rep = verify_store(led.store, wiring.kinds())
    assert rep.ok, rep.problem


def test_a_tx_of_the_old_key_waiting_in_the_mempool_is_refused_on_apply() -> None:
    c = TestConsortium.create(1)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    old, new = c.admins["owner"], KeyPair.generate()
    mp = Mempool(led)
    rot = tx(led, old, c, "org.admin_rotate", rotation(c, "owner", old.public, new))
    late = sign_tx(old, c.chain, "device.register", 2, device("88.123.45/9.1"))[0]
    assert admit(led, mp, rot) is None and admit(led, mp, late) is None  # both admitted before the rotation
    produce(led, c, [rot])
    produce(led, c, [late])  # the proposer took it from its mempool one block later
    r = led.results(2)[0]
    assert r.code == Code.KEY_RETIRED and "owner's admin key" in r.reason, r


def test_who_may_rotate_and_what_key() -> None:
    c = TestConsortium.create(3)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    owner, eq = c.admins["owner"], c.admins["equipment"]
    person = KeyPair.generate()
    produce(
        led,
        c,
        [tx(led, owner, c, "person.put", PersonPut(person.public, Text("Op"), (ShortStr("operator"),)))],
    )
    new = KeyPair.generate()
    other_chain = b"\x07" * 32
    cases: list[tuple[KeyPair, OrgAdminRotation, int, str]] = [
        (eq, rotation(c, "owner", owner.public, new), Code.NOT_AUTHORIZED, "current admin key"),
        (person, rotation(c, "owner", owner.public, new), Code.NOT_AUTHORIZED, "needs"),
        (owner, rotation(c, "nobody", owner.public, new), Code.NOT_FOUND, "not in the genesis"),
        (
            owner,
            rotation(c, "owner", owner.public, new, signer=KeyPair.generate()),
            Code.BAD_SIGNATURE,
            "possess",
        ),
        (owner, rotation(c, "owner", owner.public, new, gh=other_chain), Code.BAD_SIGNATURE, "genesis"),
        (owner, rotation(c, "owner", owner.public, eq), Code.INVALID_PAYLOAD, "admin key"),
        (owner, rotation(c, "owner", owner.public, c.node_keys["owner-1"]), Code.INVALID_PAYLOAD, "node key"),
        (owner, rotation(c, "owner", owner.public, person), Code.INVALID_PAYLOAD, "person"),
    ]
    for signer, payload, code, words in cases:
        produce(led, c, [tx(led, signer, c, "org.admin_rotate", payload)])
        r = led.results(led.height)[0]
        assert r.code == code and words in r.reason, (payload.new_key.hex()[:8], r)
    # a second rotation of the org in the same block waits; the old key is never taken back
    second = KeyPair.generate()
    produce(
        led,
        c,
        [
            tx(led, owner, c, "org.admin_rotate", rotation(c, "owner", owner.public, new)),
            sign_tx(
                owner,
                c.chain,
                "org.admin_rotate",
                led.nonce_of(StateView(led.store), owner.public) + 2,
                rotation(c, "owner", owner.public, second),
            )[0],
        ],
    )
    assert [r.code for r in led.results(led.height)] == [0, Code.ALREADY_EXISTS]
    produce(led, c, [tx(led, new, c, "org.admin_rotate", rotation(c, "owner", new.public, owner))])
    r = led.results(led.height)[0]
    assert r.code == Code.INVALID_PAYLOAD and "never reused" in r.reason, r
    # the former admin key cannot become a person's or a node's key either
    produce(led, c, [tx(led, new, c, "person.put", PersonPut(owner.public, Text("x"), ()))])
    r = led.results(led.height)[0]
    assert r.code == Code.INVALID_PAYLOAD and "admin key" in r.reason, r


def test_membership_approvals_grants_reads_and_audit_follow_the_rotation() -> None:
    c = TestConsortium.create(3)
    led = Ledger(MemoryStore(), c.genesis, wiring.kinds())
    old, new = c.admins["owner"], KeyPair.generate()
    produce(led, c, [tx(led, old, c, "org.admin_rotate", rotation(c, "owner", old.public, new))])

    def membership(owner_key: KeyPair, nid: str) -> MembershipTx:
        ch = MembershipChange(
            ShortStr(c.chain_id),
            ShortStr("add"),
            ShortStr(nid),
            ShortStr("owner"),
            PublicKey(KeyPair.generate().public),
            ShortStr("127.0.0.1:1"),
        )
        msg = approval_message(ch)
        return MembershipTx(
            ch,
            (
                Approval(ShortStr("owner"), owner_key.sign(DOMAIN_MEMBERSHIP, msg)),
                Approval(ShortStr("equipment"), c.admins["equipment"].sign(DOMAIN_MEMBERSHIP, msg)),
            ),
        )

    eq = c.admins["equipment"]
    produce(led, c, [tx(led, eq, c, "membership", membership(old, "owner-8"))])
    r = led.results(led.height)[0]
    assert r.code == Code.BAD_SIGNATURE and "current admin key" in r.reason, r
    produce(led, c, [tx(led, eq, c, "membership", membership(new, "owner-9"))])
    assert led.results(led.height)[0].code == 0, led.results(led.height)
    grant = GrantPayload(
        ShortStr("g1"),
        ShortStr("equipment"),
        None,
        (ShortStr("readings"),),
        (),
        (),
        TimestampMs(T0 + 86_400_000),
        Text(""),
    )
    produce(led, c, [tx(led, new, c, "grant", grant)])
    assert led.results(led.height)[0].code == 0, led.results(led.height)

    gate = AccessGate(led.store, c.genesis, "owner-1", b"k" * 32)
    assert gate.speaker(old.public) is None
    v = gate.speaker(new.public)
    assert v is not None and v.org == "owner" and "admin" in v.roles

    entries, _ = scan(led, 1, Filters(kind="org.admin_rotate"))
    assert len(entries) == 1 and entries[0]["ok"], entries
    e = entries[0]
    assert e["object"] == "org owner admin key" and e["actor"]["type"] == "admin"
    assert "replaced from block 2" in e["actor"]["name"] and e["payload"]["new_key"] == new.public.hex()
