"""handle.put / handle.delete on the ledger itself: authority, rights, device PKI, determinism."""

from __future__ import annotations

import time

import pytest

from cemp import wiring
from node.chain import ChainRef
from node.codec import encode
from node.crypto import KeyPair
from node.devices import load_device
from node.errors import Code
from node.state import StateView
from node.types import DeviceRegistration
from node.verify import verify_store
from resolver import idis
from resolver.handles import load_change, load_record
from resolver.kinds import ORG_AUTHORITY, Authority, HandleDelete, HandlePut
from resolver.values import AdminRef, HandleValue
from tests.resolver.chain import Chain
from tests.support.testing import TestDevice

SECKEY_AUTH = Authority("seckey", "88.123.45/admin", 300, b"", b"", b"")  # type: ignore[arg-type]


def url(index: int, text: str, perms: int = 0b1110) -> HandleValue:
    v = idis.string_value(index, "URL", text)
    return HandleValue(v.index, v.type, v.format, v.data, v.ttl, v.ttl_absolute, perms, ())


def admin(perms: int, handle: str = "0.NA/88.123.45", index: int = 200) -> HandleValue:
    return idis.admin_value(100, handle, index, perms)


def put(handle: str, *values: HandleValue, mode: str = "replace", auth: Authority = SECKEY_AUTH) -> HandlePut:
    return HandlePut(handle, mode, values, auth)  # type: ignore[arg-type]


@pytest.fixture
def chain() -> Chain:
    ch = Chain(n_nodes=3)
    ch.bootstrap()
    return ch


def test_org_admin_key_rules_its_prefix_only(chain: Chain) -> None:
    ok, wrong = chain.block(
        chain.admin("owner", "handle.put", put("88.123.45/a", url(1, "x"), auth=ORG_AUTHORITY)),
        chain.admin("equipment", "handle.put", put("88.123.45/b", url(1, "x"), auth=ORG_AUTHORITY)),
    )
    assert ok.code == 0
    assert wrong.code == Code.NOT_AUTHORIZED and "belongs to owner" in wrong.reason
    assert load_record(StateView(chain.store), "88.123.45/b") is None


def test_seckey_identity_vouched_by_own_org_node_only(chain: Chain) -> None:
    ok, other_org, not_a_node = chain.block(
        chain.node("owner-1", "handle.put", put("88.123.45/c", url(1, "x"), admin(idis.DEFAULT_ADMIN_PERMS))),
        chain.node("equipment-1", "handle.put", put("88.123.45/d", url(1, "x"))),
        chain.admin("regulator", "handle.put", put("88.123.45/e", url(1, "x"))),
    )
    assert ok.code == 0, ok.reason
    assert other_org.code == Code.NOT_AUTHORIZED and "vouched for only by nodes of owner" in other_org.reason
    assert not_a_node.code == Code.NOT_AUTHORIZED and "consortium node key" in not_a_node.reason
    rec = load_record(StateView(chain.store), "88.123.45/c")
    assert rec is not None and rec.version == 1
    change = load_change(StateView(chain.store), "88.123.45/c", 1)
    assert change is not None and "300:88.123.45/admin" in change.actor and "owner-1" in change.actor


def test_session_authority_checks_signature_issuer_and_expiry(chain: Chain) -> None:
    now = int(time.time() * 1000)
    good = chain.session_authority("owner-1")
    expired = chain.session_authority("owner-1", expiry_ms=now - 1)
    other_issuer = chain.session_authority("regulator-1")
    forged = chain.session_authority("owner-1", key=KeyPair.generate())
    res = chain.block(
        chain.node("owner-1", "handle.put", put("88.123.45/s1", url(1, "x"), auth=good)),
        chain.node("owner-1", "handle.put", put("88.123.45/s2", url(1, "x"), auth=expired)),
        chain.node("owner-1", "handle.put", put("88.123.45/s3", url(1, "x"), auth=other_issuer)),
        chain.node("owner-1", "handle.put", put("88.123.45/s4", url(1, "x"), auth=forged)),
        # Any consortium node may carry a session proof, but only the node that issued the challenge:
        chain.node("regulator-1", "handle.put", put("88.123.45/s5", url(1, "x"), auth=other_issuer)),
    )
    assert [r.code for r in res] == [0, Code.NOT_AUTHORIZED, Code.NOT_AUTHORIZED, Code.NOT_AUTHORIZED, 0]
    assert (
        "expired" in res[1].reason and "another node" in res[2].reason and "does not verify" in res[3].reason
    )


