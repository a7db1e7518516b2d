"""The alarm and work-order state machines and who may take each step: plain data, read by the kinds (which
enforce them at admission and again on apply), the routes (which list the steps open to a viewer) and the docs.

Who acts: a step is allowed by the role of the org it acts for (``owner`` the building owner, ``equipment`` the
firm that runs and repairs the heating plant, ``regulator``), and, when a person's own key signs it (per-person
accounts of ``access``, where the chain's authorizer says which org a person acts for), by the person's roles too
(``operator``, ``energy_manager``, ``maintenance_engineer``; an ``auditor`` takes no step). An org's admin key holds
every person role.

Alarms: ``raise`` (owner or equipment: their monitoring raises it) -> ``open``; ``acknowledge`` (owner) ->
``acknowledged``; ``assign`` (equipment: it dispatches its engineers) -> ``assigned``; ``close`` (owner, with a
note) -> ``closed``; ``comment`` (any member) keeps the state. A closed alarm takes no more steps.

Work orders: ``open`` (owner or equipment; from an alarm or a scheduled inspection or calibration) -> ``open``;
``assign`` (equipment) -> ``assigned`` (a re-assignment later keeps the state); ``diagnose`` (equipment) ->
``diagnosed``; ``repair`` (equipment) -> ``repaired``; ``verify`` (owner: an independent check) ``pass`` ->
``verified`` or ``fail`` -> ``diagnosed`` (repair again); ``verify`` straight from ``diagnosed`` is an
inspection that found nothing to repair; ``close`` (owner) only from ``verified``; ``comment`` (any member).
"""

from __future__ import annotations

from dataclasses import dataclass

OWNER = "owner"
EQUIPMENT = "equipment"
REGULATOR = "regulator"
ANY_MEMBER = frozenset({OWNER, EQUIPMENT, REGULATOR})

ROLE_NAMES = {OWNER: "the building owner", EQUIPMENT: "the equipment firm", REGULATOR: "the regulator"}


OPERATOR = "operator"
ENERGY_MANAGER = "energy_manager"
MAINTENANCE_ENGINEER = "maintenance_engineer"
PEOPLE_WHO_WRITE = frozenset({OPERATOR, ENERGY_MANAGER, MAINTENANCE_ENGINEER})
PERSON_ROLE_NAMES = {
    OPERATOR: "an operator",
    ENERGY_MANAGER: "an energy manager",
    MAINTENANCE_ENGINEER: "a maintenance engineer",
}


@dataclass(frozen=True, slots=True)
class Transition:
    action: str
    moves: dict[str, str]
    """State before -> state after, for every state the step may be taken in (``""``: the step that creates)."""
    roles: frozenset[str]
    """Org roles whose members may take the step."""
    help: str
    people: frozenset[str] = PEOPLE_WHO_WRITE
    """Person roles that may take it when a person's key signs (an org's admin key holds them all)."""


ALARM_STATES = ("open", "acknowledged", "assigned", "closed")
_LIVE_ALARM = ("open", "acknowledged", "assigned")

ALARM_FLOW: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition(
            "raise",
            {"": "open"},
            frozenset({OWNER, EQUIPMENT}),
            "record a finding as an alarm",
            frozenset({OPERATOR, ENERGY_MANAGER}),
        ),
        Transition(
            "acknowledge",
            {"open": "acknowledged"},
            frozenset({OWNER}),
            "the owner has seen it",
            frozenset({OPERATOR, ENERGY_MANAGER}),
        ),
        Transition(
            "assign",
            {s: "assigned" for s in _LIVE_ALARM},
            frozenset({EQUIPMENT}),
            "the equipment firm names who handles it",
            frozenset({OPERATOR, ENERGY_MANAGER}),
        ),
        Transition("comment", {s: s for s in _LIVE_ALARM}, ANY_MEMBER, "add a note"),
        Transition(
            "close",
            {s: "closed" for s in _LIVE_ALARM},
            frozenset({OWNER}),
            "resolved, with a note",
            frozenset({ENERGY_MANAGER}),
        ),
    )
}

