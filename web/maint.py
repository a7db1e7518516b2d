"""Pages for alarms and inspection work orders: the alarm inbox, the work-order board, a page per item with its
whole history, and step forms whose submission is a tx signed by the signed-in person's own key.

Who acts: the person signed in (``cemp login --web``; ``access``). The node never holds their key. A step is signed
in the browser (``web/static/sign.js``): the page posts the form to ``.../sign``, which answers the exact bytes the
signature covers (``DOMAIN_TX || genesis hash || encode(UnsignedTx)``: chain id, kind, the person's key, the next
nonce, the payload built from the form); the browser signs them with the person's Ed25519 key (imported once from
their key file on the sign-in page, kept in IndexedDB as a non-extractable ``CryptoKey``) and posts the form again
with the nonce and the signature; the node builds the same bytes from the form, checks the signature against the
signed-in key, and admits the tx through the normal path (the chain's authorizer and the kind's rules decide, on
admission and on apply). Without JavaScript (or WebCrypto) each form shows the ``cemp alarm ...`` / ``cemp
workorder ...`` command that does the same step. A form shows only the steps open to the person's org and roles in
the item's state; the others the org may take are named with the role they need.

Who reads: an alarm or work order is about a device and shows what its readings showed, so it is read under the
device's ``readings`` data rule (``access``: public unless the device's org keeps readings members-only; then its
members and grantees). The inbox and board leave out what the viewer may not read and say how many.

Forms carry a per-process token (a cross-site page cannot post them; the session cookie is ``SameSite=Lax`` too) and
the item's step count (a second click, or a form made stale by someone else, is refused, not applied twice).
Reads come from committed state (``maintenance.api``); every value is escaped by jinja2.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import shlex
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aiohttp import web
from markupsafe import Markup, escape

from access.model import load_person
from maintenance import alarms as al
from maintenance import workflow as wf
from maintenance import workorders as wo
from maintenance.api import alarm_detail, alarms_list, order_detail, orders_list
from node import codec
from node.chain import ChainRef
from node.crypto import verify
from node.devices import load_device
from node.errors import CempError, Code
from node.mempool import PendingView
from node.readgate import readings_check
from node.state import StateView
from node.types import DOMAIN_TX, Blob, Nonce, Org, PublicKey, ShortStr, Signature, Tx, UnsignedTx
from web.app import PageError, WebUI
from web.i18n import Fmt
from web.text import Labels, texts

HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_FORM = 8_192
COMMIT_WAIT_S = 30.0

MTEXT: dict[str, tuple[str, str]] = {
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
    "signed_by": ("Signed by", "签名者"),
    "note": ("Note", "备注"),
    "tx": ("Tx", "交易"),
    "title": ("Title", "标题"),
    "due": ("Due", "期限"),
    "opened_by": ("Opened by", "创建方"),
    "from_alarm": ("From alarm", "来源告警"),
    "actions": ("Take a step", "处理"),
    "acting_as": ("Acting as", "当前身份"),
    "acting_roles": ("roles", "角色"),
    "sign_to_act": (
        "Sign in to take a step: each step is a tx signed with your own key.",
        "登录后才能处理：每一步都是用您自己的密钥签名的交易。",
    ),
    "needs_role": ("needs the role", "需要角色"),
    "or": (" or ", " 或 "),
    "comma": (", ", "，"),
    "semi": ("; ", "；"),
    "stop": (".", "。"),
    "you_hold": ("you hold", "您的角色"),
    "cli": ("Or on the command line", "或使用命令行"),
    "how_signed": (
        "Your browser signs the step with the key you loaded on the sign-in page; the key never leaves this "
        "browser. Without JavaScript, run the command under the form instead.",
        "浏览器使用您在登录页加载的密钥为此步骤签名，密钥不会离开此浏览器。未启用 JavaScript 时，请运行表单下方的命令。",
    ),
    "withheld": (
        "items about devices whose readings you may not read are not listed",
        "条涉及您无权读取其读数的设备的记录未列出",
    ),
    "no_steps": ("No step is open to you now.", "您当前无可执行的步骤。"),
    "submit": ("Sign and submit", "签名并提交"),
    "done": ("Committed: tx", "已上链：交易"),
    "refused": ("Refused by the chain", "链上拒绝"),
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
PERSON_ROLE_TEXT: dict[str, tuple[str, str]] = {
    "operator": ("operator", "运维员"),
    "energy_manager": ("energy manager", "能源经理"),
    "maintenance_engineer": ("maintenance engineer", "维修工程师"),
    "auditor": ("auditor", "审计员"),
    "admin": ("org admin", "机构管理员"),
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


def mtexts(lang: str) -> Labels:
    """The explorer's labels (``web.text``) and these pages' own on top."""
    i = 0 if lang == "en" else 1
    out = Labels(texts(lang))
    out.update({k: v[i] for k, v in MTEXT.items()})
    out.update({f"state_{k}": v[i] for k, v in STATE_TEXT.items()})
    out.update({f"act_{k}": v[i] for k, v in ACTION_TEXT.items()})
    out.update({f"rule_{k}": v[i] for k, v in RULE_TEXT.items()})
    out.update({f"sev_{k}": v[i] for k, v in SEVERITY_TEXT.items()})
    out.update({f"prole_{k}": v[i] for k, v in PERSON_ROLE_TEXT.items()})
    return out


@dataclass(frozen=True, slots=True)
class Acting:
    """The signed-in person (or org admin key) a step form signs for."""

    pubkey: bytes
    name: str
    org: Org
    roles: frozenset[str] | None
    """The person's roles; None for an org admin key (it holds every role)."""

    @property
    def role_list(self) -> list[str]:
        return ["admin"] if self.roles is None else sorted(self.roles)


