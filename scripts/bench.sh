#!/usr/bin/env bash
# `make bench`: the system measured side by side with the database's own limit, in one run,
# on this machine, and the results written to docs/performance.md.
#
#   1. pgbench of the placement transaction and of the whole saga's database work per order
#      (scripts/bench/pgbench.sh): what PostgreSQL alone does with the same SQL;
#   2. per broker mode (Kafka through the dev broker, then RabbitMQ): release builds of the
#      four services started by hand as in production (JSON logs at info to files, rate
#      limiting off so that the limiter is not what is measured), then shared/load-bench:
#      browse, placement and saga paced at 20 orders/s, placement and saga saturated by 16
#      clients; the consistency oracle after the saturated run; each service's memory idle
#      and at saturation and its time from start to ready;
#   3. Kafka mode again with 2 and 3 replicas of each consuming service (3 partitions):
#      how saturated saga throughput grows with replicas;
#   4. scripts/bench/report.py turns it all into the results section of docs/performance.md
#      (between its `bench:begin` and `bench:end` markers) with each figure's ratio to the
#      pgbench limits, the commit, the date and the machine.
#
# Settings: BENCH_SECONDS (each run, default 20), BENCH_MODES (default "kafka rabbitmq"),
# BENCH_RUNS (load-bench's runs per mode, default "browse,paced,saturated"),
# BENCH_REPLICAS (default "2 3"; empty for none), BENCH_BIN (binaries to measure instead of
# building this checkout's, e.g. an older commit's target/release; BENCH_DRIVER then names
# the load-bench binary, built from this checkout if unset, and BENCH_COMMIT the commit
# the binaries were built from), BENCH_REPORT (default
# docs/performance.md; "-" prints the section only). Uses fresh databases named bench_* and
# ports 8081-8084, 18082-18084, 28082-28084 and 9092.
set -euo pipefail
cd "$(dirname "$0")/.."

server="${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
modes="${BENCH_MODES:-kafka rabbitmq}"
replicas="${BENCH_REPLICAS-2 3}"
report="${BENCH_REPORT:-docs/performance.md}"
out=".run/bench"
rm -rf "$out"
mkdir -p "$out"
results="$out/results.jsonl"

if [ -n "${BENCH_BIN:-}" ]; then
  bin="$BENCH_BIN"
  driver="${BENCH_DRIVER:-target/release/load-bench}"
  [ -n "${BENCH_DRIVER:-}" ] || cargo build --release --quiet -p load-bench
else
  echo "building release binaries (a first release build takes about 10 minutes on 2 cores)..."
  cargo build --release --quiet -p user-service -p order-service -p payment-service \
    -p inventory-service -p dev-broker -p load-bench
  bin="target/release"
  driver="$bin/load-bench"
fi

# One JSON object per line: what report.py reads.
note() { python3 -c 'import json,sys; print(json.dumps(dict(a.split("=",1) for a in sys.argv[1:])))' "$@" >>"$results"; }

if [ -n "${BENCH_COMMIT:-}" ]; then
  commit="$BENCH_COMMIT" # the commit BENCH_BIN was built from
else
  commit=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- . ':!docs/performance.md' || commit="$commit+changes"
fi
note kind=machine commit="$commit" date="$(date -u +%Y-%m-%d)" cpus="$(nproc)" \
  cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
  memory_gib="$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" \
  postgres="$(psql "$server/postgres" -qtA -c 'SHOW server_version' | cut -d' ' -f1)" \
  rabbitmq="$(rabbitmqctl -q version 2>/dev/null || echo unknown)" rustc="$(rustc --version | cut -d' ' -f2)"
for service in user order payment inventory; do
  note kind=binary service="$service" bytes="$(stat -c %s "$bin/$service-service")"
done

echo "==> pgbench: the database's own limit"
pgbench_out=$(BENCH_SECONDS="${BENCH_SECONDS:-20}" scripts/bench/pgbench.sh "$server")
echo "$pgbench_out"
note kind=pgbench \
  placement_tps="$(sed -n 's/^pgbench placement_tps=//p' <<<"$pgbench_out")" \
  saga_orders_per_s="$(sed -n 's/^pgbench saga_orders_per_s=//p' <<<"$pgbench_out")"

export RATE_LIMIT_PER_SECOND=0 LOG_FORMAT=json RUST_LOG=info
# shellcheck source=scripts/stack.sh
source scripts/stack.sh
services=(user inventory order payment) # the order in which stack_start starts them

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Samples every process's resident memory twice a second into $out/rss-<label>, until
# killed: the maximum is the memory at saturation.
sample_rss() {
  local label=$1 pid
  while sleep 0.5; do
    for pid in "${stack_pids[@]}"; do echo "$pid $(rss_kib "$pid")"; done
  done >"$out/rss-$label"
}

wait_ready_port() {
  stack_wait_port "$1" || { stack_tail_logs; return 1; }
}

# The consistency oracle, once every order is settled: every order terminal, no stock
# left reserved, every unit sold belongs to a confirmed order's line, every cent charged
# (less refunds) to a confirmed order's total, and the money in the wallets plus what was
# charged is what the wallets were given. An order is settled when order-service confirms
# it, but inventory sells its stock on the OrderConfirmed that follows: the oracle is
# asked again every half second until it holds, for at most two minutes.
oracle() {
  local label=$1 prefix=$2 deadline=$((SECONDS + 120))
  until oracle_once "$label" "$prefix" quiet; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      oracle_once "$label" "$prefix"
      return 1
    fi
    sleep 0.5
  done
  oracle_once "$label" "$prefix"
}

