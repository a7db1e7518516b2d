"""Who sees what, on every read path, as a grant is made, revoked and expires.

One in-process node (aiohttp test server, the real wiring). The equipment firm makes its readings, documents and
site figures members-only (``data.policy``) and grants its heat meter's readings and its documents to the owner.
For each grant state (none, active, revoked, expired, and a grant to one person only) and each viewer (signed
out, the owner's energy manager and auditor, the regulator's inspector, the equipment firm's engineer, a revoked
person), every read path is asked: the node API (readings, hourly aggregates, a readings tx's payload, a document,
the document list), the web UI (device page, its CSV, its chart data, the tx page) and the Parquet export. The
owner's own meter (no policy) stays public throughout: the control.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from access.client import sign_in
from access.model import DataPolicyPayload, GrantPayload, GrantRevoke, PersonPut, PersonRevoke
from accounting.factors import shipped_sets
from accounting.model import BoundaryDevice, BoundaryPayload
from cemp import wiring
from maintenance.alarms import make_raise
from node.chain import sign_tx
from node.client import NodeClient
from node.crypto import KeyPair
from node.documents import DocumentPayload, document_id, make_fields
from node.peer import RequestSigner
from node.server import Node
from node.store import MemoryStore
from node.types import Handle, Hash32, ShortStr, Text, TimestampMs
from tests.accounting.chain import site_payload
from tests.support.testing import TestConsortium

HEAT = "88.123.46/201.1.1"  # the equipment firm's heat meter
OWN = "88.123.45/101.1.1"  # the owner's meter: no policy, public
SITE = "hohhot"


@dataclass
class World:
    c: TestConsortium
    node: Node
    client: TestClient
    heat_tx: str
    doc_id: str
    people: dict[str, KeyPair]
    tokens: dict[str, str | None]
    nonces: dict[bytes, int]

    async def tx(self, key: KeyPair, kind: str, payload: object) -> dict[str, Any]:
        n = self.nonces.get(key.public, 0) + 1
        self.nonces[key.public] = n
        raw, _ = sign_tx(key, self.c.chain, kind, n, payload)
        r = await self.client.post("/v1/txs", data=raw, params={"wait": "commit"})
        body = await r.json()
        assert r.status == 200 and body["result"]["ok"], body
        return body  # type: ignore[no-any-return]

    def admin(self, org: str) -> KeyPair:
        return self.c.admins[org]


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    c = TestConsortium.create(n_nodes=1, block_interval_ms=5)
    nid = c.genesis.nodes[0].node_id
    node = Node(c.genesis, MemoryStore(), nid, c.node_keys[nid], kinds=wiring.kinds(), routes=wiring.ROUTES)
    client = TestClient(TestServer(node.web_app()))
    await client.start_server()
    w = World(c, node, client, "", "", {}, {}, {})
    try:
        heat, raw = c.register_device(HEAT, kind="meter.heat", org="equipment")
        w.nonces[c.admins["equipment"].public] = 1
        assert (await client.post("/v1/txs", data=raw, params={"wait": "commit"})).status == 200
        own, raw = c.register_device(OWN, org="owner")
        w.nonces[c.admins["owner"].public] = 1
        assert (await client.post("/v1/txs", data=raw, params={"wait": "commit"})).status == 200
        now = int(time.time() * 1000)
        vals = [(now - 3_600_000 + i * 60_000, "power", 1000 + i, "W") for i in range(30)]
        r = await client.post("/v1/txs", data=heat.batch(c.chain, vals), params={"wait": "commit"})
        w.heat_tx = (await r.json())["tx"]
        r = await client.post("/v1/txs", data=own.batch(c.chain, vals), params={"wait": "commit"})
        assert r.status == 200
        doc = DocumentPayload(
            ShortStr("purchase_ledger_row"),
            Hash32(hashlib.sha256(b"equipment ledger").digest()),
            Text("text/csv"),
            2,
            None,
            make_fields({"energy_wh": 5_000_000, "period_start": "2026-01-01", "period_end": "2026-01-31"}),
            ShortStr("auto"),
            None,
        )
        await w.tx(w.admin("equipment"), "document", doc)
        w.doc_id = document_id(doc.source_sha256, "purchase_ledger_row", 2).hex()
        for s in shipped_sets():
            await w.tx(w.admin("regulator"), "factors", s)
        # the owner's site, whose boundary holds both meters (exports of it then carry the heat meter's readings)
        await w.tx(w.admin("owner"), "site", site_payload())
        bd = BoundaryPayload(
            ShortStr(SITE),
            1,
            TimestampMs((now - 86_400_000) // 3_600_000 * 3_600_000),
            tuple(
                sorted(
                    (
                        BoundaryDevice(
                            Handle(OWN), ShortStr("core-heating"), ShortStr("electricity"), ShortStr("power")
                        ),
                        BoundaryDevice(
                            Handle(HEAT), ShortStr("heat-exchanger"), ShortStr("heat"), ShortStr("power")
                        ),
                    ),
                    key=lambda d: d.handle,
                )
            ),
            None,
            Text(""),
        )
        await w.tx(w.admin("owner"), "boundary", bd)
        for who, org, roles in (
            ("manager", "owner", ("energy_manager",)),
            ("auditor", "owner", ("auditor",)),
            ("inspector", "regulator", ("auditor",)),
            ("engineer", "equipment", ("maintenance_engineer",)),
            ("leaver", "owner", ("operator",)),
        ):
            k = KeyPair.generate()
            w.people[who] = k
            await w.tx(
                w.admin(org), "person.put", PersonPut(k.public, Text(who), tuple(ShortStr(r) for r in roles))
            )
        nc = NodeClient(str(client.make_url("")).rstrip("/"), session=client.session)
        w.tokens["anonymous"] = None
        for who, k in w.people.items():
            w.tokens[who] = (await sign_in(nc, k))["token"]
        await w.tx(w.admin("owner"), "person.revoke", PersonRevoke(w.people["leaver"].public, Text("left")))
        yield w
    finally:
        await client.close()


Path = Callable[[World, dict[str, str]], Awaitable[bool]]


async def _json_ok(w: World, path: str, headers: dict[str, str], **params: Any) -> bool:
    r = await w.client.get(path, headers=headers, params=params)
    if r.status in (401, 403):
        body = await r.json()
        assert body["code"] in ("unauthenticated", "not_authorized") and body["message"]
        return False
    assert r.status == 200, (path, r.status, await r.text())
    return True


async def api_readings(w: World, h: dict[str, str]) -> bool:
    ok = await _json_ok(w, f"/v1/devices/{HEAT}/readings", h)
    if ok:
        body = await (await w.client.get(f"/v1/devices/{HEAT}/readings", headers=h)).json()
        assert len(body["readings"]) == 30
    return ok


async def api_hourly(w: World, h: dict[str, str]) -> bool:
    return await _json_ok(w, f"/v1/devices/{HEAT}/hourly", h)


async def api_health(w: World, h: dict[str, str]) -> bool:
    return await _json_ok(w, f"/v1/devices/{HEAT}/health", h)


async def api_tx(w: World, h: dict[str, str]) -> bool:
    body = await (await w.client.get(f"/v1/txs/{w.heat_tx}", headers=h)).json()
    assert body["status"] == "committed" and body["proof"]["path"] is not None
    shown = body["payload"] is not None
    assert shown == (body.get("raw") is not None) and shown == ("withheld" not in body)
    return shown


async def api_document(w: World, h: dict[str, str]) -> bool:
    return await _json_ok(w, f"/v1/documents/{w.doc_id}", h)


async def api_document_list(w: World, h: dict[str, str]) -> bool:
    body = await (await w.client.get("/v1/documents", headers=h)).json()
    listed = w.doc_id in [d["id"] for d in body["documents"]]
    assert listed == (body["withheld"] == 0)
    return listed


async def web_device(w: World, h: dict[str, str]) -> bool:
    r = await w.client.get(f"/device/{HEAT}", headers=h, params={"lang": "en"})
    assert r.status == 200
    html = await r.text()
    restricted = 'id="restricted"' in html
    assert restricted == ('id="chart-data"' not in html)
    return not restricted


async def web_csv(w: World, h: dict[str, str]) -> bool:
    r = await w.client.get(f"/device/{HEAT}", headers=h, params={"format": "csv"})
    if r.status in (401, 403):
        return False
    assert r.status == 200
    return (await r.text()).count("\n") > 30


async def web_series(w: World, h: dict[str, str]) -> bool:
    return await _json_ok(w, f"/device/{HEAT}/series.json", h, q="power")


async def web_tx(w: World, h: dict[str, str]) -> bool:
    html = await (await w.client.get(f"/tx/{w.heat_tx}", headers=h, params={"lang": "en"})).text()
    withheld = 'id="withheld"' in html
    assert withheld == ("<code>power</code>" not in html)
    return not withheld


async def api_block_raw(w: World, h: dict[str, str]) -> bool:
    """The canonical encoded block holding the heat meter's readings: all of its payloads, or nothing."""
    height = (await (await w.client.get(f"/v1/txs/{w.heat_tx}")).json())["height"]
    return await _json_ok(w, f"/v1/blocks/{height}", h, format="msgpack")


