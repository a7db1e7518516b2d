"""Pages for alarms and inspection work orders: the alarm inbox, the work-order board, a page per item with its
whole history, and action forms whose submission is a signed tx.

Who acts: sign-in for people is not built yet, so a node acts with ONE org key given to it by its operator
(``CEMP_WEB_ACT_KEY``: an org admin key file; ``CEMP_KEY_PASSPHRASE`` if encrypted). Every form says "acting as
<org>" and offers only the steps that org may take in the item's current state; the chain checks the step again
(admission and apply), so a stale or forbidden form is refused with the chain's reason. Without the key the pages
are read-only. Forms carry a per-process token (a cross-site page cannot post them) and the item's step count (a
second click, or a form made stale by someone else, is refused, not applied twice).

Reads come from committed state (``maintenance.api``); every value is escaped by jinja2.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import secrets
from datetime import date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from markupsafe import Markup, escape

from maintenance import alarms as al
from maintenance import workflow as wf
from maintenance import workorders as wo
from maintenance.api import alarm_detail, alarms_list, order_detail, orders_list
from node.chain import ChainRef, sign_tx
from node.crypto import KeyPair, read_key_file
from node.devices import org_of_admin
from node.errors import CempError, Code
from node.mempool import PendingView
from node.types import Org
from web.app import PageError, WebUI
from web.i18n import Fmt

ACT_KEY_ENV = "CEMP_WEB_ACT_KEY"
HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_FORM = 8_192
COMMIT_WAIT_S = 30.0

MTEXT: dict[str, tuple[str, str]] = {
    "alarms": ("Alarms", "告警"),
    "alarm": ("Alarm", "告警"),
    "inbox": ("Alarm inbox", "告警收件箱"),
    "workorders": ("Work orders", "工单"),
    "workorder": ("Work order", "工单"),
    "board": ("Work-order board", "工单看板"),
    "open_only": ("Not closed", "未关闭"),
    "closed_only": ("Closed", "已关闭"),
    "all": ("All", "全部"),
    "none": ("None.", "无。"),
    "number": ("No.", "编号"),
    "state": ("State", "状态"),
    "severity": ("Severity", "级别"),
    "rule": ("What", "类型"),
    "device": ("Device", "设备"),
    "since": ("Since", "开始于"),
    "message": ("Message", "说明"),
    "assignee": ("Assigned to", "负责人"),
    "expected": ("Expected", "预期"),
    "observed": ("Observed", "实际"),
    "evidence": ("Readings that show it", "证据（读数交易）"),
    "source": ("Found by", "发现方"),
    "raised_by": ("Raised by", "发起方"),
    "history": ("History (every step is a signed tx on chain)", "历史（每一步都是链上签名交易）"),
    "step": ("Step", "步骤"),
    "action": ("Action", "操作"),
    "org": ("Org", "机构"),
    "note": ("Note", "备注"),
    "tx": ("Tx", "交易"),
    "time": ("Time", "时间"),
    "title": ("Title", "标题"),
    "reason": ("Reason", "原因"),
    "due": ("Due", "期限"),
    "opened_by": ("Opened by", "创建方"),
    "from_alarm": ("From alarm", "来源告警"),
    "actions": ("Take a step", "处理"),
    "acting_as": ("Acting as", "当前身份"),
    "acting_note": (
        "Sign-in is not built yet: this node signs with the key of one org, given by its operator.",
        "尚未提供个人登录：本节点使用运维人员配置的机构密钥签名。",
    ),
    "read_only": (
        "Read-only: this node has no org key for actions (set CEMP_WEB_ACT_KEY).",
        "只读：本节点未配置用于操作的机构密钥（CEMP_WEB_ACT_KEY）。",
    ),
    "no_steps": ("No step is open to this org now.", "该机构当前无可执行的步骤。"),
    "submit": ("Sign and submit", "签名并提交"),
    "done": ("Committed: tx", "已上链：交易"),
    "refused": ("Refused by the chain", "链上拒绝"),
    "result": ("Result", "结果"),
    "pass": ("pass", "通过"),
    "fail": ("fail", "不通过"),
    "open_order": ("Open a work order from this alarm", "由此告警创建工单"),
    "orders": ("Work orders from this alarm", "由此告警创建的工单"),
    "flow": ("Who may do what", "谁可以做什么"),
    "by": ("by", "由"),
    "open_alarms": ("Open alarms of this device", "本设备未关闭的告警"),
    "calibration_due": ("Next calibration due (YYYY-MM-DD)", "下次校准期限（YYYY-MM-DD）"),
    "detail": ("Detail", "详情"),
}
STATE_TEXT: dict[str, tuple[str, str]] = {
    "open": ("open", "待处理"),
    "acknowledged": ("acknowledged", "已确认"),
    "assigned": ("assigned", "已指派"),
    "diagnosed": ("diagnosed", "已诊断"),
    "repaired": ("repaired", "已维修"),
    "verified": ("verified", "已验收"),
    "closed": ("closed", "已关闭"),
}
RULE_TEXT: dict[str, tuple[str, str]] = {
    "out_of_band": ("outside the model's band", "超出模型区间"),
    "step": ("step change", "阶跃变化"),
    "silent": ("silent (offline)", "无数据（离线）"),
    "gap": ("data gap", "数据缺失"),
    "negative_delta": ("counter went back", "计数器倒退"),
    "over_rated": ("beyond rated power", "超过额定功率"),
    "submeter_drift": ("sub-meters drift from the main meter", "分表偏离总表"),
    "stale": ("value stuck", "数值不变"),
    "spike": ("spike", "尖峰"),
    "meter_replaced": ("meter replaced", "更换表计"),
    "clock_drift": ("clock drift", "时钟漂移"),
    "source_error": ("device not answering", "设备无响应"),
}
SEVERITY_TEXT: dict[str, tuple[str, str]] = {
    "info": ("info", "提示"),
    "warning": ("warning", "警告"),
    "critical": ("critical", "严重"),
}
ACTION_TEXT: dict[str, tuple[str, str]] = {
    "raise": ("raise", "发起"),
    "acknowledge": ("acknowledge", "确认"),
    "assign": ("assign", "指派"),
    "comment": ("comment", "评论"),
    "close": ("close", "关闭"),
    "open": ("open", "创建"),
    "diagnose": ("diagnose", "诊断"),
    "repair": ("repair", "维修"),
    "verify": ("verify", "验收"),
}


class _T(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


def mtexts(lang: str) -> _T:
    i = 0 if lang == "en" else 1
    out = _T({k: v[i] for k, v in MTEXT.items()})
    out.update({f"state_{k}": v[i] for k, v in STATE_TEXT.items()})
    out.update({f"act_{k}": v[i] for k, v in ACTION_TEXT.items()})
    out.update({f"rule_{k}": v[i] for k, v in RULE_TEXT.items()})
    out.update({f"sev_{k}": v[i] for k, v in SEVERITY_TEXT.items()})
    return out


def load_act_key() -> KeyPair | None:
    path = os.environ.get(ACT_KEY_ENV, "")
    if not path:
        return None
    passphrase = os.environ.get("CEMP_KEY_PASSPHRASE", "").encode() or None
    return read_key_file(Path(path), passphrase)


class MaintenancePages:
    def __init__(self, node: Any, ui: WebUI, key: KeyPair | None) -> None:
        self.node = node
        self.ui = ui
        self.key = key
        self.org: Org | None = org_of_admin(node.ledger.genesis, key.public) if key is not None else None
        self.token = secrets.token_hex(16)

    def routes(self) -> list[web.RouteDef]:
        p = self.ui.page
        return [
            web.get("/alarms", p(self.inbox)),
            web.get("/alarms/{n}", p(self.alarm)),
            web.post("/alarms/{n}", p(self.alarm_act)),
            web.get("/workorders", p(self.board)),
            web.get("/workorders/{n}", p(self.order)),
            web.post("/workorders/{n}", p(self.order_act)),
        ]

    # --- reading -----------------------------------------------------------------------------------------
    async def _read(self, fn: Any) -> Any:
        store = self.node.ledger.store

        def run() -> Any:
            snap = store.snapshot()
            try:
                return fn(snap)
            finally:
                snap.release()

        return await asyncio.to_thread(run)

    def _render(self, request: web.Request, name: str, status: int = 200, **kw: Any) -> web.Response:
        lang = self.ui.ctx(request)["lang"]
        done = request.query.get("done", "")
        kw.setdefault("error", None)
        return self.ui.render(
            request,
            name,
            status=status,
            m=mtexts(lang),
            acting=self.org,
            token=self.token,
            request_done=done if HEX64.fullmatch(done) else None,
            **kw,
        )

    @staticmethod
    def _number(request: web.Request) -> int:
        raw = request.match_info["n"]
        if not raw.isdigit() or not 1 <= int(raw) < 2**32:
            raise PageError(400, "bad_param", f"{raw[:20]!r} is not a number like 7")
        return int(raw)

    def _steps_for(self, flow: dict[str, wf.Transition], state: str) -> list[str]:
        if self.org is None:
            return []
        return wf.actions_open(flow, state, str(self.org.role))

    async def inbox(self, request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise PageError(400, "bad_param", f"state={state[:20]!r}: open, closed or all")
        items = await self._read(lambda s: alarms_list(s, "" if state == "all" else state, "", 200))
        return self._render(request, "alarms.html", alarm_items=items, tab=state)

    async def board(self, request: web.Request) -> web.StreamResponse:
        items = await self._read(lambda s: orders_list(s, "", "", 500))
        columns = [
            (st, [w for w in items if w["state"] == st][: 20 if st == "closed" else 200])
            for st in wf.WORKORDER_STATES
        ]
        return self._render(request, "workorders.html", columns=columns, count=len(items))

    async def alarm(self, request: web.Request, *, status: int = 200, **kw: Any) -> web.StreamResponse:
        n = self._number(request)
        a = await self._read(lambda s: alarm_detail(s, n))
        steps = self._steps_for(wf.ALARM_FLOW, a["state"])
        can_open = (
            self.org is not None
            and a["state"] != "closed"
            and str(self.org.role) in wf.WORKORDER_FLOW["open"].roles
        )
        return self._render(request, "alarm.html", status=status, a=a, steps=steps, can_open=can_open, **kw)

    async def order(self, request: web.Request, *, status: int = 200, **kw: Any) -> web.StreamResponse:
        n = self._number(request)
        w = await self._read(lambda s: order_detail(s, n))
        steps = self._steps_for(wf.WORKORDER_FLOW, w["state"])
        return self._render(request, "workorder.html", status=status, w=w, steps=steps, **kw)

    # --- acting ------------------------------------------------------------------------------------------
    async def _form(self, request: web.Request) -> dict[str, str]:
        if self.key is None or self.org is None:
            raise PageError(403, "bad_param", "this node has no org key for actions (CEMP_WEB_ACT_KEY)")
        if request.content_length is not None and request.content_length > MAX_FORM:
            raise PageError(413, "bad_param", f"form larger than {MAX_FORM} bytes")
        data = await request.post()
        form = {k: str(v)[:1100] for k, v in data.items() if isinstance(v, str)}
        if not hmac.compare_digest(form.get("token", ""), self.token):
            raise PageError(403, "bad_param", "the form is stale or from another site: reload the page")
        return form

    async def _submit(self, kind: str, payload: object) -> str:
        """Sign with the node's act key, admit here (the node forwards to the leader), wait for the commit."""
        assert self.key is not None
        led = self.node.ledger
        pending = led.nonce_of(PendingView(led.store, self.node.mempool.overlay), self.key.public)
        raw, _ = sign_tx(self.key, ChainRef.of(led.genesis), kind, pending + 1, payload)
        d, _known = await self.node.api.admit_one(raw)
        loc = led.tx_location(d.hash)
        if loc is None:
            fut = self.node.mempool.wait(d.hash)
            loc = led.tx_location(d.hash)
            if loc is None:
                try:
                    loc = await asyncio.wait_for(fut, COMMIT_WAIT_S)
                except TimeoutError:
                    raise CempError(
                        Code.TIMEOUT, f"tx {d.hash.hex()} is not committed yet; reload later"
                    ) from None
            else:
                fut.cancel()
        if loc.code != 0:
            raise CempError(Code(loc.code), loc.reason)
        return str(d.hash.hex())

    async def alarm_act(self, request: web.Request) -> web.StreamResponse:
        n = self._number(request)
        form = await self._form(request)
        action = form.get("action", "")
        step = int(form["step"]) if form.get("step", "").isdigit() else -1
        try:
            if action == "open_order":
                a = await self._read(lambda s: alarm_detail(s, n))
                p: Any = wo.make_open(
                    "alarm", a["device"], form.get("title", ""), alarm=n, note=form.get("note", "")
                )
                tx = await self._submit("workorder", p)
                return self._redirect(request, f"/workorders/{await self._order_of(tx)}", tx)
            p = al.make_step(action, n, step, assignee=form.get("assignee", ""), note=form.get("note", ""))
            tx = await self._submit("alarm", p)
        except CempError as e:
            return await self.alarm(request, status=e.status, error=e.message)
        return self._redirect(request, f"/alarms/{n}", tx)

    async def order_act(self, request: web.Request) -> web.StreamResponse:
        n = self._number(request)
        form = await self._form(request)
        step = int(form["step"]) if form.get("step", "").isdigit() else -1
        due = 0
        if form.get("calibration_due"):
            try:
                d = date.fromisoformat(form["calibration_due"])
            except ValueError:
                return await self.order(request, status=400, error="calibration due: a date like 2027-03-01")
            due = int(datetime(d.year, d.month, d.day, tzinfo=Fmt("en").tz).timestamp() * 1000)
        try:
            p = wo.make_step(
                form.get("action", ""),
                n,
                step,
                assignee=form.get("assignee", ""),
                note=form.get("note", ""),
                result=form.get("result", "") if form.get("action") == "verify" else "",
                calibration_due_ms=due,
            )
            tx = await self._submit("workorder", p)
        except CempError as e:
            return await self.order(request, status=e.status, error=e.message)
        return self._redirect(request, f"/workorders/{n}", tx)

    async def _order_of(self, tx: str) -> int:
        items = await self._read(lambda s: orders_list(s, "", "", 50))
        return next(int(w["number"]) for w in items if w["opened_tx"] == tx)

    @staticmethod
    def _redirect(request: web.Request, path: str, tx: str) -> web.StreamResponse:
        lang = request.query.get("lang", "")
        q = f"?done={tx}" + (f"&lang={lang}" if lang in ("en", "zh") else "")
        raise web.HTTPSeeOther(path + q)


def device_alarms_panel(node: Any, dev: Any, lang: str) -> Markup | None:
    """The device page's ``alarms`` section: the device's alarms that are not closed, linked to their pages."""
    store = node.ledger.store
    snap = store.snapshot()
    try:
        items = alarms_list(snap, "open", str(dev.handle), 20)
    finally:
        snap.release()
    m = mtexts(lang)
    if not items:
        return Markup(
            f'<p class="muted slot" data-slot="alarms">{escape(m["none"])} <a href="/alarms?state=all">{escape(m["inbox"])}</a></p>'
        )
    rows = "".join(
        f'<li><a href="/alarms/{a["number"]}">{escape(m["alarm"])} {a["number"]}</a> · '
        f"{escape(m['state_' + a['state']])} · {escape(m['rule_' + a['rule']])} · "
        f"{escape(a['message_zh'] if lang == 'zh' and a['message_zh'] else a['message'])}</li>"
        for a in items
    )
    return Markup(f'<ul class="slot" data-slot="alarms">{rows}</ul>')


def routes(node: Any) -> list[web.RouteDef]:
    """Route provider of the alarm inbox and work-order board (listed by the composition root)."""
    return MaintenancePages(node, WebUI(node), load_act_key()).routes()
