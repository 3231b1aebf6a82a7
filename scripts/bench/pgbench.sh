#!/usr/bin/env bash
# The database's own limit for the shop's order work, to compare with scripts/bench.sh:
# pgbench replays the SQL the services run per order (placement.sql: the POST /orders
# transaction; saga.sql: everything from placement to `confirmed`, relays included) on a
# scratch database with every migration applied, and prints
#
#   pgbench placement_tps=<transactions/s>
#   pgbench saga_orders_per_s=<orders/s>
#   pgbench logs=<directory with pgbench's own reports>
#
# Usage: scripts/bench/pgbench.sh [DB_URL]
#   DB_URL               the server, e.g. postgres://postgres@127.0.0.1:5432 (default
#                        $PG_SERVER_URL, else that); a database name in it is used as
#                        the scratch database's name
#   BENCH_PGBENCH_DB     the scratch database (default bench_pgbench; it must start with
#                        bench_pgbench: it is dropped and recreated)
#   BENCH_SECONDS        length of each run (default 20)
#   BENCH_CLIENTS, BENCH_THREADS   pgbench -c/-j (default 8 and 2)
#   BENCH_PRODUCTS, BENCH_USERS    catalog and customers created (default 16 and 64)
#   BENCH_IDEMPOTENCY_KEY          1 (default): orders carry an Idempotency-Key; 0: not
#   BENCH_RELAY_METRICS            1: saga.sql's relays also run the relay's gauge query
#                                  after each batch (default 0; see saga.sql)
#   PGBENCH_PROTOCOL               pgbench -M (default prepared, as sqlx does)
# Exits non-zero, naming the log, if pgbench fails or any transaction failed. The scratch
# database is left in place for inspection; the next run recreates it.
set -euo pipefail
cd "$(dirname "$0")/../.."

url="${1:-${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}}"
if [[ ! "$url" =~ ^(postgres(ql)?://[^/?]+)(/([^?]*))?(\?.*)?$ ]]; then
  echo "pgbench.sh: not a postgres:// URL: $url" >&2
  exit 2
fi
server="${BASH_REMATCH[1]}"
query="${BASH_REMATCH[5]}"
db="${BASH_REMATCH[4]:-${BENCH_PGBENCH_DB:-bench_pgbench}}"
if [[ ! "$db" =~ ^bench_pgbench[A-Za-z0-9_]*$ ]]; then
  echo "pgbench.sh: refusing to recreate database '$db' (the name must start with bench_pgbench)" >&2
  exit 2
fi
admin_url="$server/postgres$query"
db_url="$server/$db$query"

seconds="${BENCH_SECONDS:-20}"
clients="${BENCH_CLIENTS:-8}"
threads="${BENCH_THREADS:-2}"
products="${BENCH_PRODUCTS:-16}"
users="${BENCH_USERS:-64}"
idempotency="${BENCH_IDEMPOTENCY_KEY:-1}"
relay_metrics="${BENCH_RELAY_METRICS:-0}"
protocol="${PGBENCH_PROTOCOL:-prepared}"

logs=".run/$db"
rm -rf "$logs"
mkdir -p "$logs"

fail() {
  echo "pgbench.sh: $1 (see $2)" >&2
  exit 1
}

# The scratch database, with the migrations applied as scripts/sqlx-prepare.sh does
# (the table names of the services do not overlap), then setup.sql.
{
  psql "$admin_url" -qtA -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  for dir in shared/service-kit services/user services/inventory services/order services/payment; do
    for migration in "$dir"/migrations/*.sql; do
      [ -e "$migration" ] || continue
      psql "$db_url" -q -v ON_ERROR_STOP=1 -f "$migration"
    done
  done
  psql "$db_url" -q -v ON_ERROR_STOP=1 -v products="$products" -v users="$users" \
    -f scripts/bench/setup.sql
} >"$logs/setup.log" 2>&1 || fail "setting up $db failed" "$logs/setup.log"

# Every run starts from a vacuumed, analysed database right after a checkpoint, so that
# the runs are alike (each pays the full-page writes after its checkpoint).
settle() {
  psql "$db_url" -q -v ON_ERROR_STOP=1 -c "VACUUM ANALYZE" -c "CHECKPOINT" \
    >>"$logs/setup.log" 2>&1 || fail "VACUUM/CHECKPOINT failed" "$logs/setup.log"
}

# Runs one script; prints its tps.
run() {
  local name="$1" log="$logs/$1.log"
  (cd scripts/bench && pgbench -n -M "$protocol" -c "$clients" -j "$threads" -T "$seconds" \
    -D products="$products" -D users="$users" -D idempotency="$idempotency" \
    -D relay_batch=100 -D relay_metrics="$relay_metrics" -f "$name.sql" "$db_url") >"$log" 2>&1 \
    || fail "pgbench $name.sql failed" "$log"
  local failed tps
  failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log")"
  [ "$failed" = "0" ] || fail "pgbench $name.sql: ${failed:-unknown} failed transactions" "$log"
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")"
  [ -n "$tps" ] || fail "pgbench $name.sql: no tps in its report" "$log"
  printf '%.1f' "$tps"
}

settle
placement="$(run placement)"
# placement.sql leaves its OrderPlaced rows unpublished (it has no relay); mark them as the
# relay would have, so that saga.sql's relay reads see only the saga's own rows.
psql "$db_url" -q -v ON_ERROR_STOP=1 \
  -c "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE published_at IS NULL" \
  >>"$logs/setup.log" 2>&1 || fail "marking the placement rows published failed" "$logs/setup.log"
settle
saga="$(run saga)"

echo "pgbench placement_tps=$placement"
echo "pgbench saga_orders_per_s=$saga"
echo "pgbench logs=$logs"