def test_identity_signing_with_its_own_key(chain: Chain) -> None:
    auth = Authority("key", "88.123.45/admin", 301, b"", b"", b"")  # type: ignore[arg-type]
    ok, bad = chain.block(
        chain.signed(chain.identity_key, "handle.put", put("88.123.45/k1", url(1, "x"), auth=auth)),
        chain.signed(KeyPair.generate(), "handle.put", put("88.123.45/k2", url(1, "x"), auth=auth)),
    )
    assert ok.code == 0 and bad.code == Code.NOT_AUTHORIZED


def test_rights_come_from_hs_admin_bits_and_groups(chain: Chain) -> None:
    add_only = 1 << 6  # "add value"
    (r,) = chain.block(
        chain.admin(
            "owner", "handle.put", put("88.123.45/r", url(1, "x"), admin(add_only), auth=ORG_AUTHORITY)
        )
    )
    assert r.code == 0
    add, modify, remove, delete = chain.block(
        chain.node("owner-1", "handle.put", put("88.123.45/r", url(2, "y"), mode="add")),
        chain.node("owner-1", "handle.put", put("88.123.45/r", url(1, "changed"), mode="update")),
        chain.node("owner-1", "handle.delete", HandleDelete("88.123.45/r", (2,), SECKEY_AUTH)),  # type: ignore[arg-type]
        chain.node("owner-1", "handle.delete", HandleDelete("88.123.45/r", (), SECKEY_AUTH)),  # type: ignore[arg-type]
    )
    assert add.code == 0
    assert modify.code == Code.NOT_AUTHORIZED and "modify value" in modify.reason
    assert remove.code == Code.NOT_AUTHORIZED and "remove value" in remove.reason
    assert delete.code == Code.NOT_AUTHORIZED and "delete handle" in delete.reason
    # An HS_ADMIN naming someone else grants this identity nothing.
    (other,) = chain.block(
        chain.admin(
            "owner",
            "handle.put",
            put("88.123.45/r2", url(1, "x"), admin(0xFFF, "88.123.45/someone", 300), auth=ORG_AUTHORITY),
        )
    )
    (denied,) = chain.block(
        chain.node("owner-1", "handle.put", put("88.123.45/r2", url(1, "z"), mode="update"))
    )
    assert other.code == 0 and denied.code == Code.NOT_AUTHORIZED


def test_admin_write_flag_locks_a_value_except_for_the_org_key(chain: Chain) -> None:
    locked = url(1, "frozen", perms=0b1010)  # adminRead, publicRead; no adminWrite
    chain.block(
        chain.admin(
            "owner",
            "handle.put",
            put("88.123.45/l", locked, admin(idis.DEFAULT_ADMIN_PERMS), auth=ORG_AUTHORITY),
        )
    )
    (by_identity,) = chain.block(
        chain.node("owner-1", "handle.put", put("88.123.45/l", url(1, "x"), mode="update"))
    )
    (by_org,) = chain.block(
        chain.admin("owner", "handle.put", put("88.123.45/l", url(1, "x"), mode="update", auth=ORG_AUTHORITY))
    )
    assert by_identity.code == Code.NOT_AUTHORIZED and "not admin-writable" in by_identity.reason
    assert by_org.code == 0


