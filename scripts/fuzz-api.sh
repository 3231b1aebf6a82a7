#!/usr/bin/env bash
# Property-based API fuzzing: Schemathesis generates requests from each service's OpenAPI
# document (valid and invalid bodies, query strings, headers, ids) and checks every
# answer: never a 5xx, every status code documented, every body matching its schema,
# problem+json for errors, a 401 without credentials.
#
# Runs against the four services on 8081-8084: `make run` in another terminal, or the
# stack `scripts/smoke.sh` starts (which calls this script after its walk).
#
#   FUZZ_EXAMPLES  examples per operation (default 50)
#   FUZZ_SEED      a seed, to replay a run (Schemathesis prints the seed it used)
#
# Two checks are left out, on purpose:
# - positive_data_acceptance: some rules cannot be written in OpenAPI (`cursor` does not
#   combine with `ids`; a stock delta must not be zero; a number written `5.0` is an
#   integer to JSON Schema but not to the services), so a request the schema allows can
#   still be a correct 422;
# - unsupported_method: a method a path does not have answers 404 problem+json, not 405.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v schemathesis >/dev/null 2>&1 || pip install -q schemathesis

email="${ADMIN_EMAIL:-admin@example.com}" password="${ADMIN_PASSWORD:-admin-password}"
token=$(curl -sf -X POST http://127.0.0.1:8081/api/v1/auth/token \
  -H 'content-type: application/json' \
  -d "{\"email\": \"$email\", \"password\": \"$password\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

status=0
for port in 8081 8082 8083 8084; do
  echo "==> fuzzing the API on port $port"
  schemathesis run "http://127.0.0.1:$port/api-docs/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance,unsupported_method \
    --header "Authorization: Bearer $token" \
    --max-examples "${FUZZ_EXAMPLES:-50}" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
    --no-color || status=1
done
exit "$status"
