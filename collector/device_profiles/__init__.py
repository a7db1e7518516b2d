"""Modbus device profiles as data: one TOML register map per device type (see README.md here).

A package only so that packaging ships the ``*.toml`` files (``[tool.setuptools.package-data]``); load them
with ``collector.profiles.load_profile``.
"""
