#!/usr/bin/env bash
# Measures the system as it would run: release builds of the four services started by hand
# (JSON logs at info level to files, rate limiting off so that the limiter is not what is
# measured), then shared/load-bench drives them over HTTP and prints a Markdown table.
# The numbers, the machine and how to read them are in docs/performance.md.
#
#   scripts/bench.sh [kafka|rabbitmq]     (default kafka: the dev broker; rabbitmq: the
#                                          server at 127.0.0.1:5672, vhost `bench`)
#   BENCH_SECONDS, BENCH_CONCURRENCY      see shared/load-bench/src/main.rs
#
# Uses fresh databases named bench_* on PG_SERVER_URL and ports 8081-8084 and 9092.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-kafka}"
server="${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
bin="target/release"
logs=".run/bench-$mode"
rm -rf "$logs"

cargo build --release --quiet -p user-service -p order-service -p payment-service \
  -p inventory-service -p dev-broker -p load-bench

export RATE_LIMIT_PER_SECOND=0 LOG_FORMAT=json RUST_LOG=info
case "$mode" in
  kafka) export EVENT_BUS=kafka ;;
  rabbitmq)
    rabbitmqctl -q delete_vhost bench >/dev/null 2>&1 || true
    rabbitmqctl -q add_vhost bench
    rabbitmqctl -q set_permissions -p bench guest '.*' '.*' '.*'
    export EVENT_BUS=rabbitmq AMQP_URL="amqp://guest:guest@127.0.0.1:5672/bench"
    ;;
  *) echo "usage: scripts/bench.sh [kafka|rabbitmq]" >&2; exit 2 ;;
esac

# shellcheck source=scripts/stack.sh
source scripts/stack.sh
stack_check_ports
trap stack_stop EXIT
stack_start bench
if ! stack_wait_ready; then
  stack_tail_logs
  exit 1
fi

echo "mode: $mode, $(nproc) CPUs, $(rustc --version)"
"$bin/load-bench"
