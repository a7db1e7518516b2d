"""The write permission matrix: every signer (org admin, a person of each role, a person with no role, a revoked
person) x every tx kind of the chain (x the state of the grant acted on -- active, revoked, expired -- for
``grant`` and ``grant.revoke``), on admission (mempool) and on apply (a block built directly), against the policy
table ``access.WRITE_POLICY``: 140 cells, 2 of them skipped (no admin sends ``readings`` or a bare ``membership``).

Each cell's tx is one the org's admin key may send (so when a cell is refused, the role is the reason). Expected:
allowed -> admitted and applied with code 0; not allowed -> refused at admission with NOT_AUTHORIZED, and marked
NOT_AUTHORIZED inside a block. A block whose proposer skipped the check (applied a forbidden tx) is refused by the
other nodes: its results and app hash differ from theirs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from access import ROLES, WRITE_POLICY, ChainAuthorizer
from access.model import DataPolicyPayload, GrantPayload, GrantRevoke, PersonPut, PersonRevoke
from accounting.factors import shipped_sets
from accounting.inventory import compute, finish
from accounting.kpi import compute_kpis
from accounting.rating import compute_rating
from accounting.rating import payload_of as rating_payload
from accounting.report import payload_of as report_payload
from cemp import wiring
from node.adminrotation import DOMAIN_ADMIN_POSSESSION, OrgAdminRotation, admin_claim_message
from node.chain import ChainError, Ledger, header_hash, sign_tx
from node.crypto import KeyPair
from node.documents import DocumentPayload, make_fields
from node.errors import CempError, Code
from node.membership import MembershipChange, MembershipTx
from node.mempool import Mempool
from node.state import StateView
from node.store import MemoryStore
from node.txkinds import KindRegistry
from node.types import (
    DeviceRegistration,
    Handle,
    Hash32,
    PublicKey,
    ShortStr,
    Text,
    TimestampMs,
)
from resolver import idis
from resolver.handles import ORG_AUTHORITY
from resolver.kinds import HandleDelete, HandlePut
from tests.accounting.chain import SITE, boundary_payload, site_payload
from tests.accounting.test_baseline_kpi_rating import kpi_chain
from tests.reports.test_reports import model_of

ROLE_SIGNERS = ("operator", "energy_manager", "maintenance_engineer", "auditor")
SIGNERS = ("admin", *ROLE_SIGNERS, "no-role", "revoked")
UNTIL = 1_900_000_000_000


class Base:
    """A chain with a site, boundary, readings, factor sets, a grant, and people of every role in the owner and
    regulator orgs; cells are admitted and executed on top of it without committing."""

    def __init__(self) -> None:
        ch = kpi_chain()
        self.ch = ch
        self.people: dict[tuple[str, str], KeyPair] = {}
        self.nonces: dict[bytes, int] = {}
        txs = []
        for org in ("owner", "regulator", "equipment"):
            for role in (*ROLE_SIGNERS, "no-role", "revoked"):
                k = KeyPair.generate()
                self.people[(org, role)] = k
                roles = () if role in ("no-role", "revoked") else (ShortStr(role),)
                txs.append(ch.admin(org, "person.put", PersonPut(k.public, Text(f"{org} {role}"), roles)))
        self.victim = KeyPair.generate()  # revoked by the person.revoke cells
        txs.append(ch.admin("owner", "person.put", PersonPut(self.victim.public, Text("leaver"), ())))
        ch.ok(*txs)
        ch.ok(
            *(
                ch.admin(
                    org, "person.revoke", PersonRevoke(self.people[(org, "revoked")].public, Text("left"))
                )
                for org in ("owner", "regulator", "equipment")
            ),
            ch.admin("owner", "grant", self.grant("g-active")),
            ch.admin("owner", "grant", self.grant("g-revoked")),
            ch.admin("owner", "grant", self.grant("g-expired", ch.time_ms + 50)),
            ch.admin(
                "owner",
                "handle.put",
                HandlePut(
                    Handle("88.123.45/doomed"),
                    ShortStr("create"),
                    (idis.string_value(2100, "CEMP.NOTE", "to be deleted"),),
                    ORG_AUTHORITY,
                ),
            ),
        )
        ch.ok(ch.admin("owner", "grant.revoke", GrantRevoke(ShortStr("g-revoked"), Text("ended"))))
        ch.time_ms += 1000  # g-expired's term is over from the next block on
        inv = finish(compute(ch.store, ch.head(), SITE, "2026-01-01"))
        k = compute_kpis({**compute(ch.store, ch.head(), SITE, "2026-01-01"), "digest": inv["digest"]})
        self.rating = rating_payload(compute_rating(inv, k, "gas"))
        self.report = report_payload(model_of(ch, "2026-01")[1])
        self.serial = 0

    @staticmethod
    def grant(gid: str, until: int = UNTIL) -> GrantPayload:
        return GrantPayload(
            ShortStr(gid),
            ShortStr("equipment"),
            None,
            (ShortStr("readings"),),
            (Handle("88.123.45/101.2.1"),),
            (),
            TimestampMs(until),
            Text(""),
        )

    def signer(self, org: str, who: str) -> KeyPair:
        return self.ch.c.admins[org] if who == "admin" else self.people[(org, who)]

    def payload(self, kind: str, state: str = "-") -> tuple[str, Any]:
        """(org, payload) of a tx of ``kind`` that ``org``'s admin may send on this chain."""
        self.serial += 1
        n = self.serial
        if kind == "device.register":
            return "owner", DeviceRegistration(
                Handle(f"88.123.45/cell.{n}"),
                KeyPair.generate().public,
                ShortStr("meter.energy"),
                ShortStr("x"),
            )
        if kind == "readings":
            return "owner", None
        if kind == "document":
            return "owner", DocumentPayload(
                ShortStr("purchase_ledger_row"),
                Hash32(hashlib.sha256(b"doc %d" % n).digest()),
                Text("text/csv"),
                1,
                None,
                make_fields(
                    {"energy_wh": 1000 + n, "period_start": "2026-01-01", "period_end": "2026-01-31"}
                ),
                ShortStr("auto"),
                None,
            )
        if kind == "membership":
            return "owner", None
        if kind == "handle.put":
            v = idis.string_value(2100 + n, "CEMP.NOTE", f"cell {n}")
            return "owner", HandlePut(Handle(f"88.123.45/note.{n}"), ShortStr("create"), (v,), ORG_AUTHORITY)
        if kind == "handle.delete":
            return "owner", HandleDelete(Handle("88.123.45/doomed"), (), ORG_AUTHORITY)
        if kind == "site":
            return "owner", site_payload(version=2)
        if kind == "boundary":
            devs = [("88.123.45/101.2.1", "incoming", "electricity", "energy.import")]
            return "owner", boundary_payload(2, 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000, devs)
        if kind == "factors":
            return "regulator", dataclasses.replace(shipped_sets()[0], set_id=ShortStr(f"cell-{n}"))
        if kind == "rating":
            return "owner", self.rating
        if kind == "report":
            return "owner", self.report
        if kind == "person.put":
            return "owner", PersonPut(KeyPair.generate().public, Text(f"new {n}"), (ShortStr("auditor"),))
        if kind == "person.revoke":
            return "owner", PersonRevoke(self.victim.public, Text("left the company"))
        if kind == "grant":
            return "owner", self.grant(f"g-{state}")  # replaces the grant in that state (renewal)
        if kind == "grant.revoke":
            return "owner", GrantRevoke(ShortStr(f"g-{state}"), Text("contract ended"))
        if kind == "data.policy":
            return "owner", DataPolicyPayload((ShortStr("readings"),), ())
        if kind == "org.admin_rotate":  # executed, never committed: the owner's admin key stays
            new = KeyPair.generate()
            old = self.ch.c.admins["owner"].public
            msg = admin_claim_message(self.ch.c.chain.genesis_hash, "owner", old, new.public)
            return "owner", OrgAdminRotation(
                ShortStr("owner"), new.public, new.sign(DOMAIN_ADMIN_POSSESSION, msg)
            )
        raise AssertionError(f"the matrix has no payload for kind {kind!r}: add one")

    def tx(self, key: KeyPair, kind: str, payload: Any) -> bytes:
        led = self.ch.led
        nonce = led.nonce_of(StateView(led.store), key.public) + 1
        raw, _ = sign_tx(key, self.ch.c.chain, kind, nonce, payload)
        return raw


