"""Handle resolution over HTTP on loopback: a CEMP node against nginx serving the same JSON as static files.

Setup: 10,000 handles of 8 values each (about 1.4 KB of JSON per resolution) are written on chain by signed
``handle.put`` txs (the owner org's admin key), straight into a LevelDB data directory through the ledger's own
apply path. Then a real ``cemp node`` process serves them, pinned to CPU 0 (``taskset``); every body is fetched
once and written as a static file at the same path for nginx (Debian, one worker, also on CPU 0, run after the
node has stopped); the load generator is ``wrk`` (Debian) on CPU 1, with a Lua script cycling over all 10,000
handle paths, at 1, 16 and 64 connections. Each point is run ``--runs`` times; medians are reported.

Needs ``wrk``, ``nginx`` and ``taskset``: ``apt-get update && apt-get install -y wrk nginx util-linux``.

Two more node points, 16 connections, one run each:
- ``resolve_cold_per_s``: a freshly started node (empty resolution cache: every request builds its body from
  LevelDB), for ``--cold-s`` seconds, short enough that no path is asked twice (``cold_requests`` <= handles;
  the OS page cache is warm, the process is not);
- ``resolve_during_commits_per_s``: the warm node while ``handle.put`` txs that change 20 of the handles commit
  about every 100 ms (each new block makes a cached body re-check its stored bytes; the changed ones are built
  again); ``commits_during_run`` counts the blocks and txs that committed meanwhile.

wrk's socket errors (connect, read, write, timeout) and non-2xx answers are reported per point, never dropped.

The last line printed is one JSON object; keys ``resolve_per_s`` and ``p99_ms`` (node, 16 connections) and
``nginx_per_s`` (nginx, 16 connections), ``resolve_cold_per_s``, ``resolve_during_commits_per_s``, plus every
point measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cemp import wiring  # noqa: E402
from node.chain import Ledger, header_hash, sign_tx  # noqa: E402
from node.crypto import KeyPair  # noqa: E402
from node.store import LevelDBStore  # noqa: E402
from node.types import Blob, Handle, ShortStr, Text  # noqa: E402
from resolver import idis  # noqa: E402
from resolver.kinds import ORG_AUTHORITY, HandlePut  # noqa: E402
from resolver.values import DEFAULT_TTL, HandleValue  # noqa: E402
from tests.support.testing import TestConsortium, free_port, start_node_process  # noqa: E402

PREFIX = "88.123.45"
CONNECTIONS = (1, 16, 64)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def need_tools() -> None:
    missing = [t for t in ("wrk", "nginx", "taskset") if shutil.which(t) is None]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: install with `apt-get update && apt-get install -y wrk nginx util-linux`"
        )
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the server is pinned to CPU 0 and wrk to CPU 1")


def _s(index: int, typ: str, text: str) -> HandleValue:
    return HandleValue(index, Text(typ), ShortStr("string"), Blob(text.encode()), DEFAULT_TTL, 0, 0b1110, ())


def record(i: int, key: bytes) -> tuple[HandleValue, ...]:
    """Eight values of a typical device record; the resolution body is about 1.4 KB."""
    return (
        _s(1, "URL", f"https://cemp.example.cn/buildings/hohhot-1/devices/{i:05d}"),
        _s(2, "EMAIL", "energy-ops@hohhot-complex.example.cn"),
        idis.admin_value(100, f"0.NA/{PREFIX}", 200, idis.DEFAULT_ADMIN_PERMS),
        idis.pubkey_value(300, key),
        _s(2000, "CEMP.DEVICE_TYPE", "meter.energy"),
        _s(2002, "CEMP.SUBSYSTEM", "core-heating"),
        _s(
            2003,
            "CEMP.LOCATION",
            f"Hohhot complex, plant room B{i % 4 + 1}, panel {i % 40 + 1}, feeder {i % 7 + 1}",
        ),
        _s(
            2004,
            "CEMP.REGISTER_MAP",
            '{"energy.import":{"fc":3,"addr":30001,"words":2,"scale":10},"power":{"fc":3,"addr":30013,"words":2}}',
        ),
    )


def build_chain(base: Path, c: TestConsortium, n: int) -> int:
    """Write ``n`` handles on chain; returns the admin key's last nonce."""
    nid = c.genesis.nodes[0].node_id
    store = LevelDBStore(base / "data" / nid / "ledger")
    led = Ledger(store, c.genesis, wiring.kinds())
    admin = c.admins["owner"]
    node_key = c.node_keys[nid]
    dev = KeyPair.generate().public
    per_block = 1000
    t0 = time.perf_counter()
    nonce = 0
    for start in range(0, n, per_block):
        raws = []
        for i in range(start, min(n, start + per_block)):
            nonce += 1
            p = HandlePut(Handle(f"{PREFIX}/bench.{i}"), ShortStr("replace"), record(i, dev), ORG_AUTHORITY)
            raw, _ = sign_tx(admin, c.chain, "handle.put", nonce, p)
            raws.append(raw)
        t = max(int(time.time() * 1000), led.last_time_ms + 1)
        staged = led.execute(tuple(raws), time_ms=t, proposer=nid, term=0, last_commit=led.cert(led.height))
        bad = [r for r in staged.results if r.code != 0]
        if bad:
            raise SystemExit(f"setup tx refused: {bad[0].reason}")
        block = led.sign_block(staged, node_key)
        led.commit(block, staged, (led.vote(header_hash(block.header), nid, node_key),))
    store.close()
    log(f"wrote {n} handles in {time.perf_counter() - t0:.1f} s")
    return nonce


