#!/usr/bin/env bash
# Starts the dev broker and the four services by hand, as the README describes (only
# DATABASE_URL per service plus ADMIN_EMAIL/ADMIN_PASSWORD for user-service, and
# JWT_ALLOW_DEV_KEY=true for all; everything else at its documented default, KAFKA_BROKERS
# included), then walks the main flows over
# HTTP with scripts/rest_walk.py and fuzzes every API with scripts/fuzz-api.sh (with a
# fixed seed, so that a run is repeatable).
#
# Uses fresh databases named smoke_* on PG_SERVER_URL and the default ports 8081-8084 and
# 9092, which must be free. Stops everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

server="${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
bin="${SMOKE_BIN_DIR:-target/debug}"
logs=".run/smoke"
mkdir -p "$logs"

# shellcheck source=scripts/stack.sh
source scripts/stack.sh
stack_check_ports
trap stack_stop EXIT
stack_start smoke

if ! python3 scripts/rest_walk.py || ! FUZZ_SEED="${FUZZ_SEED:-20261122}" scripts/fuzz-api.sh; then
  stack_tail_logs
  exit 1
fi
