"""The storage schema version of a data directory, and the migrations that bring an older one up to date.

The version is one meta record (``schema.META_SCHEMA``, a decimal string). A store made before versions existed
has no record but does have a genesis record: it is version 0. ``MIGRATIONS[v]`` takes a store from version ``v``
to ``v + 1`` in one synced write batch that also stamps ``v + 1``, so a crash between migrations leaves a store at
a version this code knows and the next start carries on.

A store at a version newer than ``SCHEMA_VERSION`` (written by a newer release) or not a version at all is
refused before anything reads or writes it: a downgrade would misread records it does not know.
"""

from __future__ import annotations

from collections.abc import Callable

from node import schema
from node.store import ReadSnapshot, Store

SCHEMA_VERSION = 1
"""The version this code reads and writes."""


class SchemaVersionError(Exception):
    """The data directory's schema version is unknown to this release."""


def _stamp(store: Store) -> dict[bytes, bytes | None]:
    """0 -> 1: nothing changes in the data; the version record itself is what version 1 adds."""
    return {}


MIGRATIONS: dict[int, tuple[str, Callable[[Store], dict[bytes, bytes | None]]]] = {
    0: ("stamp the schema version (no data change)", _stamp),
}
"""From version ``v``: a description and a function returning the changes to write with the stamp ``v + 1``."""


def stored_version(store: Store | ReadSnapshot) -> int | None:
    """The store's version; None for an empty (new) store; 0 for one made before versions existed."""
    raw = store.get(schema.META_SCHEMA)
    if raw is None:
        return 0 if store.get(schema.META_GENESIS) is not None else None
    try:
        text = raw.decode("ascii")
        if not text.isdigit():
            raise ValueError
        return int(text)
    except (UnicodeDecodeError, ValueError):
        raise SchemaVersionError(
            f"the data directory's schema version record is not a version number ({raw[:16]!r}); it was not "
            "written by CEMP: restore the data directory from a backup"
        ) from None


def check_version(store: Store) -> int | None:
    """Refuse a version this release does not know; return the stored version (None: new store)."""
    v = stored_version(store)
    if v is not None and v > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the data directory is at storage schema version {v}, newer than this release's {SCHEMA_VERSION}: "
            "it was written by a newer CEMP. Run that release (or newer); a downgrade is not supported, restore "
            "a backup taken before the upgrade instead"
        )
    return v


def migrate(store: Store, log: Callable[[str], None] = lambda _m: None) -> list[int]:
    """Bring ``store`` to ``SCHEMA_VERSION``; returns the versions it passed through (empty: nothing to do)."""
    v = check_version(store)
    if v is None:
        store.write({schema.META_SCHEMA: str(SCHEMA_VERSION).encode()}, sync=True)
        return []
    done: list[int] = []
    while v < SCHEMA_VERSION:
        what, step = MIGRATIONS[v]
        log(f"migrating the data directory from schema version {v} to {v + 1}: {what}")
        changes = dict(step(store))
        changes[schema.META_SCHEMA] = str(v + 1).encode()
        store.write(changes, sync=True)
        v += 1
        done.append(v)
    return done
