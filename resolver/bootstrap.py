"""Setting up an org's prefix for REST clients: the prefix handle and a first admin identity.

An org's genesis admin key can do anything under its prefix but never travels over HTTP. To hand out REST
access it signs two ``handle.put`` txs (``method = org``):

- ``0.NA/<prefix>``: HS_ADMIN at 100 (the group at 200, all 12 rights), HS_VLIST at 200 (the admins:
  ``300:0.NA/<prefix>`` and ``300:<prefix>/admin``), HS_PUBKEY at 300 (the org admin key itself, so the org can
  also log in by challenge-response);
- ``<prefix>/admin``: HS_ADMIN at 100 (``200:0.NA/<prefix>``, pyhandle's default rights), HS_SECKEY at 300 (the
  REST password, stored as a salted scrypt hash) and optionally an Ed25519 HS_PUBKEY at 301.

pyhandle's default owner for new handles is ``200:0.NA/<prefix>``, exactly that group, so handles it
creates are administered by the prefix's admins.
"""

from __future__ import annotations

from node.types import Blob, Handle, ShortStr, Text
from resolver import idis
from resolver.credentials import hash_secret
from resolver.kinds import ORG_AUTHORITY, HandlePut
from resolver.values import (
    DEFAULT_TTL,
    HS_SECKEY,
    HS_VLIST,
    SECKEY_PERMS,
    HandleValue,
    ValueList,
    ValueRef,
)

ADMIN_SUFFIX = "admin"


def _vlist(index: int, members: list[tuple[str, int]]) -> HandleValue:
    from node import codec

    data = codec.encode(ValueList(tuple(ValueRef(Handle(h), i) for h, i in members)))
    return HandleValue(index, Text(HS_VLIST), ShortStr("vlist"), Blob(data), DEFAULT_TTL, 0, 0b1110, ())


def prefix_handle_put(
    prefix: str, org_admin_key: bytes, extra_admins: tuple[tuple[str, int], ...] = ()
) -> HandlePut:
    ph = idis.prefix_handle(prefix)
    members = [(ph, idis.KEY_INDEX), (f"{prefix}/{ADMIN_SUFFIX}", idis.KEY_INDEX), *extra_admins]
    return HandlePut(
        Handle(ph),
        ShortStr("replace"),
        (
            idis.admin_value(idis.ADMIN_INDEX, ph, idis.GROUP_INDEX, idis.PREFIX_ADMIN_PERMS),
            _vlist(idis.GROUP_INDEX, members),
            idis.pubkey_value(idis.KEY_INDEX, org_admin_key),
        ),
        ORG_AUTHORITY,
    )


def admin_identity_put(prefix: str, secret: bytes | None, pubkey: bytes | None = None) -> HandlePut:
    values = [
        idis.admin_value(
            idis.ADMIN_INDEX, idis.prefix_handle(prefix), idis.GROUP_INDEX, idis.DEFAULT_ADMIN_PERMS
        )
    ]
    if secret is not None:
        values.append(
            HandleValue(
                idis.KEY_INDEX,
                Text(HS_SECKEY),
                ShortStr("seckey"),
                Blob(hash_secret(secret)),
                DEFAULT_TTL,
                0,
                SECKEY_PERMS,
                (),
            )
        )
    if pubkey is not None:
        values.append(idis.pubkey_value(idis.KEY_INDEX + 1, pubkey))
    return HandlePut(Handle(f"{prefix}/{ADMIN_SUFFIX}"), ShortStr("replace"), tuple(values), ORG_AUTHORITY)


def bootstrap_puts(
    prefix: str, org_admin_key: bytes, secret: bytes | None, pubkey: bytes | None = None
) -> list[HandlePut]:
    """The two payloads, to be signed by the org admin key in this order. With ``pubkey``, the identity
    ``301:<prefix>/admin`` (Ed25519, challenge-response) joins the admin group too."""
    extra = ((f"{prefix}/{ADMIN_SUFFIX}", idis.KEY_INDEX + 1),) if pubkey is not None else ()
    return [prefix_handle_put(prefix, org_admin_key, extra), admin_identity_put(prefix, secret, pubkey)]
