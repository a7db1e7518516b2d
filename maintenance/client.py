"""Taking alarm and work-order steps through a node's API: read the item's step count, sign the step with the
acting org's key, submit, wait for the commit, and return the committed step (number, tx hash, block height).

A refusal (on admission or on apply) raises ``CempError`` with the chain's code and sentence, so the CLI, the demo
and the web forms show the reason as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maintenance import alarms as al
from maintenance import workorders as wo
from maintenance.model import AlarmPayload, WorkOrderPayload
from node.chain import ChainRef, sign_tx
from node.client import NodeClient
from node.crypto import KeyPair
from node.errors import CempError, Code


@dataclass(frozen=True, slots=True)
class Done:
    """A committed step."""

    number: int
    """The alarm's or work order's number."""
    tx: str
    """Hex hash of the step's tx."""
    height: int
    state: str
    """The item's state after the step."""


async def submit(
    client: NodeClient, key: KeyPair, chain: ChainRef, kind: str, payload: object
) -> dict[str, Any]:
    """Sign with the next nonce, submit, wait for the commit; raises ``CempError`` if refused."""
    nonce = int((await client.get(f"/v1/nonces/{key.public.hex()}"))["next"])
    raw, _ = sign_tx(key, chain, kind, nonce, payload)
    res = await client.submit(raw, wait=True)
    result = res.get("result") or {}
    if not result.get("ok"):
        code = int(result.get("code", int(Code.INVALID_PAYLOAD)))
        raise CempError(
            Code(code) if code in Code._value2member_map_ else Code.INVALID_PAYLOAD,
            result.get("reason", str(res)),
        )
    return res


async def _find(
    client: NodeClient, path: str, listed: str, field: str, tx: str, device: str
) -> dict[str, Any]:
    items = (await client.get(path, device=device, limit=50))[listed]
    for it in items:
        if it[field] == tx:
            return it  # type: ignore[no-any-return]
    raise CempError(Code.NOT_FOUND, f"the committed tx {tx[:16]}… is not among the node's {listed}")


async def _first(
    client: NodeClient, key: KeyPair, chain: ChainRef, kind: str, p: Any, path: str, field: str, device: str
) -> Done:
    """Submit the tx that creates an item (the chain numbers it) and find the item it created."""
    res = await submit(client, key, chain, kind, p)
    listed = path.rsplit("/", 1)[1]
    it = await _find(client, path, listed, field, res["tx"], device)
    return Done(int(it["number"]), res["tx"], int(res["height"]), str(it["state"]))


async def _next(
    client: NodeClient, key: KeyPair, chain: ChainRef, kind: str, path: str, make: Callable[[int], Any]
) -> Done:
    """A step on the item at ``path``, made on its current step count (``make(steps)``), and its new state."""
    cur = await client.get(path)
    res = await submit(client, key, chain, kind, make(int(cur["steps"])))
    cur = await client.get(path)
    return Done(int(cur["number"]), res["tx"], int(res["height"]), str(cur["state"]))


async def raise_alarm(client: NodeClient, key: KeyPair, chain: ChainRef, p: AlarmPayload) -> Done:
    assert p.raised is not None
    return await _first(client, key, chain, "alarm", p, "/v1/alarms", "raised_tx", p.raised.device)


async def alarm_step(
    client: NodeClient,
    key: KeyPair,
    chain: ChainRef,
    action: str,
    number: int,
    *,
    assignee: str = "",
    note: str = "",
) -> Done:
    def make(steps: int) -> AlarmPayload:
        return al.make_step(action, number, steps, assignee=assignee, note=note)

    return await _next(client, key, chain, "alarm", f"/v1/alarms/{number}", make)


async def open_order(client: NodeClient, key: KeyPair, chain: ChainRef, p: WorkOrderPayload) -> Done:
    assert p.opened is not None
    return await _first(client, key, chain, "workorder", p, "/v1/workorders", "opened_tx", p.opened.device)


async def order_step(
    client: NodeClient,
    key: KeyPair,
    chain: ChainRef,
    action: str,
    number: int,
    *,
    assignee: str = "",
    note: str = "",
    result: str = "",
    calibration_due_ms: int = 0,
) -> Done:
    def make(steps: int) -> WorkOrderPayload:
        return wo.make_step(
            action,
            number,
            steps,
            assignee=assignee,
            note=note,
            result=result,
            calibration_due_ms=calibration_due_ms,
        )

    return await _next(client, key, chain, "workorder", f"/v1/workorders/{number}", make)