async def export_readings(w: World, h: dict[str, str]) -> bool:
    r = await w.client.get(f"/v1/sites/{SITE}/export/readings.parquet", headers=h, params={"period": "2026"})
    if r.status in (401, 403):
        assert HEAT in (await r.json())["message"]
        return False
    assert r.status == 200, await r.text()
    import pyarrow.parquet as pq

    t = pq.read_table(io.BytesIO(await r.read()))
    return HEAT in set(t.column("device").to_pylist())


READINGS_PATHS: dict[str, Path] = {
    "api_readings": api_readings,
    "api_hourly": api_hourly,
    "api_health": api_health,
    "api_tx": api_tx,
    "api_block_raw": api_block_raw,
    "web_device": web_device,
    "web_csv": web_csv,
    "web_series": web_series,
    "web_tx": web_tx,
}
DOCUMENT_PATHS: dict[str, Path] = {"api_document": api_document, "api_document_list": api_document_list}
VIEWERS = ("anonymous", "manager", "auditor", "inspector", "engineer", "leaver")


def headers(w: World, who: str) -> dict[str, str]:
    tok = w.tokens[who]
    return {"Authorization": f"Bearer {tok}"} if tok else {}


async def observe(w: World, paths: dict[str, Path]) -> dict[tuple[str, str], bool]:
    out = {}
    for who in VIEWERS:
        if who == "leaver":
            # a revoked person's token is refused outright (401), on every path that reads it
            r = await w.client.get(f"/v1/devices/{HEAT}/readings", headers=headers(w, who))
            assert r.status == 401
            continue
        for name, fn in paths.items():
            out[(who, name)] = await fn(w, headers(w, who))
    return out


