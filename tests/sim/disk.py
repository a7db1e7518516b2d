"""A simulated disk under ``MemoryStore``: what a write with ``sync=False`` promises, and what it does not.

LevelDB appends every write batch to its log; ``sync=True`` fsyncs the log, which makes that batch and every
earlier one durable. A machine that loses power keeps a prefix of the unsynced batches (the log is replayed up
to the first record that did not reach the disk) and loses the rest. ``SimStore`` keeps that model exactly:
``durable`` is what survives, ``unsynced`` the batches written since the last sync, and ``power_off(rng)``
returns what a restarted node finds: ``durable`` plus a seeded prefix of ``unsynced``.

A power failure can also strike *during* a synced write (``fail_next_sync``): the batch never reaches the disk,
and the writer dies with ``PowerFailure`` before it can do anything else (send, apply, acknowledge).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from node.store import MemoryStore


class PowerFailure(BaseException):
    """The simulated machine lost power in the middle of a write. A BaseException, so that no ``except
    Exception`` in the node swallows it: the node's task dies at that point, as the process would."""


class SimStore(MemoryStore):
    def __init__(self, durable: Mapping[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.durable: dict[bytes, bytes] = dict(durable or {})
        self.data = dict(self.durable)
        self._sorted = False
        self.unsynced: list[dict[bytes, bytes | None]] = []
        self.dead = False
        self.fail_in = -1
        """Synced writes to let through before the power fails during one (-1: never)."""
        self.on_power_failure: Callable[[], None] = lambda: None
        self.observer: Callable[[Mapping[bytes, bytes | None]], None] = lambda _c: None
        """Sees every batch before it is applied (the simulator's checks)."""
        self.synced_writes = 0
        self.unsynced_writes = 0

    def write(self, changes: Mapping[bytes, bytes | None], *, sync: bool) -> None:
        if self.dead:
            raise PowerFailure("write to the store of a node that lost power")
        if sync:
            if self.fail_in == 0:
                self.dead = True
                self.on_power_failure()
                raise PowerFailure("power failed during a synced write")
            if self.fail_in > 0:
                self.fail_in -= 1
        self.observer(changes)
        super().write(changes, sync=sync)
        self.unsynced.append(dict(changes))
        if sync:
            self.synced_writes += 1
            self._flush()
        else:
            self.unsynced_writes += 1

    def _flush(self) -> None:
        d = self.durable
        for batch in self.unsynced:
            for k, v in batch.items():
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = v
        self.unsynced.clear()

    def power_off(self, rng: random.Random | None) -> dict[bytes, bytes]:
        """What the disk holds after the node stops now. A power loss (``rng`` given) keeps the durable state plus
        a random prefix of the unsynced batches; a process crash (``rng`` None) keeps them all (the OS has them)."""
        self.dead = True
        keep = len(self.unsynced) if rng is None else rng.randint(0, len(self.unsynced))
        self.unsynced = self.unsynced[:keep]
        self._flush()
        return dict(self.durable)


__all__ = ["PowerFailure", "SimStore"]
