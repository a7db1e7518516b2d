"""The device agent: poll sources, flag quality, sign per device, keep a durable outbox, submit with retry.

A ``DeviceAgent`` is one device: its handle, its own Ed25519 key, its sources, its poll interval and its
quality state. A ``SiteAgent`` runs many of them against one outbox and a list of nodes. Both are a library
API (a gateway vendor can embed them); ``cemp collect --config FILE`` builds them from TOML
(``collector.config``).

Pipeline and the order that makes it crash-safe::

    poll ──> quality flags ──> memory buffer ──flush: sign + ONE fsynced outbox transaction──> outbox
    outbox ──submit (nonce order per device, wait=commit)──> any node ──committed──> delete from outbox

Invariants:
- a reading gets its sequence number and its tx its nonce inside the same SQLite transaction that stores
  the signed tx, so the counters can never run behind or ahead of the outbox, whatever the moment of a
  ``kill -9``; sequence numbers on chain are therefore contiguous per device unless a tx is dead-lettered;
- nothing is sent before it is fsynced in the outbox; after a restart the same signed bytes are sent
  again (the node answers "committed" for a tx it already has; the chain refuses a nonce or a sequence
  number twice), so a reading is never doubled;
- an entry leaves the outbox only when a node reports it committed (ok → deleted; marked invalid → dead
  letter) or refuses it definitively at admission (dead letter; the device's later txs are re-signed from
  the freed nonce, same readings and sequence numbers);
- per device, txs are submitted in nonce order, and a device signs only once its counters are known to be
  at or ahead of the chain: from pending outbox entries, from a resync (``GET /v1/nonces``,
  ``GET /v1/devices``), or, after ``resync_timeout_s`` without any node, from counters a node confirmed
  before. Until then its readings wait in memory (a ``kill -9`` in that window loses them: they were never
  signed);
- the SQLite work (and signing) runs on one worker thread, so those steps are serialised and never block
  the event loop;
- what a ``kill -9`` can lose is only what was polled but not yet signed: at most ``flush_interval_s`` of
  readings, or ``backlog_flush_interval_s`` while the nodes are away (then fewer, fuller txs are signed so
  the backlog drains fast; set it equal to ``flush_interval_s`` to trade drain speed for that window).
  Counters carry on, and the next reading is flagged ``GAP_BEFORE`` (a backfill source refills it).

Node answers are sorted into: committed ok; committed invalid (dead letter); refused for now (node
unavailable, mempool full, nonce gap, device not registered yet, device key not the registered one:
kept, retried with backoff, alarmed); refused for good (bad timestamp, payload, sequence backwards, ...:
dead letter + re-sign the device's later txs); nonce already used (re-sign from the node's next nonce).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar, runtime_checkable

import aiohttp

from collector.outbox import Counters, Entry, Outbox, OutboxError
from collector.quality import Alarm, AlarmSink, QualityChecker, QualityConfig, Severity
from collector.sources import Sample, Source, SourceError
from node import codec
from node.chain import ChainRef, sign_tx
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.readings import EARLIEST_TS_MS, QUANTITY_RE, UNIT_RE
from node.submit import Backoff, Outcome, Status, SubmitClient, code_name
from node.tls import ca_context_from_env
from node.types import Handle, Nonce, Reading, ReadingBatch, ShortStr, SignedInt, TimestampMs, Tx

log = logging.getLogger("cemp.collector")
T = TypeVar("T")

INT64 = 1 << 63
# Refusals that may pass later: keep the tx, retry with backoff.
RETRY_CODES = frozenset(
    {
        "nonce_gap",
        "mempool_full",
        "unavailable",
        "timeout",
        "unknown_device",
        "wrong_device_key",
        "not_found",
        "bad_request",
    }
)
# The tx's nonce was taken by another tx: re-sign it (and the device's later txs) from the node's next nonce.
REBASE_CODES = frozenset({"nonce_replayed"})
HEAD_GAP_REBASE_ROUNDS = 3
"""A device's oldest pending tx refused for a nonce gap this many rounds in a row: re-sign from the node's."""


@runtime_checkable
class BackfillSource(Protocol):
    """Optional extension of ``collector.sources.Source``: values the device stored for missed intervals.

    ``backfill(since_ms, until_ms)`` returns samples with ``since_ms < ts_ms < until_ms`` (e.g. a meter's
    stored daily counters or load profile). The agent calls it after a gap and flags them ``ESTIMATED``.
    """

    device: str

    async def backfill(self, since_ms: int, until_ms: int) -> list[Sample]: ...


@dataclass(frozen=True, slots=True)
class AgentSettings:
    nodes: tuple[str, ...] = ("http://127.0.0.1:7001",)
    """Node API base URLs; the agent sticks to one that answers and fails over in this order."""
    chain_id: str | None = None
    """Expected chain id; learned from the first node and kept in the outbox when not given."""
    genesis_hash: str | None = None
    """Expected genesis hash (hex), which every tx signature covers; learned and kept like ``chain_id``. Until
    both are known (configured, in the outbox, or from a node) readings wait in memory unsigned."""
    batch_max_readings: int = 500
    """Readings per signed tx (the chain's ``max_batch_readings`` is 1000 by default)."""
    max_tx_bytes: int = 60_000
    """A batch that encodes larger is split (the chain's ``max_tx_bytes`` is 64 KiB by default)."""
    flush_interval_s: float = 1.0
    """How often buffered readings are signed into the outbox (one fsync for all devices)."""
    backlog_flush_interval_s: float = 10.0
    """Flush interval while the nodes are unreachable or behind (outbox holds > 4 txs per device): fewer,
    fuller txs, so the backlog drains in fewer signature checks when a node is back."""
    submit_max_txs: int = 1000
    submit_max_bytes: int = 4 << 20
    submit_per_device: int = 64
    """Txs of one device per request (they are admitted in nonce order within a request)."""
    commit_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    retry_base_s: float = 0.2
    retry_max_s: float = 30.0
    resync_timeout_s: float = 10.0
    progress_every_s: float = 10.0
    max_buffered_readings: int = 200_000
    """Per device, while it cannot sign yet (never reached a node); beyond it the oldest are dropped, alarmed."""
    drain_on_stop_s: float = 2.0
    """On a clean stop, keep submitting for up to this long."""


@dataclass(slots=True)
class AgentStats:
    polls: int = 0
    poll_errors: int = 0
    samples: int = 0
    invalid_samples: int = 0
    signed_readings: int = 0
    signed_txs: int = 0
    committed_readings: int = 0
    committed_txs: int = 0
    dead_txs: int = 0
    rebased_txs: int = 0
    submit_rounds: int = 0
    submit_errors: int = 0
    failovers: int = 0
    backfilled: int = 0


class DeviceAgent:
    """One device: its key, sources, poll interval, quality state and not-yet-signed readings."""

    def __init__(
        self,
        handle: str,
        key: KeyPair,
        sources: Sequence[Source],
        *,
        poll_interval_s: float = 10.0,
        quality: QualityConfig | None = None,
        alarms: AlarmSink | None = None,
        poll_timeout_s: float = 30.0,
    ) -> None:
        self.handle = handle
        self.poll_timeout_s = poll_timeout_s
        self.key = key
        self.sources = list(sources)
        self.poll_interval_s = poll_interval_s
        self.alarms = alarms or AlarmSink()
        self.checker = QualityChecker(
            handle, quality or QualityConfig(int(poll_interval_s * 1000)), self.alarms
        )
        self.buffer: list[Sample] = []
        self.stats = AgentStats()

    async def poll_once(self, agent_ms: int) -> list[Sample]:
        """Poll every source once, backfill a gap if a source can, flag, and buffer. Returns what was added."""
        added: list[Sample] = []
        for src in self.sources:
            self.stats.polls += 1
            try:
                samples = await asyncio.wait_for(src.poll(), self.poll_timeout_s)
            except (SourceError, TimeoutError) as e:
                self.stats.poll_errors += 1
                self.checker.source_failed(agent_ms, str(e) or f"no answer within {self.poll_timeout_s} s")
                continue
            except Exception as e:
                # A bug in one source must not stop the other devices of the site: log it loudly and
                # treat it as a failed poll (the quality rules then show the gap).
                log.exception("%s: source %s broke the Source contract", self.handle, type(src).__name__)
                self.stats.poll_errors += 1
                self.checker.source_failed(agent_ms, f"{type(e).__name__}: {e}")
                continue
            samples = self._valid(sorted(samples, key=lambda s: s.ts_ms))
            if not samples:
                continue
            added += await self._backfill(src, samples[0].ts_ms, agent_ms)
            added += self.checker.check(samples, agent_ms)
        self.stats.samples += len(added)
        self.buffer.extend(added)
        return added

    async def _backfill(self, src: Source, first_ts: int, agent_ms: int) -> list[Sample]:
        fill = getattr(src, "backfill", None)
        last = self.checker.last_ts()
        if fill is None or last is None or first_ts - last <= self.checker.gap_ms():
            return []
        try:
            got = await fill(last, first_ts)
        except SourceError as e:
            log.warning("%s: backfill %d..%d failed: %s", self.handle, last, first_ts, e)
            return []
        got = self._valid(sorted((s for s in got if last < s.ts_ms < first_ts), key=lambda s: s.ts_ms))
        if not got:
            return []
        self.stats.backfilled += len(got)
        self.alarms.emit(
            Alarm(
                self.handle,
                "*",
                "backfill",
                Severity.INFO,
                f"{len(got)} stored values backfilled for {(first_ts - last) / 1000:.0f} s",
                agent_ms,
            )
        )
        return self.checker.check(got, agent_ms, estimated=True)

    def _valid(self, samples: list[Sample]) -> list[Sample]:
        """Samples the chain could never accept (a source misconfiguration) are alarmed and left out."""
        ok: list[Sample] = []
        for s in samples:
            problem = None
            if not QUANTITY_RE.match(s.quantity):
                problem = f"quantity {s.quantity!r} is not a short lower-case name"
            elif not UNIT_RE.match(s.unit):
                problem = f"unit {s.unit!r} is not a short unit name"
            elif not -INT64 <= s.value < INT64:
                problem = f"value {s.value} does not fit in int64"
            elif s.ts_ms < EARLIEST_TS_MS:
                problem = f"time {s.ts_ms} is before 2015"
            if problem is None:
                ok.append(s)
                continue
            self.stats.invalid_samples += 1
            self.alarms.emit(
                Alarm(self.handle, s.quantity[:32], "invalid_sample", Severity.CRITICAL, problem, s.ts_ms)
            )
        return ok

    async def close(self) -> None:
        for src in self.sources:
            with contextlib.suppress(Exception):
                await src.close()


class SiteAgent:
    """Many ``DeviceAgent``s, one outbox, a list of nodes. ``run()`` until ``stop`` is set."""

    def __init__(
        self,
        devices: Sequence[DeviceAgent],
        outbox: Outbox,
        settings: AgentSettings | None = None,
        *,
        alarms: AlarmSink | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.devices = {d.handle: d for d in devices}
        if len(self.devices) != len(devices):
            raise ValueError("two devices share a handle")
        self.outbox = outbox
        self.settings = settings or AgentSettings()
        if not self.settings.nodes:
            raise ValueError("no node URLs configured")
        self.alarms = alarms or AlarmSink()
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = AgentStats()
        self.chain_id: str | None = self.settings.chain_id
        self.genesis_hash: str | None = self.settings.genesis_hash
        self._io_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._counters: dict[str, Counters] = {}  # touched only on the outbox thread
        self._ready: set[str] = set()
        self._resync_needed: dict[str, bool] = {}  # device -> may fall back to local counters
        self._session: aiohttp.ClientSession | None = None
        self._client: SubmitClient | None = None
        self._chain_checked = False
        self._fails = 0
        """Submit rounds in a row that failed (no node answered, or an answer of an unexpected shape)."""
        self._gap_streak: dict[str, int] = {}
        self._held: dict[str, str] = {}  # device -> why the node refuses its txs for now
        self._wake = asyncio.Event()
        self._handling: set[asyncio.Future[int]] = set()
        self._started = time.monotonic()
        self._opened = False

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @property
    def chain(self) -> ChainRef | None:
        """What the agent's signatures are bound to, once chain id and genesis hash are both known."""
        if self.chain_id is None or self.genesis_hash is None:
            return None
        return ChainRef(self.chain_id, bytes.fromhex(self.genesis_hash))

    # --- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        self._started = time.monotonic()
        stored = await self._io(self.outbox.get_meta, "chain_id")
        if self.chain_id and stored and stored != self.chain_id:
            raise ValueError(f"outbox {self.outbox.path} belongs to chain {stored}, not {self.chain_id}")
        self.chain_id = self.chain_id or stored
        if self.settings.chain_id and not stored:
            await self._io(self.outbox.set_meta, "chain_id", self.settings.chain_id)
        stored_gh = await self._io(self.outbox.get_meta, "genesis_hash")
        if self.genesis_hash and stored_gh and stored_gh != self.genesis_hash:
            raise ValueError(
                f"outbox {self.outbox.path} belongs to genesis {stored_gh}, not {self.genesis_hash}"
            )
        self.genesis_hash = self.genesis_hash or stored_gh
        if self.settings.genesis_hash and not stored_gh:
            await self._io(self.outbox.set_meta, "genesis_hash", self.settings.genesis_hash)
        pending = await self._io(self.outbox.pending_devices)
        counters = await self._io(self.outbox.all_counters)
        last_values = await self._io(self.outbox.last_values)
        fixes: list[Counters] = []
        for h, dev in self.devices.items():
            c = counters.get(h)
            if c is not None and c.pubkey != dev.key.public:
                if h in pending:
                    raise ValueError(
                        f"{h}: the outbox holds txs signed with another key; restore that key until they drain"
                    )
                log.warning("%s: key changed; its nonce restarts from the chain's", h)
                c = Counters(h, dev.key.public, 0, c.last_seq, c.last_ts_ms, False)
                fixes.append(c)
            if c is None:
                c = Counters(h, dev.key.public, 0, 0, 0, False)
            self._counters[h] = c
            if c.last_ts_ms:
                dev.checker.seed(c.last_ts_ms)
            dev.checker.seed_values(last_values.get(h, {}))
            if h in pending:
                self._ready.add(h)  # pending entries are ahead of anything committed
            else:
                self._resync_needed[h] = c.synced
        for c in fixes:
            await self._io(self.outbox.set_counters, c)
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s, connect=5)
        # https nodes with the consortium's own CA: CEMP_TLS_CA names its certificate (node.tls)
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=32, ssl=ca_context_from_env() or True)
        )
        self._client = SubmitClient.over_http(
            self.settings.nodes,
            self._session,
            chain_id=self.chain_id,
            genesis_hash=self.genesis_hash,
            rng=self.rng,
            backoff_base_s=self.settings.retry_base_s,
            backoff_cap_s=self.settings.retry_max_s,
        )
        st = self.outbox.stats()
        log.info(
            "collect: %d devices, outbox %s holds %d txs / %d readings, nodes %s",
            len(self.devices),
            self.outbox.path,
            st.entries,
            st.readings,
            ", ".join(self.settings.nodes),
        )

    async def close(self) -> None:
        if self._handling:
            await asyncio.gather(*self._handling, return_exceptions=True)
        for d in self.devices.values():
            await d.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._io_pool.shutdown(wait=True)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll, flush, submit and resync until ``stop`` is set; then flush, drain briefly and close."""
        stop = stop or asyncio.Event()
        await self.open()
        try:
            async with asyncio.TaskGroup() as tg:
                for dev in self.devices.values():
                    tg.create_task(self._poll_loop(dev, stop), name=f"poll {dev.handle}")
                tg.create_task(self._flush_loop(stop), name="flush")
                tg.create_task(self._submit_loop(stop), name="submit")
                tg.create_task(self._resync_loop(stop), name="resync")
                tg.create_task(self._progress_loop(stop), name="progress")
            await self.flush()
            if self.settings.drain_on_stop_s > 0:
                await self.drain(self.settings.drain_on_stop_s)
            self._log_progress()
        finally:
            await self.close()

    # --- polling ---------------------------------------------------------------------------------
    async def _poll_loop(self, dev: DeviceAgent, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        interval = dev.poll_interval_s
        # Spread devices over the interval so 1,000 meters are not all asked in the same millisecond.
        next_t = loop.time() + (zlib.crc32(dev.handle.encode()) % 1000) / 1000 * interval
        while not stop.is_set():
            if await _sleep_until(next_t, stop, loop):
                return
            await dev.poll_once(self.now_ms())
            self._bound_buffer(dev)
            next_t += interval
            now = loop.time()
            if next_t < now:  # overran: skip the missed ticks (the quality rules will see the gap)
                next_t += ((now - next_t) // interval + 1) * interval

    def _bound_buffer(self, dev: DeviceAgent) -> None:
        over = len(dev.buffer) - self.settings.max_buffered_readings
        if over > 0:
            del dev.buffer[:over]
            self.alarms.emit(
                Alarm(
                    dev.handle,
                    "*",
                    "buffer_overflow",
                    Severity.CRITICAL,
                    f"{over} unsigned readings dropped: no node has confirmed the device's counters yet",
                    self.now_ms(),
                )
            )

    # --- signing into the outbox -----------------------------------------------------------------
    async def flush(self) -> int:
        """Sign every ready device's buffered readings and store them in one outbox transaction."""
        chain = self.chain
        if chain is None:
            return 0
        work: list[tuple[DeviceAgent, list[Sample]]] = []
        for h in sorted(self._ready):
            dev = self.devices[h]
            if dev.buffer:
                work.append((dev, dev.buffer))
                dev.buffer = []
        if not work:
            return 0
        try:
            entries = await self._io(self._sign_and_put, work, chain, self.now_ms())
        except Exception:
            log.exception("collect: cannot write the outbox; readings stay in memory and are retried")
            for dev, samples in work:
                dev.buffer[:0] = samples
            return 0
        n = sum(e.readings for e in entries)
        self.stats.signed_readings += n
        self.stats.signed_txs += len(entries)
        self._wake.set()
        return n

    def _sign_and_put(
        self, work: list[tuple[DeviceAgent, list[Sample]]], chain: ChainRef, now_ms: int
    ) -> list[Entry]:
        """Outbox thread: number, sign and store. Counters move only if the transaction commits."""
        entries: list[Entry] = []
        counters: list[Counters] = []
        last_values: dict[tuple[str, str], tuple[int, int]] = {}
        for dev, samples in work:
            for s in samples:  # the newest value of each cumulative counter, kept across restarts
                if dev.checker.config.for_quantity(s.quantity).counter:
                    key = (dev.handle, s.quantity)
                    if key not in last_values or s.ts_ms >= last_values[key][1]:
                        last_values[key] = (s.value, s.ts_ms)
            c = self._counters[dev.handle]
            nonce, seq, last_ts = c.last_nonce, c.last_seq, c.last_ts_ms
            pos = 0
            size = self.settings.batch_max_readings
            while pos < len(samples):
                chunk = samples[pos : pos + size]
                readings = tuple(
                    Reading(
                        Nonce(seq + 1 + i),
                        TimestampMs(s.ts_ms),
                        ShortStr(s.quantity),
                        SignedInt(s.value),
                        ShortStr(s.unit),
                        s.flags,
                    )
                    for i, s in enumerate(chunk)
                )
                raw, h = sign_tx(
                    dev.key, chain, "readings", nonce + 1, ReadingBatch(Handle(dev.handle), readings)
                )
                if len(raw) > self.settings.max_tx_bytes and size > 1:
                    size = max(1, size // 2)  # long names: smaller batches for this device
                    continue
                nonce += 1
                entries.append(
                    Entry(dev.handle, nonce, seq + 1, seq + len(chunk), len(chunk), h, raw, now_ms)
                )
                seq += len(chunk)
                last_ts = max(last_ts, max(s.ts_ms for s in chunk))
                pos += len(chunk)
            counters.append(replace(c, last_nonce=nonce, last_seq=seq, last_ts_ms=last_ts))
        values = [(d, q, v, ts) for (d, q), (v, ts) in last_values.items()]
        self.outbox.put(entries, counters, values)  # one fsynced transaction; raises → nothing moved
        for c in counters:
            self._counters[c.device] = c
        return entries

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_t = last = loop.time()
        while not stop.is_set():
            next_t += self.settings.flush_interval_s
            if await _sleep_until(next_t, stop, loop):
                return
            now = loop.time()
            if now - next_t > self.settings.flush_interval_s:
                next_t = now  # fell behind (a slow disk): do not try to catch up in a burst
            # While the nodes are away or behind, sign less often so the backlog is fewer, fuller txs
            # (fewer signature checks when a node is back); a full batch is signed at once anyway.
            backlog = (
                self._fails > 0
                or (self._client is not None and self._client.failures > 0)
                or self.outbox.pending_txs > 4 * len(self.devices)
            )
            if backlog and now - last < self.settings.backlog_flush_interval_s:
                full = any(len(d.buffer) >= self.settings.batch_max_readings for d in self.devices.values())
                if not full:
                    continue
            last = now
            await self.flush()

    # --- counters: resync with the chain ---------------------------------------------------------
    async def _resync_loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        while self._resync_needed and not stop.is_set():
            for h in list(self._resync_needed):
                try:
                    await self.resync(h)
                except _NodeDown as e:
                    log.debug("resync %s: %s", h, e)
                    break
                except (KeyError, ValueError, TypeError):
                    log.exception("resync %s: unexpected answer", h)
                    break
            if not self._resync_needed:
                return
            waited = time.monotonic() - self._started
            if waited > self.settings.resync_timeout_s:
                for h, may_fall_back in list(self._resync_needed.items()):
                    if may_fall_back:
                        log.warning(
                            "%s: no node answered for %.0f s; signing with the stored counters", h, waited
                        )
                        del self._resync_needed[h]
                        self._ready.add(h)
            attempt += 1
            if await _sleep_until(asyncio.get_running_loop().time() + self._backoff(attempt), stop):
                return

    async def resync(self, handle: str) -> None:
        """Move the device's counters up to what the chain has; the device may sign afterwards."""
        dev = self.devices[handle]
        client = await self._nodes()
        try:
            nonce_doc = await client.get(f"/v1/nonces/{dev.key.public.hex()}")
            try:
                last_seq = int((await client.get(f"/v1/devices/{handle}"))["last_seq"])
            except CempError as e:
                if e.code != Code.UNKNOWN_DEVICE:
                    raise
                last_seq = 0
                log.warning("%s is not registered on chain yet; its readings will wait in the outbox", handle)
        except CempError as e:  # ``Unreachable`` included
            self.stats.submit_errors += 1
            raise _NodeDown(str(e)) from None
        chain_nonce = max(int(nonce_doc["nonce"]), int(nonce_doc.get("next", 1)) - 1)

        def job() -> Counters:
            c = self._counters[handle]
            new = replace(
                c, last_nonce=max(c.last_nonce, chain_nonce), last_seq=max(c.last_seq, last_seq), synced=True
            )
            self.outbox.set_counters(new)
            self._counters[handle] = new
            return new

        new = await self._io(job)
        self._resync_needed.pop(handle, None)
        self._ready.add(handle)
        log.info(
            "%s: counters at nonce %d, seq %d (chain: nonce %d, seq %d)",
            handle,
            new.last_nonce,
            new.last_seq,
            chain_nonce,
            last_seq,
        )

    # --- submitting ------------------------------------------------------------------------------
    async def _submit_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        idle = 0
        while not stop.is_set():
            self._wake.clear()
            try:
                progressed, pending = await _until_stopped(self.submit_once(), stop)
            except _Stopped:
                return
            except _NodeDown:
                if await _sleep_until(loop.time() + self._retry_delay(), stop, loop):
                    return
                continue
            except (KeyError, ValueError, TypeError, OutboxError):
                # An answer of an unexpected shape (or a refused outbox write): nothing was removed from
                # the outbox that should not have been; log it, back off, try again.
                log.exception("collect: submit round failed")
                self._fails += 1
                if await _sleep_until(loop.time() + self._backoff(self._fails), stop, loop):
                    return
                continue
            if pending == 0:
                # Nothing to send: wait for a flush (or poll the outbox now and then).
                idle = 0
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # not wait_for: on 3.11 it can swallow a cancel
                        await _first(self._wake.wait(), stop.wait())
            elif not progressed:
                # The node answers but takes nothing (all pending, or refused for now): back off.
                idle += 1
                if await _sleep_until(loop.time() + self._backoff(idle), stop, loop):
                    return
            else:
                idle = 0

    async def submit_once(self) -> tuple[int, int]:
        """One request with the oldest pending txs. Returns (txs resolved, txs that were pending).

        Raises ``_NodeDown`` when the node could not be reached (after switching to the next node).
        """
        s = self.settings
        entries = await self._io(self.outbox.pending, per_device=s.submit_per_device, limit=s.submit_max_txs)
        if not entries:
            return 0, 0
        total = 0
        for i, e in enumerate(entries):
            total += len(e.raw)
            if total > s.submit_max_bytes and i > 0:
                entries = entries[:i]
                break
        client = await self._nodes()
        self.stats.submit_rounds += 1
        try:
            results = await client.submit_batch(
                [e.raw for e in entries], timeout_ms=int(s.commit_timeout_s * 1000)
            )
        except CempError as e:  # ``Unreachable``: no node took the request (the client failed over)
            self._fails += 1
            self.stats.submit_errors += 1
            self.stats.failovers = client.failovers
            raise _NodeDown(str(e)) from None
        self._fails = 0
        self.stats.failovers = client.failovers
        # Shielded: once the node has answered, the outbox and the counters must learn it even if the
        # caller is being cancelled (a stop); the outbox thread finishes its transaction either way.
        task = asyncio.ensure_future(self._handle_results(client, entries, results))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)
        return await asyncio.shield(task), len(entries)

    async def _handle_results(self, node: SubmitClient, entries: list[Entry], results: list[Outcome]) -> int:
        ok: list[Entry] = []
        invalid: list[tuple[Entry, str, str]] = []
        refusals: dict[str, tuple[Entry, str, str]] = {}  # first refusal per device, in nonce order
        heads: dict[str, Entry] = {}
        for e, r in zip(entries, results, strict=True):
            heads.setdefault(e.device, e)
            if r.status == Status.COMMITTED:
                if r.ok:
                    ok.append(e)
                else:
                    invalid.append((e, code_name(r.result_code), r.reason))
            elif r.status in (Status.REFUSED, Status.RETRY_AFTER):
                refusals.setdefault(e.device, (e, r.code, r.message))
            # TIMEOUT / LEADER_UNKNOWN: admitted, not committed within the wait; sent again next round
        if ok:
            await self._io(self.outbox.remove_committed, [e.tx_hash for e in ok])
            self.stats.committed_txs += len(ok)
            self.stats.committed_readings += sum(e.readings for e in ok)
        for e, code, reason in invalid:
            await self._io(self.outbox.dead_letter, e, code, reason, committed=True)
            self.stats.dead_txs += 1
            self._dead_alarm(e, code, reason, "committed but marked invalid")
        for device, (e, code, reason) in refusals.items():
            if code in RETRY_CODES:
                if code == "nonce_gap" and heads[device] is e:
                    streak = self._gap_streak.get(device, 0) + 1
                    self._gap_streak[device] = streak
                    if streak >= HEAD_GAP_REBASE_ROUNDS:
                        await self._rebase(node, e, None, allow_lower=True)
                        self._gap_streak.pop(device, None)
                    continue
                if code in ("unknown_device", "wrong_device_key") and self._held.get(device) != code:
                    self._held[device] = code  # alarm once per cause, not every round
                    self.alarms.emit(
                        Alarm(
                            device,
                            "*",
                            code,
                            Severity.CRITICAL,
                            f"node refuses readings: {reason}; they stay in the outbox",
                            self.now_ms(),
                        )
                    )
                log.debug("%s: tx nonce %d refused for now (%s): %s", device, e.nonce, code, reason)
                continue
            self._gap_streak.pop(device, None)
            if code in REBASE_CODES:
                await self._rebase(node, e, None, allow_lower=False)
            else:
                await self._rebase(node, e, (code, reason), allow_lower=False)
        for device in heads:
            if device not in refusals:
                self._gap_streak.pop(device, None)
        for e in ok:
            if self._held.pop(e.device, None) is not None:
                log.info("%s: the node accepts its readings again", e.device)
        return len(ok) + len(invalid)

    async def _rebase(
        self, node: SubmitClient, e: Entry, dead: tuple[str, str] | None, *, allow_lower: bool
    ) -> None:
        """Re-sign the device's txs from ``e`` on (without ``e`` if it is dead) from the node's next nonce."""
        dev = self.devices.get(e.device)
        if dev is None:
            log.error("%s: outbox entries for a device not in the config; cannot re-sign them", e.device)
            return
        try:
            doc = await node.get(f"/v1/nonces/{dev.key.public.hex()}")
        except CempError as err:
            log.warning("%s: cannot ask for the next nonce (%s); retrying later", e.device, err)
            return
        node_next = int(doc["next"])
        base = node_next if allow_lower else max(e.nonce, node_next)
        chain = self.chain
        assert chain is not None

        def job() -> int:
            old = [x for x in self.outbox.entries_for(e.device) if x.nonce >= e.nonce]
            if not old or old[0].tx_hash != e.tx_hash:
                return 0  # resolved meanwhile
            keep = old[1:] if dead is not None else old
            repl: list[Entry] = []
            for i, x in enumerate(keep):
                tx = codec.decode(Tx, x.raw)
                batch = codec.decode(ReadingBatch, tx.payload)
                raw, h = sign_tx(dev.key, chain, "readings", base + i, batch)
                repl.append(
                    Entry(x.device, base + i, x.seq_first, x.seq_last, x.readings, h, raw, x.created_ms)
                )
            c = self._counters[e.device]
            last_nonce = base + len(repl) - 1
            lower = [x for x in self.outbox.entries_for(e.device) if x.nonce < e.nonce]
            if lower and base != lower[-1].nonce + 1:
                return -1  # earlier txs still pending: they must go first
            new = replace(c, last_nonce=last_nonce, synced=True)
            self.outbox.rebase(
                e.device, e.nonce, repl, new, dead=(e, dead[0], dead[1]) if dead is not None else None
            )
            self._counters[e.device] = new
            return len(repl)

        n = await self._io(job)
        if n < 0:
            log.info("%s: waiting for earlier txs before re-signing from nonce %d", e.device, e.nonce)
            return
        self.stats.rebased_txs += max(n, 0)
        if dead is not None:
            self.stats.dead_txs += 1
            self._dead_alarm(e, dead[0], dead[1], "refused")
        log.warning(
            "%s: re-signed %d txs from nonce %d (was %d)%s",
            e.device,
            n,
            base,
            e.nonce,
            f" after nonce {e.nonce} was refused: {dead[0]}" if dead else "",
        )

    def _dead_alarm(self, e: Entry, code: str, reason: str, how: str) -> None:
        self.alarms.emit(
            Alarm(
                e.device,
                "*",
                "dead_letter",
                Severity.CRITICAL,
                f"tx nonce {e.nonce} (seq {e.seq_first}..{e.seq_last}, {e.readings} readings) {how}: "
                f"{code}: {reason}; kept in {self.outbox.dead_letter_path}",
                self.now_ms(),
            )
        )

    async def drain(self, timeout_s: float) -> bool:
        """Submit until the outbox is empty or ``timeout_s`` passes; True if it emptied."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            try:
                async with asyncio.timeout(
                    max(0.1, deadline - loop.time())
                ):  # not wait_for (see _sleep_until)
                    _, pending = await self.submit_once()
            except _NodeDown:
                await asyncio.sleep(min(self._retry_delay(), max(0.0, deadline - loop.time())))
                continue
            except TimeoutError:
                break
            if pending == 0:
                return True
        return self.outbox.stats().entries == 0

    # --- nodes -----------------------------------------------------------------------------------
    async def _nodes(self) -> SubmitClient:
        """The submission client, its chain id and genesis hash checked once (learned here and kept in the outbox
        if not configured)."""
        client = self._client
        assert client is not None, "open() first"
        if not self._chain_checked:
            try:
                chain = await client.chain()
            except CempError as e:
                self._fails += 1
                self.stats.submit_errors += 1
                raise _NodeDown(str(e)) from None
            if self.genesis_hash is None:
                self.genesis_hash = chain.genesis_hash.hex()
                await self._io(self.outbox.set_meta, "genesis_hash", self.genesis_hash)
            if self.chain_id is None:
                self.chain_id = chain.chain_id
                await self._io(self.outbox.set_meta, "chain_id", chain.chain_id)
                log.info("collect: chain id %s learned from %s", chain.chain_id, client.endpoint.base)
            self._chain_checked = True
        return client

    def _retry_delay(self) -> float:
        """Immediate failover while untried nodes remain; then backoff by rounds (the client's policy)."""
        if self._client is None:
            return self._backoff(self._fails)
        return self._client.retry_delay()

    def _backoff(self, attempt: int) -> float:
        if self._client is None:
            return Backoff(self.settings.retry_base_s, self.settings.retry_max_s, self.rng).delay(attempt)
        return self._client.backoff.delay(attempt)

    # --- operators -------------------------------------------------------------------------------
    async def _progress_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if await _sleep_until(loop.time() + self.settings.progress_every_s, stop, loop):
                return
            self._log_progress()

    def _log_progress(self) -> None:
        st = self.outbox.stats()
        s = self.stats
        polls = sum(d.stats.polls for d in self.devices.values())
        errs = sum(d.stats.poll_errors for d in self.devices.values())
        el = max(1e-9, time.monotonic() - self._started)
        log.info(
            "collect: %d polls (%d failed), signed %d readings in %d txs, committed %d readings (%.0f/s); "
            "outbox %d txs / %d readings / %.1f KiB (%.0f B/reading); dead %d; node %s; alarms %d",
            polls,
            errs,
            s.signed_readings,
            s.signed_txs,
            s.committed_readings,
            s.committed_readings / el,
            st.entries,
            st.readings,
            st.raw_bytes / 1024,
            st.bytes_per_reading,
            st.dead,
            self._client.endpoint.base if self._client is not None else "-",
            self.alarm_count(),
        )

    def alarm_count(self) -> int:
        sinks = {id(d.alarms): d.alarms for d in self.devices.values()}
        sinks[id(self.alarms)] = self.alarms
        return sum(sum(s.counts.values()) for s in sinks.values())

    async def _io(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io_pool, lambda: fn(*args, **kw))


class _NodeDown(Exception):
    pass


class _Stopped(Exception):
    pass


async def _sleep_until(t: float, stop: asyncio.Event, loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Sleep until loop time ``t``; True if ``stop`` was set meanwhile."""
    loop = loop or asyncio.get_running_loop()
    delay = t - loop.time()
    if stop.is_set():
        return True
    if delay <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can swallow a cancel
            await stop.wait()
    return stop.is_set()


async def _first(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _until_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T:
    """Await ``aw`` unless ``stop`` is set first (then cancel it and raise ``_Stopped``)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise _Stopped


__all__ = [
    "AgentSettings",
    "AgentStats",
    "BackfillSource",
    "DeviceAgent",
    "SiteAgent",
]
