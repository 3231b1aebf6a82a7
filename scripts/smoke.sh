#!/usr/bin/env bash
# Starts the dev broker and the four services by hand, as the README describes (only
# DATABASE_URL per service plus ADMIN_EMAIL/ADMIN_PASSWORD for user-service; everything
# else at its documented default, KAFKA_BROKERS included), then walks the main flows over
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

for port in 8081 8082 8083 8084 9092; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop whatever listens there first" >&2
    exit 1
  fi
done

export PGOPTIONS="-c client_min_messages=warning"
declare -A databases=([user]=smoke_users [order]=smoke_orders [payment]=smoke_payments [inventory]=smoke_inventory)
for service in "${!databases[@]}"; do
  psql "$server/postgres" -qtA -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS ${databases[$service]} WITH (FORCE)" \
    -c "CREATE DATABASE ${databases[$service]}" >/dev/null
done

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT

start() {
  local service=$1; shift
  env "$@" "$bin/$service-service" >"$logs/$service.log" 2>&1 &
  pids+=($!)
}
env "$bin/dev-broker" >"$logs/dev-broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break
  sleep 0.1
done

start user DATABASE_URL="$server/smoke_users" ADMIN_EMAIL=admin@example.com ADMIN_PASSWORD=admin-password
start inventory DATABASE_URL="$server/smoke_inventory"
start order DATABASE_URL="$server/smoke_orders"
start payment DATABASE_URL="$server/smoke_payments"

if ! python3 scripts/rest_walk.py || ! FUZZ_SEED="${FUZZ_SEED:-20261122}" scripts/fuzz-api.sh; then
  echo "--- service logs (last lines) ---" >&2
  for service in dev-broker user inventory order payment; do
    echo "## $service" >&2
    tail -n 20 "$logs/$service.log" >&2 || true
  done
  exit 1
fi