def test_create_needs_add_handle_on_the_prefix_handle(chain: Chain) -> None:
    # Without 0.NA/88.123.46 only the equipment org's key may create there.
    (r,) = chain.block(chain.node("owner-1", "handle.put", put("88.123.46/x", url(1, "x"))))
    assert r.code == Code.NOT_AUTHORIZED


def test_values_unchanged_keep_their_timestamp_and_tx(chain: Chain) -> None:
    h = "88.123.45/t"
    chain.block(
        chain.node("owner-1", "handle.put", put(h, url(1, "a"), url(2, "b"), admin(0xFFF))),
        time_ms=chain.time_ms + 10_000,
    )
    before = load_record(StateView(chain.store), h)
    chain.block(
        chain.node("owner-1", "handle.put", put(h, url(1, "a"), url(2, "c"), admin(0xFFF))),
        time_ms=chain.time_ms + 20_000,
    )
    after = load_record(StateView(chain.store), h)
    assert before is not None and after is not None
    assert after.values[0] == before.values[0]
    assert after.values[1].timestamp_ms == chain.time_ms + 20_000 and after.version == 2


def test_device_register_writes_a_template_record(chain: Chain) -> None:
    dev, raw = chain.c.register_device("88.123.45/101.1.1")
    (r,) = chain.block(raw)
    assert r.code == 0
    rec = load_record(StateView(chain.store), "88.123.45/101.1.1")
    assert rec is not None
    vals = {sv.value.index: sv.value for sv in rec.values}
    assert bytes(vals[idis.KEY_INDEX].data) == dev.key.public
    assert bytes(vals[idis.TEMPLATE_INDEX].data) == b"cemp.device"
    assert bytes(vals[2000].data) == b"meter.energy" and bytes(vals[2006].data) == b"owner"
    assert {1000, 1001, 2000, 2002, 2005, 2006, 100, 300} == set(vals)


def test_rotating_the_device_key_is_a_handle_update(chain: Chain) -> None:
    h = "88.123.45/101.1.2"
    old, raw = chain.c.register_device(h)
    chain.block(raw)
    now = int(time.time() * 1000)
    new = TestDevice(h, KeyPair.generate(), nonce=0, seq=old.seq)
    rotate = put(h, idis.pubkey_value(idis.KEY_INDEX, new.key.public), mode="update")
    # In one block: a reading by the old key, the rotation, then readings by the old and the new key.
    before, rot, stale, fresh = chain.block(
        old.batch(chain.c.chain, [(now, "energy.import", 1, "Wh")]),
        chain.node("owner-1", "handle.put", rotate),
        old.batch(chain.c.chain, [(now + 1, "energy.import", 2, "Wh")]),
        _fresh(new, old, now + 2, chain.c.chain),
    )
    assert before.code == 0 and rot.code == 0, rot.reason
    assert stale.code == Code.WRONG_DEVICE_KEY
    assert fresh.code == 0, fresh.reason
    dev = load_device(StateView(chain.store), h)
    assert dev is not None and dev.pubkey == new.key.public and dev.readings == 2


def _fresh(new: TestDevice, old: TestDevice, ts: int, chain: ChainRef) -> bytes:
    new.seq = old.seq  # the old device's batch above consumed a sequence number the chain never accepted
    return new.batch(chain, [(ts, "energy.import", 3, "Wh")])


def test_device_handle_keeps_its_key_and_cannot_be_deleted(chain: Chain) -> None:
    h = "88.123.45/101.1.3"
    _, raw = chain.c.register_device(h)
    chain.block(raw)
    drop_key, delete, replace_without_key = chain.block(
        chain.node("owner-1", "handle.delete", HandleDelete(h, (300,), SECKEY_AUTH)),  # type: ignore[arg-type]
        chain.node("owner-1", "handle.delete", HandleDelete(h, (), SECKEY_AUTH)),  # type: ignore[arg-type]
        chain.admin("owner", "handle.put", put(h, url(1, "x"), auth=ORG_AUTHORITY)),
    )
    assert drop_key.code == Code.INVALID_PAYLOAD and "HS_PUBKEY" in drop_key.reason
    assert delete.code == Code.INVALID_PAYLOAD and "cannot be deleted" in delete.reason
    assert replace_without_key.code == Code.INVALID_PAYLOAD


