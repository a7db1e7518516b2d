"""People, roles, data grants and who may read what.

- Per-person accounts: an org's admin registers a person's own Ed25519 key with roles (``operator``,
  ``energy_manager``, ``maintenance_engineer``, ``auditor``) by a ``person.put`` tx and ends it by ``person.revoke``.
- What each role may write (``access.policy``) is checked by the chain's authorizer on admission and on apply.
- Data sharing between orgs: ``data.policy`` makes kinds of an org's data members-only; ``grant`` lets another org
  (or one of its people) read some of it until a time; ``grant.revoke`` ends that at once.
- Reads: ``access.reads`` authenticates a request (bearer token or web session issued by the node to a key that
  proved itself by signing a challenge) and decides each read against committed state (``docs/access.md``).

Other packages ask ``roles_of(view, pubkey)`` and ``org_of(view, pubkey)`` (``access.model``): e.g. a work-order
kind refuses a step whose sender lacks ``maintenance_engineer`` in the work order's org. A kind may instead declare
``person_roles = frozenset({...})`` on itself; the composition root (``cemp.wiring``) then lets people with one of
those roles send it for their org (``access.policy.policy_for``), and refuses it to everyone else who is a person.
"""

from __future__ import annotations

from access.kinds import access_kinds
from access.model import ADMIN, DATA_KINDS, ROLES, org_of, roles_of
from access.policy import WRITE_POLICY, ChainAuthorizer, policy_for

__all__ = [
    "ADMIN",
    "DATA_KINDS",
    "ROLES",
    "WRITE_POLICY",
    "ChainAuthorizer",
    "access_kinds",
    "org_of",
    "policy_for",
    "roles_of",
]