def expect(paths: dict[str, Path], readers: set[str]) -> dict[tuple[str, str], bool]:
    return {(who, p): who in readers for who in VIEWERS if who != "leaver" for p in paths}


def grant(
    gid: str,
    data: tuple[str, ...],
    until_ms: int,
    key: bytes | None = None,
    devices: tuple[str, ...] = (HEAT,),
) -> GrantPayload:
    return GrantPayload(
        ShortStr(gid),
        ShortStr("owner"),
        key,  # type: ignore[arg-type]
        tuple(ShortStr(d) for d in data),
        tuple(Handle(d) for d in devices),
        (),
        TimestampMs(until_ms),
        Text(""),
    )


async def test_grant_lifecycle_on_every_read_path(world: World) -> None:
    w = world
    every = {**READINGS_PATHS, **DOCUMENT_PATHS, "export_readings": export_readings}
    everyone = set(VIEWERS)
    # no policy yet: all public
    assert await observe(w, every) == expect(every, everyone)
    await w.tx(
        w.admin("equipment"),
        "data.policy",
        DataPolicyPayload((ShortStr("documents"), ShortStr("readings")), ()),
    )
    # members only: the equipment firm's engineer reads, nobody else
    assert await observe(w, every) == expect(every, {"engineer"})
    # the control: the owner's meter has no policy and stays public
    assert await _json_ok(w, f"/v1/devices/{OWN}/readings", {})
    # a grant of other devices' readings (a pattern that misses the heat meter) changes nothing
    far = int(time.time() * 1000) + 30 * 86_400_000
    await w.tx(w.admin("equipment"), "grant", grant("other", ("readings",), far, devices=("88.123.46/9*",)))
    assert await observe(w, every) == expect(every, {"engineer"})
    # a grant of all its readings and documents to the owner: the owner's people read them
    await w.tx(w.admin("equipment"), "grant", grant("heat-2026", ("documents", "readings"), far, devices=()))
    got = await observe(w, every)
    assert got == expect(every, {"engineer", "manager", "auditor"}), got
    # revoked: at once, everywhere
    await w.tx(
        w.admin("equipment"), "grant.revoke", GrantRevoke(ShortStr("heat-2026"), Text("contract ended"))
    )
    assert await observe(w, every) == expect(every, {"engineer"})
    # a grant to the owner's energy manager alone
    await w.tx(
        w.admin("equipment"),
        "grant",
        grant("manager-only", ("readings",), far, w.people["manager"].public),
    )
    assert await observe(w, READINGS_PATHS) == expect(READINGS_PATHS, {"engineer", "manager"})
    assert await observe(w, DOCUMENT_PATHS) == expect(DOCUMENT_PATHS, {"engineer"})
    # expiry: a grant that ends in ten minutes, seen from eleven minutes on (the node's clock, no new block)
    await w.tx(w.admin("equipment"), "grant.revoke", GrantRevoke(ShortStr("manager-only"), Text("")))
    soon = int(time.time() * 1000) + 600_000
    await w.tx(w.admin("equipment"), "grant", grant("short", ("readings",), soon))
    assert await observe(w, READINGS_PATHS) == expect(READINGS_PATHS, {"engineer", "manager", "auditor"})
    gate: Any = w.node.reads
    gate.clock = lambda: time.time() + 660
    assert await observe(w, READINGS_PATHS) == expect(READINGS_PATHS, {"engineer"})


