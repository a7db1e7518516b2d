"""``cemp report`` and ``cemp report verify`` / ``txs`` through ``cemp.cli.main`` against a real ``cemp node``
process (LevelDB, HTTP): a report is rendered and issued on chain, verifies, names the readings txs the node
committed, and a tampered copy is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from accounting.factors import shipped_sets
from cemp.cli import main
from node.client import NodeClient
from node.crypto import write_key_file
from tests.accounting.chain import HOUR_MS, SITE, boundary_payload, site_payload
from tests.accounting.test_inventory import BOUNDARY, CORE, MAIN, PIPE, T0
from tests.support.testing import TestConsortium, free_port, start_node_process

pytestmark = pytest.mark.slow


async def _populate(c: TestConsortium, url: str) -> dict[str, list[str]]:
    """Factor sets, the site, its boundary and two days of counter readings; returns device -> readings tx hashes."""
    txs: dict[str, list[str]] = {}
    async with NodeClient(url) as cl:

        async def ok(raw: bytes) -> dict[str, object]:
            res = await cl.submit(raw, wait=True)
            assert res["result"]["ok"], res  # type: ignore[index]
            return res

        for s in shipped_sets():
            await ok(c.admin_tx("regulator", "factors", s))
        await ok(c.admin_tx("owner", "site", site_payload()))
        devs = {}
        for h in (CORE, PIPE, MAIN):
            devs[h], reg = c.register_device(h)
            await ok(reg)
        await ok(c.admin_tx("owner", "boundary", boundary_payload(1, T0 - 24 * HOUR_MS, BOUNDARY, main=MAIN)))
        for i, (h, dev) in enumerate(sorted(devs.items())):
            v = 1000
            vals = []
            for q in range(
                48 * 4
            ):  # 48 hours of 15-minute readings, in batches of 50 (several txs per device)
                v += 250 + 40 * i + (q % 7)
                vals.append((T0 + q * 900_000 + 60_000, "energy.import", v, "Wh"))
            for k in range(0, len(vals), 50):
                res = await ok(dev.batch(c.chain, vals[k : k + 50]))
                txs.setdefault(h, []).append(str(res["tx"]))
    return txs


def test_report_issue_verify_txs_and_a_tampered_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    c = TestConsortium.create(ports=[port], block_interval_ms=10)
    nid = c.genesis.nodes[0].node_id
    cfg = c.write_files(tmp_path / "node", nid, port)
    key = tmp_path / "owner.admin.key"
    write_key_file(key, c.admins["owner"])
    proc = start_node_process(cfg, tmp_path / "node.log", port)
    try:
        txs = asyncio.run(_populate(c, url))
        pdf, html = tmp_path / "jan.pdf", tmp_path / "jan.html"
        base = ["report", "--site", SITE, "--period", "2026-01", "--nodes", url, "--lang", "en"]
        assert main([*base, "--format", "pdf", "--out", str(pdf), "--issue", "--key", str(key)]) == 0
        out = capsys.readouterr().out
        assert "issued on chain (tx " in out and "report SHA-256" in out
        assert main([*base, "--format", "html", "--out", str(html)]) == 0
        capsys.readouterr()

        # the issued PDF verifies against the chain and finds its anchoring tx
        assert main(["report", "verify", str(pdf), "--nodes", url, "--json"]) == 0
        v = json.loads(capsys.readouterr().out)
        assert v["match"] and v["problems"] == [] and v["issued"] is not None and v["format"] == "pdf"
        assert main(["report", "verify", str(html), "--nodes", url]) == 0
        assert "MATCH" in capsys.readouterr().out

        # the txs it names are exactly the readings txs the node committed for the boundary's meters
        assert main(["report", "txs", str(pdf)]) == 0
        lines = capsys.readouterr().out.split()
        named = {(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)}
        assert named == {(h, t) for h, ts in txs.items() for t in ts} and len(named) == 3 * 4

        # a copy with one printed figure changed is refused (exit 1) and says which figure
        page = html.read_text()
        shown = v["figures"]["co2_location_t"]
        bad = page.replace(f'data-key="co2_location_t">{shown}<', 'data-key="co2_location_t">1.000<')
        if bad == page:  # the figure is printed with thousands separators
            import re

            bad = re.sub(r'data-key="co2_location_t">[^<]*<', 'data-key="co2_location_t">1.000<', page)
        assert bad != page
        tampered = tmp_path / "tampered.html"
        tampered.write_text(bad)
        assert main(["report", "verify", str(tampered), "--nodes", url]) == 1
        out = capsys.readouterr().out
        assert "MISMATCH" in out and "co2_location_t" in out

        # a copy naming a tx the figures were not computed from is refused too
        model_blob = page.split('id="cemp-report-model">', 1)[1].split("</script>", 1)[0]
        model = json.loads(model_blob.replace("<\\/", "</"))
        model["provenance"]["devices"][CORE][0] = txs[MAIN][0]
        forged = page.replace(
            model_blob, json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        )
        (tmp_path / "forged.html").write_text(forged)
        assert main(["report", "verify", str(tmp_path / "forged.html"), "--nodes", url]) == 1
        assert "do not hash to the stated root" in capsys.readouterr().out
        assert main(["report", "txs", str(tmp_path / "forged.html")]) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
