"""Maintenance on chain: anomaly alarms and inspection work orders, each step a signed tx.

- ``alarm`` kind (``maintenance.alarms``): a finding (of ``energy.detect`` or the collector's quality rules) raised
  once per episode, then acknowledged, assigned, commented on and closed;
- ``workorder`` kind (``maintenance.workorders``): opened from an alarm or a scheduled inspection or calibration,
  then assigned, diagnosed, repaired, verified and closed; a calibration order records the meter's next due date;
- who may take which step, from which state: ``maintenance.workflow``;
- routes (``maintenance.api``), the ``cemp alarm`` and ``cemp workorder`` commands (``maintenance.cli``) and the
  client that signs and submits steps (``maintenance.client``).

The composition root (``cemp.wiring``) lists the kinds and routes; nothing here registers itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.txkinds import TxKind


def maintenance_kinds() -> list[TxKind]:
    """The ``alarm`` and ``workorder`` kinds, for the composition root."""
    from maintenance.alarms import AlarmKind
    from maintenance.workorders import WorkOrderKind

    return [AlarmKind(), WorkOrderKind()]
