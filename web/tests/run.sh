#!/usr/bin/env bash
# `make browser-test`: the storefront in Debian's Chromium, driven by playwright-core,
# against a stack like `make run`'s — the dev broker, the four debug binaries on fresh
# databases, the demo catalog and web/serve.py — then everything is stopped.
#
# First the fast checks: the proxy against stand-in services (test_serve.py) and the saga
# view's unit tests. Every port is picked free, so this runs beside `make run` or another
# copy of itself. Logs, and screenshots of a failed step, go to web/tests/output/ (ignored
# by git). Needs /usr/bin/chromium (or CHROMIUM) and `npm ci` in web/tests (done here when
# node_modules is missing); `apt-get install chromium`, never `npx playwright install`.
#
#   BROWSER_TEST_DB_PREFIX   database names PREFIX_users, ... (default browser_test);
#                            they are dropped and created again
#   PG_SERVER_URL            the PostgreSQL server (default postgres://postgres@127.0.0.1:5432)
#   EVENT_BUS / AMQP_URL     rabbitmq instead of the dev broker, as for the services
#   SAVE_DOCS_SCREENSHOT=1   also write the saga view to docs/storefront-saga.png
set -euo pipefail
cd "$(dirname "$0")/../.."

server="${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
prefix="${BROWSER_TEST_DB_PREFIX:-browser_test}"
bin="target/debug"
out="web/tests/output"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export ADMIN_EMAIL="${ADMIN_EMAIL:-admin@example.com}" ADMIN_PASSWORD="${ADMIN_PASSWORD:-admin-password}"

if [ ! -x "$CHROMIUM" ]; then
  echo "no Chromium at $CHROMIUM: apt-get install -y chromium (or set CHROMIUM)" >&2
  exit 1
fi
[ -f web/tests/node_modules/playwright-core/package.json ] || npm ci --prefix web/tests --no-audit --no-fund
rm -rf "$out" && mkdir -p "$out"

echo "== the proxy against stand-in services"
python3 web/tests/test_serve.py > "$out/test_serve.log" || { cat "$out/test_serve.log"; exit 1; }
tail -n1 "$out/test_serve.log"
echo "== the saga view's unit tests"
(cd web/tests && node --test unit/)

pids=()
broker_pid=
# The services first (they flush their outboxes to the broker while they stop), then the
# broker.
stop() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$broker_pid" ]; then kill -TERM "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
}
trap stop EXIT
tail_logs() {
  local log
  for log in "$out"/*.log; do echo "## $log" >&2; tail -n 15 "$log" >&2; done
}

read -r user_port order_port payment_port inventory_port web_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(5)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))')

for db in users orders payments inventory; do
  PGOPTIONS="-c client_min_messages=warning" psql "$server/postgres" -qtA -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS ${prefix}_$db WITH (FORCE)" -c "CREATE DATABASE ${prefix}_$db" >/dev/null
done

if [ "${EVENT_BUS:-kafka}" = kafka ]; then
  DEV_BROKER_ADDR=127.0.0.1:0 DEV_BROKER_ADDRESS_FILE="$out/broker-address" "$bin/dev-broker" >"$out/dev-broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do [ -s "$out/broker-address" ] && break; sleep 0.1; done
  [ -s "$out/broker-address" ] || { tail_logs; echo "the dev broker did not start" >&2; exit 1; }
  export KAFKA_BROKERS; KAFKA_BROKERS=$(cat "$out/broker-address")
fi

export JWT_ALLOW_DEV_KEY=true LOG_FORMAT=json RUST_LOG="${RUST_LOG:-info}"
export USER_SERVICE_URL="http://127.0.0.1:$user_port" INVENTORY_SERVICE_URL="http://127.0.0.1:$inventory_port"
service() {
  local name=$1 port=$2 db=$3
  HTTP_ADDR="127.0.0.1:$port" DATABASE_URL="$server/${prefix}_$db" "$bin/$name-service" >"$out/$name.log" 2>&1 &
  pids+=($!)
}
service user "$user_port" users
service inventory "$inventory_port" inventory
service order "$order_port" orders
service payment "$payment_port" payments
echo "== waiting for the services"
for port in "$user_port" "$inventory_port" "$order_port" "$payment_port"; do
  for _ in $(seq 1 900); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ] && continue 2
    sleep 0.1
  done
  tail_logs
  echo "the service on port $port is not ready after 90 s" >&2
  exit 1
done
DATABASE_URL="$server/${prefix}_inventory" RUST_LOG=warn "$bin/inventory-service" seed-demo >>"$out/inventory.log" 2>&1

python3 web/serve.py --listen "127.0.0.1:$web_port" --user "$USER_SERVICE_URL" \
  --order "http://127.0.0.1:$order_port" --payment "http://127.0.0.1:$payment_port" \
  --inventory "$INVENTORY_SERVICE_URL" >"$out/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$web_port/healthz" && break; sleep 0.1; done

echo "== the storefront in Chromium at http://127.0.0.1:$web_port/"
if ! STOREFRONT_URL="http://127.0.0.1:$web_port/" node --test --test-concurrency=1 web/tests/browser/; then
  tail_logs
  echo "screenshots of the failed step: $out/" >&2
  exit 1
fi
