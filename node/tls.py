"""TLS for the node: HTTPS on its listeners, and verified HTTPS to its peers.

Configured by ``[tls] cert``, ``key`` and ``ca`` in the node's TOML (``node.config``):

- ``cert``/``key``: this node's certificate chain and private key (PEM). With them the node serves HTTPS on its
  API (and on its peer listener) and reaches its peers over HTTPS, presenting the same certificate as a client;
- ``ca``: what peers are checked against: the consortium CA's certificate, or a bundle of the peers' own
  self-signed certificates (pinning: OpenSSL treats a self-signed certificate in the trust store as an anchor,
  so exactly those certificates are accepted). Without it the system's trust store is used (public CAs).

A peer's certificate must chain to ``ca`` and name the host of the peer's address (as in the genesis, or its
``[peers]`` override) in its subjectAltName; a peer that fails either is unreachable, never trusted (messages
are signed by node keys as well, so TLS adds confidentiality and an authenticated channel, not membership).
When the peer routes have their own listener (``[api] peer_port``) and ``ca`` is set, that listener asks for a
client certificate from the same CA (mutual TLS); the public API asks none.

A consortium is all TLS or all plain HTTP: the scheme a node uses towards its peers is ``https`` exactly when it
has a certificate of its own.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None


def server_context(files: TlsFiles, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """The listener's context; ``require_client_cert`` (peer listener with a ``ca``) makes it mutual TLS."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = MIN_VERSION
    ctx.load_cert_chain(str(files.cert), str(files.key))
    if require_client_cert:
        if files.ca is None:
            raise ValueError("mutual TLS needs [tls] ca")
        ctx.load_verify_locations(cafile=str(files.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The context this node reaches its peers with: verifies them against ``ca`` (hostname included) and
    presents this node's certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca) if files.ca else None)
    ctx.minimum_version = MIN_VERSION
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def scheme(ctx: ssl.SSLContext | None) -> str:
    return "https" if ctx is not None else "http"


CA_ENV = "CEMP_TLS_CA"


def ca_context_from_env(env: dict[str, str] | None = None) -> ssl.SSLContext | None:
    """For API clients (``cemp`` commands, the collector): trust the consortium CA named by ``CEMP_TLS_CA`` in
    addition to the system's; ``None`` (aiohttp's default verification) when it is unset."""
    path = (os.environ if env is None else env).get(CA_ENV)
    if not path:
        return None
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=path)
    return ctx