def test_device_template_needs_a_registered_device(chain: Chain) -> None:
    reg = DeviceRegistration("88.123.45/9.9.9", KeyPair.generate().public, "meter.energy", "core-heating")  # type: ignore[arg-type]
    org = chain.c.genesis.orgs[0]
    values = idis.device_values(reg, org, chain.time_ms)
    (r,) = chain.block(
        chain.admin("owner", "handle.put", put("88.123.45/9.9.9", *values, auth=ORG_AUTHORITY))
    )
    assert r.code == Code.INVALID_PAYLOAD and "device.register" in r.reason


def test_carbon_summary_type_is_checked(chain: Chain) -> None:
    good = idis.string_value(idis.CARBON_INDEX, idis.CARBON, '{"period": "2025-11", "co2e_g": 81230000}')
    floaty = idis.string_value(idis.CARBON_INDEX, idis.CARBON, '{"period": "2025-11", "co2e_g": 8.5}')
    ok, bad = chain.block(
        chain.admin("owner", "handle.put", put("88.123.45/b1", good, auth=ORG_AUTHORITY)),
        chain.admin("owner", "handle.put", put("88.123.45/b2", floaty, auth=ORG_AUTHORITY)),
    )
    assert ok.code == 0 and bad.code == Code.INVALID_PAYLOAD


def test_non_canonical_admin_data_is_refused(chain: Chain) -> None:
    good = admin(0xFFF)
    bogus = HandleValue(100, "HS_ADMIN", "admin", encode(AdminRef("no-slash", 1, 1)), 86400, 0, 0b1110, ())  # type: ignore[arg-type]
    too_wide = HandleValue(
        100, "HS_ADMIN", "admin", encode(AdminRef("0.NA/88.123.45", 1, 1 << 12)), 86400, 0, 14, ()
    )  # type: ignore[arg-type]
    res = chain.block(
        *(
            chain.admin("owner", "handle.put", put(f"88.123.45/n{i}", v, auth=ORG_AUTHORITY))
            for i, v in enumerate((good, bogus, too_wide))
        )
    )
    assert [r.code for r in res] == [0, Code.INVALID_PAYLOAD, Code.INVALID_PAYLOAD]


def test_replay_reaches_the_same_state(chain: Chain) -> None:
    _, raw = chain.c.register_device("88.123.45/101.9.9")
    chain.block(raw, chain.node("owner-1", "handle.put", put("88.123.45/z", url(1, "x"), admin(0xFFF))))
    chain.block(chain.node("owner-1", "handle.delete", HandleDelete("88.123.45/z", (), SECKEY_AUTH)))  # type: ignore[arg-type]
    rep = verify_store(chain.store, wiring.kinds(), workers=1)
    assert rep.ok, rep.problem


def test_an_admin_reference_names_one_index_of_the_identity(chain: Chain) -> None:
    # HS_ADMIN names 300:88.123.45/admin directly; the same handle's key at 301 is another identity.
    only_300 = admin(0xFFF, "88.123.45/admin", 300)
    chain.block(
        chain.admin("owner", "handle.put", put("88.123.45/idx", url(1, "x"), only_300, auth=ORG_AUTHORITY))
    )
    as_300, as_301 = chain.block(
        chain.node("owner-1", "handle.put", put("88.123.45/idx", url(1, "y"), mode="update")),
        chain.node(
            "owner-1",
            "handle.put",
            put("88.123.45/idx", url(1, "z"), mode="update", auth=chain.session_authority("owner-1")),
        ),
    )
    assert as_300.code == 0 and as_301.code == Code.NOT_AUTHORIZED