async def test_an_encoded_block_with_members_only_payloads_goes_to_member_nodes(world: World) -> None:
    """Catch-up fetches whole blocks: a request signed by a member node gets one that a signed-out reader may
    not; a forged or unsigned peer header does not."""
    w = world
    await w.tx(w.admin("equipment"), "data.policy", DataPolicyPayload((ShortStr("readings"),), ()))
    height = (await (await w.client.get(f"/v1/txs/{w.heat_tx}")).json())["height"]
    path = f"/v1/blocks/{height}?format=msgpack"
    r = await w.client.get(path)
    assert r.status == 401 and "member nodes" in (await r.json())["message"]
    nid = w.c.genesis.nodes[0].node_id
    signer = RequestSigner(w.c.node_keys[nid], w.node.ledger.genesis_hash, nid)
    r = await w.client.get(path, headers=signer.header(nid, "GET", path, 0))
    assert r.status == 200
    assert (await r.read()) == w.node.ledger.block_raw(height)
    stranger = RequestSigner(KeyPair.generate(), w.node.ledger.genesis_hash, nid)
    r = await w.client.get(path, headers=stranger.header(nid, "GET", path, 0))
    assert r.status == 403 and "member nodes" in (await r.json())["message"]
    # a block without members-only payloads stays public
    assert (await w.client.get("/v1/blocks/1?format=msgpack")).status == 200