oracle_once() {
  local label=$1 prefix=$2 quiet=${3:-}
  q() { psql "$server/${prefix}_$1" -qtAX -v ON_ERROR_STOP=1 -c "$2"; }
  local pending confirmed rejected units total reserved open_reservations sold charged wallets balance
  pending=$(q orders "SELECT count(*) FROM orders WHERE status = 'pending'")
  confirmed=$(q orders "SELECT count(*) FROM orders WHERE status = 'confirmed'")
  rejected=$(q orders "SELECT count(*) FROM orders WHERE status <> 'confirmed' AND status <> 'pending'")
  units=$(q orders "SELECT COALESCE(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status = 'confirmed'")
  total=$(q orders "SELECT COALESCE(sum(total_cents), 0) FROM orders WHERE status = 'confirmed'")
  reserved=$(q inventory "SELECT COALESCE(sum(reserved), 0) FROM products")
  open_reservations=$(q inventory "SELECT count(*) FROM reservations WHERE state = 'reserved'")
  sold=$(q inventory "SELECT COALESCE(sum(quantity), 0) FROM reservations WHERE state = 'sold'")
  charged=$(q payments "SELECT COALESCE(sum(CASE kind WHEN 'charge' THEN amount_cents ELSE -amount_cents END), 0) FROM payments")
  wallets=$(q payments "SELECT count(*) FROM wallets")
  balance=$(q payments "SELECT COALESCE(sum(balance_cents), 0) FROM wallets")
  local credit="${WALLET_INITIAL_CREDIT_CENTS:-100000}" ok=true
  [ "$pending" = 0 ] || ok=false
  [ "$reserved" = 0 ] && [ "$open_reservations" = 0 ] || ok=false
  [ "$sold" = "$units" ] || ok=false
  [ "$charged" = "$total" ] || ok=false
  [ $((balance + charged)) = $((wallets * credit)) ] || ok=false
  if [ -n "$quiet" ]; then
    [ "$ok" = true ]
    return
  fi
  note kind=oracle label="$label" ok="$ok" pending="$pending" confirmed="$confirmed" \
    rejected="$rejected" reserved="$reserved" open_reservations="$open_reservations" \
    units_sold="$sold" units_confirmed="$units" charged_cents="$charged" \
    confirmed_total_cents="$total" wallets="$wallets" balance_cents="$balance"
  echo "oracle ($label): ok=$ok; $confirmed confirmed, $rejected not, $pending pending; reserved $reserved; sold $sold of $units units; charged $charged of $total cents; wallets $balance + $charged of $((wallets * credit))"
  [ "$ok" = true ]
}

# run_stack MODE LABEL REPLICAS RUNS: one stack, measured, then stopped.
run_stack() {
  local mode=$1 label=$2 n=$3 runs=$4 prefix="bench_${2//-/_}"
  logs="$out/logs-$label"
  case "$mode" in
    kafka) export EVENT_BUS=kafka; unset AMQP_URL ;;
    rabbitmq)
      rabbitmqctl -q delete_vhost bench >/dev/null 2>&1 || true
      rabbitmqctl -q add_vhost bench
      rabbitmqctl -q set_permissions -p bench guest '.*' '.*' '.*'
      export EVENT_BUS=rabbitmq AMQP_URL="amqp://guest:guest@127.0.0.1:5672/bench"
      ;;
  esac
  stack_pids=()
  stack_broker_pid=
  stack_check_ports
  trap stack_stop EXIT
  stack_start "$prefix"
  local started i port
  started=$(date +%s%N)
  for i in 0 1 2 3; do
    wait_ready_port "$((8081 + i))"
    note kind=startup label="$label" service="${services[$i]}" ms="$((($(date +%s%N) - started) / 1000000))"
  done
  for ((r = 2; r <= n; r++)); do
    for service in order payment inventory; do
      case "$service" in
        order) port=$((r * 10000 - 1918)) db="${prefix}_orders" ;;
        payment) port=$((r * 10000 - 1917)) db="${prefix}_payments" ;;
        inventory) port=$((r * 10000 - 1916)) db="${prefix}_inventory" ;;
      esac
      stack_replica "$service" "$port" "$db"
      wait_ready_port "$port"
    done
  done
  sleep 2 # let the idle services settle (JIT-free, but pools and groups)
  for i in 0 1 2 3; do
    note kind=rss label="$label" service="${services[$i]}" state=idle kib="$(rss_kib "${stack_pids[$i]}")"
  done
  sample_rss "$label" &
  local sampler=$!
  echo "==> $label: load-bench ($runs)"
  BENCH_RUNS="$runs" BENCH_OUTPUT="$out/load-$label.jsonl" "$driver"
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  for i in 0 1 2 3; do
    note kind=rss label="$label" service="${services[$i]}" state=saturated \
      kib="$(awk -v pid="${stack_pids[$i]}" '$1 == pid && $2 > max {max = $2} END {print max + 0}' "$out/rss-$label")"
  done
  python3 - "$label" "$n" "$out/load-$label.jsonl" >>"$results" <<'EOF'
import json, sys
label, replicas, path = sys.argv[1], sys.argv[2], sys.argv[3]
for line in open(path):
    row = json.loads(line)
    row.update(kind="load", label=label, replicas=replicas)
    print(json.dumps(row))
EOF
  local verdict=0
  oracle "$label" "$prefix" || verdict=1
  stack_stop
  trap - EXIT
  return "$verdict"
}

failed=0
for mode in $modes; do
  run_stack "$mode" "$mode" 1 "${BENCH_RUNS:-browse,paced,saturated}" || failed=1
done
if [[ " $modes " == *" kafka "* ]]; then
  for n in $replicas; do
    run_stack kafka "kafka-x$n" "$n" saturated || failed=1
  done
fi

python3 scripts/bench/report.py "$results" "$report"
[ "$failed" = 0 ] || { echo "the consistency oracle failed: see above" >&2; exit 1; }
