"""Three real ``cemp node`` processes over TLS (``[tls] cert/key/ca``, certificates from ``cemp.tlscerts``).

- every link is HTTPS: the nodes elect a leader, txs sent to each node commit on all three, and the API answers
  only over TLS (a plain-HTTP request to a node's port gets no HTTP answer);
- peers are verified against the consortium CA: a node whose certificate comes from another CA (and which
  trusts only that CA) is cut off both ways — the others count TLS faults towards it and never report it
  reachable, it stays at height 0 while they commit — although its node key is a member's.
"""

from __future__ import annotations

import asyncio
import csv
import io
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from node.client import NodeClient
from tests.cluster.harness import Cluster
from tests.support.testing import TestConsortium, free_port, start_node_process, write_tls

pytestmark = pytest.mark.slow


async def _commit_through_each(cl: Cluster, nodes: list[str], per_node: int) -> int:
    devs = []
    committed = 0
    for i, nid in enumerate(nodes):
        dev, reg = cl.consortium.register_device(f"88.123.45/9.{i}")
        async with cl.client(nid, timeout_s=30) as c:
            r = await c.submit(reg, wait=True, timeout_ms=20_000)
            assert r["status"] == "committed" and r["result"]["ok"], r
            for k in range(per_node):
                now = int(time.time() * 1000)
                raw = dev.batch(cl.consortium.chain, [(now + k, "energy.import", 10 * k, "Wh")])
                r = await c.submit(raw, wait=True, timeout_ms=20_000)
                assert r["status"] == "committed" and r["result"]["ok"], r
                committed += 1
        devs.append(dev)
    return committed


