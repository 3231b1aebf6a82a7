#!/usr/bin/env bash
# `make queries-check`: starts the dev broker and the four services as `make smoke` does
# (fresh databases named queries_*, default ports 8081-8084 and 9092, which must be
# free), loads the demo catalog, and runs deploy/compose/test_queries.py: a real
# Prometheus scrapes the services while scripts/demo.py places orders, then every
# Grafana panel query and every alert expression is evaluated and must name only metrics
# the services export. Stops everything on exit.
#
# Needs the binaries (`cargo build --workspace --bins`; QUERIES_BIN_DIR to use others)
# and a `prometheus` binary (installed with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

server="${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
bin="${QUERIES_BIN_DIR:-target/debug}"
logs=".run/queries"

if ! command -v prometheus >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

# shellcheck source=scripts/stack.sh
source scripts/stack.sh
stack_check_ports
trap stack_stop EXIT
stack_start queries
if ! stack_wait_ready \
  || ! DATABASE_URL="$server/queries_inventory" "$bin/inventory-service" seed-demo >"$logs/seed.log" 2>&1 \
  || ! python3 deploy/compose/test_queries.py; then
  stack_tail_logs
  exit 1
fi
