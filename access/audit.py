"""The audit trail: every administrative action is a signed tx on chain; this lists them.

An entry is one tx that is not a device's data (``readings``, or a ``document`` a scanner signed): membership,
device registration, handle writes, factor sets, sites and boundary changes, ratings, report issues, people,
grants, data policies, and any kind an application adds (alarm and work-order steps) -- refused ones too, since a
refused attempt is part of the record. Each names its actor (org admin, person, node or other key), its object
(the device, handle, site, factor set, grant, person ... it acts on), its block time and outcome.

``scan`` reads at most ``max_blocks`` blocks per call and says where to continue, so a node answers an audit of
years of chain in bounded pieces (``cemp audit`` shows a progress bar over them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from access.model import load_person
from node.chain import Ledger
from node.crypto import sha256
from node.errors import CempError
from node.membership import load_nodes
from node.state import StateView
from node.types import PublicKey

DATA_KINDS = frozenset({"readings"})
OBJECT_FIELDS = ("grant_id", "site_id", "set_id", "device", "handle", "node_id", "doc_type", "pubkey")
MAX_BLOCKS = 2000
MAX_ENTRIES = 5000


@dataclass(frozen=True, slots=True)
class Filters:
    actor: str = ""
    """Matches an actor's org, name or public key (hex prefix), case-insensitively; empty: all."""
    object: str = ""
    """Matches the object (substring, case-insensitive); empty: all."""
    kind: str = ""
    from_ms: int = 0
    to_ms: int = 1 << 62


def object_of(kind: str, described: dict[str, Any]) -> str:
    if kind == "org.admin_rotate" and described.get("org"):
        return f"org {described['org']} admin key"
    if kind == "membership":
        ch = described.get("change") or {}
        if isinstance(ch, dict) and "node_id" in ch:
            return f"node {ch['node_id']}"
    for f in OBJECT_FIELDS:
        v = described.get(f)
        if isinstance(v, str) and v:
            return v if f != "pubkey" else f"key {v[:16]}"
    for k, v in described.items():  # an application's kind: its first ``..._id`` or ``id`` field
        if (k == "id" or k.endswith("_id")) and isinstance(v, str | int) and str(v):
            return str(v)
    return kind


class Actors:
    """Names of the keys that sign txs, looked up once per scan."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.view = StateView(ledger.store)
        self.nodes = {r.pubkey: r for r in load_nodes(self.view, ledger.genesis).values()}
        self.admins = ledger.admin_keys()
        self.cache: dict[bytes, dict[str, str]] = {}

    def of(self, key: bytes) -> dict[str, str]:
        got = self.cache.get(key)
        if got is not None:
            return got
        org = self.admins.ever(key)  # an admin key then, even if a rotation has replaced it since
        if org is not None:
            a = {"type": "admin", "org": str(org.name), "name": f"{org.name} admin"}
            retired = self.admins.retired(key)
            if retired is not None:
                a["name"] += f" (key replaced from block {retired[1]})"
        elif (p := load_person(self.view, key)) is not None:
            a = {"type": "person", "org": str(p.org), "name": str(p.name), "roles": ",".join(p.roles)}
        elif (n := self.nodes.get(PublicKey(key))) is not None:
            a = {"type": "node", "org": str(n.org), "name": f"node {n.node_id}"}
        else:
            a = {"type": "key", "org": "", "name": "device or other key"}
        a["pubkey"] = key.hex()
        if len(self.cache) < 10_000:
            self.cache[key] = a
        return a


def _match_actor(a: dict[str, str], q: str) -> bool:
    q = q.lower()
    return (
        q in (a.get("org", "").lower(), a.get("name", "").lower())
        or a["pubkey"].startswith(q)
        or (len(q) > 2 and q in a.get("name", "").lower())
    )


def scan(
    ledger: Ledger,
    start: int,
    f: Filters,
    max_blocks: int = MAX_BLOCKS,
    max_entries: int = MAX_ENTRIES,
) -> tuple[list[dict[str, Any]], int | None]:
    """Audit entries of blocks ``start`` .. (bounded); returns them and the next height to ask for (None: done)."""
    actors = Actors(ledger)
    out: list[dict[str, Any]] = []
    h = max(1, start)
    stop = min(ledger.height, h + max_blocks - 1)
    while h <= stop:
        b = ledger.block(h)
        if b is None:
            break
        if b.header.time_ms > f.to_ms:
            return out, None
        if b.header.time_ms < f.from_ms:
            h += 1
            continue
        results = ledger.results(h, b.header)
        for i, raw in enumerate(b.txs):
            try:
                d = ledger.decode_tx(raw)
            except CempError:
                continue
            if d.tx.kind in DATA_KINDS or (f.kind and d.tx.kind != f.kind):
                continue
            a = actors.of(d.tx.sender)
            if d.tx.kind == "document" and a["type"] == "key":
                continue  # a scanner's bill: device data, not an administrative action
            if f.actor and not _match_actor(a, f.actor):
                continue
            described = d.kind.describe(d.payload)
            obj = object_of(d.tx.kind, described)
            if f.object and f.object.lower() not in obj.lower():
                continue
            r = results[i] if i < len(results) else None
            out.append(
                {
                    "height": h,
                    "index": i,
                    "time_ms": b.header.time_ms,
                    "tx": sha256(raw).hex(),
                    "kind": d.tx.kind,
                    "actor": a,
                    "object": obj,
                    "ok": r is not None and r.code == 0,
                    "reason": r.reason if r is not None else "",
                    "payload": described,
                }
            )
        h += 1
        if len(out) >= max_entries:
            break
    return out, (h if h <= ledger.height else None)


CSV_COLUMNS = (
    "time_utc",
    "height",
    "index",
    "kind",
    "actor_type",
    "actor_org",
    "actor_name",
    "actor_pubkey",
    "object",
    "ok",
    "reason",
    "tx",
)


def csv_row(e: dict[str, Any]) -> list[str]:
    import datetime as dt

    t = dt.datetime.fromtimestamp(e["time_ms"] / 1000, tz=dt.UTC).isoformat(timespec="milliseconds")
    a = e["actor"]
    return [
        t,
        str(e["height"]),
        str(e["index"]),
        e["kind"],
        a["type"],
        a.get("org", ""),
        a.get("name", ""),
        a["pubkey"],
        e["object"],
        "yes" if e["ok"] else "no",
        e["reason"],
        e["tx"],
    ]