async def test_alarms_and_work_orders_follow_their_device_readings_rule(world: World) -> None:
    """The JSON alarm inbox and work-order board: an alarm about a members-only meter is left out of the list
    (counted as withheld) and its page answers 401/403, like the readings it tells about."""
    w = world
    now = int(time.time() * 1000)
    p = make_raise(HEAT, "silent", now - 600_000, "a reading every 5 s", "none for 10 min", "meter silent")
    await w.tx(w.admin("equipment"), "alarm", p)
    await w.tx(w.admin("equipment"), "data.policy", DataPolicyPayload((ShortStr("readings"),), ()))

    async def inbox(who: str) -> tuple[int, int, int]:
        body = await (await w.client.get("/v1/alarms", headers=headers(w, who))).json()
        mine = [a for a in body["alarms"] if a["device"] == HEAT]
        n = 1 if not mine else mine[0]["number"]
        detail = await w.client.get(f"/v1/alarms/{n}", headers=headers(w, who))
        return len(mine), body["withheld"], detail.status

    assert await inbox("anonymous") == (0, 1, 401)
    assert await inbox("manager") == (0, 1, 403)
    assert await inbox("engineer") == (1, 0, 200)


async def test_web_sign_in_link_sets_a_session_and_sign_out_ends_it(world: World) -> None:
    w = world
    await w.tx(w.admin("equipment"), "data.policy", DataPolicyPayload((ShortStr("readings"),), ()))
    nc = NodeClient(str(w.client.make_url("")).rstrip("/"), session=w.client.session)
    link = (await sign_in(nc, w.people["engineer"], "web"))["login_path"]
    r = await w.client.get(link, allow_redirects=False)
    assert r.status == 303 and "cemp_session" in r.cookies
    assert r.cookies["cemp_session"]["httponly"]
    html = await (await w.client.get(f"/device/{HEAT}", params={"lang": "en"})).text()
    assert "Signed in:" in html and "engineer" in html and 'id="chart-data"' in html
    # the link works once
    r2 = await w.client.get(link, allow_redirects=False)
    assert r2.status == 401
    await w.client.post("/logout", allow_redirects=False)
    w.client.session.cookie_jar.clear()
    html = await (await w.client.get(f"/device/{HEAT}", params={"lang": "en"})).text()
    assert 'id="restricted"' in html and "Sign in" in html


async def test_tokens_are_bound_to_their_key_and_node(world: World) -> None:
    w = world
    tok = w.tokens["manager"]
    assert tok is not None
    raw = bytearray(tok.encode())
    raw[-3] = ord("A") if raw[-3] != ord("A") else ord("B")
    for bad in (raw.decode(), tok + "x", "cemp1.AAAA", "garbage"):
        r = await w.client.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {bad}"})
        assert r.status == 401, bad
    r = await w.client.get("/v1/auth/whoami", headers=headers(w, "manager"))
    assert (await r.json())["name"] == "manager"
    # a key that is no member cannot sign in
    nc = NodeClient(str(w.client.make_url("")).rstrip("/"), session=w.client.session)
    from node.errors import CempError

    with pytest.raises(CempError) as e:
        await sign_in(nc, KeyPair.generate())
    assert e.value.code.name == "NOT_AUTHORIZED"
    # a replayed challenge is refused
    ch = await (await w.client.post("/v1/auth/challenge")).json()
    from access.tokens import DOMAIN_LOGIN, login_message

    k = w.people["auditor"]
    sig = k.sign(
        DOMAIN_LOGIN,
        login_message(bytes.fromhex(ch["genesis_hash"]), ch["node_id"], bytes.fromhex(ch["challenge"])),
    )
    doc = {"pubkey": k.public.hex(), "challenge": ch["challenge"], "signature": sig.hex()}
    assert (await w.client.post("/v1/auth/token", json=doc)).status == 200
    assert (await w.client.post("/v1/auth/token", json=doc)).status == 401
    for bad_doc in ({}, {"pubkey": "zz"}, [], {**doc, "purpose": "root"}):
        r = await w.client.post("/v1/auth/token", json=bad_doc)
        assert 400 <= r.status < 500


