"""Which key is each org's admin key at a height: the genesis key, replaced by ``org.admin_rotate`` txs.

An org's admin key is named in the genesis; an ``org.admin_rotate`` tx (``node.adminrotation``) replaces it from
the block after the one that commits the rotation. The history is state (``gadmin/<org>``, part of the app hash):
a list of (since height, public key) epochs over the genesis key, like a node's key history.

``admin_keys_at`` is the one answer to "which key is org X's admin at this state and height"; the ledger builds
it once per block (``Env.admins``), the mempool once per committed height, and read paths for the next block
(``Ledger.admin_keys``). Every place that asks whether a key is an org's admin asks an ``AdminKeys``:
- ``org_of(key)``: the org whose admin key ``key`` is at that height (None for any other key);
- ``key_of(org)``: the org's admin key at that height;
- ``retired(key)``: the org and height from which a former admin key no longer counts; the ledger and the
  mempool refuse every tx such a key signs with ``Code.KEY_RETIRED`` (``refuse_retired``), so a tx the old key
  signed that was still in a mempool when the rotation applied is refused on apply, on every node alike;
- ``ever(key)``: the org a key is or was (or is about to be) the admin key of; such a key never becomes another
  org's admin key, a node key or a person's key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from node import codec, schema
from node.errors import CempError, Code
from node.store import prefix_stop
from node.types import Genesis, Height, Org, PublicKey, ShortStr


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Scanner(Protocol):
    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class AdminEpoch:
    since: Height
    """First block height from which this key is the org's admin key."""
    pubkey: PublicKey


@dataclass(frozen=True, slots=True)
class AdminHistory:
    """State of ``schema.admin_keys(org)``: the rotations of an org's admin key."""

    org: ShortStr
    epochs: tuple[AdminEpoch, ...]
    """In order of ``since`` (strictly increasing); the genesis key counts before the first."""


def load_admin_histories(store: Scanner) -> dict[str, tuple[AdminEpoch, ...]]:
    """Every org's admin key rotations (orgs never rotated are absent), from committed state (a ``Store``)."""
    p = schema.ADMIN_KEYS_PREFIX
    out: dict[str, tuple[AdminEpoch, ...]] = {}
    for _, v in store.iterate(p, prefix_stop(p)):
        h = codec.decode(AdminHistory, v)
        out[str(h.org)] = h.epochs
    return out


def admin_history(view: Reader, org: str) -> tuple[AdminEpoch, ...]:
    raw = view.get(schema.admin_keys(org))
    return codec.decode(AdminHistory, raw).epochs if raw is not None else ()


class AdminKeys:
    """The org admin keys in force at one height, and the keys they replaced (see the module docstring)."""

    __slots__ = ("_current", "_ever", "_key_of", "_retired", "height")

    def __init__(
        self, genesis: Genesis, histories: Mapping[str, tuple[AdminEpoch, ...]], height: int
    ) -> None:
        self.height = height
        self._current: dict[bytes, Org] = {}
        self._key_of: dict[str, PublicKey] = {}
        self._retired: dict[bytes, tuple[Org, int]] = {}
        self._ever: dict[bytes, Org] = {}
        for org in genesis.orgs:
            key = org.admin_key
            self._ever[bytes(key)] = org
            for e in histories.get(org.name, ()):
                self._ever[bytes(e.pubkey)] = org
                if e.since <= height:
                    self._retired[bytes(key)] = (org, int(e.since))
                    key = e.pubkey
            self._current[bytes(key)] = org
            self._key_of[str(org.name)] = key

    @classmethod
    def of_genesis(cls, genesis: Genesis) -> AdminKeys:
        """The keys of a chain without rotations (what a test's bare ``Env`` sees)."""
        return cls(genesis, {}, 0)

    def org_of(self, key: bytes) -> Org | None:
        """The org whose admin key ``key`` is at this height."""
        return self._current.get(bytes(key))

    def key_of(self, org: str) -> PublicKey | None:
        """Org ``org``'s admin key at this height (None: no such org)."""
        return self._key_of.get(org)

    def retired(self, key: bytes) -> tuple[Org, int] | None:
        """(org, height from which it no longer counts) for a former admin key; None for any other key."""
        return self._retired.get(bytes(key))

    def ever(self, key: bytes) -> Org | None:
        """The org ``key`` is, was or is about to be the admin key of."""
        return self._ever.get(bytes(key))

    def current(self) -> dict[str, PublicKey]:
        """Org name -> admin key at this height."""
        return dict(self._key_of)


def admin_keys_at(store: Scanner, genesis: Genesis, height: int) -> AdminKeys:
    """Which key is each org's admin key for block ``height``, given the committed state in ``store``.

    A rotation takes effect from the block after the one that commits it, so for the block being executed the
    committed state before it is the whole answer (``Ledger.admin_keys`` caches this)."""
    return AdminKeys(genesis, load_admin_histories(store), height)


def refuse_retired(admins: AdminKeys, sender: bytes) -> None:
    """Refuse a tx signed by a former admin key (on admission and on apply, before any kind's checks)."""
    got = admins.retired(sender)
    if got is None:
        return
    org, since = got
    new = admins.key_of(org.name)
    raise CempError(
        Code.KEY_RETIRED,
        f"this key was org {org.name}'s admin key until block {since - 1}; from block {since} the org's admin "
        f"key is {bytes(new or b'').hex()[:16]}...: sign with it",
    )
