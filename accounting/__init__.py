"""Carbon accounting: sites and boundaries, the factor library, inventories, heat KPIs and boiler baselines,
carbon-efficiency ratings (碳效码) and their JSON routes.

It reads committed state through the node's read interfaces and writes only by signed txs of its own kinds
(``accounting_kinds``), which the composition root (``cemp.wiring``) lists with every other kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.txkinds import TxKind


def accounting_kinds() -> list[TxKind]:
    """The accounting's tx kinds (``site``, ``boundary``, ``factors``, ``rating``, ``report``), for the composition root."""
    from accounting.factors import FactorsKind
    from accounting.rating import RatingKind
    from accounting.report import ReportKind
    from accounting.sites import BoundaryKind, SiteKind

    return [SiteKind(), BoundaryKind(), FactorsKind(), RatingKind(), ReportKind()]
