#!/usr/bin/env bash
# Regenerates the committed `.sqlx/` query data that lets the workspace build with
# SQLX_OFFLINE=true (no database at compile time).
#
# Every service owns its database, but their table names do not overlap (the kit's
# outbox and inbox tables are the same in every service, and a service that needs a table
# another service also has names it differently), so one scratch database with the
# kit's and all four services' migrations applied lets sqlx check every query in one pass. The black-box tests then run each service against its own database.
#
# Usage: scripts/sqlx-prepare.sh [--check]   (PG_SERVER_URL defaults to the local server;
# SQLX_PREPARE_DB names the scratch database, default shop_sqlx_prepare)
set -euo pipefail
cd "$(dirname "$0")/.."

server="${PG_SERVER_URL:-postgres://postgres@127.0.0.1:5432}"
db="${SQLX_PREPARE_DB:-shop_sqlx_prepare}"
psql "$server/postgres" -qtA -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
for dir in shared/service-kit services/user services/inventory services/order services/payment; do
  for migration in $dir/migrations/*.sql; do
    [ -e "$migration" ] || continue
    psql "$server/$db" -q -v ON_ERROR_STOP=1 -f "$migration"
  done
done
export DATABASE_URL="$server/$db"
export SQLX_OFFLINE=false
cargo sqlx prepare --workspace "$@" -- --all-targets
psql "$server/postgres" -qtA -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
