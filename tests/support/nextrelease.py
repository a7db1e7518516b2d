"""The "next release" of CEMP for the upgrade tests: today's code plus two changes a new release would bring.

- a storage migration 1 -> 2 (``node.migrations``): a new local index, the number of blocks per proposer, written
  as meta records (not state: the app hash does not change). Compatible on the wire: old and new nodes run side by
  side, so it is deployed by a rolling upgrade;
- a new tx kind ``note`` (an org admin's signed memo). Not compatible: an old node refuses it at admission and
  would mark it invalid inside a block where a new node applies it, so the nodes' states would part. It is
  deployed behind a coordinated halt height.

Run it as ``python -m tests.support.nextrelease node --config X`` (anything ``cemp`` takes): it installs both
into the real modules, then runs the real command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from cemp import cli, wiring
from node import codec, migrations, schema
from node.errors import CempError, Code
from node.state import StateView
from node.store import Store, prefix_stop
from node.txkinds import Env, KindRegistry, Writer
from node.types import Block, ShortStr, Tx

NEXT_SCHEMA = 2
BLOCKS_BY_PROPOSER = b"Mnext.blocks-by/"


def blocks_by_proposer(store: Store) -> dict[bytes, bytes | None]:
    counts: dict[str, int] = {}
    for key, raw in store.iterate(schema.BLOCK, prefix_stop(schema.BLOCK)):
        if len(key) != 9:
            continue
        b = codec.decode(Block, raw)
        counts[b.header.proposer] = counts.get(b.header.proposer, 0) + 1
    return {BLOCKS_BY_PROPOSER + k.encode(): str(v).encode() for k, v in counts.items()}


@dataclass(frozen=True, slots=True)
class Note:
    text: ShortStr


class NoteKind:
    name = "note"
    payload_type = Note

    def check(self, view: StateView, env: Env, tx: Tx, p: Note) -> None:
        if env.admin_keys.org_of(tx.sender) is None:
            raise CempError(Code.NOT_AUTHORIZED, "notes are signed by an org admin key")

    def apply(self, state: Writer, env: Env, tx: Tx, p: Note) -> None:
        return None

    def admit(self, view: StateView, env: Env, tx: Tx, p: Note) -> dict[bytes, bytes]:
        self.check(view, env, tx, p)
        return {}

    def describe(self, p: Note) -> dict[str, Any]:
        return {"text": p.text}


def install() -> None:
    migrations.MIGRATIONS[1] = ("index the number of blocks per proposer (next release)", blocks_by_proposer)
    migrations.SCHEMA_VERSION = NEXT_SCHEMA
    old_kinds = wiring.kinds

    def kinds() -> KindRegistry:
        return KindRegistry([*old_kinds().values(), NoteKind()])

    wiring.kinds = kinds  # type: ignore[assignment]


if __name__ == "__main__":
    install()
    sys.exit(cli.main())
