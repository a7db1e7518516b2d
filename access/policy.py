"""What each role may write: the chain's ``Authorizer``.

``ChainAuthorizer.authorize`` runs before every kind's own checks, when a tx enters the mempool and again when its
block applies, on every node and in ``cemp verify`` (it reads only state and genesis, so all decide alike):
- an org's admin key acts for its org and may send every kind (the kind's own rules still apply: only the
  regulator records factor sets, only an owner org records sites, ...);
- a person's key acts for the person's org when one of its roles is listed for the tx's kind in the policy; a
  kind the policy does not list, or lists with no role, is refused to every person; a revoked person is refused
  everything;
- any other key (a device's, a node's) is left to the kind, which refuses what it does not expect.

``WRITE_POLICY`` is the default table; ``policy_for(kinds)`` adds the ``person_roles`` that an application's kind
declares on itself (e.g. a work-order step that maintenance engineers send), so the composition root lists kinds
once. The table is part of the chain's rules: every node must run the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from access.model import ADMIN, ROLES, admin_org, load_person
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Actor, Env
from node.types import Tx

WRITE_POLICY: dict[str, frozenset[str]] = {
    # core
    "device.register": frozenset({"operator"}),
    "document": frozenset({"operator", "energy_manager"}),
    "membership": frozenset(),
    "readings": frozenset(),
    # resolver
    "handle.put": frozenset({"operator"}),
    "handle.delete": frozenset({"operator"}),
    # accounting
    "site": frozenset({"energy_manager"}),
    "boundary": frozenset({"energy_manager"}),
    "factors": frozenset({"energy_manager"}),
    "rating": frozenset({"energy_manager"}),
    "report": frozenset({"energy_manager"}),
    # access
    "org.admin_rotate": frozenset(),
    "person.put": frozenset(),
    "person.revoke": frozenset(),
    "grant": frozenset({"energy_manager"}),
    "grant.revoke": frozenset({"energy_manager"}),
    "data.policy": frozenset(),
}
"""Kind -> the person roles that may send it for their org. Empty: the org's admin key only. ``auditor`` writes
nothing: it reads everything of its org (and what is granted to it) and the audit trail."""


def policy_for(
    kinds: Iterable[Any], base: Mapping[str, frozenset[str]] = WRITE_POLICY
) -> dict[str, frozenset[str]]:
    """``base`` plus each kind's own ``person_roles`` attribute (a kind that declares none keeps ``base``'s entry,
    or is admin-only when ``base`` has none)."""
    out = dict(base)
    for k in kinds:
        roles = getattr(k, "person_roles", None)
        if roles is not None:
            unknown = set(roles) - set(ROLES)
            if unknown:
                raise ValueError(f"kind {k.name}: unknown roles {sorted(unknown)}")
            out[k.name] = frozenset(roles)
    return out


class ChainAuthorizer:
    """The ``node.txkinds.Authorizer`` of a CEMP chain (see the module docstring)."""

    def __init__(self, policy: Mapping[str, frozenset[str]]) -> None:
        self.policy = dict(policy)

    def authorize(self, view: StateView, env: Env, tx: Tx, payload: Any) -> Actor | None:
        org = admin_org(env.admin_keys, tx.sender)
        if org is not None:
            return Actor(org, False, frozenset({ADMIN}))
        rec = load_person(view, tx.sender)
        if rec is None:
            return None
        who = f"{rec.name} ({rec.org})"
        if not rec.active:
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"the key of {who} was revoked at block {rec.revoked_height}: {rec.revoked_reason}",
            )
        allowed = self.policy.get(tx.kind, frozenset())
        held = frozenset(str(r) for r in rec.roles)
        if not held & allowed:
            need = " or ".join(sorted(allowed)) if allowed else f"{rec.org}'s admin key"
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"{who} holds {', '.join(sorted(held)) or 'no role'}; a {tx.kind} tx needs {need}",
            )
        porg = next((o for o in env.genesis.orgs if o.name == rec.org), None)
        if porg is None:  # a person is only ever registered under a genesis org
            raise CempError(Code.NOT_AUTHORIZED, f"{who}: org {rec.org} is not in the genesis")
        return Actor(porg, True, held)
