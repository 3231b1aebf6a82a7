# Sourced by scripts/smoke.sh and scripts/bench.sh: starts the four service binaries on
# their default ports (8081-8084), each with a fresh database, and, in Kafka mode, the dev
# broker on 9092. Set before calling:
#   server  the PostgreSQL server URL (postgres://postgres@127.0.0.1:5432)
#   bin     the directory of the binaries (target/debug or target/release)
#   logs    where each process writes its log
# Settings the services share (EVENT_BUS, AMQP_URL, RATE_LIMIT_PER_SECOND, ...) are taken
# from the caller's environment, as a deployment would pass them.

stack_pids=()
stack_broker_pid=

# Fails when something already listens on a port the stack needs.
stack_check_ports() {
  local port
  for port in 8081 8082 8083 8084 9092; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port $port is in use; stop whatever listens there first" >&2
      return 1
    fi
  done
}

# stack_start PREFIX: databases PREFIX_users, PREFIX_orders, PREFIX_payments and
# PREFIX_inventory are dropped and created again; then the broker and the services start.
stack_start() {
  local prefix=$1 db
  mkdir -p "$logs"
  for db in users orders payments inventory; do
    PGOPTIONS="-c client_min_messages=warning" psql "$server/postgres" -qtA -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS ${prefix}_$db WITH (FORCE)" \
      -c "CREATE DATABASE ${prefix}_$db" >/dev/null
  done
  if [ "${EVENT_BUS:-kafka}" = kafka ] && [ -z "${KAFKA_BROKERS:-}" ]; then
    "$bin/dev-broker" >"$logs/dev-broker.log" 2>&1 &
    stack_broker_pid=$!
    # The dev broker (librdkafka's mock cluster) holds an empty fetch for the whole
    # fetch.wait.max.ms even when a message arrives meanwhile: with the default 500 ms,
    # every hop of the saga would wait for it.
    export KAFKA_FETCH_WAIT_MAX_MS="${KAFKA_FETCH_WAIT_MAX_MS:-10}"
    for _ in $(seq 1 50); do
      (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break
      sleep 0.1
    done
  fi
  _stack_service user DATABASE_URL="$server/${prefix}_users" \
    ADMIN_EMAIL="${ADMIN_EMAIL:-admin@example.com}" ADMIN_PASSWORD="${ADMIN_PASSWORD:-admin-password}"
  _stack_service inventory DATABASE_URL="$server/${prefix}_inventory"
  _stack_service order DATABASE_URL="$server/${prefix}_orders"
  _stack_service payment DATABASE_URL="$server/${prefix}_payments"
}

# Every service of the stack runs with JWT_ALLOW_DEV_KEY=true: user-service signs with the
# public development key of config/dev/ and the others accept it (a test stack, never a
# deployment).
_stack_service() {
  local service=$1; shift
  _stack_process "$service" "$service" "$@"
}

# stack_replica SERVICE PORT DATABASE: one more replica of SERVICE on PORT, against the
# database of the first (a name made by stack_start), logging to SERVICE-PORT.log.
stack_replica() {
  local service=$1 port=$2 db=$3
  _stack_process "$service-$port" "$service" HTTP_ADDR="127.0.0.1:$port" DATABASE_URL="$server/$db"
}

_stack_process() {
  local log=$1 service=$2; shift 2
  env JWT_ALLOW_DEV_KEY=true "$@" "$bin/$service-service" >"$logs/$log.log" 2>&1 &
  stack_pids+=($!)
}

# Waits until all four answer /health/ready, for at most 90 seconds each.
stack_wait_ready() {
  local port
  for port in 8081 8082 8083 8084; do
    stack_wait_port "$port" || return 1
  done
}

# stack_wait_port PORT: waits until the service on PORT answers /health/ready, for at most
# 90 seconds.
stack_wait_port() {
  local port=$1
  for _ in $(seq 1 900); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health/ready")" = 200 ] && return 0
    sleep 0.1
  done
  echo "the service on port $port is not ready after 90 s" >&2
  return 1
}

# The last lines of every log, for a failure message.
stack_tail_logs() {
  local log
  echo "--- logs (last lines) ---" >&2
  for log in "$logs"/*.log; do
    echo "## $log" >&2
    tail -n 20 "$log" >&2 || true
  done
}

# Stops the services (SIGTERM: they drain and flush, which needs the broker), then the
# broker.
stack_stop() {
  local pid
  for pid in "${stack_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${stack_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$stack_broker_pid" ]; then
    kill -TERM "$stack_broker_pid" 2>/dev/null || true
    wait "$stack_broker_pid" 2>/dev/null || true
  fi
}
