"""88.x handle records on the ledger and the Handle.Net v9 REST API (see docs/resolver.md).

values (wire types, JSON), handles (names, rights, authorities), kinds (handle.put / handle.delete),
idis (templates, device records), credentials (REST authentication), api (REST), page (HTML), proof.
"""
