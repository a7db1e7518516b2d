"""Pages for people: block explorer, device and handle pages, consortium status (``web.app.routes``).

Server-rendered (aiohttp + jinja2), in Chinese and English, usable without JavaScript and on a phone; every
asset ships in ``web/static`` (uPlot is vendored with its licence under ``static/vendor/uplot``).
"""

from web.app import routes

__all__ = ["routes"]