async def test_a_policy_scoped_to_some_devices_leaves_the_others_public(world: World) -> None:
    w = world
    pol = DataPolicyPayload((ShortStr("readings"),), (Handle("88.123.46/9*"),))
    await w.tx(w.admin("equipment"), "data.policy", pol)
    assert await observe(w, READINGS_PATHS) == expect(READINGS_PATHS, set(VIEWERS))
    pol = DataPolicyPayload((ShortStr("readings"),), (Handle("88.123.46/2*"),))
    await w.tx(w.admin("equipment"), "data.policy", pol)
    assert await observe(w, READINGS_PATHS) == expect(READINGS_PATHS, {"engineer"})
    # another org's devices cannot be named
    nonce = w.nonces.get(w.admin("equipment").public, 0) + 1
    raw, _ = sign_tx(
        w.admin("equipment"),
        w.c.chain,
        "data.policy",
        nonce,
        DataPolicyPayload((ShortStr("readings"),), (Handle(OWN),)),
    )
    r = await w.client.post("/v1/txs", data=raw)
    assert r.status == 403 and "prefix" in (await r.json())["message"]


async def test_handle_values_that_are_not_public_read_follow_membership_and_grants(world: World) -> None:
    """The resolver's ``publicOnly=false`` with a member's token: a value without public-read (adminRead only)
    at the equipment firm's handle is shown to its members and to whom it granted ``handles`` data, not to others."""
    import dataclasses

    from resolver import idis
    from resolver.handles import ORG_AUTHORITY
    from resolver.kinds import HandlePut
    from resolver.values import PERM_ADMIN_READ, PERM_ADMIN_WRITE

    w = world
    secret = dataclasses.replace(
        idis.string_value(2200, "CEMP.SERVICE_CONTRACT", "contract 2026-17, ¥1.2M/yr"),
        permissions=PERM_ADMIN_READ | PERM_ADMIN_WRITE,
    )
    put = await w.tx(
        w.admin("equipment"), "handle.put", HandlePut(Handle(HEAT), ShortStr("add"), (secret,), ORG_AUTHORITY)
    )

    async def tx_shown(who: str) -> bool:
        body = await (await w.client.get(f"/v1/txs/{put['tx']}", headers=headers(w, who))).json()
        shown = body["payload"] is not None and body["raw"] is not None
        assert shown or "contract" not in json.dumps(body)
        return shown

    assert not await tx_shown("anonymous") and not await tx_shown("manager") and await tx_shown("engineer")

    async def sees(who: str) -> bool:
        r = await w.client.get(
            f"/api/handles/{HEAT}", params={"publicOnly": "false"}, headers=headers(w, who)
        )
        if r.status in (401, 403):
            return False
        assert r.status == 200, await r.text()
        return 2200 in [v["index"] for v in (await r.json())["values"]]

    r = await w.client.get(f"/api/handles/{HEAT}")
    assert 2200 not in [v["index"] for v in (await r.json())["values"]]  # never public
    assert {who: await sees(who) for who in ("manager", "inspector", "engineer")} == {
        "manager": False,
        "inspector": False,
        "engineer": True,
    }
    far = int(time.time() * 1000) + 86_400_000
    await w.tx(w.admin("equipment"), "grant", grant("contract", ("handles",), far))
    assert await sees("manager") and not await sees("inspector")
    assert await tx_shown("manager") and not await tx_shown("inspector")
    await w.tx(w.admin("equipment"), "grant.revoke", GrantRevoke(ShortStr("contract"), Text("")))
    assert not await sees("manager")


