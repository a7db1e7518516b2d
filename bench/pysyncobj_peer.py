"""One PySyncObj replica for the side-by-side in bench/cluster.py: a Raft peer with an HTTP front door.

Usage: python bench/pysyncobj_peer.py RAFT_PORT HTTP_PORT DATA_DIR OTHER_RAFT_PORT OTHER_RAFT_PORT

The same hops as a CEMP node: the load generator (another process) POSTs a msgpack array of opaque payloads to
``/ops`` on any replica; the replica proposes each one (a follower forwards it to the leader, as PySyncObj does),
and answers one status per payload once it was applied here (``committed``) or failed (``refused``), or
``timeout`` after the wait.

Durability, made equal to CEMP's: PySyncObj's journal is a file-backed mmap (``journalFile``) that the library
never flushes while running. Here every message the replica sends goes out only after the journal's dirty pages
were flushed (``mmap.flush`` = ``msync(MS_SYNC)``), i.e. entries are persisted before they are acknowledged or
replicated, grouping every entry appended since the last send into one flush (CEMP fsyncs the Raft log batch
before it sends, and each block's LevelDB batch with ``sync=True``). What still differs: the term/vote metadata
file is written without fsync (rare: on elections), payloads are pickled and unsigned, and applying one is a
counter increment (CEMP checks an Ed25519 signature, nonce and schema per tx on every node and writes the
reading, its indexes and a Merkle-rooted block).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgpack
from aiohttp import web
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

WAIT_S = 5.0


class Store(SyncObj):
    def __init__(self, me: str, others: list[str], journal: Path) -> None:
        conf = SyncObjConf(
            dynamicMembershipChange=False,
            appendEntriesUseBatch=True,
            journalFile=str(journal),
            fullDumpFile=str(journal) + ".dump",
        )
        super().__init__(me, others, conf)
        self.count = 0
        self._flush_before_send()

    def _flush_before_send(self) -> None:
        """Persist appended journal entries before any message leaves (see the module docstring)."""
        log = self._SyncObj__raftLog  # type: ignore[attr-defined]
        transport = self._SyncObj__transport  # type: ignore[attr-defined]
        dirty = [False]
        self.flushes = 0
        add, delete = log.add, log.deleteEntriesFrom

        def add_(*a: Any, **kw: Any) -> Any:
            dirty[0] = True
            return add(*a, **kw)

        def delete_(*a: Any, **kw: Any) -> Any:
            dirty[0] = True
            return delete(*a, **kw)

        send = transport.send

        def send_(node: Any, message: Any) -> Any:
            if dirty[0]:
                log.flush()
                dirty[0] = False
                self.flushes += 1
            return send(node, message)

        log.add, log.deleteEntriesFrom, transport.send = add_, delete_, send_

    @replicated
    def put(self, payload: bytes) -> int:
        self.count += 1
        return self.count


async def serve(store: Store, http_port: int) -> None:
    loop = asyncio.get_running_loop()

    async def ops(request: web.Request) -> web.Response:
        payloads = msgpack.unpackb(await request.read(), raw=False)
        futs: list[asyncio.Future[str]] = []
        for p in payloads:
            fut: asyncio.Future[str] = loop.create_future()

            def cb(res: object, err: object, fut: asyncio.Future[str] = fut) -> None:
                status = "committed" if err == FAIL_REASON.SUCCESS else "refused"
                loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(status))

            store.put(p, callback=cb)
            futs.append(fut)
        await asyncio.wait(futs, timeout=WAIT_S)
        out = [f.result() if f.done() else "timeout" for f in futs]
        return web.json_response({"results": out})

    async def status(request: web.Request) -> web.Response:
        st = store.getStatus()
        return web.json_response(
            {"leader": str(st.get("leader")), "ready": store.isReady(), "flushes": store.flushes}
        )

    app = web.Application(client_max_size=64 << 20)
    app.add_routes([web.post("/ops", ops), web.get("/status", status)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    await asyncio.Event().wait()


def main() -> None:
    raft_port, http_port, data = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    others = [f"127.0.0.1:{p}" for p in sys.argv[4:6]]
    data.mkdir(parents=True, exist_ok=True)
    store = Store(f"127.0.0.1:{raft_port}", others, data / "journal")
    asyncio.run(serve(store, http_port))


if __name__ == "__main__":
    main()
