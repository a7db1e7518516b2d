"""Read routes look at a bounded number of stored records per request and page with cursors.

Issue 8: ``/v1/devices/{h}/readings?quantity=nomatch`` scanned every reading of the device (747 ms at 250k
readings, no login). Cost is counted in stored readings the route reads, not in wall time.
"""

from __future__ import annotations

import msgpack
from aiohttp.test_utils import TestClient

from node import codec, schema
from node.api import MAX_READINGS_SCAN
from node.server import Node
from node.types import DeviceRecord
from tests.support.testing import TestConsortium
from tests.unit.test_api import registered

N = 60_000


class CountingIterate:
    def __init__(self, node: Node) -> None:
        self.store = node.ledger.store
        self.inner = self.store.iterate
        self.pairs = 0

    def __call__(self, start: bytes, stop: bytes, **kw: object):  # type: ignore[no-untyped-def]
        for kv in self.inner(start, stop, **kw):  # type: ignore[arg-type]
            if kv[0][:1] == b"r":
                self.pairs += 1
            yield kv


async def test_filtered_readings_scan_is_bounded_and_pages(
    consortium: TestConsortium, node_client: tuple[Node, TestClient]
) -> None:
    node, client = node_client
    dev = await registered(consortium, client)
    rec = node.ledger.store.get(schema.device(dev.handle))
    assert rec is not None
    d = codec.decode(DeviceRecord, rec)
    t0 = 1_760_000_000_000
    node.ledger.store.write(
        {
            schema.reading(d.devnum, t0 + i * 1000, i + 1): msgpack.packb(
                ("power" if i != N - 7 else "rare", i, "W", 0), use_bin_type=True
            )
            for i in range(N)
        },
        sync=False,
    )
    counter = CountingIterate(node)
    node.ledger.store.iterate = counter  # type: ignore[method-assign]
    url = f"/v1/devices/{dev.handle}/readings"
    r = await client.get(url, params={"quantity": "nomatch", "from": str(t0)})
    assert r.status == 200
    body = await r.json()
    assert body["readings"] == []
    assert counter.pairs <= MAX_READINGS_SCAN, f"one request read {counter.pairs} stored readings"
    assert body["next"], "a page that stopped at the scan budget must say where to go on"
    # following the cursor finds the one rare reading and then ends
    found, cursor, pages = [], body["next"], 1
    while cursor:
        r = await client.get(url, params={"quantity": "rare", "from": str(t0), "after": cursor})
        assert r.status == 200
        page = await r.json()
        found += page["readings"]
        cursor = page["next"]
        pages += 1
        assert pages < 10
    assert [x["value"] for x in found] == [N - 7]
    # an unfiltered page is full at `limit`, and its cursor continues exactly after it
    a = await (await client.get(url, params={"limit": "5", "from": str(t0)})).json()
    b = await (await client.get(url, params={"limit": "5", "from": str(t0), "after": a["next"]})).json()
    assert [x["seq"] for x in a["readings"] + b["readings"]] == list(range(1, 11))
    for bad in ("x", "1-", "-1", "1-2-3", "²-1", "9" * 30 + "-1"):
        r = await client.get(url, params={"after": bad})
        assert r.status == 400, bad


async def test_device_list_pages_with_a_cursor(
    consortium: TestConsortium, node_client: tuple[Node, TestClient]
) -> None:
    _, client = node_client
    for i in range(7):
        await registered(consortium, client, f"88.123.45/101.1.{i}")
    seen, after = [], None
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        page = await (await client.get("/v1/devices", params=params)).json()
        seen += [d["handle"] for d in page["devices"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(f"88.123.45/101.1.{i}" for i in range(7))
    for bad in ("x" * 300, "\x00"):
        assert (await client.get("/v1/devices", params={"after": bad})).status == 400