async def test_site_figures_follow_the_site_org_policy_and_grants(world: World) -> None:
    w = world
    paths = [
        (f"/v1/sites/{SITE}/inventory", {"period": "2026"}),
        (f"/v1/sites/{SITE}/kpis", {"period": "2026"}),
        (f"/v1/sites/{SITE}/export/inventory.parquet", {"period": "2026"}),
        (f"/v1/sites/{SITE}/report", {"period": "2026"}),
        (
            f"/carbon/{SITE}",
            {"period": "2026"},
        ),  # the web's carbon portrait and report preview ask the same gate
        (f"/reports/{SITE}/preview", {"period": "2026"}),
    ]

    # the energy routes on the site's metered history: the same gate (their answer past it may be a 422 when the
    # history is short; what counts here is whether the gate let the reader through)
    energy = [
        (f"/v1/sites/{SITE}/energy/forecast", {}),
        (f"/v1/sites/{SITE}/energy/plan", {"date": "2026-01-02"}),
    ]

    async def reads(who: str) -> list[int]:
        out = [(await w.client.get(p, params=q, headers=headers(w, who))).status for p, q in paths]
        for p, q in energy:
            st = (await w.client.get(p, params=q, headers=headers(w, who))).status
            assert st in (200, 401, 403, 422), (p, st)
            out.append(200 if st == 422 else st)
        return out

    async def listed(who: str) -> bool:
        page = await (await w.client.get("/carbon", headers=headers(w, who))).text()
        return f"/carbon/{SITE}" in page

    assert await reads("anonymous") == [200] * 8 and await listed("anonymous")
    await w.tx(w.admin("owner"), "data.policy", DataPolicyPayload((ShortStr("sites"),), ()))
    assert await reads("anonymous") == [401] * 8 and not await listed("anonymous")
    assert await reads("auditor") == [200] * 8 and await listed("auditor")
    assert await reads("engineer") == [403] * 8 and not await listed("engineer")
    far = int(time.time() * 1000) + 86_400_000
    g = GrantPayload(
        ShortStr("site-figures"),
        ShortStr("equipment"),
        None,
        (ShortStr("sites"),),
        (),
        (ShortStr(SITE),),
        TimestampMs(far),
        Text(""),
    )
    await w.tx(w.admin("owner"), "grant", g)
    assert await reads("engineer") == [200] * 8 and await listed("engineer")
    assert await reads("inspector") == [403] * 8
    await w.tx(w.admin("owner"), "grant.revoke", GrantRevoke(ShortStr("site-figures"), Text("")))
    assert await reads("engineer") == [403] * 8


def test_a_damaged_token_secret_is_replaced_and_only_ends_sessions(tmp_path: Any) -> None:
    """The node's token secret (``<data dir>/access.secret``, 0600) survives a restart; flipped, cut short or deleted,
    a new one is drawn: tokens issued before stop working (sign in again), nothing else is affected."""
    import os
    from pathlib import Path

    from access.tokens import SECRET_FILE, Tokens, load_secret

    d = Path(tmp_path)
    s1 = load_secret(d)
    assert load_secret(d) == s1 and (d / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    tok, _ = Tokens(s1, b"g" * 32, "n").issue(b"k" * 32, b"a", 1000)
    for damage in ("flip", "truncate", "delete"):
        p = d / SECRET_FILE
        if damage == "flip":
            raw = bytearray(p.read_bytes())
            raw[5] ^= 1
            p.write_bytes(bytes(raw))
            assert load_secret(d) == bytes(raw)  # 32 bytes: taken as is (a different secret)
        elif damage == "truncate":
            p.write_bytes(p.read_bytes()[:7])
            assert len(load_secret(d)) == 32 and p.stat().st_size == 32
        else:
            os.unlink(p)
            assert len(load_secret(d)) == 32
        with pytest.raises(Exception, match="not issued by this node"):
            Tokens(load_secret(d), b"g" * 32, "n").check(tok, b"a", 2000)
