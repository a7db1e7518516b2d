"""``cemp keys rotate-admin`` while the same admin key signs other txs: a nonce taken between the command's read
and its submission is refused ``nonce_replayed``; the command signs again with the next free nonce (found by the
three-process rotation test under load, where the org's own tools kept registering devices with the old key).

The race is made certain, not hoped for: the node client's nonce read is wrapped so that another tx of the same
key commits right after it, on the first read only.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cemp import keyrotate
from node.chain import sign_tx
from node.client import NodeClient
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.server import Node
from node.types import DeviceRegistration, Handle, PublicKey, ShortStr
from tests.support.testing import TestConsortium


def _racing_reads(
    monkeypatch: pytest.MonkeyPatch, c: TestConsortium, admin: KeyPair, races: int
) -> list[dict[str, Any]]:
    """After each of the first ``races`` nonce reads of ``admin``'s key, commit a device registration that takes
    the nonce just read; returns the answers to those registrations."""
    taken: list[dict[str, Any]] = []
    real_get = NodeClient.get

    async def get(self: NodeClient, path: str, **params: Any) -> dict[str, Any]:
        out = await real_get(self, path, **params)
        if path == f"/v1/nonces/{admin.public.hex()}" and len(taken) < races:
            reg = DeviceRegistration(
                Handle(f"88.123.45/race.{len(taken)}"),
                PublicKey(KeyPair.generate().public),
                ShortStr("meter.energy"),
                ShortStr("core"),
            )
            raw, _ = sign_tx(admin, c.chain, "device.register", int(out["next"]), reg)
            taken.append(await self.submit(raw, wait=True))
        return out

    monkeypatch.setattr(NodeClient, "get", get)
    return taken


async def test_rotate_admin_signs_again_when_its_nonce_was_taken(
    node_client: tuple[Node, TestClient], consortium: TestConsortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = node_client
    api = str(client.make_url("")).rstrip("/")
    admin, new = consortium.admins["owner"], KeyPair.generate()
    taken = _racing_reads(monkeypatch, consortium, admin, races=2)
    out = await keyrotate.rotate_admin(api, "owner", admin, new, timeout_s=30)
    assert [t["result"]["ok"] for t in taken] == [True, True]  # both races happened and took their nonces
    assert "refused" not in out, out
    assert out["status"] == "committed" and out["new_key"] == new.public.hex()
    status = await (await client.get("/v1/consortium")).json()
    assert new.public.hex() in str(status)  # the org's admin key is the new one


async def test_a_nonce_taken_every_time_is_refused_after_the_last_try(
    node_client: tuple[Node, TestClient], consortium: TestConsortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = node_client
    api = str(client.make_url("")).rstrip("/")
    admin = consortium.admins["owner"]
    taken = _racing_reads(monkeypatch, consortium, admin, races=keyrotate.NONCE_TRIES)
    with pytest.raises(CempError) as e:
        await keyrotate.rotate_admin(api, "owner", admin, KeyPair.generate(), timeout_s=30)
    assert e.value.code == Code.NONCE_REPLAYED
    assert len(taken) == keyrotate.NONCE_TRIES