WORKORDER_STATES = ("open", "assigned", "diagnosed", "repaired", "verified", "closed")
_LIVE_ORDER = WORKORDER_STATES[:-1]

WORKORDER_FLOW: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition(
            "open",
            {"": "open"},
            frozenset({OWNER, EQUIPMENT}),
            "from an alarm, or a scheduled inspection or calibration",
            frozenset({OPERATOR, ENERGY_MANAGER}),
        ),
        Transition(
            "assign",
            {"open": "assigned", "assigned": "assigned", "diagnosed": "diagnosed", "repaired": "repaired"},
            frozenset({EQUIPMENT}),
            "name the engineer (a re-assignment keeps the state)",
            frozenset({OPERATOR, ENERGY_MANAGER}),
        ),
        Transition(
            "diagnose",
            {"assigned": "diagnosed"},
            frozenset({EQUIPMENT}),
            "record what is wrong",
            frozenset({MAINTENANCE_ENGINEER}),
        ),
        Transition(
            "repair",
            {"diagnosed": "repaired"},
            frozenset({EQUIPMENT}),
            "record what was done",
            frozenset({MAINTENANCE_ENGINEER}),
        ),
        Transition(
            "verify",
            {"repaired": "verified", "diagnosed": "verified"},
            frozenset({OWNER}),
            "check the result: pass, or fail (back to diagnosed)",
            frozenset({OPERATOR, ENERGY_MANAGER}),
        ),
        Transition(
            "close",
            {"verified": "closed"},
            frozenset({OWNER}),
            "close a verified order",
            frozenset({ENERGY_MANAGER}),
        ),
        Transition("comment", {s: s for s in _LIVE_ORDER}, ANY_MEMBER, "add a note"),
    )
}

WORKORDER_REASONS = ("alarm", "inspection", "calibration")
ALARM_RULE_NAMES = (
    # the detectors of energy.detect (its ``Kind`` values)
    "out_of_band",
    "step",
    "silent",
    "gap",
    "negative_delta",
    "over_rated",
    "submeter_drift",
    # the collector's quality rules (collector.quality) that are worth a person's look
    "stale",
    "spike",
    "meter_replaced",
    "clock_drift",
    "source_error",
)
SEVERITIES = ("info", "warning", "critical")
ALARM_SOURCES = ("energy.detect", "collector.quality", "manual")


def who(roles: frozenset[str]) -> str:
    """``the building owner or the equipment firm``: the roles of a step in words."""
    if roles == ANY_MEMBER:
        return "any member org"
    return " or ".join(ROLE_NAMES[r] for r in sorted(roles, key=list(ROLE_NAMES).index))


def who_person(people: frozenset[str]) -> str:
    return " or ".join(
        PERSON_ROLE_NAMES[r] for r in (OPERATOR, ENERGY_MANAGER, MAINTENANCE_ENGINEER) if r in people
    )


def next_state(flow: dict[str, Transition], what: str, action: str, state: str) -> str:
    """The state after ``action`` in ``state``; raises ``ValueError`` with a person's sentence if it is not allowed."""
    t = flow.get(action)
    if t is None:
        raise ValueError(f"unknown action {action!r}: use one of {', '.join(flow)}")
    if state not in t.moves:
        allowed = [a for a, x in flow.items() if state in x.moves]
        if state == "closed":
            raise ValueError(f"{what} is closed; it takes no more steps")
        need = " or ".join(repr(s) for s in t.moves if s) or "none"
        raise ValueError(
            f"{what} is {state!r}; {action} needs {need} (steps open now: {', '.join(allowed) or 'none'})"
        )
    return t.moves[state]


def actions_open(flow: dict[str, Transition], state: str, role: str | None) -> list[str]:
    """The steps that can be taken in ``state`` (by ``role``, if given)."""
    return [a for a, t in flow.items() if state in t.moves and state and (role is None or role in t.roles)]
