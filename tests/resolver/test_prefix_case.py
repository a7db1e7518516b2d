"""Handle prefixes are case-insensitive: a genesis may not give two orgs prefixes that differ only in case (nor
one under the other in any case), and every ownership check compares prefixes case-insensitively, so one org can
never write another's records by spelling its prefix differently."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cemp import wiring
from node import codec
from node.chain import Ledger
from node.crypto import KeyPair
from node.devices import org_for_prefix
from node.errors import Code
from node.genesis import GenesisError, build_genesis, read_genesis
from node.state import StateView
from node.store import MemoryStore
from node.types import Handle, ShortStr
from resolver import idis
from resolver.handles import load_record
from resolver.kinds import ORG_AUTHORITY, HandlePut
from tests.resolver.chain import Chain


def _doc(prefixes: list[str]) -> dict[str, object]:
    keys = [KeyPair.generate().public.hex() for _ in prefixes]
    names = ["owner", "equipment", "regulator"]
    roles = ["owner", "equipment", "regulator"]
    return {
        "chain_id": "cemp-case-1",
        "orgs": [
            {"name": names[i], "role": roles[i], "admin_key": keys[i], "prefix": p}
            for i, p in enumerate(prefixes)
        ],
        "nodes": [{"id": "owner-1", "org": "owner", "key": keys[0], "address": "127.0.0.1:7001"}],
    }


@pytest.mark.parametrize(
    "prefixes",
    [
        ["88.cemp", "88.CEMP"],
        ["88.Cemp.a", "88.cEMP.A"],
        ["88.cemp", "88.CEMP.sub"],
        ["88.CEMP.sub", "88.cemp"],
    ],
)
def test_genesis_refuses_prefixes_that_collide_case_insensitively(prefixes: list[str]) -> None:
    with pytest.raises(GenesisError, match=r"case-insensitive|lies under"):
        build_genesis(_doc(prefixes), Path("."))


def test_genesis_keeps_distinct_prefixes() -> None:
    g = build_genesis(_doc(["88.cemp", "88.cempx", "88.other"]), Path("."))
    assert [o.prefix for o in g.orgs] == ["88.cemp", "88.cempx", "88.other"]


def _colliding(ch: Chain) -> Chain:
    """``ch`` re-made on a genesis where owner has ``88.cemp`` and equipment ``88.CEMP`` (as a hand-made or old
    genesis file could have)."""
    g = ch.c.genesis
    orgs = list(g.orgs)
    orgs[0] = dataclasses.replace(orgs[0], prefix=Handle("88.cemp"))
    orgs[1] = dataclasses.replace(orgs[1], prefix=Handle("88.CEMP"))
    ch.c.genesis = dataclasses.replace(g, orgs=tuple(orgs))
    ch.store = MemoryStore()
    ch.led = Ledger(ch.store, ch.c.genesis, wiring.kinds())
    return ch


def test_a_genesis_file_with_colliding_prefixes_is_refused_at_load(tmp_path: Path) -> None:
    ch = _colliding(Chain(n_nodes=1))
    p = tmp_path / "genesis.cemp"
    p.write_bytes(codec.encode(ch.c.genesis))
    with pytest.raises(GenesisError, match="case-insensitive"):
        read_genesis(p)


def test_one_org_cannot_overwrite_anothers_record_by_changing_case() -> None:
    ch = _colliding(Chain(n_nodes=1))
    assert org_for_prefix(ch.c.genesis, "88.CEMP") is org_for_prefix(ch.c.genesis, "88.cemp")
    mine = HandlePut(
        Handle("88.cemp/x"), ShortStr("create"), (idis.string_value(1, "URL", "owner's"),), ORG_AUTHORITY
    )
    theirs = HandlePut(
        Handle("88.CEMP/x"), ShortStr("replace"), (idis.string_value(1, "URL", "equipment's"),), ORG_AUTHORITY
    )
    new = HandlePut(
        Handle("88.CEMP/y"), ShortStr("create"), (idis.string_value(1, "URL", "squatted"),), ORG_AUTHORITY
    )
    ok, overwrite, squat = ch.block(
        ch.admin("owner", "handle.put", mine),
        ch.admin("equipment", "handle.put", theirs),
        ch.admin("equipment", "handle.put", new),
    )
    assert ok.code == 0, ok.reason
    assert overwrite.code == Code.NOT_AUTHORIZED and "belongs to owner" in overwrite.reason
    assert squat.code == Code.NOT_AUTHORIZED
    rec = load_record(StateView(ch.store), "88.cemp/x")
    assert rec is not None and rec.version == 1 and bytes(rec.values[0].value.data) == b"owner's"
    assert load_record(StateView(ch.store), "88.cemp/y") is None
