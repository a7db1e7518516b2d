"""What the maintenance kinds share: who signed a step (the actor), text checks, numbering and history records.

Every function here is a deterministic function of the state view, the block environment and the tx, so the
mempool (admission) and every node (apply) reach the same decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from maintenance import workflow as wf
from maintenance.model import Step
from node import codec, schema
from node.errors import CempError, Code
from node.state import StateView
from node.store import prefix_stop
from node.txkinds import Env, Writer
from node.types import Org, ShortStr, Text, Tx

T = TypeVar("T")
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than tab and newline (notes may have several lines)."""
NAME_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,64}")


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class Iterable(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(
        self, start: bytes, stop: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who signed a step: the org it acts for and, when a person's own key signed it, the person's roles."""

    org: Org
    person_roles: frozenset[str] | None = None
    """None: the org's admin key (it holds every person role)."""

    @property
    def role(self) -> str:
        return str(self.org.role)

    @property
    def name(self) -> str:
        return str(self.org.name)


def actor_of(env: Env, tx: Tx) -> Actor:
    """The org a step acts for: the chain's authorizer's decision (``env.actor``, per-person accounts) when the
    chain has one, else the org whose admin key signed it; any other key is refused."""
    decided = getattr(env, "actor", None)
    if decided is not None:
        return Actor(decided.org, frozenset(decided.roles) if decided.person else None)
    org = env.admin_keys.org_of(tx.sender)
    if org is None:
        raise CempError(
            Code.NOT_AUTHORIZED,
            "alarm and work-order steps are signed by a member org's admin key or by a person of a member org; "
            "this key is neither",
        )
    return Actor(org)


def allow(actor: Actor, t: wf.Transition, what: str) -> None:
    if actor.role not in t.roles:
        raise CempError(
            Code.NOT_AUTHORIZED,
            f"{t.action} of {what} is done by {wf.who(t.roles)}; {actor.name} ({actor.role}) may not",
        )
    if actor.person_roles is not None and not actor.person_roles & t.people:
        held = ", ".join(sorted(actor.person_roles)) or "no role"
        raise CempError(
            Code.NOT_AUTHORIZED,
            f"{t.action} of {what} is done by {wf.who_person(t.people)} of {wf.who(t.roles)}; this person of "
            f"{actor.name} holds {held}",
        )


def move(flow: dict[str, wf.Transition], what: str, action: str, state: str) -> str:
    try:
        return wf.next_state(flow, what, action, state)
    except ValueError as e:
        # a state conflict: the step may be right later (or was right earlier); 409
        raise CempError(Code.ALREADY_EXISTS, str(e)) from None


def bad(msg: str) -> CempError:
    return CempError(Code.INVALID_PAYLOAD, msg)


def text(value: str, what: str, required: bool) -> None:
    if required and not value.strip():
        raise bad(f"{what} must not be empty")
    if _CONTROL_RE.search(value):
        raise bad(f"{what} holds control characters")


def unused(what: str, action: str, filled: bool) -> None:
    if filled:
        raise bad(f"{action} does not take {what}; leave it empty")


def stale(kind: str, number: int, have: int, given: int) -> None:
    if given != have:
        raise CempError(
            Code.ALREADY_EXISTS,
            f"{kind} {number} has had {have} steps, the step was made on a view with {given}: someone acted "
            "meanwhile; reload it and act again",
        )


def next_number(view: Reader, what: bytes) -> int:
    raw = view.get(schema.maint_counter(what))
    return (int.from_bytes(raw, "big") if raw else 0) + 1


def number_bytes(n: int) -> bytes:
    return n.to_bytes(4, "big")


def steps(view: Iterable, prefix: bytes, cls: type[Any], limit: int = 10_000) -> list[Any]:
    """The decoded history records under ``prefix``, in step order."""
    return [codec.decode(cls, raw) for _, raw in view.iterate(prefix, prefix_stop(prefix), limit=limit)]


def load_one(view: Reader, key: bytes, cls: type[T]) -> T | None:
    raw = view.get(key)
    return None if raw is None else codec.decode(cls, raw)


def list_under(view: Iterable, prefix: bytes, cls: type[T], *, newest_first: bool, limit: int) -> list[T]:
    """The records under ``prefix`` (numbered ones: newest first when asked), at most ``limit``."""
    return [
        codec.decode(cls, raw)
        for _, raw in view.iterate(prefix, prefix_stop(prefix), reverse=newest_first, limit=limit)
    ]


def step_record(
    action: str, state: str, actor: Actor, tx: Tx, env: Env, assignee: str, note: str, detail: str = ""
) -> Step:
    """The history record of a step as applied: who (org and signer key), which tx, block and time."""
    return Step(
        ShortStr(action),
        ShortStr(state),
        ShortStr(actor.name),
        tx.sender,
        env.tx_hash,
        env.height,
        env.time_ms,
        ShortStr(assignee),
        Text(note),
        Text(detail),
    )


def advance(
    flow: dict[str, wf.Transition],
    actor: Actor,
    kind: str,
    number: int,
    action: str,
    state: str,
    have: int,
    given: int,
) -> str:
    """A step on an existing item (``kind`` ``number``: ``work order 3``): who may take it, whether the view it was
    made on is current (``have`` steps on chain, ``given`` seen), and the state it leads to."""
    what = f"{kind} {number}"
    allow(actor, flow[action], what)
    stale(kind, number, have, given)
    return move(flow, what, action, state)


class StepKind:
    """The tx-kind methods both maintenance kinds share: every check and write is ``effects`` (one dict of state
    writes, the same at admission and on apply)."""

    def effects(self, view: StateView, env: Env, tx: Tx, p: Any) -> dict[bytes, bytes]:
        raise NotImplementedError

    def check(self, view: StateView, env: Env, tx: Tx, p: Any) -> None:
        self.effects(view, env, tx, p)

    def apply(self, state: Writer, env: Env, tx: Tx, p: Any) -> None:
        for k, v in self.effects(state, env, tx, p).items():  # type: ignore[arg-type]
            state.put(k, v)

    def check_and_apply(self, state: Writer, env: Env, tx: Tx, p: Any) -> None:
        self.apply(state, env, tx, p)

    def admit(self, view: StateView, env: Env, tx: Tx, p: Any) -> dict[bytes, bytes]:
        return self.effects(view, env, tx, p)
