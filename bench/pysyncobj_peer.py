"""One PySyncObj replica for the side-by-side in bench/cluster.py (a peer process, or the client).

Usage: python bench/pysyncobj_peer.py SELF_PORT OTHER_PORT OTHER_PORT [--client N SECONDS]
The client replica proposes N 200-byte payloads with up to 2,000 in flight and prints one JSON line.
PySyncObj's journal is an mmap without fsync and its messages are pickled and unsigned; see the benchmark note.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from pysyncobj import SyncObj, SyncObjConf, replicated


class Store(SyncObj):
    def __init__(self, me: str, others: list[str]) -> None:
        conf = SyncObjConf(dynamicMembershipChange=False, appendEntriesUseBatch=True)
        super().__init__(me, others, conf)
        self.count = 0

    @replicated
    def put(self, payload: bytes) -> int:
        self.count += 1
        return self.count


def main() -> None:
    me = f"127.0.0.1:{sys.argv[1]}"
    others = [f"127.0.0.1:{p}" for p in sys.argv[2:4]]
    s = Store(me, others)
    if "--client" not in sys.argv:
        while True:
            time.sleep(1)
    i = sys.argv.index("--client")
    n, limit_s = int(sys.argv[i + 1]), float(sys.argv[i + 2])
    while not s._isReady():
        time.sleep(0.05)
    payload = b"x" * 200
    sem = threading.Semaphore(2000)
    done = [0]
    lock = threading.Lock()

    def cb(res: object, err: object) -> None:
        with lock:
            done[0] += 1
        sem.release()

    t0 = time.perf_counter()
    sent = 0
    while sent < n and time.perf_counter() - t0 < limit_s:
        sem.acquire()
        s.put(payload, callback=cb)
        sent += 1
    while done[0] < sent and time.perf_counter() - t0 < limit_s + 10:
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    print(json.dumps({"ops": done[0], "seconds": round(dt, 3), "ops_per_s": round(done[0] / dt)}), flush=True)
    s.destroy()


if __name__ == "__main__":
    main()
