"""The ``handle.put`` and ``handle.delete`` tx kinds, and the handle record that ``device.register`` creates.

``handle.put`` modes mirror the Handle.Net REST PUT:

=========  ==================================================  =========================================
mode       REST request                                        effect
=========  ==================================================  =========================================
create     PUT, ``overwrite=false``                            new handle; rc 101 if it exists
replace    PUT (``overwrite`` true, the default)               create, or replace the whole record
add        PUT ``?index=...&overwrite=false``                  add values; rc 201 if an index is taken
update     PUT ``?index=...`` (or ``index=various``)           add or replace the listed values
=========  ==================================================  =========================================

Checks, the same at admission and on apply (``check``): handle syntax and home prefix, every value canonical,
record size, the acting authority (``resolver.handles.actor_of``) and its HS_ADMIN rights for every value added,
changed or removed (and "add handle" on the prefix handle to create), per-value adminWrite, CEMP templates,
and device rules: a registered device's handle keeps an Ed25519 HS_PUBKEY at index 300 and cannot be deleted.

Apply writes the record (values that did not change keep their timestamp and the tx that set them), one
change-log entry, and, for a device handle whose HS_PUBKEY at 300 changed, the new key into ``DeviceRecord``
in the same tx: from the next tx on, only readings signed by the new key are valid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from node import codec, schema
from node.devices import load_device
from node.state import StateView
from node.txkinds import Env, TxKind, Writer
from node.types import (
    Blob,
    DeviceRecord,
    DeviceRegistration,
    Handle,
    Hash32,
    Height,
    PublicKey,
    ShortStr,
    Text,
    TimestampMs,
    Tx,
)
from resolver import idis
from resolver.handles import (
    ADD_ADMIN,
    ADD_DERIVED_PREFIX,
    ADD_HANDLE,
    ADD_VALUE,
    DELETE_HANDLE,
    MODIFY_ADMIN,
    MODIFY_VALUE,
    ORG_AUTHORITY,
    REMOVE_ADMIN,
    REMOVE_VALUE,
    Actor,
    Authority,
    Name,
    actor_of,
    load_any,
    parse_name,
    prefix_record,
    require,
)
from resolver.values import (
    HS_ADMIN,
    HS_PUBKEY,
    HS_SECKEY,
    MAX_RECORD_BYTES,
    MAX_VALUES,
    PERM_ADMIN_WRITE,
    RC_HANDLE_ALREADY_EXISTS,
    RC_HANDLE_NOT_FOUND,
    RC_INSUFFICIENT_PERMISSIONS,
    RC_INVALID_VALUE,
    RC_VALUE_ALREADY_EXISTS,
    RC_VALUES_NOT_FOUND,
    HandleChange,
    HandleError,
    HandleRecord,
    HandleValue,
    StoredValue,
    norm,
    validate_values,
)

MODES = ("create", "replace", "add", "update")


@dataclass(frozen=True, slots=True)
class HandlePut:
    """Payload of ``handle.put``."""

    handle: Handle
    mode: ShortStr
    values: tuple[HandleValue, ...]
    authority: Authority


@dataclass(frozen=True, slots=True)
class HandleDelete:
    """Payload of ``handle.delete``: the whole handle (no indices) or some of its values."""

    handle: Handle
    indices: tuple[int, ...]
    authority: Authority


@dataclass(slots=True)
class Plan:
    name: Name
    before: HandleRecord | None
    """The stored record (a tombstone too); ``live`` says whether the handle exists."""
    live: bool
    after: tuple[HandleValue, ...]
    """Values of the record after the tx, ascending by index (empty = delete the handle)."""
    touched: tuple[int, ...]
    actor: Actor
    device: DeviceRecord | None


def _bad(msg: str) -> HandleError:
    return HandleError(RC_INVALID_VALUE, msg)


def _diff_rights(
    before: dict[int, HandleValue], after: dict[int, HandleValue]
) -> tuple[set[int], tuple[int, ...], list[HandleValue]]:
    """Permission bits needed to go from ``before`` to ``after``, the indices touched, and the values changed or
    removed (whose adminWrite flag must allow it)."""
    need: set[int] = set()
    touched: list[int] = []
    overwritten: list[HandleValue] = []
    for i in sorted(set(before) | set(after)):
        old, new = before.get(i), after.get(i)
        if old == new:
            continue
        touched.append(i)
        admin = (old is not None and old.type == HS_ADMIN) or (new is not None and new.type == HS_ADMIN)
        if old is None:
            need.add(ADD_ADMIN if admin else ADD_VALUE)
        elif new is None:
            need.add(REMOVE_ADMIN if admin else REMOVE_VALUE)
            overwritten.append(old)
        else:
            need.add(MODIFY_ADMIN if admin else MODIFY_VALUE)
            overwritten.append(old)
    return need, tuple(touched), overwritten


def _authorise_change(
    view: StateView,
    actor: Actor,
    plan_name: Name,
    before: HandleRecord | None,
    live: bool,
    after: dict[int, HandleValue],
) -> tuple[int, ...]:
    if not live:
        # Creating: "add handle" (or "add derived prefix" for a prefix handle) on the nearest prefix handle.
        if not actor.root:
            prec = prefix_record(view, plan_name)
            bit = ADD_DERIVED_PREFIX if plan_name.is_prefix_handle else ADD_HANDLE
            where = f"prefix handle {prec.handle}" if prec is not None else f"prefix {plan_name.homed}"
            if prec is None:
                raise HandleError(
                    RC_INSUFFICIENT_PERMISSIONS,
                    f"{actor.label} may not create handles under {plan_name.homed}: no prefix handle "
                    f"0.NA/{plan_name.homed} grants it (only {plan_name.org.name}'s admin key may)",
                )
            require(actor, actor.rights(view, prec), {bit}, where)
        return tuple(sorted(after))
    assert before is not None
    old = {sv.value.index: sv.value for sv in before.values}
    need, touched, overwritten = _diff_rights(old, after)
    if not actor.root:
        require(actor, actor.rights(view, before), need, plan_name.handle)
        locked = [v.index for v in overwritten if not v.permissions & PERM_ADMIN_WRITE]
        if locked:
            raise HandleError(
                RC_INSUFFICIENT_PERMISSIONS,
                f"values {locked} of {plan_name.handle} are not admin-writable (permissions without adminWrite)",
            )
    return touched


def _device_rules(
    view: StateView, name: Name, live: bool, after: dict[int, HandleValue]
) -> DeviceRecord | None:
    dev = load_device(view, name.handle) if live or after else None
    if dev is None:
        tpl = idis.template_of(after)
        if tpl == idis.DEVICE_TEMPLATE and after:
            raise _bad(
                f"{name.handle} is not a registered device; register devices with a device.register tx, "
                "which creates their handle record"
            )
        return None
    if not after:
        raise _bad(
            f"{name.handle} is a registered device; its handle cannot be deleted (its readings refer to it)"
        )
    key = after.get(idis.KEY_INDEX)
    if key is None or key.type != HS_PUBKEY:
        raise _bad(
            f"{name.handle} is a registered device: its handle must keep the Ed25519 HS_PUBKEY at index "
            f"{idis.KEY_INDEX} that signs its readings"
        )
    return dev


def _check_record(name: Name, after: dict[int, HandleValue]) -> None:
    if len(after) > MAX_VALUES:
        raise _bad(f"a record holds at most {MAX_VALUES} values; this one would hold {len(after)}")
    size = sum(len(codec.encode(v)) for v in after.values())
    if size > MAX_RECORD_BYTES:
        raise _bad(f"the record of {name.handle} would be {size} bytes; the limit is {MAX_RECORD_BYTES}")
    idis.check_cemp_types(after)


def plan_put(view: StateView, env: Env, tx: Tx, p: HandlePut) -> Plan:
    name = parse_name(env.genesis, p.handle)
    if p.mode not in MODES:
        raise _bad(f"mode must be one of {', '.join(MODES)}")
    if not p.values:
        raise _bad("a put needs at least one value")
    validate_values(p.values)
    actor = actor_of(view, env, tx, p.authority, name)
    before = load_any(view, p.handle)
    live = before is not None and not before.deleted
    if p.mode == "create" and live:
        raise HandleError(RC_HANDLE_ALREADY_EXISTS, f"handle {p.handle} already exists")
    if p.mode in ("add", "update") and not live:
        raise HandleError(RC_HANDLE_NOT_FOUND, f"handle {p.handle} does not exist")
    old = {sv.value.index: sv.value for sv in before.values} if live and before is not None else {}
    if p.mode == "add":
        taken = sorted(v.index for v in p.values if v.index in old)
        if taken:
            raise HandleError(RC_VALUE_ALREADY_EXISTS, f"{p.handle} already has values at {taken}")
    if p.mode in ("create", "replace"):
        after = {v.index: v for v in p.values}
    else:
        after = dict(old)
        after.update({v.index: v for v in p.values})
    _check_record(name, after)
    touched = _authorise_change(view, actor, name, before, live, after)
    if p.authority.method == "key":
        made = [i for i in touched if i in after and after[i].type == HS_SECKEY]
        if made:
            raise _bad(
                f"values {made}: HS_SECKEY values come only from a node (REST PUT) or the org's admin key "
                "(handles-bootstrap), which generate secrets of 192 random bits; their hash is public on chain"
            )
    dev = _device_rules(view, name, live, after)
    return Plan(name, before, live, tuple(after[i] for i in sorted(after)), touched, actor, dev)


def plan_delete(view: StateView, env: Env, tx: Tx, p: HandleDelete) -> Plan:
    name = parse_name(env.genesis, p.handle)
    actor = actor_of(view, env, tx, p.authority, name)
    before = load_any(view, p.handle)
    if before is None or before.deleted:
        raise HandleError(RC_HANDLE_NOT_FOUND, f"handle {p.handle} does not exist")
    old = {sv.value.index: sv.value for sv in before.values}
    if p.indices:
        if len(set(p.indices)) != len(p.indices):
            raise _bad("an index is listed twice")
        missing = sorted(i for i in p.indices if i not in old)
        if missing:
            raise HandleError(RC_VALUES_NOT_FOUND, f"{p.handle} has no values at {missing}")
        after = {i: v for i, v in old.items() if i not in p.indices}
        if not after:
            raise _bad(f"removing every value of {p.handle}; delete the handle instead")
        touched = _authorise_change(view, actor, name, before, True, after)
    else:
        after = {}
        touched = tuple(sorted(old))
        if not actor.root:
            require(actor, actor.rights(view, before), {DELETE_HANDLE}, p.handle)
    dev = _device_rules(view, name, True, after)
    return Plan(name, before, True, tuple(after[i] for i in sorted(after)), touched, actor, dev)


def _stored(plan: Plan, env: Env) -> tuple[StoredValue, ...]:
    old = {sv.value.index: sv for sv in plan.before.values} if plan.live and plan.before is not None else {}
    out = []
    for v in plan.after:
        prev = old.get(v.index)
        if prev is not None and prev.value == v:
            out.append(prev)
        else:
            out.append(StoredValue(v, env.time_ms, env.height, env.tx_hash))
    return tuple(out)


def _record_after(plan: Plan, env: Env) -> HandleRecord:
    b = plan.before
    version = (b.version if b is not None else 0) + 1
    if not plan.after:
        assert b is not None
        return HandleRecord(b.handle, (), b.created_height, version, env.tx_hash, env.height, 1)
    handle = b.handle if plan.live and b is not None else plan.name.handle
    created = b.created_height if plan.live and b is not None else env.height
    return HandleRecord(Handle(handle), _stored(plan, env), created, version, env.tx_hash, env.height, 0)


def _device_after(plan: Plan) -> DeviceRecord | None:
    """The device record with its key following HS_PUBKEY at index 300, if that changed."""
    dev = plan.device
    if dev is None:
        return None
    key = next(v for v in plan.after if v.index == idis.KEY_INDEX)
    if bytes(key.data) == dev.pubkey:
        return None
    return replace(dev, pubkey=PublicKey(bytes(key.data)))


def _writes(plan: Plan, env: Env, kind: str) -> tuple[HandleRecord, HandleChange, DeviceRecord | None]:
    rec = _record_after(plan, env)
    change = HandleChange(
        rec.version,
        env.height,
        env.time_ms,
        env.tx_hash,
        ShortStr(kind),
        Text(plan.actor.label[:1024]),
        plan.touched,
        rec.deleted,
    )
    return rec, change, _device_after(plan)


def _apply(state: Writer, plan: Plan, env: Env, kind: str) -> None:
    rec, change, dev = _writes(plan, env, kind)
    key = norm(rec.handle)
    state.put(schema.handle_record(key), codec.encode(rec))
    state.put(schema.handle_change(key, rec.version), codec.encode(change))
    if dev is not None:
        state.put(schema.device(dev.handle), codec.encode(dev))


def _admit(plan: Plan, env: Env, kind: str) -> dict[bytes, bytes]:
    rec, _, dev = _writes(plan, env, kind)
    out = {schema.handle_record(norm(rec.handle)): codec.encode(rec)}
    if dev is not None:
        out[schema.device(dev.handle)] = codec.encode(dev)
    return out


def _describe_values(values: tuple[HandleValue, ...]) -> list[dict[str, Any]]:
    from resolver.values import data_to_json

    return [{"index": v.index, "type": v.type, "data": data_to_json(v)} for v in values]


def _describe_auth(a: Authority) -> dict[str, Any]:
    out: dict[str, Any] = {"method": a.method}
    if a.identity:
        out["identity"] = f"{a.index}:{a.identity}"
    if a.signature:
        out["nonce"] = a.nonce.hex()
        out["cnonce"] = a.cnonce.hex()
        out["signature"] = a.signature.hex()
    return out


class HandlePutKind:
    name = "handle.put"
    payload_type = HandlePut

    def check(self, view: StateView, env: Env, tx: Tx, p: HandlePut) -> None:
        plan_put(view, env, tx, p)

    def apply(self, state: Writer, env: Env, tx: Tx, p: HandlePut) -> None:
        _apply(state, plan_put(state, env, tx, p), env, self.name)  # type: ignore[arg-type]

    def admit(self, view: StateView, env: Env, tx: Tx, p: HandlePut) -> dict[bytes, bytes]:
        return _admit(plan_put(view, env, tx, p), env, self.name)

    def read_scope(self, view: StateView, p: HandlePut) -> tuple[str, str, str | None] | None:
        """A put carrying values without public read shows them only to who may read the handle's restricted
        values (``node.txkinds.ReadScope``: the handle's org, ``handles``)."""
        from node import codec, schema
        from node.types import Genesis
        from resolver.values import HS_SECKEY, publicly_readable

        # an HS_SECKEY value is on chain only as a salted scrypt hash of a node-generated 192-bit secret: public
        if all(publicly_readable(v) or v.type == HS_SECKEY for v in p.values):
            return None
        raw = view.get(schema.META_GENESIS)
        if raw is None:
            return None
        try:
            org = parse_name(codec.decode(Genesis, raw), p.handle).org
        except HandleError:
            return None
        return (str(org.name), "handles", str(p.handle))

    def describe(self, p: HandlePut) -> dict[str, Any]:
        return {
            "handle": p.handle,
            "mode": p.mode,
            "values": _describe_values(p.values),
            "authority": _describe_auth(p.authority),
        }


class HandleDeleteKind:
    name = "handle.delete"
    payload_type = HandleDelete

    def check(self, view: StateView, env: Env, tx: Tx, p: HandleDelete) -> None:
        plan_delete(view, env, tx, p)

    def apply(self, state: Writer, env: Env, tx: Tx, p: HandleDelete) -> None:
        _apply(state, plan_delete(state, env, tx, p), env, self.name)  # type: ignore[arg-type]

    def admit(self, view: StateView, env: Env, tx: Tx, p: HandleDelete) -> dict[bytes, bytes]:
        return _admit(plan_delete(view, env, tx, p), env, self.name)

    def describe(self, p: HandleDelete) -> dict[str, Any]:
        return {"handle": p.handle, "indices": list(p.indices), "authority": _describe_auth(p.authority)}


def device_registered(state: Writer, env: Env, tx: Tx, reg: DeviceRegistration, dev: DeviceRecord) -> None:
    """``device.register`` hook: write the device's handle record (template ``cemp.device``) in the same tx.

    An existing record at that handle keeps its other values; the device's values replace theirs.
    """
    name = parse_name(env.genesis, reg.device)
    before = load_any(state, reg.device)  # type: ignore[arg-type]
    live = before is not None and not before.deleted
    vals = {sv.value.index: sv.value for sv in before.values} if live and before is not None else {}
    vals.update({v.index: v for v in idis.device_values(reg, name.org, env.time_ms)})
    plan = Plan(
        name,
        before,
        live,
        tuple(vals[i] for i in sorted(vals)),
        tuple(sorted(vals)),
        Actor(True, None, f"{name.org.name} admin key"),
        None,
    )
    _apply(state, plan, env, "device.register")


def plan_values(view: StateView, env: Env, handle: str, values: tuple[HandleValue, ...], label: str) -> Plan:
    """A plan that merges ``values`` into the record at ``handle`` (creating it) for a tx kind whose own rules
    already authorised the change (the accounting's ``site`` and ``rating`` write building records this way).

    The record checks of ``handle.put`` apply (value syntax, size, CEMP templates and types); the handle of a
    registered device is refused. Deterministic: check and apply call it on the same view.
    """
    name = parse_name(env.genesis, handle)
    validate_values(values)
    if load_device(view, name.handle) is not None:
        raise _bad(f"{handle} is a registered device's handle, not a building's")
    before = load_any(view, handle)
    live = before is not None and not before.deleted
    old = {sv.value.index: sv.value for sv in before.values} if live and before is not None else {}
    after = dict(old)
    after.update({v.index: v for v in values})
    _check_record(name, after)
    touched = tuple(i for i in sorted(after) if old.get(i) != after[i])
    return Plan(
        name, before, live, tuple(after[i] for i in sorted(after)), touched, Actor(True, None, label), None
    )


def apply_plan(state: Writer, plan: Plan, env: Env, kind: str) -> None:
    """Write a ``plan_values`` plan (record and change-log entry) in the current tx."""
    _apply(state, plan, env, kind)


def admit_plan(plan: Plan, env: Env, kind: str) -> dict[bytes, bytes]:
    """The record a ``plan_values`` plan writes, for later admissions to see."""
    return _admit(plan, env, kind)


def handle_kinds() -> list[TxKind]:
    """The resolver's tx kinds, for the composition root's registry (``cemp.wiring``)."""
    return [HandlePutKind(), HandleDeleteKind()]


REGISTER_HOOKS = (device_registered,)
"""``device.register`` hooks the resolver needs (the composition root gives them to ``DeviceRegisterKind``)."""

__all__ = [
    "ORG_AUTHORITY",
    "REGISTER_HOOKS",
    "Authority",
    "Blob",
    "HandleDelete",
    "HandlePut",
    "Hash32",
    "Height",
    "Plan",
    "TimestampMs",
    "admit_plan",
    "apply_plan",
    "plan_delete",
    "plan_put",
    "plan_values",
]
