"""Fixtures for the ``document`` kind: an in-process node that also serves the documents routes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestClient

from node.chain import ChainRef, sign_tx
from node.crypto import KeyPair
from node.documents import DocumentPayload, make_fields
from node.server import Node
from node.types import Handle, Hash32, ShortStr, Text
from tests.support.inproc import memory_node, served
from tests.support.testing import TestConsortium, TestDevice

HDR = {"Content-Type": "application/msgpack"}
SCANNER = "88.123.45/900.1"


@pytest_asyncio.fixture
async def doc_node(consortium: TestConsortium) -> AsyncIterator[tuple[Node, TestClient]]:
    """Like ``node_client`` (the node serves ``documents_routes`` through ``cemp.wiring.ROUTES``)."""
    node = memory_node(consortium)
    async with served(node.web_app()) as client:
        yield node, client


async def submit(client: TestClient, raw: bytes) -> tuple[int, dict[str, Any]]:
    r = await client.post("/v1/txs?wait=commit", data=raw, headers=HDR)
    return r.status, await r.json()


async def register(
    c: TestConsortium,
    client: TestClient,
    handle: str = SCANNER,
    kind: str = "scanner.bill",
    org: str = "owner",
) -> TestDevice:
    dev, raw = c.register_device(handle, kind=kind, subsystem="billing", org=org)
    st, body = await submit(client, raw)
    assert st == 200 and body["result"]["ok"], body
    return dev


def bill_values(
    energy_wh: int = 7_986_000, amount_fen: int = 436_994, **extra: int | str
) -> dict[str, int | str]:
    values: dict[str, int | str] = {
        "account": "5127336124",
        "period_start": "2025-01-01",
        "period_end": "2025-01-31",
        "previous_reading_wh": 41_073_840,
        "current_reading_wh": 41_113_770,
        "multiplier": 200,
        "energy_wh": energy_wh,
        "tariff.single.energy_wh": energy_wh,
        "tariff.single.price_uyuan_per_kwh": 547_200,
        "amount_fen": amount_fen,
        "flagged": "",
        "checks_failed": "",
        "min_confidence_permille": 982,
    }
    values.update(extra)
    return values


def bill_payload(
    image: bytes = b"bill-image-1",
    *,
    device: str | None = SCANNER,
    review: str = "auto",
    values: dict[str, int | str] | None = None,
    supersedes: bytes | None = None,
    **changes: Any,
) -> DocumentPayload:
    fields = {
        "doc_type": ShortStr("electricity_bill"),
        "source_sha256": Hash32(hashlib.sha256(image).digest()),
        "media_type": Text("image/png"),
        "row": 0,
        "device": Handle(device) if device is not None else None,
        "fields": make_fields(values if values is not None else bill_values()),
        "review": ShortStr(review),
        "supersedes": Hash32(supersedes) if supersedes is not None else None,
    }
    fields.update(changes)
    return DocumentPayload(**fields)


def sign(key: KeyPair, chain: ChainRef, nonce: int, payload: object) -> bytes:
    raw, _ = sign_tx(key, chain, "document", nonce, payload)
    return raw
