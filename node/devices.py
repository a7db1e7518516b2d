"""Devices: handle syntax, org authority over prefixes, and the ``device.register`` kind.

Invariants: a device handle is ``<prefix>/<suffix>`` where the prefix is owned by exactly one genesis org
and the registering tx is signed by that org's admin key; each device gets a fresh ``devnum``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from node import codec, schema
from node.errors import CempError, Code
from node.state import StateView
from node.txkinds import Env, Writer, acting_org
from node.types import DeviceRecord, DeviceRegistration, Genesis, Handle, Height, Nonce, Org, TimestampMs, Tx

PREFIX_RE = re.compile(r"^[0-9]+(\.[0-9A-Za-z_-]+)*$")
SUFFIX_RE = re.compile(r"^[0-9A-Za-z._~:@!$&'()*+,;=-][0-9A-Za-z._~:@!$&'()*+,;=/-]*$")
SHORT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

RegisterHook = Callable[[Writer, Env, Tx, DeviceRegistration, DeviceRecord], None]
"""Called at the end of ``device.register``'s apply, in the same tx: the resolver writes the device's handle record
here (``resolver.kinds.device_registered``). Hooks are given to ``DeviceRegisterKind`` by the composition root."""


def split_handle(handle: str) -> tuple[str, str]:
    """``88.123.45/101.1.1`` -> (``88.123.45``, ``101.1.1``); raises CempError when malformed."""
    prefix, sep, suffix = handle.partition("/")
    if not sep or not prefix or not suffix:
        raise CempError(
            Code.INVALID_PAYLOAD, f"handle {handle!r} must look like PREFIX/SUFFIX, e.g. 88.123.45/101.1.1"
        )
    if len(handle) > 255:
        raise CempError(Code.INVALID_PAYLOAD, "handle longer than 255 characters")
    if not PREFIX_RE.match(prefix):
        raise CempError(Code.INVALID_PAYLOAD, f"handle prefix {prefix!r} is not dotted digits like 88.123.45")
    if not SUFFIX_RE.match(suffix) or ".." in suffix.split("/"):
        raise CempError(
            Code.INVALID_PAYLOAD, f"handle suffix {suffix!r} has characters outside printable URL-safe ASCII"
        )
    return prefix, suffix


def org_for_prefix(genesis: Genesis, prefix: str) -> Org | None:
    """The org whose prefix is ``prefix`` or lies above it, compared case-insensitively as handles are (so
    ``88.CEMP/x`` belongs to whoever owns ``88.cemp``). A genesis whose org prefixes collide that way is refused
    (``node.genesis.check_prefixes``); should one be met anyway, the first such org in the genesis wins."""
    p = prefix.upper()
    for org in genesis.orgs:
        op = org.prefix.upper()
        if p == op or p.startswith(op + "."):
            return org
    return None


def load_device(view: StateView, handle: str) -> DeviceRecord | None:
    raw = view.get(schema.device(handle))
    return None if raw is None else codec.decode(DeviceRecord, raw)


class DeviceRegisterKind:
    name = "device.register"
    payload_type = DeviceRegistration

    def __init__(self, hooks: Sequence[RegisterHook] = ()) -> None:
        self.hooks = tuple(hooks)

    def check(self, view: StateView, env: Env, tx: Tx, p: DeviceRegistration) -> None:
        prefix, _ = split_handle(p.device)
        org = org_for_prefix(env.genesis, prefix)
        if org is None:
            raise CempError(Code.NOT_AUTHORIZED, f"no consortium org owns the prefix {prefix!r}")
        if acting_org(env, tx) != org:
            raise CempError(
                Code.NOT_AUTHORIZED,
                f"only {org.name}'s admin key (or its people allowed to) may register devices under {org.prefix}; "
                "this tx is signed by another key",
            )
        for field, value in (("kind", p.kind), ("subsystem", p.subsystem)):
            if not SHORT_RE.match(value):
                raise CempError(
                    Code.INVALID_PAYLOAD, f"device {field} {value!r}: use lower-case letters, digits, . _ -"
                )
        if view.get(schema.device(p.device)) is not None:
            raise CempError(Code.ALREADY_EXISTS, f"device {p.device} is already registered")

    @staticmethod
    def _record(env: Env, p: DeviceRegistration, devnum: int) -> DeviceRecord:
        prefix, _ = split_handle(p.device)
        org = org_for_prefix(env.genesis, prefix)
        assert org is not None
        return DeviceRecord(
            handle=p.device,
            pubkey=p.pubkey,
            org=org.name,
            kind=p.kind,
            subsystem=p.subsystem,
            devnum=devnum,
            registered_height=env.height,
            last_seq=Nonce(0),
            last_ts_ms=TimestampMs(0),
            readings=0,
        )

    def apply(self, state: Writer, env: Env, tx: Tx, p: DeviceRegistration) -> None:
        raw = state.get(schema.counter("devices"))
        devnum = (int.from_bytes(raw, "big") if raw else 0) + 1
        state.put(schema.counter("devices"), devnum.to_bytes(8, "big"))
        rec = self._record(env, p, devnum)
        state.put(schema.device(p.device), codec.encode(rec))
        state.put(schema.device_number(devnum), p.device.encode())
        for hook in self.hooks:
            hook(state, env, tx, p, rec)

    def admit(self, view: StateView, env: Env, tx: Tx, p: DeviceRegistration) -> dict[bytes, bytes]:
        self.check(view, env, tx, p)
        # devnum 0 marks "pending": readings may be admitted behind a registration still in the mempool.
        rec = self._record(env, p, 0)
        return {schema.device(p.device): codec.encode(rec)}

    def describe(self, p: DeviceRegistration) -> dict[str, Any]:
        return {"device": p.device, "pubkey": p.pubkey.hex(), "kind": p.kind, "subsystem": p.subsystem}


__all__ = [
    "DeviceRegisterKind",
    "Handle",
    "Height",
    "RegisterHook",
    "load_device",
    "org_for_prefix",
    "split_handle",
]
