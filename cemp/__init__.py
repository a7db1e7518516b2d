"""The composition root: the ``cemp`` command line, the wiring of tx kinds, routes and hooks, and the demo.

The library packages (``node``, ``consensus``) import no application; the applications (``resolver``,
``collector``, ``accounting``, ``web``) import the library; only this package imports both and puts them together.
"""