def allowed(kind: str, who: str) -> bool:
    return who == "admin" or who in WRITE_POLICY.get(kind, frozenset())


SKIP_ADMIN = {"readings", "membership"}
"""Kinds no admin sends as such (readings are signed by device keys, membership needs approvals): their cells are
checked for people only (every person is refused)."""


@pytest.fixture(scope="module")
def base() -> Base:
    return Base()


def _admit(base: Base, raw: bytes) -> CempError | None:
    led = base.ch.led
    mp = Mempool(led)
    d = led.decode_tx(raw)
    led.check_signature(d)
    try:
        mp.admit(d, base.ch.time_ms + 1)
    except CempError as e:
        return e
    return None


def _apply(base: Base, raw: bytes) -> tuple[int, str]:
    led = base.ch.led
    staged = led.execute((raw,), time_ms=base.ch.time_ms + 1, proposer=base.ch.nid, term=0, last_commit=())
    r = staged.results[0]
    return r.code, r.reason


def test_the_policy_names_kinds_of_the_chain() -> None:
    """Every kind of the default table exists; a kind an application adds later either declares its
    ``person_roles`` or is admin-only (``access.policy``), and the authorizer's table is the wiring's."""
    kinds = wiring.kinds()
    assert set(WRITE_POLICY) <= set(kinds)
    auth = kinds.authorizer
    assert isinstance(auth, ChainAuthorizer)
    for name, kind in kinds.items():
        declared = getattr(kind, "person_roles", None)
        want = frozenset(declared) if declared is not None else WRITE_POLICY.get(name, frozenset())
        assert auth.policy.get(name, frozenset()) == want, name


