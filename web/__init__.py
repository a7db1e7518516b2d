"""Pages for people: block explorer, device and handle pages, consortium status (``web.app.routes``).

Server-rendered (aiohttp + jinja2), in Chinese and English, usable without JavaScript and on a phone; every
asset ships in ``web/static`` (uPlot is vendored with its licence under ``static/vendor/uplot``).

The package imports none of its modules: ``from web.text import TEXT`` loads the texts, not the whole web app
(``cemp.wiring`` imports ``web.app.routes`` itself).
"""
