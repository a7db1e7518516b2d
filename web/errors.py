"""The one exception web handlers raise to refuse a request: rendered as an HTML page (or JSON on machine routes)
by ``web.app``; in a module of its own so that page modules need not import the app to raise it."""

from __future__ import annotations


class PageError(Exception):
    """A refusal shown as an HTML page (or JSON on machine routes): status, and a message key + detail."""

    def __init__(self, status: int, key: str, detail: str = "") -> None:
        super().__init__(detail or key)
        self.status = status
        self.key = key
        self.detail = detail


__all__ = ["PageError"]
