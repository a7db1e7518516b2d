"""An in-process ledger driven block by block, with the accounting kinds registered, for accounting tests."""

from __future__ import annotations

from typing import Any

from accounting.factors import shipped_sets
from accounting.inventory import Head
from accounting.model import BoundaryDevice, BoundaryPayload, SitePayload
from cemp import wiring
from node.chain import Ledger, header_hash
from node.documents import DocumentPayload, make_fields
from node.store import MemoryStore
from node.types import Handle, Hash32, ShortStr, Text, TimestampMs, TxResult
from tests.support.testing import TestConsortium, TestDevice

HOUR_MS = 3_600_000
SITE = "hohhot"
BUILDING = "88.123.45/site.hohhot"


def site_payload(version: int = 1, area: int = 100_000, **kw: Any) -> SitePayload:
    base: dict[str, Any] = {
        "site_id": SITE,
        "version": version,
        "name": "Hohhot commercial complex",
        "floor_area_m2": area,
        "address": "Hohhot, Inner Mongolia",
        "province": "Inner Mongolia",
        "grid_region": "North China",
        "season_start": "10-15",
        "season_end": "04-15",
        "utc_offset_min": 480,
        "building": BUILDING,
        "utility_accounts": ("5127336124",),
        "hdd18_annual": 4186,
    }
    base.update(kw)
    return SitePayload(**base)


def boundary_payload(
    version: int, effective_ms: int, devices: list[tuple[str, str, str, str]], main: str | None = None
) -> BoundaryPayload:
    devs = tuple(
        BoundaryDevice(Handle(h), ShortStr(s), ShortStr(c), ShortStr(q)) for h, s, c, q in sorted(devices)
    )
    return BoundaryPayload(
        ShortStr(SITE), version, TimestampMs(effective_ms), devs, Handle(main) if main else None, Text("")
    )


class Chain:
    def __init__(self, consortium: TestConsortium | None = None) -> None:
        self.c = consortium or TestConsortium.create(n_nodes=1)
        self.store = MemoryStore()
        self.led = Ledger(self.store, self.c.genesis, wiring.kinds())
        self.nid = self.c.genesis.nodes[0].node_id
        self.time_ms = 1_800_000_000_000  # 2027-01-15: after every reading the tests write
        self.blocks: list[Any] = []

    def block(self, *raws: bytes) -> list[TxResult]:
        led = self.led
        self.time_ms += 1
        staged = led.execute(
            tuple(raws), time_ms=self.time_ms, proposer=self.nid, term=0, last_commit=led.cert(led.height)
        )
        block = led.sign_block(staged, self.c.node_keys[self.nid])
        h = header_hash(block.header)
        cert = tuple(led.vote(h, n, k) for n, k in self.c.node_keys.items())
        led.commit(block, staged, cert)
        self.blocks.append((block, cert))
        return staged.results

    def ok(self, *raws: bytes) -> None:
        res = self.block(*raws)
        assert all(r.code == 0 for r in res), res

    def admin(self, org: str, kind: str, payload: object) -> bytes:
        return self.c.admin_tx(org, kind, payload)

    def head(self) -> Head:
        led = self.led
        return Head(led.height, led.last_hash, led.app_hash, led.last_time_ms)

    def factors(self, years: tuple[int, ...] = (2021, 2022, 2023)) -> None:
        self.ok(*(self.admin("regulator", "factors", s) for s in shipped_sets() if s.data_year in years))

    def device(self, handle: str, kind: str = "meter.energy") -> TestDevice:
        dev, raw = self.c.register_device(handle, kind=kind)
        self.ok(raw)
        return dev

    def counter(
        self,
        dev: TestDevice,
        start_ms: int,
        hours: int,
        wh_per_hour: int | list[int],
        start_wh: int = 1000,
        per_hour: int = 4,
        quantity: str = "energy.import",
        flags: int = 0,
    ) -> None:
        """Readings of a counter: ``per_hour`` evenly spaced readings per hour, rising ``wh_per_hour`` each hour."""
        vals = [(start_ms - 1, quantity, start_wh, "Wh")]  # the counter before the first hour
        v = start_wh
        step_ms = HOUR_MS // per_hour
        for h in range(hours):
            inc = wh_per_hour[h] if isinstance(wh_per_hour, list) else wh_per_hour
            for i in range(per_hour):
                ts = start_ms + h * HOUR_MS + (i + 1) * step_ms - 1
                v += inc // per_hour + (inc % per_hour if i == per_hour - 1 else 0)
                vals.append((ts, quantity, v, "Wh"))
        for i in range(0, len(vals), 1000):
            self.ok(dev.batch(self.c.chain, vals[i : i + 1000], flags=flags))

    def document(
        self, doc_type: str, fields: dict[str, int | str], source: bytes, org: str = "owner"
    ) -> bytes:
        import hashlib

        p = DocumentPayload(
            ShortStr(doc_type),
            Hash32(hashlib.sha256(source).digest()),
            Text("application/pdf"),
            0,
            None,
            make_fields(fields),
            ShortStr("auto"),
            None,
        )
        return self.admin(org, "document", p)
