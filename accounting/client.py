"""Writing the accounting's records through a node's API: factor sets, a site with its boundary, a rating.

Each function signs with an org admin key (the node's own ``sign_tx``), submits through the one submission client
(``node.submit``), waits for the commit and raises
``CempError`` with the chain's reason if the tx was refused. Used by ``cemp factors``, ``cemp site``, ``cemp rating``
and the demo.
"""

from __future__ import annotations

from typing import Any

from accounting.factors import shipped_sets
from accounting.model import BoundaryPayload, SitePayload
from accounting.rating import payload_of
from node.chain import ChainRef, sign_tx
from node.client import NodeClient
from node.crypto import KeyPair
from node.errors import CempError, Code
from node.submit import SubmitClient


async def submit_signed(
    client: NodeClient | SubmitClient, key: KeyPair, chain: ChainRef, kind: str, payload: object
) -> dict[str, Any]:
    """Sign ``payload`` with the sender's next nonce (pending txs counted), submit through the submission
    client until it commits, and return the node's answer; ``CempError`` if it was refused or marked invalid."""
    sc = SubmitClient.of(client)
    nonce = await sc.next_nonce(key.public)
    raw, _ = sign_tx(key, chain, kind, nonce, payload)
    out = await sc.submit_signed(raw)
    if not out.ok:
        raise CempError(Code.INVALID_PAYLOAD, f"{kind} tx refused: {out.reason}")
    return out.body


async def publish_factor_sets(client: NodeClient, key: KeyPair, chain: ChainRef) -> list[str]:
    """Record every shipped factor set the chain does not hold yet (regulator key); returns the ids recorded."""
    done: list[str] = []
    for s in shipped_sets():
        try:
            await client.get(f"/v1/factors/{s.set_id}")
            continue
        except CempError as e:
            if e.code != Code.NOT_FOUND:
                raise
        await submit_signed(client, key, chain, "factors", s)
        done.append(s.set_id)
    return done


async def ensure_site(
    client: NodeClient, key: KeyPair, chain: ChainRef, site: SitePayload, boundary: BoundaryPayload
) -> bool:
    """Record ``site`` (version 1) and its first boundary unless the site exists; True if they were recorded."""
    try:
        await client.get(f"/v1/sites/{site.site_id}")
        return False
    except CempError as e:
        if e.code != Code.NOT_FOUND:
            raise
    await submit_signed(client, key, chain, "site", site)
    await submit_signed(client, key, chain, "boundary", boundary)
    return True


async def issue_rating(
    client: NodeClient, key: KeyPair, chain: ChainRef, site_id: str, period: str, benchmark: str = "gas"
) -> dict[str, Any]:
    """Compute the rating on the node, sign it and record it; returns the computed rating."""
    r = await client.get(f"/v1/sites/{site_id}/rating", period=period, benchmark=benchmark)
    computed: dict[str, Any] = r["computed"]
    await submit_signed(client, key, chain, "rating", payload_of(computed))
    return computed
