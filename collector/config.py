"""``cemp collect`` configuration: one TOML file (+ environment overrides) → a ready ``SiteAgent``.

Example (every key outside ``[[devices]]`` is optional; defaults shown)::

    [agent]
    data_dir = "collector-data"          # outbox.sqlite, deadletter.jsonl, alarms.jsonl (relative to this file)
    nodes = ["http://127.0.0.1:7001"]    # any node of the consortium; fail over in this order
    # chain_id = "cemp-hohhot-1"         # default: learned from the first node, then pinned in the outbox
    # genesis_hash = "9f2c..."            # hex; signatures cover it; learned and pinned like chain_id
    batch_max_readings = 500             # readings per signed tx
    flush_interval_s = 1.0               # sign + fsync buffered readings this often
    submit_max_txs = 1000                # txs per request
    commit_timeout_s = 10.0              # wait=commit per request
    retry_base_s = 0.2                   # backoff: full jitter, doubling up to retry_max_s
    retry_max_s = 30.0
    resync_timeout_s = 10.0              # restarted offline: sign with stored counters after this long
    progress_every_s = 10.0              # one progress line per interval
    log_level = "info"

    [quality]                            # defaults for every device
    gap_factor = 1.5                     # GAP_BEFORE after 1.5 × the expected interval
    max_clock_drift_s = 30
    [quality.quantities."energy.import"] # rules per quantity (see collector.quality.QuantityRules)
    counter = true
    register_bits = 32                   # wrap = 2**register_bits × register_scale
    register_scale = 10                  # Wh per register step (0.01 kWh)
    resolution = 10
    power_quantity = "power"             # STALE when the counter sticks while power > 0
    [quality.quantities.power]
    min_value = 0

    [mqtt]                               # only for type = "mqtt" sources
    host = "127.0.0.1"
    port = 1883
    # username = "..."; password_env = "CEMP_MQTT_PASSWORD"; client_id = "cemp-site-1"; reply = false

    [[devices]]
    handle = "88.123.45/101.1.1"
    key_file = "keys/101.1.1.key"        # the device's own Ed25519 key (``cemp keys new``)
    poll_interval_s = 10
    rated_power_w = 400000               # Wh counters: max rise/h; W gauges: max value
    # (a source field in Wh is treated as a counter unless its quality table says counter = false)
    # expected_interval_s = 10           # for pushing devices (MQTT): their own period
    [devices.source]
    type = "http"                        # http | mqtt | modbus | python
    url = "http://10.0.0.5/api/v1/pump-room"
    auth_token_env = "CEMP_CONTROL_TOKEN"   # or auth_token = "..."; auth_header/auth_scheme as needed
    timeout_s = 3
    ts_path = "ts"                       # device time (ms; ts_unit = "s" for seconds); default agent time
    fields = [
      { path = "energy_wh", quantity = "energy.heat", unit = "Wh" },
      { path = "supply_temp_c", quantity = "temp.supply", unit = "mdegC", scale = 1000 },
    ]
    [devices.quality.quantities."temp.supply"]
    min_value = -20000
    max_value = 150000
    stale_polls = 60

Other source types: ``mqtt`` (``product_key``, ``device_name``, ``properties = [{identifier, quantity,
unit, scale}]``), ``modbus`` (``host``, ``port``, ``unit_id``, ``profile``, ``timeout_s``; built by
``collector.modbus.ModbusSource``), ``python`` (``factory = "module:function"``, called as
``function(handle, table, base_dir)`` and returning a ``Source``, for embedders and tests).

Environment overrides: ``CEMP_COLLECT_NODES`` (comma-separated), ``CEMP_COLLECT_DATA_DIR``,
``CEMP_COLLECT_CHAIN_ID``, ``CEMP_COLLECT_LOG_LEVEL`` and ``CEMP_COLLECT_<KEY>`` for any numeric ``[agent]``
key (e.g. ``CEMP_COLLECT_FLUSH_INTERVAL_S=0.5``). Secrets stay out of the file: ``*_env`` keys name the
variable holding them, and passphrase-protected device keys read ``CEMP_KEY_PASSPHRASE``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.agent import AgentSettings, DeviceAgent, SiteAgent
from collector.httpsource import FieldMap, HttpSource
from collector.outbox import Outbox
from collector.quality import AlarmSink, QualityConfig, QuantityRules
from collector.sources import Source
from node.crypto import KeyFileError, read_key_file

ENV_PREFIX = "CEMP_COLLECT_"
SourceFactory = Callable[[str, Mapping[str, Any], Path], Source]


class CollectConfigError(Exception):
    pass


@dataclass
class CollectConfig:
    path: Path
    data_dir: Path
    settings: AgentSettings
    log_level: str
    quality: dict[str, Any]
    mqtt: dict[str, Any]
    devices: list[dict[str, Any]]
    base_dir: Path
    extra_sources: dict[str, SourceFactory] = field(default_factory=dict)


def load(path: Path, env: Mapping[str, str] | None = None) -> CollectConfig:
    env = os.environ if env is None else env
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CollectConfigError(f"{path}: {e}") from None
    base = path.parent
    agent = dict(doc.get("agent", {}))
    known = {f.name: f for f in dataclasses.fields(AgentSettings)}
    unknown = set(agent) - set(known) - {"data_dir", "log_level"}
    if unknown:
        raise CollectConfigError(f"{path}: unknown [agent] keys {sorted(unknown)}")
    if ENV_PREFIX + "NODES" in env:
        agent["nodes"] = [u.strip() for u in env[ENV_PREFIX + "NODES"].split(",") if u.strip()]
    for name in ("DATA_DIR", "CHAIN_ID", "GENESIS_HASH", "LOG_LEVEL"):
        if ENV_PREFIX + name in env:
            agent[name.lower()] = env[ENV_PREFIX + name]
    for name, f in known.items():
        v = env.get(ENV_PREFIX + name.upper())
        if v is not None and name not in ("nodes", "chain_id", "genesis_hash"):
            try:
                agent[name] = float(v) if f.type in ("float", float) else int(v)
            except ValueError:
                raise CollectConfigError(f"{ENV_PREFIX}{name.upper()}={v!r} is not a number") from None
    kwargs: dict[str, Any] = {}
    for k, v in agent.items():
        if k in known:
            kwargs[k] = tuple(v) if k == "nodes" else v
    if isinstance(kwargs.get("nodes"), str):
        kwargs["nodes"] = (kwargs["nodes"],)
    try:
        settings = AgentSettings(**kwargs)
    except TypeError as e:
        raise CollectConfigError(f"{path}: [agent]: {e}") from None
    data_dir = Path(str(agent.get("data_dir", "collector-data")))
    devices = doc.get("devices", [])
    if not isinstance(devices, list) or not devices:
        raise CollectConfigError(f"{path}: no [[devices]]")
    for i, d in enumerate(devices):
        for k in ("handle", "key_file", "source"):
            if k not in d:
                raise CollectConfigError(f"{path}: devices[{i}] has no {k!r}")
    return CollectConfig(
        path=path,
        data_dir=data_dir if data_dir.is_absolute() else base / data_dir,
        settings=settings,
        log_level=str(agent.get("log_level", "info")),
        quality=dict(doc.get("quality", {})),
        mqtt=dict(doc.get("mqtt", {})),
        devices=devices,
        base_dir=base,
    )


def quantity_rules(
    table: Mapping[str, Any], rated_power_w: int | None, quantity: str, unit_hint: str
) -> QuantityRules:
    t = dict(table)
    bits, scale = t.pop("register_bits", None), t.pop("register_scale", 1)
    if bits is not None and "wrap" not in t:
        t["wrap"] = (1 << int(bits)) * int(scale)
    names = {f.name for f in dataclasses.fields(QuantityRules)}
    bad = set(t) - names
    if bad:
        raise CollectConfigError(f"quality rules for {quantity}: unknown keys {sorted(bad)}")
    rules = QuantityRules(**t)
    if rated_power_w is not None:
        if rules.counter and rules.max_per_hour is None and unit_hint == "Wh":
            rules = dataclasses.replace(rules, max_per_hour=rated_power_w)
        if not rules.counter and rules.max_value is None and unit_hint == "W":
            rules = dataclasses.replace(rules, max_value=rated_power_w)
    return rules


def _units(src: Mapping[str, Any]) -> dict[str, str]:
    items = src.get("fields", src.get("properties", []))
    return {str(f.get("quantity")): str(f.get("unit")) for f in items if isinstance(f, dict)}


def quality_config(cfg: CollectConfig, dev: Mapping[str, Any], poll_interval_s: float) -> QualityConfig:
    site_q, dev_q = cfg.quality, dict(dev.get("quality", {}))
    tables: dict[str, dict[str, Any]] = {}
    for q, t in {**site_q.get("quantities", {})}.items():
        tables[q] = dict(t)
    for q, t in dev_q.get("quantities", {}).items():
        tables[q] = {**tables.get(q, {}), **t}
    rated = dev.get("rated_power_w")
    units = _units(dev["source"])
    for q, u in units.items():
        if q not in tables and u == "Wh":
            tables[q] = {"counter": True}  # energy in Wh is a cumulative register unless a table says not
        elif q not in tables and u == "W" and rated is not None:
            tables[q] = {}  # so rated power becomes its physical maximum
    rules = {q: quantity_rules(t, rated, q, units.get(q, "")) for q, t in tables.items()}
    merged = {
        **{k: v for k, v in site_q.items() if k != "quantities"},
        **{k: v for k, v in dev_q.items() if k != "quantities"},
    }
    expected = float(dev.get("expected_interval_s", poll_interval_s))
    return QualityConfig(
        expected_interval_ms=int(expected * 1000),
        gap_factor=float(merged.get("gap_factor", 1.5)),
        max_clock_drift_ms=int(float(merged.get("max_clock_drift_s", 30)) * 1000),
        restamp_future_ms=int(float(merged.get("restamp_future_s", 240)) * 1000),
        rules=rules,
    )


def _secret(t: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    if key in t:
        return str(t[key])
    name = t.get(key + "_env")
    if name is None:
        return None
    if name not in env:
        raise CollectConfigError(f"{key}_env names {name}, which is not set")
    return env[name]


class Builder:
    """Turns a ``CollectConfig`` into sources, devices and a ``SiteAgent`` (one MQTT hub shared)."""

    def __init__(self, cfg: CollectConfig, env: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.env = os.environ if env is None else env
        self._hub: Any = None
        self.factories: dict[str, SourceFactory] = {
            "http": self._http,
            "mqtt": self._mqtt,
            "modbus": self._modbus,
            "python": self._python,
            **cfg.extra_sources,
        }

    def source(self, handle: str, t: Mapping[str, Any]) -> Source:
        kind = str(t.get("type", ""))
        f = self.factories.get(kind)
        if f is None:
            raise CollectConfigError(
                f"{handle}: unknown source type {kind!r} (known: {sorted(self.factories)})"
            )
        return f(handle, t, self.cfg.base_dir)

    def _http(self, handle: str, t: Mapping[str, Any], base: Path) -> Source:
        fields = [
            FieldMap(str(f["path"]), str(f["quantity"]), str(f["unit"]), f.get("scale", 1))
            for f in t["fields"]
        ]
        return HttpSource(
            handle,
            str(t["url"]),
            fields,
            auth_token=_secret(t, "auth_token", self.env),
            auth_header=str(t.get("auth_header", "Authorization")),
            auth_scheme=str(t.get("auth_scheme", "Bearer")),
            headers={str(k): str(v) for k, v in dict(t.get("headers", {})).items()},
            timeout_s=float(t.get("timeout_s", 3.0)),
            ts_path=t.get("ts_path"),
            ts_unit=str(t.get("ts_unit", "ms")),
        )

    def _mqtt(self, handle: str, t: Mapping[str, Any], base: Path) -> Source:
        from collector.mqttsource import AlinkHub, PropertyMap

        if self._hub is None:
            m = self.cfg.mqtt
            self._hub = AlinkHub(
                str(m.get("host", "127.0.0.1")),
                int(m.get("port", 1883)),
                username=m.get("username"),
                password=_secret(m, "password", self.env),
                client_id=m.get("client_id"),
                reply=bool(m.get("reply", False)),
            )
        props = [
            PropertyMap(str(p["identifier"]), str(p["quantity"]), str(p["unit"]), p.get("scale", 1))
            for p in t["properties"]
        ]
        src: Source = self._hub.source(handle, str(t["product_key"]), str(t["device_name"]), props)
        return src

    def _modbus(self, handle: str, t: Mapping[str, Any], base: Path) -> Source:
        try:
            modbus = importlib.import_module("collector.modbus")
        except ImportError as e:
            raise CollectConfigError(f"{handle}: Modbus support is not available: {e}") from None
        src: Source = modbus.ModbusSource(
            handle,
            str(t.get("host", "127.0.0.1")),
            int(t.get("port", 502)),
            int(t.get("unit_id", 1)),
            str(t["profile"]),
            float(t.get("timeout_s", 2.0)),
        )
        return src

    def _python(self, handle: str, t: Mapping[str, Any], base: Path) -> Source:
        spec = str(t.get("factory", ""))
        module, _, func = spec.partition(":")
        if not module or not func:
            raise CollectConfigError(f"{handle}: factory must be 'module:function', not {spec!r}")
        fn = getattr(importlib.import_module(module), func)
        src: Source = fn(handle, t, base)
        return src

    def device(self, d: Mapping[str, Any], alarms: AlarmSink) -> DeviceAgent:
        handle = str(d["handle"])
        kf = Path(str(d["key_file"]))
        passphrase = self.env.get("CEMP_KEY_PASSPHRASE")
        try:
            key = read_key_file(
                kf if kf.is_absolute() else self.cfg.base_dir / kf,
                passphrase.encode() if passphrase else None,
            )
        except KeyFileError as e:
            raise CollectConfigError(f"{handle}: {e}") from None
        interval = float(d.get("poll_interval_s", 10.0))
        return DeviceAgent(
            handle,
            key,
            [self.source(handle, d["source"])],
            poll_interval_s=interval,
            quality=quality_config(self.cfg, d, interval),
            alarms=alarms,
        )

    def site(self, alarms: AlarmSink | None = None) -> SiteAgent:
        # Alarms also go to data_dir/alarms.jsonl, which ``cemp alarms --file`` lists with their meaning.
        alarms = alarms or AlarmSink(path=self.cfg.data_dir / "alarms.jsonl")
        devices = [self.device(d, alarms) for d in self.cfg.devices]
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True)
        outbox = Outbox(self.cfg.data_dir / "outbox.sqlite")
        return SiteAgent(devices, outbox, self.cfg.settings, alarms=alarms)


def build_site(
    path: Path, env: Mapping[str, str] | None = None, alarms: AlarmSink | None = None
) -> SiteAgent:
    return Builder(load(path, env), env).site(alarms)