GRANT_STATES = ("active", "revoked", "expired")
CELLS = [
    (kind, who, state)
    for kind in sorted(WRITE_POLICY)
    for who in SIGNERS
    for state in (GRANT_STATES if kind in ("grant", "grant.revoke") else ("-",))
]


def outcome_if_allowed(kind: str, state: str) -> int:
    """What the kind itself says when the role allows it: revoking a revoked grant is a conflict."""
    return Code.ALREADY_EXISTS if (kind, state) == ("grant.revoke", "revoked") else 0


@pytest.mark.parametrize(("kind", "who", "state"), CELLS, ids=[f"{k}-{w}-{s}" for k, w, s in CELLS])
def test_cell(base: Base, kind: str, who: str, state: str) -> None:
    if who == "admin" and kind in SKIP_ADMIN:
        pytest.skip("not sent by an admin key")
    org, payload = base.payload(kind, state)
    if payload is None:
        payload = _placeholder(base, kind)
    raw = base.tx(base.signer(org, who), kind, payload)
    err = _admit(base, raw)
    code, reason = _apply(base, raw)
    want = outcome_if_allowed(kind, state)
    if allowed(kind, who) and want:
        assert err is not None and err.code == want, (kind, who, state, err and err.message)
        assert code == want, (kind, who, state, reason)
    elif allowed(kind, who):
        assert err is None, f"{who} may send {kind}, but admission said: {err and err.message}"
        assert code == 0, f"{who} may send {kind}, but apply said: {reason}"
    else:
        assert err is not None and err.code == Code.NOT_AUTHORIZED, (kind, who, err and err.message)
        assert code == Code.NOT_AUTHORIZED, (kind, who, reason)
        if who == "revoked":
            assert "revoked" in reason
        else:
            assert "needs" in reason and kind in reason


def _placeholder(base: Base, kind: str) -> Any:
    from node.types import Nonce, Reading, ReadingBatch, SignedInt

    if kind == "readings":
        r = Reading(
            Nonce(10**6),
            TimestampMs(base.ch.time_ms - 1000),
            ShortStr("power"),
            SignedInt(1),
            ShortStr("W"),
            0,
        )
        return ReadingBatch(Handle("88.123.45/101.2.1"), (r,))
    change = MembershipChange(
        ShortStr(base.ch.c.chain_id),
        ShortStr("add"),
        ShortStr("owner-9"),
        ShortStr("owner"),
        PublicKey(b"\x01" * 32),
        ShortStr("127.0.0.1:1"),
    )
    return MembershipTx(change, ())


def test_other_orgs_people_do_not_act_for_the_owner(base: Base) -> None:
    """An equipment-firm energy manager may record grants for the equipment firm, never the owner's site."""
    _, payload = base.payload("site")
    raw = base.tx(base.people[("equipment", "energy_manager")], "site", payload)
    code, reason = _apply(base, raw)
    assert code == Code.NOT_AUTHORIZED and "owner" in reason


def test_a_block_with_a_forbidden_tx_applied_is_refused_by_every_other_node(base: Base) -> None:
    """A proposer running a doctored policy (every role may send everything) applied an auditor's site tx;
    three honest nodes each refuse its block (results root differs), and a block that marks it invalid is
    accepted by all three with the same app hash."""
    ch = base.ch
    _, payload = base.payload("site")
    raw = base.tx(base.people[("owner", "auditor")], "site", payload)
    honest_kinds = wiring.kinds()
    rogue_kinds = KindRegistry(
        list(honest_kinds.values()), ChainAuthorizer({k: frozenset(ROLES) for k in WRITE_POLICY})
    )

    def replica(kinds: KindRegistry) -> Ledger:
        st = MemoryStore()
        led = Ledger(st, ch.c.genesis, kinds)
        for block, cert in ch.blocks:
            led.apply_block(block, cert)
        return led

    rogue = replica(rogue_kinds)
    t = ch.time_ms + 5
    staged = rogue.execute((raw,), time_ms=t, proposer=ch.nid, term=0, last_commit=rogue.cert(rogue.height))
    assert staged.results[0].code == 0  # the rogue let the auditor change the site
    bad = rogue.sign_block(staged, ch.c.node_keys[ch.nid])
    honest = [replica(honest_kinds) for _ in range(3)]
    for led in honest:
        with pytest.raises(ChainError, match="results"):
            led.apply_block(bad)
        assert led.height == ch.led.height
    good_staged = honest[0].execute(
        (raw,), time_ms=t, proposer=ch.nid, term=0, last_commit=honest[0].cert(honest[0].height)
    )
    assert good_staged.results[0].code == Code.NOT_AUTHORIZED
    good = honest[0].sign_block(good_staged, ch.c.node_keys[ch.nid])
    cert = tuple(honest[0].vote(header_hash(good.header), n, k) for n, k in ch.c.node_keys.items())
    honest[0].commit(good, good_staged, cert)
    for led in honest[1:]:
        led.apply_block(good, cert)
    assert len({led.app_hash for led in honest}) == 1
