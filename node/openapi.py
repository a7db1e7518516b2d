"""OpenAPI 3.1 description of the node API (served at ``/openapi.json``).

``OPENAPI`` describes the core routes by hand. ``document(app, extra)`` is what a node serves: that, plus the path
items the route providers carry (``openapi_paths``: the resolver's Handle.Net API, the accounting), plus a generic
entry for any route of the running app that neither describes, so the document always lists every route the node
answers.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from aiohttp import web

_ERR = {"$ref": "#/components/responses/Error"}


def _q(name: str, desc: str, typ: str = "integer", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": desc, "schema": {"type": typ}}


_HANDLE = {
    "name": "handle",
    "in": "path",
    "required": True,
    "description": "device handle, e.g. 88.123.45/101.1.1",
    "schema": {"type": "string"},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "CEMP node API",
        "version": "1",
        "description": "Submit signed txs (canonical msgpack), read blocks, txs with Merkle proofs, device readings "
        "and hourly aggregates. Errors are JSON {code, message} with a 4xx status.",
    },
    "paths": {
        "/v1/txs": {
            "post": {
                "summary": "Submit one encoded tx",
                "parameters": [
                    _q("wait", "'commit' to answer once the tx is in a committed block", "string"),
                    _q("timeout_ms", "how long to wait for the commit (default 30000)"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "200": {
                        "description": "committed (or already known)",
                        "content": {"application/json": {}},
                    },
                    "202": {"description": "admitted to the mempool", "content": {"application/json": {}}},
                    "400": _ERR,
                    "401": _ERR,
                    "404": _ERR,
                    "409": _ERR,
                    "413": _ERR,
                    "422": _ERR,
                    "429": _ERR,
                },
            }
        },
        "/v1/txs/batch": {
            "post": {
                "summary": "Submit many encoded txs (msgpack array of bin); one outcome per tx",
                "parameters": [
                    _q("wait", "'commit' to wait for all", "string"),
                    _q("timeout_ms", "wait limit"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "200": {"description": "outcomes", "content": {"application/json": {}}},
                    "400": _ERR,
                    "413": _ERR,
                },
            }
        },
        "/v1/txs/{hash}": {
            "get": {
                "summary": "A tx with its result, decoded payload and Merkle inclusion proof",
                "parameters": [
                    {"name": "hash", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "tx", "content": {"application/json": {}}},
                    "400": _ERR,
                    "404": _ERR,
                },
            }
        },
        "/v1/blocks": {
            "get": {
                "summary": "Newest blocks first",
                "parameters": [_q("before", "list blocks below this height"), _q("limit", "at most 200")],
                "responses": {
                    "200": {"description": "headers", "content": {"application/json": {}}},
                    "400": _ERR,
                },
            }
        },
        "/v1/blocks/{ref}": {
            "get": {
                "summary": "A block by height or hash, with tx results and commit certificate",
                "parameters": [
                    {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}},
                    _q("format", "'msgpack' for the canonical encoded block", "string"),
                ],
                "responses": {
                    "200": {"description": "block", "content": {"application/json": {}}},
                    "400": _ERR,
                    "404": _ERR,
                },
            }
        },
        "/v1/devices": {
            "get": {
                "summary": "Registered devices in handle order; 'next' is the 'after' of the next page",
                "parameters": [
                    _q("limit", "at most 1000"),
                    _q("after", "cursor: the 'next' of the previous page", "string"),
                ],
                "responses": {"200": {"description": "devices", "content": {"application/json": {}}}},
            }
        },
        "/v1/devices/{handle}": {
            "get": {
                "summary": "A device record",
                "parameters": [_HANDLE],
                "responses": {
                    "200": {"description": "device", "content": {"application/json": {}}},
                    "404": _ERR,
                },
            }
        },
        "/v1/devices/{handle}/readings": {
            "get": {
                "summary": "Readings of a device in a time range",
                "parameters": [
                    _HANDLE,
                    _q("from", "start, Unix ms (inclusive)"),
                    _q("to", "end, Unix ms (exclusive)"),
                    _q("quantity", "only this quantity", "string"),
                    _q("limit", "at most 10000"),
                    _q("after", "cursor: the 'next' of the previous page (ts_ms-seq)", "string"),
                ],
                "responses": {
                    "200": {"description": "readings", "content": {"application/json": {}}},
                    "400": _ERR,
                    "404": _ERR,
                },
            }
        },
        "/v1/devices/{handle}/hourly": {
            "get": {
                "summary": "Hourly aggregates (count, sum, min, max, first/last, delta) per quantity",
                "parameters": [
                    _HANDLE,
                    _q("from", "Unix ms"),
                    _q("to", "Unix ms"),
                    _q("quantity", "quantity", "string"),
                ],
                "responses": {
                    "200": {"description": "aggregates", "content": {"application/json": {}}},
                    "400": _ERR,
                    "404": _ERR,
                },
            }
        },
        "/v1/nonces/{pubkey}": {
            "get": {
                "summary": "A sender's last committed nonce and the next one to use",
                "parameters": [
                    {"name": "pubkey", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "nonce", "content": {"application/json": {}}},
                    "400": _ERR,
                },
            }
        },
        "/v1/consortium": {
            "get": {
                "summary": "Orgs (name, role, prefix, admin key) and nodes with current membership",
                "responses": {"200": {"description": "consortium", "content": {"application/json": {}}}},
            }
        },
        "/v1/documents": {
            "get": {
                "summary": "Documents (bills, receipts, ledger rows), newest first",
                "parameters": [
                    _q("doc_type", "filter by type", "string"),
                    _q("review", "auto|needs_review|confirmed", "string"),
                    _q("limit", "page size"),
                    _q("before", "cursor from the previous page", "string"),
                ],
                "responses": {
                    "200": {"description": "documents", "content": {"application/json": {}}},
                    "400": _ERR,
                },
            }
        },
        "/v1/documents/{id}": {
            "get": {
                "summary": "A document with its version history",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    _q("version", "a specific version"),
                ],
                "responses": {
                    "200": {"description": "document", "content": {"application/json": {}}},
                    "404": _ERR,
                },
            }
        },
        "/v1/status": {
            "get": {
                "summary": "Node status: node_id, height, term, leader, app hash",
                "responses": {"200": {"description": "status", "content": {"application/json": {}}}},
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
    },
    "components": {
        "responses": {
            "Error": {
                "description": "refused; nothing was written",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    }
                },
            }
        }
    },
}


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def _shape(path: str) -> str:
    return _PARAM.sub("{}", path)


def _generic(method: str, path: str, handler: Any) -> dict[str, Any]:
    doc = (getattr(handler, "__doc__", None) or "").strip().split("\n")[0]
    op: dict[str, Any] = {
        "summary": doc or f"{method} {path}",
        "parameters": [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _PARAM.findall(path)
        ],
        "responses": {"default": {"description": "JSON answer; a 4xx body is {code, message}"}},
    }
    if method in ("POST", "PUT"):
        op["requestBody"] = {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        }
    return op


def document(app: web.Application, extra: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document of ``app``: every route it serves, described by hand (core, ``extra``) where a
    description exists."""
    doc = copy.deepcopy(OPENAPI)
    paths: dict[str, Any] = doc["paths"]
    paths.update(copy.deepcopy(extra))
    known = {(_shape(p), m.upper()) for p, item in paths.items() for m in item if not m.startswith("x-")}
    for item in paths.values():  # a hand-written item may cover a route whose pattern reads differently
        known |= {
            (_shape(c), m.upper()) for c in item.get("x-covers", ()) for m in item if not m.startswith("x-")
        }
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        raw = info.get("path") or info.get("formatter")
        if not raw:
            continue
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", raw)
        methods = ["GET", "PUT", "POST", "DELETE"] if route.method == "*" else [route.method]
        for method in methods:
            if method == "HEAD" or (_shape(path), method) in known:
                continue
            paths.setdefault(path, {})[method.lower()] = _generic(method, path, route.handler)
            known.add((_shape(path), method))
    return doc
