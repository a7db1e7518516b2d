# Two entry points that work on a fresh machine:
#   make demo   set up .venv, install, run a local node with simulated signed devices
#   make test   set up .venv, run lint, format check, type checks and the whole test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck unit bench benchdeps clean sysdeps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# System packages the tests need: a CJK font for generated bill images, Chromium for page tests, openssl for the
# TLS test. Installed with apt-get when missing (as root), else named.
FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
sysdeps:
	@missing=""; \
	test -e $(FONT) || missing="$$missing fonts-wqy-microhei"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "install these Debian packages first:$$missing"; exit 1; fi; \
	fi

demo: $(STAMP)
	$(BIN)/cemp demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy node consensus cemp access

unit: $(STAMP) sysdeps
	$(BIN)/pytest -q

test: lint typecheck unit

# Every benchmark from a fresh clone: the `bench` extra (pysyncobj, pandas, duckdb) into .venv, Debian's wrk and
# nginx (the resolver benchmark's load generator and reference server). Each script prints one JSON line last;
# those lines are collected, with the 1-minute load average before each, in bench-data/results.jsonl.
BENCH_STAMP := $(VENV)/.bench-installed
BENCHES ?= ledger cluster verify storage disk collector resolver web accounting intelligence

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

benchdeps:
	@missing=""; \
	for t in wrk nginx; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	command -v taskset >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "install these Debian packages first:$$missing"; exit 1; fi; \
	fi

bench: $(BENCH_STAMP) benchdeps
	@mkdir -p bench-data
	@set -e; for b in $(BENCHES); do \
	  load=$$(cut -d' ' -f1 /proc/loadavg); echo "== bench/$$b.py (load $$load)"; \
	  $(BIN)/python bench/$$b.py | tee bench-data/$$b.out; \
	  printf '{"bench": "%s", "load_avg_1m_before": %s, "result": %s}\n' "$$b" "$$load" "$$(tail -n1 bench-data/$$b.out)" \
	    >> bench-data/results.jsonl; \
	done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
