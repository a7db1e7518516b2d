"""Taking alarm and work-order steps through a node's API: read the item's step count, sign the step with the
acting org's key, submit, wait for the commit, and return the committed step (number, tx hash, block height).

A refusal (on admission or on apply) raises ``CempError`` with the chain's code and sentence, so the CLI, the demo
and the web forms show the reason as it is.
"""

from __future__ import annotations

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


async def raise_alarm(client: NodeClient, key: KeyPair, chain: ChainRef, p: AlarmPayload) -> Done:
    assert p.raised is not None
    res = await submit(client, key, chain, "alarm", p)
    a = await _find(client, "/v1/alarms", "alarms", "raised_tx", res["tx"], p.raised.device)
    return Done(int(a["number"]), res["tx"], int(res["height"]), str(a["state"]))


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
    a = await client.get(f"/v1/alarms/{number}")
    res = await submit(
        client,
        key,
        chain,
        "alarm",
        al.make_step(action, number, int(a["steps"]), assignee=assignee, note=note),
    )
    a = await client.get(f"/v1/alarms/{number}")
    return Done(number, res["tx"], int(res["height"]), str(a["state"]))


async def open_order(client: NodeClient, key: KeyPair, chain: ChainRef, p: WorkOrderPayload) -> Done:
    assert p.opened is not None
    res = await submit(client, key, chain, "workorder", p)
    w = await _find(client, "/v1/workorders", "workorders", "opened_tx", res["tx"], p.opened.device)
    return Done(int(w["number"]), res["tx"], int(res["height"]), str(w["state"]))


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
    w = await client.get(f"/v1/workorders/{number}")
    p = wo.make_step(
        action,
        number,
        int(w["steps"]),
        assignee=assignee,
        note=note,
        result=result,
        calibration_due_ms=calibration_due_ms,
    )
    res = await submit(client, key, chain, "workorder", p)
    w = await client.get(f"/v1/workorders/{number}")
    return Done(number, res["tx"], int(res["height"]), str(w["state"]))
