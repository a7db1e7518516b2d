"""Wire objects of the maintenance kinds (``alarm``, ``workorder``) and their state records.

Invariants (as for every chain object, see ``node.types``): integers and strings only, times in Unix ms, the
field order of each class is its wire format. One payload class per kind: ``action`` names the step and the
fields that step does not use stay empty (``""``, ``0``, ``None``); the kind refuses a step that fills a field
it does not use, so each step has exactly one encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.types import Handle, Hash32, Height, PublicKey, ShortStr, Text, TimestampMs

MAX_EVIDENCE = 16
"""At most this many evidence tx hashes per alarm (the readings txs that show it)."""


@dataclass(frozen=True, slots=True)
class AlarmRaise:
    """What an alarm says when it is raised: the finding of a detector (``energy.detect``) or of the collector's
    quality rules (``collector.quality``)."""

    device: Handle
    """The registered device the alarm is about."""
    quantity: ShortStr
    """Quantity concerned (``energy.import``), or ``""`` for the whole device (offline, silent)."""
    rule: ShortStr
    """What kind of anomaly: a detector of ``energy.detect`` (``out_of_band``, ``step``, ``silent``, ``gap``,
    ``negative_delta``, ``over_rated``, ``submeter_drift``) or a collector quality rule (``stale``, ``spike`` ...)."""
    severity: ShortStr
    """``info``, ``warning`` or ``critical``."""
    since_ms: TimestampMs
    """When the episode started (its first anomalous reading); with device, rule and quantity it names the
    episode, which is raised once."""
    expected: Text
    """What the model or the rule expected, in words and units people read (``150–190 kWh in the hour``)."""
    observed: Text
    """What happened instead (``412 kWh in the hour``)."""
    message: Text
    """One sentence a person reads in the inbox (English)."""
    message_zh: Text
    """The same in Chinese (may be empty)."""
    evidence: tuple[Hash32, ...]
    """Committed txs (readings batches) that show it, at most ``MAX_EVIDENCE``, each once."""
    source: ShortStr
    """Who found it: ``energy.detect`` or ``collector.quality``."""


@dataclass(frozen=True, slots=True)
class AlarmPayload:
    """Payload of an ``alarm`` tx: one step of an alarm's life."""

    action: ShortStr
    """``raise``, ``acknowledge``, ``assign``, ``comment`` or ``close``."""
    alarm: int
    """The alarm's number; 0 for ``raise`` (the chain gives the next number)."""
    step: int
    """How many steps the alarm had when the person acted (0 for ``raise``): an action taken on a stale view of
    the alarm (someone else acted meanwhile) is refused, so a double click is not two steps."""
    raised: AlarmRaise | None
    """The finding; only for ``raise``."""
    assignee: ShortStr
    """Whom it is assigned to (a person or team); only for ``assign``."""
    note: Text
    """Free text: the comment, the acknowledgement's or the closing note (required for ``comment`` and ``close``)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step in the history of an alarm or a work order, as applied."""

    action: ShortStr
    state: ShortStr
    """The state after the step."""
    org: ShortStr
    """The org whose key signed it."""
    sender: PublicKey
    tx_hash: Hash32
    height: Height
    time_ms: TimestampMs
    """Block time."""
    assignee: ShortStr
    note: Text
    detail: Text
    """What else the step recorded, in words (a verification's result, a calibration's next due date)."""


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """Current state of an alarm."""

    number: int
    raised: AlarmRaise
    state: ShortStr
    """``open``, ``acknowledged``, ``assigned`` or ``closed``."""
    assignee: ShortStr
    steps: int
    """Number of steps so far (the raise is step 0, so the next step's index is ``steps``)."""
    raised_by: ShortStr
    raised_tx: Hash32
    raised_ms: TimestampMs
    updated_ms: TimestampMs
    workorders: tuple[int, ...]
    """Work orders opened from this alarm, in order."""


@dataclass(frozen=True, slots=True)
class WorkOrderOpen:
    """What a work order is about when it is opened."""

    reason: ShortStr
    """``alarm`` (opened from an alarm), ``inspection`` (a scheduled inspection) or ``calibration`` (a meter's
    scheduled calibration; its ``repair`` step records the next due date)."""
    device: Handle
    """The registered device to inspect or repair (the alarm's device for ``alarm``)."""
    alarm: int
    """The alarm it was opened from (``reason`` ``alarm``), else 0."""
    title: Text
    due_ms: TimestampMs
    """When the work should be done by; 0 for none."""


@dataclass(frozen=True, slots=True)
class WorkOrderPayload:
    """Payload of a ``workorder`` tx: one step of an inspection work order."""

    action: ShortStr
    """``open``, ``assign``, ``diagnose``, ``repair``, ``verify``, ``close`` or ``comment``."""
    order: int
    """The work order's number; 0 for ``open``."""
    step: int
    """How many steps the order had when the person acted (0 for ``open``); a stale step is refused."""
    opened: WorkOrderOpen | None
    """Only for ``open``."""
    assignee: ShortStr
    """Only for ``assign``: the engineer or team."""
    note: Text
    """The diagnosis, the repair done, the verification's note, the closing note or the comment (required for all
    but ``open`` and ``assign``)."""
    result: ShortStr
    """Only for ``verify``: ``pass`` (on to close) or ``fail`` (back to ``diagnosed`` for another repair)."""
    calibration_due_ms: TimestampMs
    """Only for ``repair`` of a ``calibration`` order (and required there): the meter's next calibration due date."""


@dataclass(frozen=True, slots=True)
class WorkOrderRecord:
    number: int
    opened: WorkOrderOpen
    state: ShortStr
    """``open``, ``assigned``, ``diagnosed``, ``repaired``, ``verified`` or ``closed``."""
    assignee: ShortStr
    steps: int
    opened_by: ShortStr
    opened_tx: Hash32
    opened_ms: TimestampMs
    updated_ms: TimestampMs
    calibration_due_ms: TimestampMs
    """Recorded by the ``repair`` step of a calibration order; written to the meter's calibration on close."""
    calibrated_ms: TimestampMs
    """Block time of that ``repair`` step (0 before it)."""


@dataclass(frozen=True, slots=True)
class CalibrationRecord:
    """A meter's latest calibration, written when its calibration work order closes."""

    device: Handle
    calibrated_ms: TimestampMs
    """Block time of the ``repair`` step that calibrated it."""
    due_ms: TimestampMs
    """Next calibration due."""
    order: int
    tx_hash: Hash32
    """The ``close`` tx."""
