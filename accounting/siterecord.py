"""The shape the ``rating`` and ``report`` kinds share: a signed record about one site and period that also sets a
value on the site's building handle.

Rules common to both (checked at admission and again on apply, against the state each sees): the site exists; the
signer is the admin of the site's org or of the regulator; the period parses against the site's calendar; the
building-handle value goes through the resolver's record path (``plan_values``), so resolving the building, or
scanning its QR label, shows it. A kind adds its own payload checks, its handle value and its records.
"""

from __future__ import annotations

from typing import Any

from accounting.periods import parse_period
from accounting.sites import load_site, mmdd
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Env, Writer, acting_org
from node.types import Tx
from resolver.kinds import admit_plan, apply_plan, plan_values


class SiteRecordKind:
    """Base of a tx kind recording a figure of a site and period and setting one value on its building handle."""

    name = ""
    what = ""
    """What a refusal calls one record: ``a rating``, ``a report``."""
    records_in_admit = False
    """Whether the mempool's view of state includes the records (a kind that refuses duplicates needs it)."""

    def check_payload(self, view: StateView, env: Env, tx: Tx, p: Any) -> None:
        """The kind's own checks (after the site, signer and period checks)."""

    def handle_value(self, p: Any, env: Env) -> Any:
        """The value set on the building handle."""
        raise NotImplementedError

    def records(self, p: Any, org: str, env: Env) -> dict[bytes, bytes]:
        """The state the record writes besides the handle value."""
        raise NotImplementedError

    def _check(self, view: StateView, env: Env, tx: Tx, p: Any) -> tuple[str, Any]:
        org = acting_org(env, tx)
        site = load_site(view, p.site_id)
        if site is None:
            raise CempError(Code.NOT_FOUND, f"no site {p.site_id!r} on this chain")
        if org is None or (org.name != site.org and org.role != "regulator"):
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"{self.what} of {p.site_id} is signed by {site.org}'s admin or the regulator's",
            )
        sp = site.payload
        try:
            parse_period(p.period, sp.utc_offset_min, (mmdd(sp.season_start, "s"), mmdd(sp.season_end, "e")))
        except CempError as e:
            raise CempError(Code.INVALID_PAYLOAD, e.message) from None
        self.check_payload(view, env, tx, p)
        value = self.handle_value(p, env)
        plan = plan_values(view, env, sp.building, (value,), f"{org.name} admin key ({self.name})")
        return org.name, plan

    def check(self, view: StateView, env: Env, tx: Tx, p: Any) -> None:
        self._check(view, env, tx, p)

    def apply(self, state: Writer, env: Env, tx: Tx, p: Any) -> None:
        org, plan = self._check(state, env, tx, p)  # type: ignore[arg-type]
        for key, value in self.records(p, org, env).items():
            state.put(key, value)
        apply_plan(state, plan, env, self.name)

    def admit(self, view: StateView, env: Env, tx: Tx, p: Any) -> dict[bytes, bytes]:
        org, plan = self._check(view, env, tx, p)
        out = dict(admit_plan(plan, env, self.name))
        if self.records_in_admit:
            out.update(self.records(p, org, env))
        return out
