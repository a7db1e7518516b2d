"""A small asynchronous client for the node API (used by the generator, demo, benchmarks and collector)."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import msgpack

from node.errors import CempError, Code
from node.tls import ca_context_from_env


class NodeClient:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 60,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` verifies an https node (default: ``CEMP_TLS_CA`` if set, else the system's CAs)."""
        self.base = base_url.rstrip("/")
        self._own = session is None
        # An https node of a consortium with its own CA: ``CEMP_TLS_CA`` names the CA certificate (node.tls).
        self.session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(limit=256, ssl=ssl_context or ca_context_from_env() or True),
        )

    async def close(self) -> None:
        if self._own:
            await self.session.close()

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _json(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        try:
            body = await resp.json(content_type=None)
        except (aiohttp.ContentTypeError, ValueError):
            raise CempError(Code.UNAVAILABLE, f"node answered {resp.status} without JSON") from None
        if resp.status >= 400:
            try:
                code = Code[str(body.get("code", "bad_request")).upper()]
            except KeyError:
                code = Code.BAD_REQUEST
            raise CempError(code, str(body.get("message", body)))
        return body  # type: ignore[no-any-return]

    async def submit(self, raw: bytes, *, wait: bool = False, timeout_ms: int = 30_000) -> dict[str, Any]:
        params = {"wait": "commit", "timeout_ms": str(timeout_ms)} if wait else {}
        async with self.session.post(
            f"{self.base}/v1/txs", data=raw, params=params, headers={"Content-Type": "application/msgpack"}
        ) as r:
            return await self._json(r)

    async def submit_batch(
        self, raws: list[bytes], *, wait: bool = False, timeout_ms: int = 30_000
    ) -> list[dict[str, Any]]:
        params = {"wait": "commit", "timeout_ms": str(timeout_ms)} if wait else {}
        body = msgpack.packb(raws, use_bin_type=True)
        async with self.session.post(
            f"{self.base}/v1/txs/batch",
            data=body,
            params=params,
            headers={"Content-Type": "application/msgpack"},
        ) as r:
            return (await self._json(r))["results"]  # type: ignore[no-any-return]

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        async with self.session.get(f"{self.base}{path}", params={k: str(v) for k, v in params.items()}) as r:
            return await self._json(r)

    async def status(self) -> dict[str, Any]:
        return await self.get("/v1/status")

    async def nonce(self, pubkey: bytes) -> int:
        return int((await self.get(f"/v1/nonces/{pubkey.hex()}"))["nonce"])