def _shell(s: str) -> str:
    return shlex.quote(s) if s else "''"


class MaintenancePages:
    def __init__(self, node: Any, ui: WebUI) -> None:
        self.node = node
        self.ui = ui
        self.token = secrets.token_hex(16)
        self.chain = ChainRef.of(node.ledger.genesis)

    def routes(self) -> list[web.RouteDef]:
        p = self.ui.page
        return [
            web.get("/alarms", p(self.inbox)),
            web.get("/alarms/{n}", p(self.alarm)),
            web.post("/alarms/{n}", p(self.alarm_act)),
            web.post("/alarms/{n}/sign", self.sign_route(self._alarm_payload)),
            web.get("/workorders", p(self.board)),
            web.get("/workorders/{n}", p(self.order)),
            web.post("/workorders/{n}", p(self.order_act)),
            web.post("/workorders/{n}/sign", self.sign_route(self._order_payload)),
        ]

    # --- who ---------------------------------------------------------------------------------------------
    def acting(self, request: web.Request) -> Acting | None:
        v = self.ui.viewer(request)
        if v is None:
            return None
        org = next((o for o in self.node.ledger.genesis.orgs if o.name == v.org), None)
        if org is None:
            return None
        roles = None if tuple(v.roles) == ("admin",) else frozenset(str(r) for r in v.roles)
        return Acting(bytes(v.pubkey), str(v.name), org, roles)

    def _require_device(self, request: web.Request, handle: str) -> None:
        dev = load_device(StateView(self.node.ledger.store), handle)
        if dev is not None:
            self.ui.require(request, str(dev.org), "readings", handle)

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
        kw.setdefault("failed", "")
        return self.ui.render(
            request,
            name,
            status=status,
            m=mtexts(lang),
            acting=self.acting(request),
            token=self.token,
            node_url=f"{request.scheme}://{request.host}",
            request_done=done if HEX64.fullmatch(done) else None,
            **kw,
        )

    @staticmethod
    def _number(request: web.Request) -> int:
        raw = request.match_info["n"]
        if not raw.isdigit() or not 1 <= int(raw) < 2**32:
            raise PageError(400, "bad_param", f"{raw[:20]!r} is not a number like 7")
        return int(raw)

    @staticmethod
    def _steps_for(
        flow: dict[str, wf.Transition], state: str, who: Acting | None, extra: tuple[str, ...] = ()
    ) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """The steps ``who`` may take in ``state``, and the ones their org may take that need another role (with
        the person roles they need)."""
        if who is None:
            return [], []
        ok: list[str] = []
        blocked: list[tuple[str, list[str]]] = []
        for a in [*wf.actions_open(flow, state, str(who.org.role)), *extra]:
            people = flow[a].people if a in flow else wf.WORKORDER_FLOW["open"].people
            if who.roles is None or who.roles & people:
                ok.append(a)
            else:
                order = (wf.OPERATOR, wf.ENERGY_MANAGER, wf.MAINTENANCE_ENGINEER)
                blocked.append((a, [r for r in order if r in people]))
        return ok, blocked

    def _signer_names(self, snap: Any, steps: list[dict[str, Any]]) -> None:
        names: dict[str, str] = {}
        for s in steps:
            key = str(s.get("signer", ""))
            if key not in names:
                rec = load_person(StateView(snap), bytes.fromhex(key)) if HEX64.fullmatch(key) else None
                names[key] = str(rec.name) if rec is not None else ""
            s["signer_name"] = names[key]

    async def inbox(self, request: web.Request) -> web.StreamResponse:
        state = request.query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise PageError(400, "bad_param", f"state={state[:20]!r}: open, closed or all")
        items = await self._read(lambda s: alarms_list(s, "" if state == "all" else state, "", 200))
        may_read = readings_check(self.node.reads, request, self.node.ledger.store)
        shown = [a for a in items if may_read(str(a["device"]))]
        return self._render(
            request, "alarms.html", alarm_items=shown, tab=state, withheld=len(items) - len(shown)
        )

    async def board(self, request: web.Request) -> web.StreamResponse:
        items = await self._read(lambda s: orders_list(s, "", "", 500))
        may_read = readings_check(self.node.reads, request, self.node.ledger.store)
        shown = [w for w in items if may_read(str(w["device"]))]
        columns = [
            (st, [w for w in shown if w["state"] == st][: 20 if st == "closed" else 200])
            for st in wf.WORKORDER_STATES
        ]
        return self._render(
            request, "workorders.html", columns=columns, count=len(shown), withheld=len(items) - len(shown)
        )

    def _alarm_detail(self, snap: Any, n: int) -> dict[str, Any]:
        a = alarm_detail(snap, n)
        self._signer_names(snap, a["history"])
        return a

    def _order_detail(self, snap: Any, n: int) -> dict[str, Any]:
        w = order_detail(snap, n)
        self._signer_names(snap, w["history"])
        return w

    async def alarm(self, request: web.Request, *, status: int = 200, **kw: Any) -> web.StreamResponse:
        n = self._number(request)
        a = await self._read(lambda s: self._alarm_detail(s, n))
        self._require_device(request, str(a["device"]))
        who = self.acting(request)
        extra = ("open_order",) if a["state"] != "closed" and who is not None else ()
        if extra and who is not None and str(who.org.role) not in wf.WORKORDER_FLOW["open"].roles:
            extra = ()
        steps, blocked = self._steps_for(wf.ALARM_FLOW, a["state"], who, extra)
        cmds = {s: self._alarm_command(request, a, s) for s in steps}
        can_open = "open_order" in steps
        steps = [s for s in steps if s != "open_order"]
        return self._render(
            request,
            "alarm.html",
            status=status,
            a=a,
            steps=steps,
            can_open=can_open,
            blocked=blocked,
            cmds=cmds,
            **kw,
        )

    async def order(self, request: web.Request, *, status: int = 200, **kw: Any) -> web.StreamResponse:
        n = self._number(request)
        w = await self._read(lambda s: self._order_detail(s, n))
        self._require_device(request, str(w["device"]))
        steps, blocked = self._steps_for(wf.WORKORDER_FLOW, w["state"], self.acting(request))
        cmds = {s: self._order_command(request, w, s) for s in steps}
        return self._render(
            request, "workorder.html", status=status, w=w, steps=steps, blocked=blocked, cmds=cmds, **kw
        )

    # --- the command line that takes the same step (no JavaScript) ----------------------------------------
    @staticmethod
    def _tail(request: web.Request) -> str:
        return f" --key YOUR.key --nodes {request.scheme}://{request.host}"

    def _alarm_command(self, request: web.Request, a: dict[str, Any], action: str) -> str:
        n = a["number"]
        if action == "open_order":
            return (
                f"cemp workorder open --alarm {n} --device {_shell(str(a['device']))} --title 'WHAT TO DO'"
                + self._tail(request)
            )
        to = " --to 'NAME'" if action == "assign" else ""
        return f"cemp alarm {action} {n}{to} --note 'NOTE'" + self._tail(request)

    def _order_command(self, request: web.Request, w: dict[str, Any], action: str) -> str:
        extra = {"assign": " --to 'NAME'", "verify": " --result pass"}.get(action, "")
        if action == "repair" and w.get("reason") == "calibration":
            extra = " --next-due YYYY-MM-DD"
        note = "" if action == "assign" else " --note 'NOTE'"
        return f"cemp workorder {action} {w['number']}{extra}{note}" + self._tail(request)

    # --- acting ------------------------------------------------------------------------------------------
    async def _form(self, request: web.Request) -> tuple[Acting, dict[str, str]]:
        who = self.acting(request)
        if who is None:
            raise PageError(
                401, "bad_param", "sign in first (cemp login --web): a step is signed with your key"
            )
        if request.content_length is not None and request.content_length > MAX_FORM:
            raise PageError(413, "bad_param", f"form larger than {MAX_FORM} bytes")
        data = await request.post()
        form = {k: str(v)[:1100] for k, v in data.items() if isinstance(v, str)}
        if not hmac.compare_digest(form.get("token", ""), self.token):
            raise PageError(403, "bad_param", "the form is stale or from another site: reload the page")
        return who, form

    async def _alarm_payload(self, n: int, form: dict[str, str]) -> tuple[str, Any]:
        action = form.get("action", "")
        if action == "open_order":
            a = await self._read(lambda s: alarm_detail(s, n))
            return "workorder", wo.make_open(
                "alarm", a["device"], form.get("title", ""), alarm=n, note=form.get("note", "")
            )
        step = int(form["step"]) if form.get("step", "").isdigit() else -1
        return "alarm", al.make_step(
            action, n, step, assignee=form.get("assignee", ""), note=form.get("note", "")
        )

    async def _order_payload(self, n: int, form: dict[str, str]) -> tuple[str, Any]:
        step = int(form["step"]) if form.get("step", "").isdigit() else -1
        due = 0
        if form.get("calibration_due"):
            try:
                d = date.fromisoformat(form["calibration_due"])
            except ValueError:
                raise PageError(400, "bad_param", "calibration due: a date like 2027-03-01") from None
            due = int(datetime(d.year, d.month, d.day, tzinfo=Fmt("en").tz).timestamp() * 1000)
        return "workorder", wo.make_step(
            form.get("action", ""),
            n,
            step,
            assignee=form.get("assignee", ""),
            note=form.get("note", ""),
            result=form.get("result", "") if form.get("action") == "verify" else "",
            calibration_due_ms=due,
        )

    def _unsigned(self, who: Acting, kind: str, payload: Any, nonce: int) -> UnsignedTx:
        try:
            blob = Blob(codec.encode(payload))
        except (ValueError, TypeError, CempError) as e:
            raise PageError(400, "bad_param", f"the form does not make a valid step: {e}") from None
        return UnsignedTx(
            ShortStr(self.chain.chain_id), ShortStr(kind), PublicKey(who.pubkey), Nonce(nonce), blob
        )

    def signing_bytes(self, u: UnsignedTx) -> bytes:
        """What the person's key signs: the same bytes ``node.chain.sign_tx`` signs (domain tag included)."""
        return DOMAIN_TX + self.chain.genesis_hash + codec.encode(u)

    def sign_route(self, build: Any) -> Any:
        """``POST .../sign``: the exact bytes to sign for this form by the signed-in key (JSON)."""

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                n = self._number(request)
                who, form = await self._form(request)
                kind, payload = await build(n, form)
                led = self.node.ledger
                nonce = led.nonce_of(PendingView(led.store, self.node.mempool.overlay), who.pubkey) + 1
                u = self._unsigned(who, kind, payload, nonce)
            except PageError as e:
                return web.json_response({"code": e.key, "message": e.detail or e.key}, status=e.status)
            except CempError as e:
                return web.json_response({"code": e.code.name.lower(), "message": e.message}, status=e.status)
            return web.json_response(
                {
                    "kind": kind,
                    "signer": who.pubkey.hex(),
                    "nonce": nonce,
                    "sign_bytes": self.signing_bytes(u).hex(),
                }
            )

        handler.__name__ = "sign"
        return handler

    async def _signed_tx(self, who: Acting, form: dict[str, str], kind: str, payload: Any) -> bytes:
        """The tx the browser signed: rebuilt from the form and the nonce it signed, checked against the key."""
        sig_hex, nonce_s = form.get("signature", ""), form.get("nonce", "")
        if not sig_hex:
            raise PageError(
                400,
                "bad_param",
                "this step is a tx signed with your own key: load your key file on the sign-in page (JavaScript "
                "and WebCrypto needed), or run the command shown under the form",
            )
        if (
            not re.fullmatch(r"[0-9a-f]{128}", sig_hex)
            or not nonce_s.isdigit()
            or not 1 <= int(nonce_s) < 2**63
        ):
            raise PageError(400, "bad_param", "signature: 128 hex digits; nonce: a number from 1")
        u = self._unsigned(who, kind, payload, int(nonce_s))
        sig = bytes.fromhex(sig_hex)
        if not verify(who.pubkey, b"", self.signing_bytes(u), sig):
            raise PageError(
                400,
                "bad_param",
                "the signature does not verify with the key you signed in with: load that key's file on the "
                "sign-in page (the key in this browser is another one) and try again",
            )
        tx = Tx(u.chain_id, u.kind, u.sender, u.nonce, u.payload, Signature(sig))
        return codec.encode(tx)

    async def _submit(self, raw: bytes) -> str:
        """Admit here (the node forwards to the leader) and wait for the commit; the chain's reason if refused."""
        led = self.node.ledger
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
        who, form = await self._form(request)
        try:
            kind, payload = await self._alarm_payload(n, form)
            tx = await self._submit(await self._signed_tx(who, form, kind, payload))
        except (CempError, PageError) as e:
            status, msg = (e.status, e.message) if isinstance(e, CempError) else (e.status, e.detail)
            return await self.alarm(request, status=status, error=msg, failed=form.get("action", ""))
        if kind == "workorder":
            return self._redirect(request, f"/workorders/{await self._order_of(tx)}", tx)
        return self._redirect(request, f"/alarms/{n}", tx)

    async def order_act(self, request: web.Request) -> web.StreamResponse:
        n = self._number(request)
        who, form = await self._form(request)
        try:
            kind, payload = await self._order_payload(n, form)
            tx = await self._submit(await self._signed_tx(who, form, kind, payload))
        except (CempError, PageError) as e:
            status, msg = (e.status, e.message) if isinstance(e, CempError) else (e.status, e.detail)
            return await self.order(request, status=status, error=msg, failed=form.get("action", ""))
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
    return MaintenancePages(node, WebUI(node)).routes()
