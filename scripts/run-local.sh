#!/usr/bin/env bash
# `make run`: the whole system on this machine, without Docker.
#
# Builds the binaries, creates the four databases on the local PostgreSQL (the server of
# DATABASE_URL, default postgres://postgres@127.0.0.1:5432), starts the dev broker (a
# Kafka-protocol broker on 127.0.0.1:9092) unless KAFKA_BROKERS names another one, starts
# the four services with prefixed, coloured log lines, waits until they are ready, loads
# the demo catalog and prints where to look. Ctrl-C stops everything.
# Traces: unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) names a collector,
# it starts dev-otlp (an OTLP/HTTP receiver on 127.0.0.1:4318, spans kept in memory) and
# points the services at it; `make demo` draws each order's trace from it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The server part of DATABASE_URL (scheme, user, host, port), without a database name.
server=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.scheme}://{p.netloc}")' \
  "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}")
bin="target/debug"
export PGOPTIONS="-c client_min_messages=warning"

if ! psql "$server/postgres" -qtAc 'select 1' >/dev/null 2>&1; then
  cat >&2 <<MSG
PostgreSQL is not reachable at $server.
Start it (e.g. 'sudo service postgresql start' or 'pg_ctlcluster 15 main start'), or set
DATABASE_URL to a server where user may create databases, then run 'make run' again.
MSG
  exit 1
fi
for port in 8080 8081 8082 8083 8084; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "Port $port is in use: another copy of the services may be running. Stop it first." >&2
    exit 1
  fi
done

# Cargo's own output is shown (its progress bar on a terminal, a "Compiling" line per crate
# otherwise): a first build takes minutes, and a silent one looks hung.
if [ -x "$bin/user-service" ]; then
  echo "building (debug; only what changed since the last run, usually seconds)..."
else
  echo "first build: cargo compiles the services and the ~400 crates they depend on (debug)."
  echo "That takes about 10 minutes on 2 cores, less with more; later runs take seconds."
fi
SECONDS=0
cargo build --bins
if [ "$SECONDS" -ge 60 ]; then echo "built in $((SECONDS / 60)) min $((SECONDS % 60)) s"; fi

for db in users orders payments inventory; do
  if [ "$(psql "$server/postgres" -qtAc "select 1 from pg_database where datname = '$db'")" != 1 ]; then
    psql "$server/postgres" -qc "create database $db" >/dev/null
    echo "created database $db"
  fi
done

pids=()
broker_pid=
otlp_pid=
stopping=0
# The services stop first (they drain their work and flush their outboxes, which needs
# the broker), then the broker.
stop() {
  [ "$stopping" = 1 ] && return
  stopping=1
  printf '\nstopping...\n'
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$broker_pid" ]; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  if [ -n "$otlp_pid" ]; then
    kill -TERM "$otlp_pid" 2>/dev/null || true
    wait "$otlp_pid" 2>/dev/null || true
  fi
  echo "stopped."
}
trap stop EXIT
# Ctrl-C (or a SIGTERM) is how this script is meant to end: once stop has run, that is a
# success, so exit 0 (an exit of 130 would make `make run` end with "Error 130").
trap 'exit 0' INT TERM

# Runs "$@" with every output line prefixed by a coloured name. The prefixing loop ignores
# Ctrl-C (which reaches the whole process group): it ends when its process closes the
# output, so that the lines a service logs while it shuts down are still shown.
run() {
  local name=$1 colour=$2; shift 2
  "$@" > >(trap '' INT; while IFS= read -r line; do printf '\033[%sm%-10s\033[0m %s\n' "$colour" "$name" "$line"; done) 2>&1 &
  pids+=($!)
}

