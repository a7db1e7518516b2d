"""The device page's ``health`` panel (``web.slots.DevicePanel``, registered by ``cemp.wiring``): the device's
health score, its reasons and the likely causes with what to check, from one snapshot of committed state over the
last 7 days, or the newest ``MAX_SCAN`` readings if fewer (``energy.health``). Escaped HTML; bounded by ``health.MAX_SCAN`` readings."""

from __future__ import annotations

import time
from typing import Any

from markupsafe import Markup, escape

from energy import health as hl

WINDOW_DAYS = 7
MAX_SCAN = 50_000  # a page view reads at most this many readings (newest first); the JSON route reads more


def render_health(node: Any, dev: Any, lang: str) -> Markup | None:
    zh = lang == "zh"
    snap = node.ledger.store.snapshot()
    try:
        a = hl.assess(
            hl.signals_from_chain(snap, dev, int(time.time() * 1000), WINDOW_DAYS, max_scan=MAX_SCAN)
        )
    finally:
        snap.release()
    grade = {"good": ("good", "良好"), "watch": ("watch", "关注"), "poor": ("poor", "差")}[a["grade"]]
    s = a["signals"]
    parts = [
        f'<div class="health health-{escape(a["grade"])}" data-score="{a["score"]}">',
        f"<p><strong>{a['score']}</strong> / 100 · {escape(grade[1] if zh else grade[0])}"
        + (
            f" · {'完整率' if zh else 'completeness'} {s['completeness_pct']} %"
            if s["completeness_pct"]
            else ""
        )
        + f" · {'窗口' if zh else 'window'} {s['window_ms'] / 86_400_000:.1f} {'天' if zh else 'days'}</p>",
    ]
    if a["reasons"]:
        parts.append(f'<p>{"扣分原因" if zh else "Reasons"}:</p><ul class="health-reasons">')
        for r in a["reasons"]:
            parts.append(f"<li>{escape(r['text_zh'] if zh else r['text'])} ({r['points']})</li>")
        parts.append("</ul>")
    else:
        parts.append(
            f'<p class="muted">{"近 7 天无异常信号。" if zh else "No warning signs in the last 7 days."}</p>'
        )
    if a["causes"]:
        parts.append(f'<p>{"可能原因" if zh else "Likely causes"}:</p><ul class="health-causes">')
        for c in a["causes"]:
            because = "; ".join(c["because"])
            parts.append(
                f"<li><strong>{escape(c['cause_zh'] if zh else c['cause'])}</strong> "
                f'<span class="muted">({escape(because)})</span><br>'
                f"{'建议' if zh else 'Check'}: {escape(c['action_zh'] if zh else c['action'])}</li>"
            )
        parts.append("</ul>")
    parts.append(f'<p class="links"><a href="/v1/devices/{escape(dev.handle)}/health">JSON</a></p></div>')
    return Markup("".join(parts))
