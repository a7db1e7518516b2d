"""Transaction kinds: the extension point for everything the ledger records.

A kind names its payload class and implements ``check`` (read-only validation that raises ``CempError``) and
``apply`` (writes through the overlay; called only after ``check`` passed on the same view). ``admit`` is what
the mempool calls for a tx that is not in a block yet: it checks against committed state plus the pending
effects of earlier admitted txs, and returns the small-state writes (device sequence, registrations) that
later admissions must see.

What a chain knows is a ``KindRegistry`` built once by the composition root (``cemp.wiring``) and passed to every
``Ledger``: the core kinds of ``node`` (``node.corekinds``) plus the applications' kinds (``handle.put``, ...).
Nothing registers itself at import and nothing is looked up by module name, so a node and ``cemp verify`` that
are given the same registry execute the same txs the same way; the apply path does not change. The registry may
carry an ``Authorizer`` (who may send which kind for which org), which the ledger and the mempool run before a
kind's own checks; kinds ask ``acting_org(env, tx)`` which org a tx acts for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from node.adminkeys import AdminKeys
from node.state import StateView
from node.types import ConsensusParams, Genesis, Hash32, Height, Org, TimestampMs, Tx


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a tx acts for, as the chain's ``Authorizer`` decided before the kind's ``check`` ran."""

    org: Org
    """The org the tx acts for."""
    person: bool
    """True: a person registered under ``org`` signed it; False: ``org``'s admin key did."""
    roles: frozenset[str]
    """The person's roles (an admin key holds every role and is shown as ``{"admin"}``)."""


@dataclass(frozen=True, slots=True)
class Env:
    """What a tx may depend on besides state: the same on every node for a given block."""

    genesis: Genesis
    height: Height
    time_ms: TimestampMs
    """Block time; the mempool uses the wall clock."""
    tx_hash: Hash32
    tx_index: int
    actor: Actor | None = None
    """Set by the chain's ``Authorizer`` (``KindRegistry.authorizer``); None without one, or when the sender is
    neither an org admin nor a person it knows (a device key: the kind decides)."""
    admins: AdminKeys | None = None
    """The org admin keys in force at ``height`` (``node.adminkeys``), built by the ledger for the block and by
    the mempool for the next block; None (a test's bare env) means the genesis keys."""

    @property
    def params(self) -> ConsensusParams:
        return self.genesis.params

    @property
    def admin_keys(self) -> AdminKeys:
        """Which key is each org's admin key at this height: ask this, never ``genesis.orgs``."""
        return self.admins if self.admins is not None else AdminKeys.of_genesis(self.genesis)


class Writer(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def put_new(self, key: bytes, value: bytes) -> None: ...

    def put_new_many(self, items: dict[bytes, bytes]) -> None: ...

    def delete(self, key: bytes) -> None: ...


class TxKind(Protocol):
    name: str
    payload_type: type[Any]

    def check(self, view: StateView, env: Env, tx: Tx, payload: Any) -> None: ...

    def apply(self, state: Writer, env: Env, tx: Tx, payload: Any) -> None: ...

    def admit(self, view: StateView, env: Env, tx: Tx, payload: Any) -> dict[bytes, bytes]: ...

    def describe(self, payload: Any) -> dict[str, Any]:
        """JSON-friendly view of a payload for the API and explorer."""
        ...


ReadScope = tuple[str, str, str | None]
"""(org, data kind, device or handle): what a tx's payload shows, for the node's read gate (``node.readgate``). A
kind whose payloads carry data not everyone may read (readings, documents, handle values without public read)
has a ``read_scope(view, payload) -> ReadScope | None`` method; the API and explorer withhold the payload and raw
bytes of such a tx from a request the gate does not let read that scope. Kinds without the method are public."""


class Authorizer(Protocol):
    """Decides, before a kind's own checks, whether the sender may send this kind, and for which org.

    Called on admission (mempool, wall-clock ``env``) and again on apply (block ``env``), on every node and in
    ``cemp verify``: it must depend only on ``view``, ``env`` and the tx. Raises ``CempError`` (NOT_AUTHORIZED)
    to refuse; returns the ``Actor`` (org admin or a permitted person), or None for a key it does not know.
    """

    def authorize(self, view: StateView, env: Env, tx: Tx, payload: Any) -> Actor | None: ...


def acting_org(env: Env, tx: Tx) -> Org | None:
    """The org a tx acts for: the authorizer's decision if there is one, else the org whose admin key (at the
    env's height, ``Env.admin_keys``) signed it.

    Kinds use this instead of comparing ``tx.sender`` with admin keys, so that people an org registered (with a
    role that allows the kind) act for their org, and a chain without an authorizer behaves as before.
    """
    if env.actor is not None:
        return env.actor.org
    return env.admin_keys.org_of(tx.sender)


class KindRegistry(Mapping[str, TxKind]):
    """The tx kinds one chain knows, by name; immutable once built (every node of a chain must hold the same).

    ``authorizer`` (optional) runs before every kind's checks, on admission and on apply (``Authorizer``).
    """

    def __init__(self, kinds: Iterable[TxKind], authorizer: Authorizer | None = None) -> None:
        self.authorizer = authorizer
        self._kinds: dict[str, TxKind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"tx kind {kind.name!r} is given twice")
            self._kinds[kind.name] = kind

    def __getitem__(self, name: str) -> TxKind:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def __repr__(self) -> str:
        return f"KindRegistry({sorted(self._kinds)})"
