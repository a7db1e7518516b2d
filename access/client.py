"""Talking to a node as a person: sign in (challenge -> token or web link), submit access txs, read the audit trail.

Used by ``cemp login``, ``cemp people``, ``cemp grant``, ``cemp data-policy``, ``cemp audit`` and the demo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from access.tokens import DOMAIN_LOGIN, login_message
from node.chain import ChainRef, sign_tx
from node.client import NodeClient
from node.crypto import KeyPair
from node.errors import CempError, Code


async def submit_signed(client: NodeClient, key: KeyPair, kind: str, payload: object) -> dict[str, Any]:
    """Sign with ``key`` (its next nonce as the node counts it), submit, wait for the commit; raise if refused."""
    chain = ChainRef.from_status(await client.status())
    nonce = int((await client.get(f"/v1/nonces/{key.public.hex()}"))["next"])
    raw, _ = sign_tx(key, chain, kind, nonce, payload)
    res = await client.submit(raw, wait=True)
    result = res.get("result") or {}
    if not result.get("ok"):
        raise CempError(Code.NOT_AUTHORIZED, f"{kind} tx refused: {result.get('reason', res)}")
    return res


async def _post_json(client: NodeClient, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    async with client.session.post(f"{client.base}{path}", json=doc or {}) as r:
        return await client._json(r)


async def sign_in(client: NodeClient, key: KeyPair, purpose: str = "api") -> dict[str, Any]:
    """Prove ``key`` to the node: ask a challenge, sign it, get a bearer token (``api``) or a web sign-in link
    (``web``: ``login_path`` to open on that node within 2 minutes)."""
    ch = await _post_json(client, "/v1/auth/challenge")
    challenge = bytes.fromhex(ch["challenge"])
    msg = login_message(bytes.fromhex(ch["genesis_hash"]), ch["node_id"], challenge)
    sig = key.sign(DOMAIN_LOGIN, msg)
    return await _post_json(
        client,
        "/v1/auth/token",
        {
            "pubkey": key.public.hex(),
            "challenge": challenge.hex(),
            "signature": sig.hex(),
            "purpose": purpose,
        },
    )


async def get_as(client: NodeClient, token: str | None, path: str, **params: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.session.get(
        f"{client.base}{path}", params={k: str(v) for k, v in params.items()}, headers=headers
    ) as r:
        return await client._json(r)


async def read_as(client: NodeClient, key: KeyPair | None, path: str, **params: Any) -> dict[str, Any]:
    """GET ``path`` as ``key`` (signed in first, so the node shows what that key may read), or anonymously
    when no key is given."""
    token = (await sign_in(client, key))["token"] if key is not None else None
    return await get_as(client, token, path, **params)


async def audit_pages(
    client: NodeClient,
    key: KeyPair,
    filters: dict[str, Any],
    progress: Callable[[int, int], None] | None = None,
    page_blocks: int = 2000,
) -> AsyncIterator[dict[str, Any]]:
    """Every audit entry matching ``filters``, page by page (2,000 blocks a page); ``progress(done, total)`` is
    called after each page with the height reached. A token is renewed when it runs out."""
    tok = (await sign_in(client, key))["token"]
    start = 1
    while True:
        try:
            page = await get_as(
                client, tok, "/v1/audit", from_height=start, max_blocks=page_blocks, **filters
            )
        except CempError as err:
            if err.code != Code.UNAUTHENTICATED:
                raise
            tok = (await sign_in(client, key))["token"]
            continue
        for entry in page["entries"]:
            yield entry
        nxt = page["next_height"]
        if progress is not None:
            progress((nxt - 1) if nxt else page["height"], page["height"])
        if not nxt:
            return
        start = nxt