async def _converged(cl: Cluster, nodes: list[str], timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < end:
        sts = [await cl.status(n) for n in nodes]
        last = [(s["height"], s["last_block_hash"]) for s in sts]
        if len({(s["height"], s["last_block_hash"]) for s in sts}) == 1:
            return int(sts[0]["height"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"nodes did not converge: {last}")


async def test_three_nodes_over_tls(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False, tls=True)
    try:
        await cl.start_all()
        await cl.leader(30)
        n = await _commit_through_each(cl, cl.ids, 3)
        assert n == 9
        height = await _converged(cl, cl.ids)
        assert height >= 12
        for nid in cl.ids:
            st = await cl.status(nid)
            assert all(st["peers_reachable"].values()), st["peers_reachable"]
            assert not any(k.startswith("tls_") for k in st["peer_drops"]), st["peer_drops"]
        with pytest.raises(OSError):  # no plain HTTP on a TLS node's port
            urllib.request.urlopen(f"http://127.0.0.1:{cl.ports[cl.ids[0]]}/v1/status", timeout=3).read()
    finally:
        await cl.stop()


async def test_a_peer_with_a_foreign_certificate_is_cut_off(tmp_path: Path) -> None:
    cl = await Cluster.create(tmp_path, 3, proxies=False, tls=True)
    good, bad = cl.ids[:2], cl.ids[2]
    # The third node gets a certificate (and trust) from a CA the consortium does not know.
    write_tls(tmp_path / "rogue", [bad])
    cfg = cl.configs[bad]
    text = cfg.read_text()
    text = text[: text.index("[tls]")]
    r = tmp_path / "rogue"
    cfg.write_text(text + f'[tls]\ncert = "{r / bad}.crt"\nkey = "{r / bad}.key"\nca = "{r}/ca.crt"\n')
    cl.tls_ca = None  # each node's API is checked against its own CA below
    try:
        for nid in cl.ids:
            cl.tls_ca = r / "ca.crt" if nid == bad else tmp_path / "tls" / "ca.crt"
            await cl.start(nid)
        cl.tls_ca = tmp_path / "tls" / "ca.crt"
        await cl.leader(30)
        await _commit_through_each(cl, good, 2)
        await _converged(cl, good)
        for nid in good:
            # Each good node has met the rogue's certificate at least once: a node that only tried while the
            # rogue was still starting counted it "unreachable", and on a quiet machine the commits above can
            # finish before its next try, so this is waited for, not read once.
            end = time.monotonic() + 30
            while True:
                st = await cl.status(nid)
                assert st["peers_reachable"][bad] is False, st
                assert st["height"] >= 6
                if st["peer_drops"].get(f"tls_{bad}", 0) > 0:
                    break
                assert time.monotonic() < end, st["peer_drops"]
                await asyncio.sleep(0.2)
        cl.tls_ca = r / "ca.crt"
        end = time.monotonic() + 30  # it campaigns once its election timeout passes; each attempt fails TLS
        while True:
            st = await cl.status(bad)
            assert st["height"] == 0 and st["leader"] is None, st
            assert not any(st["peers_reachable"].values()), st
            if all(st["peer_drops"].get(f"tls_{g}", 0) > 0 for g in good):
                break
            assert time.monotonic() < end, st
            await asyncio.sleep(0.2)
        log = (tmp_path / good[0] / "node.log").read_text()
        assert f"TLS to peer {bad}" in log
    finally:
        await cl.stop()


async def test_peer_listeners_of_their_own_ask_for_a_consortium_certificate(tmp_path: Path) -> None:
    """With ``[api] peer_port`` the peer routes are on a listener of their own: with ``[tls] ca`` it is mutual TLS,
    so a client without a certificate from the consortium CA does not get past the handshake."""
    api = [free_port() for _ in range(3)]
    peer = [free_port() for _ in range(3)]
    c = TestConsortium.create(3, ports=peer, tick_ms=50, election_ticks=10, block_interval_ms=10)
    ids = [str(n.node_id) for n in c.genesis.nodes]
    ca = write_tls(tmp_path / "tls", ids)
    procs = []
    try:
        for i, nid in enumerate(ids):
            cfg = c.write_files(tmp_path / nid, nid, api[i])
            t = tmp_path / "tls"
            cfg.write_text(
                cfg.read_text()
                + f'peer_host = "127.0.0.1"\npeer_port = {peer[i]}\n'
                + f'[tls]\ncert = "{t / nid}.crt"\nkey = "{t / nid}.key"\nca = "{ca}"\n'
            )
            procs.append(
                await asyncio.to_thread(start_node_process, cfg, tmp_path / nid / "node.log", api[i])
            )
        ctx = ssl.create_default_context(cafile=str(ca))
        _dev, reg = c.register_device("88.123.45/9.1")
        async with NodeClient(f"https://127.0.0.1:{api[0]}", ssl_context=ctx, timeout_s=60) as nc:
            r = await nc.submit(reg, wait=True, timeout_ms=45_000)
            assert r["status"] == "committed" and r["result"]["ok"], r
        for i in range(3):
            async with NodeClient(f"https://127.0.0.1:{api[i]}", ssl_context=ctx) as nc:
                end = time.monotonic() + 30
                while (st := await nc.status())["height"] < r["height"]:
                    assert time.monotonic() < end, st
                    await asyncio.sleep(0.2)

        def get_block(client: ssl.SSLContext) -> int:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{peer[0]}/v1/blocks/1", timeout=5, context=client
                ) as r:
                    return int(r.status)
            except urllib.error.HTTPError as e:
                return int(e.code)

        with pytest.raises((ssl.SSLError, OSError)):  # no certificate: the handshake fails
            await asyncio.to_thread(get_block, ssl.create_default_context(cafile=str(ca)))
        member = ssl.create_default_context(cafile=str(ca))
        member.load_cert_chain(
            str(tmp_path / "tls" / f"{ids[1]}.crt"), str(tmp_path / "tls" / f"{ids[1]}.key")
        )
        assert await asyncio.to_thread(get_block, member) == 200

        # The explorer's consortium page reaches every member at its genesis address (here its peer listener,
        # mutual TLS) and shows it reachable, with its height.
        def consortium_csv() -> list[dict[str, str]]:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{api[0]}/consortium?format=csv", timeout=10, context=ctx
            ) as resp:
                return list(csv.DictReader(io.StringIO(resp.read().decode("utf-8-sig"))))

        rows = await asyncio.to_thread(consortium_csv)
        assert sorted(row["node_id"] for row in rows) == sorted(ids), rows
        assert all(row["reachable"] == "True" and row["height"] for row in rows), rows
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)