def commit_while(
    url: str, c: TestConsortium, nonce: int, n_handles: int, stop: threading.Event, done: dict[str, int]
) -> None:
    """Until ``stop``: every ~100 ms a batch of 20 ``handle.put`` txs that change existing handles, waited for
    until committed (a thread of its own: the bench's wrk runs meanwhile)."""
    import msgpack

    admin = c.admins["owner"]
    dev = KeyPair.generate().public
    rng = random.Random(7)
    k = 0
    while not stop.is_set():
        raws = []
        for _ in range(20):
            nonce += 1
            k += 1
            i = rng.randrange(n_handles)
            vals = (_s(1, "URL", f"https://cemp.example.cn/devices/{i:05d}?rev={k}"), *record(i, dev)[1:])
            p = HandlePut(Handle(f"{PREFIX}/bench.{i}"), ShortStr("replace"), vals, ORG_AUTHORITY)
            raws.append(sign_tx(admin, c.chain, "handle.put", nonce, p)[0])
        req = urllib.request.Request(
            f"{url}/v1/txs/batch?wait=commit&timeout_ms=10000",
            data=msgpack.packb(raws, use_bin_type=True),
            headers={"Content-Type": "application/msgpack"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            res = json.loads(r.read())["results"]
        ok = sum(1 for x in res if x["status"] == "committed" and x["result"]["ok"])
        if ok != len(raws):
            raise SystemExit(
                f"update txs not committed: {[x for x in res if x['status'] != 'committed'][:1]}"
            )
        done["txs"] += ok
        done["batches"] += 1
        stop.wait(0.1)


WRK_LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def _ms(s: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", s)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of the server processes, in clock ticks."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def run_wrk(url: str, script: Path, conns: int, seconds: int, pids: list[int]) -> dict[str, float]:
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    t0 = cpu_ticks(pids)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    ticks = cpu_ticks(pids) - t0
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    nreq = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"\s99%\s+([0-9.]+\w+)", out)
    p50 = re.search(r"\s50%\s+([0-9.]+\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rps is None or p99 is None or p50 is None:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    requests = int(nreq.group(1)) if nreq else 0
    cpu_us = ticks / os.sysconf("SC_CLK_TCK") * 1e6 / max(1, requests)
    return {
        "rps": float(rps.group(1)),
        "requests": float(requests),
        "cpu_us_per_req": cpu_us,
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(sum(int(x) for x in errs.groups())) if errs else 0.0,
    }


def series(
    url: str, script: Path, runs: int, seconds: int, what: str, pids: list[int]
) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    run_wrk(url, script, 16, 2, pids)  # warm-up
    for conns in CONNECTIONS:
        got = [run_wrk(url, script, conns, seconds, pids) for _ in range(runs)]
        out[conns] = {
            k: round(statistics.median(g[k] for g in got), 3)
            for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
        }
        out[conns]["socket_errors"] = sum(g["socket_errors"] for g in got)
        out[conns]["non_2xx"] = sum(g["non_2xx"] for g in got)
        log(
            f"{what:6s} c={conns:<3d} {out[conns]['rps']:>9.0f} req/s  p50 {out[conns]['p50_ms']} ms  "
            f"p99 {out[conns]['p99_ms']} ms  server CPU {out[conns]['cpu_us_per_req']:.1f} us/req"
        )
    return out


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def fetch_all(url: str, paths: list[str], root: Path) -> int:
    total = 0
    for p in paths:
        with urllib.request.urlopen(url + p, timeout=10) as r:
            body = r.read()
        f = root / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(body)
        total += len(body)
    return total


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/nginx-error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/json;
  types {{ }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {root};
    location / {{ try_files $uri =404; }}
  }}
}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--handles", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="runs per point; medians are reported (default 3)")
    ap.add_argument("--cold-s", type=int, default=2, help="seconds of the cold-cache point (default 2)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed after)")
    args = ap.parse_args()
    need_tools()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="cemp-bench-resolver-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    port, nport = free_port(), free_port()
    c = TestConsortium.create(n_nodes=1, ports=[port])
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(work, nid, port)
    nonce = build_chain(work, c, args.handles)
    paths = [f"/api/handles/{PREFIX}/bench.{i}" for i in range(args.handles)]
    (work / "paths.txt").write_text("\n".join(paths) + "\n")
    script = work / "cycle.lua"
    script.write_text(WRK_LUA % (work / "paths.txt"))
    url = f"http://127.0.0.1:{port}"
    result: dict[str, object] = {"handles": args.handles, "values_per_handle": 8}
    load_before = os.getloadavg()[0]
    proc = start_node_process(cfg, work / "node.log", port)
    try:
        subprocess.run(["taskset", "-pc", "0", str(proc.pid)], check=True, capture_output=True)
        static = work / "static"
        total = fetch_all(url, paths, static)
        result["body_bytes_mean"] = round(total / len(paths))
        log(f"node pinned to CPU 0; {len(paths)} bodies, mean {total / len(paths):.0f} bytes")
        node = series(url, script, args.runs, args.duration, "node", [proc.pid])
        # Blocks committing during the run: the writer thread changes handles while wrk reads.
        stop, done = threading.Event(), {"txs": 0, "batches": 0}
        h0 = json.loads(urllib.request.urlopen(url + "/v1/status", timeout=10).read())["height"]
        writer = threading.Thread(target=commit_while, args=(url, c, nonce, args.handles, stop, done))
        writer.start()
        try:
            during = run_wrk(url, script, 16, args.duration, [proc.pid])
        finally:
            stop.set()
            writer.join(60)
        h1 = json.loads(urllib.request.urlopen(url + "/v1/status", timeout=10).read())["height"]
        during["blocks_committed"] = float(h1 - h0)
        during["txs_committed"] = float(done["txs"])
        log(
            f"during commits: {during['rps']:.0f} req/s p99 {during['p99_ms']} ms; "
            f"{h1 - h0} blocks, {done['txs']} handle.put txs committed"
        )
    finally:
        stop_process(proc)
    # Cold: a fresh process, nothing cached; one short run so no path is asked twice.
    proc = start_node_process(cfg, work / "node-cold.log", port)
    try:
        subprocess.run(["taskset", "-pc", "0", str(proc.pid)], check=True, capture_output=True)
        cold = run_wrk(url, script, 16, args.cold_s, [proc.pid])
        log(f"cold: {cold['rps']:.0f} req/s p99 {cold['p99_ms']} ms over {cold['requests']:.0f} requests")
    finally:
        stop_process(proc)
    for p in [work, *work.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(base=work, port=nport, root=static, user=user))
    ng = subprocess.Popen(
        ["taskset", "-c", "0", "nginx", "-c", str(conf), "-p", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        nurl = f"http://127.0.0.1:{nport}"
        for _ in range(100):
            try:
                with urllib.request.urlopen(nurl + paths[0], timeout=1) as r:
                    if r.read() == (static / paths[0].lstrip("/")).read_bytes():
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"nginx did not serve {paths[0]}; see {work / 'nginx-error.log'}")
        kids = subprocess.run(["pgrep", "-P", str(ng.pid)], capture_output=True, text=True).stdout.split()
        ngx = series(nurl, script, args.runs, args.duration, "nginx", [ng.pid, *map(int, kids)])
    finally:
        ng.send_signal(signal.SIGQUIT)
        try:
            ng.wait(10)
        except subprocess.TimeoutExpired:
            ng.kill()
    result.update(
        {
            "resolve_per_s": node[16]["rps"],
            "p99_ms": node[16]["p99_ms"],
            "nginx_per_s": ngx[16]["rps"],
            "nginx_p99_ms": ngx[16]["p99_ms"],
            "node": {str(k): v for k, v in node.items()},
            "nginx": {str(k): v for k, v in ngx.items()},
            "resolve_cold_per_s": cold["rps"],
            "cold": {**cold, "every_request_a_miss": cold["requests"] <= args.handles},
            "resolve_during_commits_per_s": during["rps"],
            "during_commits": during,
            "commits_during_run": {"blocks": during["blocks_committed"], "txs": during["txs_committed"]},
            "duration_s": args.duration,
            "runs": args.runs,
            "pinning": "server on CPU 0, wrk on CPU 1",
            "node_cpu_us_per_req": node[16]["cpu_us_per_req"],
            "node_per_core_capacity": round(1e6 / node[16]["cpu_us_per_req"]),
            "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
    )
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