# The services read EVENT_BUS without regard to case; so does this script.
bus=$(printf '%s' "${EVENT_BUS:-kafka}" | tr '[:upper:]' '[:lower:]')
if [ -z "${KAFKA_BROKERS:-}" ] && [ "$bus" = kafka ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
    echo "something already listens on 127.0.0.1:9092; using it as the Kafka broker"
  else
    # In a session of its own, so that Ctrl-C (sent to the whole foreground process group)
    # reaches the services but not the broker they still need while they shut down.
    run broker 35 setsid "$bin/dev-broker"
    broker_pid=${pids[-1]}
    # The dev broker holds an empty fetch for the whole fetch.wait.max.ms even when a
    # message arrives meanwhile: with the default 500 ms, every saga hop would wait for it.
    export KAFKA_FETCH_WAIT_MAX_MS="${KAFKA_FETCH_WAIT_MAX_MS:-10}"
    unset 'pids[-1]'
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done
  fi
fi

if [ -z "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ] && [ -z "${OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:-}" ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/4318) 2>/dev/null; then
    echo "something already listens on 127.0.0.1:4318; sending it the traces (OTLP/HTTP)"
  else
    # Like the broker: its own session, stopped after the services flushed their spans.
    run traces 90 setsid env DEV_OTLP_ADDR=127.0.0.1:4318 "$bin/dev-otlp"
    otlp_pid=${pids[-1]}
    unset 'pids[-1]'
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/4318) 2>/dev/null && break; sleep 0.1; done
  fi
  export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
  # Spans leave within half a second, so that `make demo` can draw them right away.
  export OTEL_BSP_SCHEDULE_DELAY="${OTEL_BSP_SCHEDULE_DELAY:-500}"
fi

export LOG_FORMAT="${LOG_FORMAT:-pretty}" RUST_LOG="${RUST_LOG:-info}"
# A development stack: user-service signs with the public key of config/dev/ and the others
# accept it. Without this flag user-service refuses to start with no JWT_SIGNING_KEY.
export JWT_ALLOW_DEV_KEY=true
run user 32 env DATABASE_URL="$server/users" ADMIN_EMAIL="${ADMIN_EMAIL:-admin@example.com}" \
  ADMIN_PASSWORD="${ADMIN_PASSWORD:-admin-password}" "$bin/user-service"
run inventory 33 env DATABASE_URL="$server/inventory" "$bin/inventory-service"
run order 34 env DATABASE_URL="$server/orders" "$bin/order-service"
run payment 36 env DATABASE_URL="$server/payments" "$bin/payment-service"

# The banner's line for the broker the services actually use (EVENT_BUS decides, as in the
# services), so that a RabbitMQ run does not name Kafka on 9092. The URL's password is left
# out: the banner is for screens and screenshots.
broker_line() {
  if [ "$bus" = rabbitmq ]; then
    local url
    if [ -n "${AMQP_URL:-}" ]; then
      url=$(printf '%s' "$AMQP_URL" | sed -E 's#^(amqps?://[^:@/]*):[^@/]*@#\1:***@#')
    elif [ -n "${AMQP_URL_FILE:-}" ]; then
      url="the URL in $AMQP_URL_FILE"
    else
      url="amqp://guest:***@127.0.0.1:5672/%2f (the default)"
    fi
    printf 'RabbitMQ       %s' "$url"
  elif [ -n "$broker_pid" ]; then
    printf 'Kafka          127.0.0.1:9092 (dev-broker, started here)'
  else
    printf 'Kafka          %s' "${KAFKA_BROKERS:-127.0.0.1:9092 (already running, not started here)}"
  fi
}

# shellcheck source=scripts/stack.sh
source scripts/stack.sh
if ! stack_wait_ready; then
  echo "see the service's lines above" >&2
  exit 1
fi

DATABASE_URL="$server/inventory" LOG_FORMAT=pretty RUST_LOG=warn "$bin/inventory-service" seed-demo

# The storefront and the API on one origin, as the compose gateway serves them
# (web/serve.py, standard library only; docs/storefront.md).
run web 37 python3 web/serve.py --listen 127.0.0.1:8080
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.1; done

cat <<MSG

  All four services are ready. Demo catalog loaded.

  Storefront     http://127.0.0.1:8080/   (open this: the shop, and each order's saga live)
  APIs           user http://127.0.0.1:8081   order http://127.0.0.1:8082
                 payment http://127.0.0.1:8083   inventory http://127.0.0.1:8084
  Swagger UI     http://127.0.0.1:8081/swagger-ui/ (and 8082, 8083, 8084)
  Metrics        http://127.0.0.1:8081/metrics (and 8082, 8083, 8084)
  Admin login    ${ADMIN_EMAIL:-admin@example.com} / ${ADMIN_PASSWORD:-admin-password}
  $(broker_line)
  Traces         ${OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:-$OTEL_EXPORTER_OTLP_ENDPOINT} (OTLP; with dev-otlp: GET /traces, /traces/<trace id>)

  In another terminal: make demo.   Ctrl-C here stops everything.

MSG
# Until Ctrl-C, or until a service exits by itself: then the others are stopped too, rather
# than leaving a half-running system behind.
wait -n "${pids[@]}" || true
echo "a service exited; see its last lines above" >&2
exit 1
