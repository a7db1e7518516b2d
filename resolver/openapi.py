"""OpenAPI description of the resolver's Handle.Net v9 REST API, merged into a node's ``/openapi.json``.

The composition root (``cemp.wiring``) hands ``PATHS`` to the node (``node.openapi.OPENAPI_EXTRA``); ``x-covers``
names the aiohttp route pattern each item describes, so the node does not add a generic entry for it.
"""

from __future__ import annotations

from typing import Any

_JSON: dict[str, Any] = {"application/json": {}}
_HS_ERR = {"description": "Handle.Net error: {responseCode, handle, message}", "content": _JSON}


def _q(name: str, desc: str, typ: str = "string", array: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": {"type": typ}} if array else {"type": typ}
    return {"name": name, "in": "query", "required": False, "description": desc, "schema": schema}


_HANDLE = {
    "name": "handle",
    "in": "path",
    "required": True,
    "description": "PREFIX/SUFFIX, e.g. 88.123.45/101.1.1 (the slash is part of the path)",
    "schema": {"type": "string"},
}
_ERRS = {"400": _HS_ERR, "401": _HS_ERR, "403": _HS_ERR, "404": _HS_ERR, "409": _HS_ERR, "429": _HS_ERR}

PATHS: dict[str, Any] = {
    "/api/handles": {
        "x-covers": ["/api/handles{tail}"],
        "get": {
            "summary": "List the handles under a prefix (Handle.Net ?prefix=)",
            "parameters": [
                _q("prefix", "prefix to list, e.g. 88.123.45"),
                _q("page", "page number (0-based)", "integer"),
                _q("pageSize", "handles per page", "integer"),
            ],
            "responses": {"200": {"description": "handles", "content": _JSON}, **_ERRS},
        },
    },
    "/api/handles/{handle}": {
        "x-covers": ["/api/handles{tail}"],
        "get": {
            "summary": "Resolve a handle: its values, or an HTML page when the browser asks for HTML",
            "parameters": [
                _HANDLE,
                _q("index", "only these value indexes", "integer", array=True),
                _q("type", "only values of these types", array=True),
                _q("auth", "resolve authoritatively (always true here)", "boolean"),
                _q("publicOnly", "false: also restricted values (needs authentication)", "boolean"),
                _q("proof", "true: add the Merkle proof and commit signatures of each value", "boolean"),
                _q("format", "'html' for the resolution page"),
                _q("pretty", "indent the JSON"),
                _q("callback", "JSONP callback name"),
            ],
            "responses": {"200": {"description": "the handle record", "content": _JSON}, **_ERRS},
        },
        "put": {
            "summary": "Create or update a handle's values (authenticated; signed and committed on chain)",
            "parameters": [
                _HANDLE,
                _q("overwrite", "false: refuse if the handle exists", "boolean"),
                _q("mintNewSuffix", "true: the path ends in '/' and the node picks a suffix", "boolean"),
                _q("index", "only these indexes of the body's values", "integer", array=True),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"values": {"type": "array", "items": {"type": "object"}}},
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "updated", "content": _JSON},
                "201": {"description": "created", "content": _JSON},
                **_ERRS,
            },
        },
        "delete": {
            "summary": "Delete a handle, or some of its values (authenticated)",
            "parameters": [_HANDLE, _q("index", "only these value indexes", "integer", array=True)],
            "responses": {"200": {"description": "deleted", "content": _JSON}, **_ERRS},
        },
    },
}
