"""A watcher that follows the chain, runs the detectors of ``energy.detect`` on the signed readings it sees, and
raises each new finding as an alarm (signed by the monitoring org's key), once per episode.

It reads committed blocks (``/v1/blocks/{h}?format=msgpack``) from the height it started at, so every reading it
judges carries the hash of the tx that put it on chain, and that hash is the alarm's evidence. Detectors run:
- ``check_silent`` per watched device: no reading for ``silent_factor`` × the device's interval (at least
  ``rules.silent_min_ms``). A device is judged only after the watcher has seen one reading of it, so a restart
  of the watcher (or of the whole site) is not mistaken for silence;
- ``check_counter`` on each watched energy counter's recent readings: negative deltas (and rises beyond rated
  power when the device's rating is given);
- ``check_gaps`` on each watched device's recent reading times: closed holes longer than ``gap_factor`` × its
  interval (at least ``rules.gap_min_ms``); a gap that is the end of a silence already raised is not raised again;
- the collector's quality flags on the readings (``maintenance.flagged``: spikes, source errors, stale values,
  clock drift, meter replacements), a run of flagged readings one episode.

Raising is idempotent: the chain refuses a second raise of an episode (409), which the watcher counts as known.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

from access.client import sign_in
from energy.detect import Finding, Obs, Rules, check_counter, check_gaps, check_silent
from maintenance import client as mc
from maintenance.findings import raise_from_finding
from maintenance.flagged import FlagEpisodes, QualityFinding
from node import codec
from node.chain import ChainRef
from node.client import NodeClient
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.types import Block, ReadingBatch, Tx

MAX_BLOCKS_PER_TICK = 200
MAX_TXS_PER_BLOCK = 100_000
"""Txs read one by one from a block the node will not give whole (a bound, far above any real block)."""
RECENT = 240
"""Readings of a counter kept for ``check_counter`` (20 minutes at one every 5 s)."""


@dataclass(frozen=True, slots=True)
class Watched:
    handle: str
    interval_ms: int
    """How often the device reports (its agent's poll interval)."""
    counter: str | None = None
    """The energy counter quantity to check, if it has one."""
    rated_power_w: float | None = None


@dataclass(frozen=True, slots=True)
class Raised:
    finding: Finding | QualityFinding
    done: mc.Done


class Watcher:
    def __init__(
        self,
        client: NodeClient,
        key: KeyPair,
        chain: ChainRef,
        devices: list[Watched],
        rules: Rules,
        start_height: int,
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.client = client
        self.key = key
        self.chain = chain
        self.devices = {d.handle: d for d in devices}
        self.rules = rules
        self.height = start_height
        self.log = log
        self.last: dict[str, Obs] = {}
        self.recent: dict[str, collections.deque[Obs]] = {
            h: collections.deque(maxlen=RECENT) for h in self.devices
        }
        self.times: dict[str, collections.deque[Obs]] = {
            h: collections.deque(maxlen=RECENT) for h in self.devices
        }
        """Each device's recent readings, one per time stamp (for ``check_gaps``)."""
        self.flags = FlagEpisodes()
        self.known: set[tuple[str, str, int]] = set()
        self.token: str | None = None
        """A bearer token for the watcher's key, asked when a block is first refused signed out (and on expiry)."""

    async def follow(self) -> int:
        """Read the blocks committed since the last call (at most ``MAX_BLOCKS_PER_TICK``); returns how many."""
        head = int((await self.client.status())["height"])
        n = 0
        while self.height < head and n < MAX_BLOCKS_PER_TICK:
            h = self.height + 1
            for raw in await self._block_txs(h):
                tx = codec.decode(Tx, bytes(raw))
                if tx.kind != "readings":
                    continue
                batch = codec.decode(ReadingBatch, tx.payload)
                w = self.devices.get(batch.device)
                if w is None:
                    continue
                ref = sha256(bytes(raw)).hexdigest()
                times = self.times[batch.device]
                for rd in batch.readings:
                    o = Obs(rd.ts_ms, rd.seq, rd.value, rd.flags, ref)
                    if batch.device not in self.last or rd.ts_ms >= self.last[batch.device].ts_ms:
                        self.last[batch.device] = o
                    if w.counter is not None and rd.quantity == w.counter:
                        self.recent[batch.device].append(o)
                    if not times or rd.ts_ms > times[-1].ts_ms:
                        times.append(o)
                    self.flags.see(batch.device, str(rd.quantity), rd.ts_ms, rd.flags, ref)
            self.height = h
            n += 1
        return n

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _block_txs(self, h: int) -> list[bytes]:
        """Block ``h``'s encoded txs that this watcher may read. The encoded block when the node gives it (every
        payload in it readable: the watcher signs in with its org key once it is refused), else each tx through
        the tx route, which withholds the payloads of other orgs' members-only data (those are not ours to
        watch)."""
        base = f"{self.client.base}/v1/blocks/{h}"
        for attempt in range(2):
            async with self.client.session.get(base, params={"format": "msgpack"}, headers=self._auth()) as r:
                if r.status == 200:
                    return [bytes(t) for t in codec.decode(Block, await r.read()).txs]
                if r.status not in (401, 403):
                    raise CempError(Code.UNAVAILABLE, f"block {h}: node answered {r.status}")
                if r.status == 403 or attempt:
                    break
            self.token = str((await sign_in(self.client, self.key))["token"])  # first, or expired
        async with self.client.session.get(base, headers=self._auth()) as r:
            if r.status != 200:
                raise CempError(Code.UNAVAILABLE, f"block {h} (JSON): node answered {r.status}")
            listed = (await r.json())["txs"]
        out = []
        for t in listed[:MAX_TXS_PER_BLOCK]:
            async with self.client.session.get(
                f"{self.client.base}/v1/txs/{t['hash']}", headers=self._auth()
            ) as r:
                if r.status != 200:
                    raise CempError(Code.UNAVAILABLE, f"tx {t['hash']}: node answered {r.status}")
                raw = (await r.json()).get("raw")
            if raw:
                out.append(bytes.fromhex(raw))
        return out

    def findings(self, now_ms: int) -> list[Finding]:
        out: list[Finding] = []
        for h, w in self.devices.items():
            last = self.last.get(h)
            if last is not None:
                out += check_silent(h, last, now_ms, w.interval_ms, self.rules)
            if w.counter is not None and len(self.recent[h]) > 1:
                obs = sorted(self.recent[h], key=lambda o: (o.ts_ms, o.seq))
                out += check_counter(h, obs, w.rated_power_w, self.rules)
            if len(self.times[h]) > 1:
                # the end of a silence already raised is the same episode (both start one interval after the
                # last reading before the hole)
                out += [
                    g
                    for g in check_gaps(h, list(self.times[h]), w.interval_ms, self.rules)
                    if (h, "silent", g.since_ms) not in self.known
                ]
        return [f for f in out if f.key not in self.known]

    async def raise_new(self, now_ms: int) -> list[Raised]:
        """Raise every finding not raised yet; returns the alarms this call raised."""
        out = []
        for f in self.findings(now_ms):
            w = self.devices[f.device]
            quantity = w.counter if f.kind.value in ("negative_delta", "over_rated") and w.counter else ""
            try:
                done = await mc.raise_alarm(
                    self.client, self.key, self.chain, raise_from_finding(f, quantity)
                )
            except CempError as e:
                if e.code == Code.ALREADY_EXISTS:
                    self.known.add(f.key)  # raised before (this episode, or the slot's open alarm)
                    continue
                raise
            self.known.add(f.key)
            out.append(Raised(f, done))
        for q in self.flags.unraised():
            if q.key in self.known:
                q.run.raised = True
                continue
            try:
                done = await mc.raise_alarm(self.client, self.key, self.chain, q.payload())
            except CempError as e:
                if e.code != Code.ALREADY_EXISTS:
                    raise
                q.run.raised = True  # raised before, or an alarm of its slot is still open
                self.known.add(q.key)
                continue
            q.run.raised = True
            self.known.add(q.key)
            out.append(Raised(q, done))
        return out
