"""``docker/``: the compose file, Dockerfile, entry point, Prometheus rules and Grafana dashboard, checked without
a Docker engine (none is installed here; hadolint and promtool are not available either).

- the compose file parses, names only services, volumes, networks, secrets and paths that exist;
- every CEMP_* variable it sets is read: a node service's by ``node.config.load_config`` (changing the variable
  changes the loaded config), the others' by the entry point or the code it starts;
- the Dockerfile: slim multi-stage base, copies only paths that exist, runs as a non-root user, health check;
- the compose services' exact commands and environments, with container paths mapped to a temp dir and service
  names to loopback ports, run as plain processes through ``docker/entrypoint.sh``: three nodes elect a leader,
  devices are registered, the collector's readings from the simulators commit, the health check passes; and
  every metric the alert rules and the dashboard query exists on those running processes' ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from node.config import load_config
from tests.support.procs import spawn
from tests.support.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PROM_BUILTIN = {"up"}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (no promtool here: strings, label matchers, ranges, grouping
    clauses and function names are removed, what is left that looks like a name is a metric)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if m.group(2) or m.group(1).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(1))
    return names


def test_metric_name_parser() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, instance) (rate(a_bucket{x="y"}[5m]))) > 5'
    ) == {"a_bucket"}
    assert metric_names("(max(h) - on() group_right() h) > 50 or lag > 1e3") == {"h", "lag"}
    assert metric_names('up{job="cemp-node"} == 0') == {"up"}


def queried_metrics() -> set[str]:
    names: set[str] = set()
    alerts = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    assert {"CempNodeDown", "CempNoLeader", "CempNodeLagging", "CempOutboxGrowing", "CempDiskFilling"} <= {
        r["alert"] for r in rules
    }
    for r in rules:
        names |= metric_names(r["expr"])
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "cemp.json").read_text())
    for p in dash["panels"]:
        for t in p["targets"]:
            names |= metric_names(t["expr"])
    return names


def test_prometheus_config_and_provisioning() -> None:
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert {j["job_name"] for j in prom["scrape_configs"]} == {"cemp-node", "cemp-collector"}
    node_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "cemp-node")
    assert node_job["scheme"] == "https" and node_job["tls_config"]["ca_file"].startswith("/cemp/consortium/")
    mounts = [v.split(":")[1] for v in compose()["services"]["prometheus"]["volumes"]]
    assert "/cemp/consortium" in mounts  # the CA file is on a volume Prometheus mounts
    services = compose()["services"]
    for j in prom["scrape_configs"]:
        for sc in j["static_configs"]:
            for t in sc["targets"]:
                host, _port = t.split(":")
                assert host in services, t
    for f in (DOCKER / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(f.read_text())["apiVersion"] == 1


def test_compose_references_exist() -> None:
    doc = compose()
    services: dict[str, Any] = doc["services"]
    assert {
        "owner-1",
        "equipment-1",
        "regulator-1",
        "plant-sim",
        "control-sim",
        "collector",
        "prometheus",
        "grafana",
    } <= set(services)
    for name, svc in services.items():
        image = svc["image"]
        assert image == "cemp:latest" or re.fullmatch(
            r"(prom/prometheus|grafana/grafana):v?\d+\.\d+\.\d+", image
        ), image
        if "build" in svc:
            assert (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for net in svc.get("networks", []):
            assert net in doc["networks"], (name, net)
        for s in svc.get("secrets", []):
            assert (DOCKER / doc["secrets"][s]["file"]).is_file()
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), (name, v)
            else:
                assert src in doc["volumes"], (name, v)
        if image == "cemp:latest":
            assert svc["command"][0] in ("init", "register", "node", "collect", "sim-modbus", "sim-control")
    assert any(s.get("build") for s in services.values())


def test_dockerfile() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms == ["python:3.11-slim", "python:3.11-slim"]
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), src
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*cemp-entrypoint\", \"healthcheck", text, re.M)
    assert "/v1/status" in (DOCKER / "entrypoint.sh").read_text()
    # every package the project installs is copied into the build stage
    pkgs = re.findall(r'"(\w+)\*"', (ROOT / "pyproject.toml").read_text())
    for p in pkgs:
        assert f"COPY {p} ./{p}" in text, p


def node_envs() -> dict[str, dict[str, str]]:
    return {
        n: {k: str(v) for k, v in s["environment"].items()}
        for n, s in compose()["services"].items()
        if s.get("command") == ["node"]
    }


def test_every_node_variable_is_read_by_the_config_loader(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text("# settings from the environment\n")
    envs = node_envs()
    assert set(envs) == {"owner-1", "equipment-1", "regulator-1"}
    for n, env in envs.items():
        assert {"CEMP_TLS_CERT", "CEMP_TLS_KEY", "CEMP_TLS_CA"} <= set(env), f"{n} does not run TLS"
        # the config loader checks that TLS files exist: put them (and their changed names) under tmp_path
        env = {k: str(tmp_path / v.lstrip("/")) if k.startswith("CEMP_TLS_") else v for k, v in env.items()}
        for k, v in env.items():
            if k.startswith("CEMP_TLS_"):
                for f in (Path(v), Path(v + "x")):
                    f.parent.mkdir(parents=True, exist_ok=True)
                    f.write_text("PEM")
        base = load_config(cfg, env=env)
        assert base.tls_cert is not None and base.tls_ca is not None
        assert base.node_id == env["CEMP_NODE_ID"] and str(base.data_dir) == env["CEMP_DATA_DIR"]
        assert base.log_format == "json" and base.api_port == 7001
        for k, v in env.items():
            changed = dict(env)
            changed[k] = {"CEMP_API_PORT": "7009", "CEMP_LOG_FORMAT": "text"}.get(k, v + "x")
            assert load_config(cfg, env=changed) != base, f"{k} is set by the compose file but not read"


def test_every_other_variable_is_read() -> None:
    code = "\n".join(
        p.read_text()
        for p in [DOCKER / "entrypoint.sh", ROOT / "cemp" / "deploy.py", ROOT / "collector" / "cli.py"]
    )
    collector_config = (ROOT / "collector" / "config.py").read_text()
    for name, svc in compose()["services"].items():
        for k in svc.get("environment", {}):
            if k.startswith("CEMP_COLLECT_"):  # collector.config: ENV_PREFIX + the [agent] key
                assert 'ENV_PREFIX = "CEMP_COLLECT_"' in collector_config and k[13:] in collector_config, k
            elif k.startswith("CEMP_") and svc.get("command") != ["node"]:
                assert re.search(rf'(\$\{{?{k}\b|"{k}")', code), f"{name}: {k} is set but nothing reads it"


# --- the compose services as plain processes ------------------------------------------------------------------
class Translate:
    """Container paths -> a temp dir (per volume), service names -> loopback ports."""

    def __init__(self, tmp: Path, doc: dict[str, Any]) -> None:
        self.tmp = tmp
        self.doc = doc
        self.ports = {
            "owner-1:7001": free_port(),
            "equipment-1:7001": free_port(),
            "regulator-1:7001": free_port(),
            "plant-sim:5020": free_port(),
            "control-sim:8088": free_port(),
            "collector:9108": free_port(),
        }

    def mounts(self, service: str) -> dict[str, Path]:
        out = {}
        for v in self.doc["services"][service].get("volumes", []):
            src, dst = v.split(":")[:2]
            out[dst] = self.tmp / "volumes" / src
        return out

    def value(self, service: str, key: str, v: str) -> str:
        for hp, port in self.ports.items():
            v = v.replace(hp, f"127.0.0.1:{port}")
        for dst, src in sorted(self.mounts(service).items(), key=lambda kv: -len(kv[0])):
            if v == dst or v.startswith(dst + "/"):
                v = str(src) + v[len(dst) :]
        port_of = {
            "CEMP_API_PORT": f"{service}:7001",
            "CEMP_SIM_MODBUS_PORT": "plant-sim:5020",
            "CEMP_SIM_CONTROL_PORT": "control-sim:8088",
            "CEMP_COLLECTOR_METRICS_PORT": "collector:9108",
        }
        if key in port_of:
            v = str(self.ports[port_of[key]])
        if key.endswith("_HOST") and v == "0.0.0.0":
            v = "127.0.0.1"
        return v

    def env(self, service: str) -> dict[str, str]:
        svc = self.doc["services"][service]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEMP_")}
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        for k, v in svc.get("environment", {}).items():
            env[k] = self.value(service, k, str(v))
            assert not env[k].startswith("/cemp"), f"{service}: {k}={v} is not on a volume of the service"
        for src in self.mounts(service).values():
            src.mkdir(parents=True, exist_ok=True)
        return env

    def run(self, service: str, log: Path, wait: bool = False) -> subprocess.Popen[bytes]:
        cmd = ["sh", str(DOCKER / "entrypoint.sh"), *self.doc["services"][service]["command"]]
        with open(log, "ab") as f:
            p = spawn(cmd, env=self.env(service), stdout=f, stderr=subprocess.STDOUT)
        if wait:
            assert p.wait(180) == 0, log.read_text()[-3000:]
        return p


TLS_CA: list[ssl.SSLContext] = []
"""The consortium CA that ``init`` made, once it has run (the nodes serve HTTPS)."""


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5, context=TLS_CA[0] if TLS_CA else None) as r:
        return str(r.read().decode())


def wait_for(what: str, check: Any, timeout: float, logs: Path) -> Any:
    end = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < end:
        try:
            v = check()
            if v:
                return v
        except OSError as e:
            last = e
        time.sleep(0.5)
    tails = "\n".join(f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"{what} not within {timeout} s ({last})\n{tails}")


def sample_names(text: str) -> set[str]:
    out = set()
    for fam in text_string_to_metric_families(text):
        out.add(fam.name)
        if fam.type == "counter":  # declared (HELP/TYPE), even before its first labelled sample
            out.add(fam.name + "_total")
        out |= {s.name for s in fam.samples}
    return out


@pytest.mark.slow
def test_compose_services_run_as_processes_and_serve_every_queried_metric(tmp_path: Path) -> None:
    doc = compose()
    tr = Translate(tmp_path, doc)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tr.run("init", logs / "init.log", wait=True)
        ca = tr.value("owner-1", "CEMP_TLS_CA", doc["services"]["owner-1"]["environment"]["CEMP_TLS_CA"])
        TLS_CA[:] = [ssl.create_default_context(cafile=ca)]
        for n in ("owner-1", "equipment-1", "regulator-1"):
            procs.append(tr.run(n, logs / f"{n}.log"))
        url = {
            n: f"https://127.0.0.1:{tr.ports[f'{n}:7001']}" for n in ("owner-1", "equipment-1", "regulator-1")
        }
        wait_for("a leader", lambda: json.loads(get(url["owner-1"] + "/v1/status")).get("leader"), 90, logs)
        hc = subprocess.run(
            ["sh", str(DOCKER / "entrypoint.sh"), "healthcheck"], env=tr.env("owner-1"), timeout=30
        )
        assert hc.returncode == 0
        tr.run("register", logs / "register.log", wait=True)
        for s in ("plant-sim", "control-sim", "collector"):
            procs.append(tr.run(s, logs / f"{s}.log"))
        col = f"http://127.0.0.1:{tr.ports['collector:9108']}/metrics"

        def committed() -> bool:
            for fam in text_string_to_metric_families(get(col)):
                for s in fam.samples:
                    if s.name == "cemp_collector_committed_readings_total" and s.value > 0:
                        return True
            return False

        wait_for("committed readings from the simulators", committed, 150, logs)
        for n in url:  # every peer link is up over TLS, none refused a certificate
            st = json.loads(get(url[n] + "/v1/status"))
            assert all(st["peers_reachable"].values()), (n, st["peers_reachable"])
            assert not [k for k in st["peer_drops"] if k.startswith("tls_")], (n, st["peer_drops"])
        logged = (logs / "owner-1.log").read_text()
        first_json = next(line for line in logged.splitlines() if line.startswith("{"))
        assert "ts" in json.loads(first_json)  # CEMP_LOG_FORMAT=json from the compose file
        exposed = sample_names(get(url["owner-1"] + "/metrics")) | sample_names(get(col)) | PROM_BUILTIN
        missing = queried_metrics() - exposed
        assert not missing, f"queried by docker/ but not exposed: {sorted(missing)}"
    finally:
        TLS_CA.clear()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
