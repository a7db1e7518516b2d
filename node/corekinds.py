"""The tx kinds of the core ledger: ``device.register``, ``readings``, ``membership``, ``node.key_rotate``,
``org.admin_rotate`` and ``document``.

An application adds its own kinds, and hooks into ``device.register``, by building the registry itself (see
``cemp.wiring``); a ledger that only needs the core (a library user, a core test) can take ``core_registry()``.
A chain's registry must be the same on every node and in ``cemp verify``: a hook writes state, so a ledger
without it computes a different app hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from node.adminrotation import OrgAdminRotationKind
from node.devices import DeviceRegisterKind, RegisterHook
from node.documents import KIND_IMPL as DOCUMENT_KIND
from node.keyrotation import NodeKeyRotationKind
from node.membership import MembershipKind
from node.readings import ReadingsKind
from node.txkinds import Authorizer, KindRegistry, TxKind


def core_kinds(register_hooks: Sequence[RegisterHook] = ()) -> list[TxKind]:
    """Fresh instances of the core kinds; ``register_hooks`` run inside every ``device.register`` apply."""
    return [
        DeviceRegisterKind(register_hooks),
        ReadingsKind(),
        MembershipKind(),
        NodeKeyRotationKind(),
        OrgAdminRotationKind(),
        DOCUMENT_KIND,
    ]


def core_registry(
    register_hooks: Sequence[RegisterHook] = (),
    extra: Iterable[TxKind] = (),
    authorizer: Authorizer | None = None,
) -> KindRegistry:
    """The core kinds plus ``extra`` (an application's kinds) as one registry, with an optional authorizer."""
    return KindRegistry([*core_kinds(register_hooks), *extra], authorizer)
