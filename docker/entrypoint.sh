#!/bin/sh
# Entry point of the CEMP image. Every setting comes from CEMP_* environment variables (node/config.py reads
# CEMP_NODE_ID, CEMP_DATA_DIR, CEMP_KEY_FILE, CEMP_GENESIS, CEMP_API_HOST, CEMP_API_PORT, CEMP_LOG_FORMAT,
# CEMP_TLS_CERT, CEMP_TLS_KEY, CEMP_TLS_CA; API clients (register, collect) trust CEMP_TLS_CA).
#   init          keys, genesis and collector.toml for the three orgs in $CEMP_CONSORTIUM_DIR (once)
#   register      register the plant's devices (owner's admin key) once a node has a leader
#   node          run one node; its TOML is empty and every setting comes from the environment
#   collect       run the collector agent ($CEMP_COLLECTOR_CONFIG)
#   sim-modbus    the plant's Modbus and DL/T 645 meter simulators
#   sim-control   the control system's HTTP API simulator
#   healthcheck   exit 0 if this container's node answers GET /v1/status (over HTTPS, checked against
#                 CEMP_TLS_CA, when CEMP_TLS_CERT is set)
#   anything else is run as a command (e.g. `cemp backup --data-dir /cemp/data --out /backup/x.cempbak`)
set -eu
: "${CEMP_CONSORTIUM_DIR:=/cemp/consortium}"
export CEMP_CONSORTIUM_DIR
cmd="${1:-node}"
[ $# -gt 0 ] && shift
case "$cmd" in
  init)
    exec cemp deploy init --dir "$CEMP_CONSORTIUM_DIR" "$@" ;;
  register)
    exec cemp deploy register --dir "$CEMP_CONSORTIUM_DIR" "$@" ;;
  node)
    : "${CEMP_NODE_ID:?set CEMP_NODE_ID (owner-1, equipment-1 or regulator-1)}"
    : "${CEMP_DATA_DIR:=/cemp/data}"
    : "${CEMP_KEY_FILE:=$CEMP_CONSORTIUM_DIR/keys/$CEMP_NODE_ID.node.key}"
    : "${CEMP_GENESIS:=$CEMP_CONSORTIUM_DIR/genesis.cemp}"
    : "${CEMP_API_HOST:=0.0.0.0}"
    export CEMP_NODE_ID CEMP_DATA_DIR CEMP_KEY_FILE CEMP_GENESIS CEMP_API_HOST
    mkdir -p "$CEMP_DATA_DIR"
    cfg="${CEMP_NODE_CONFIG:-$CEMP_DATA_DIR/node.toml}"
    [ -f "$cfg" ] || printf '# every setting comes from CEMP_* environment variables (see node/config.py)\n' >"$cfg"
    exec cemp node --config "$cfg" --log-level "${CEMP_LOG_LEVEL:-info}" "$@" ;;
  collect)
    exec cemp collect --config "${CEMP_COLLECTOR_CONFIG:-$CEMP_CONSORTIUM_DIR/collector.toml}" "$@" ;;
  sim-modbus)
    exec cemp sim modbus --host "${CEMP_SIM_HOST:-0.0.0.0}" --port "${CEMP_SIM_MODBUS_PORT:-5020}" "$@" ;;
  sim-control)
    exec cemp sim control-api --host "${CEMP_SIM_HOST:-0.0.0.0}" --port "${CEMP_SIM_CONTROL_PORT:-8088}" \
      --token "${CEMP_CONTROL_TOKEN:?set CEMP_CONTROL_TOKEN}" "$@" ;;
  healthcheck)
    exec python -c 'import os, ssl, urllib.request
tls = bool(os.environ.get("CEMP_TLS_CERT"))
ctx = ssl.create_default_context(cafile=os.environ.get("CEMP_TLS_CA") or None) if tls else None
url = "%s://127.0.0.1:%s/v1/status" % ("https" if tls else "http", os.environ.get("CEMP_API_PORT", "7001"))
urllib.request.urlopen(url, timeout=3, context=ctx)' ;;
  *)
    exec "$cmd" "$@" ;;
esac
