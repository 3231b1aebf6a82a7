# syntax=docker/dockerfile:1
#
# The container image of every service, from this one file:
#
#   docker build --build-arg SERVICE=order-service -t shop/order-service:dev .
#
# (`docker compose build` builds the four; see docs/deployment-compose.md.)
#
# Why one parametrised Dockerfile rather than one per service: the four services are one
# Cargo workspace with one Cargo.lock and the same dependencies, so the slow part of a build
# — compiling some 350 crates, librdkafka among them — is the same for all four. Here it is
# ONE cached layer (the `cook` step below), shared by the four images and rebuilt only when
# a Cargo.toml or Cargo.lock changes; a code change recompiles the workspace's own crates
# only. And there is one file to keep right (base images, build dependencies, hardening)
# instead of four that drift apart.
#
# Stages: chef (toolchain + C build tools) → planner (dependency recipe) → builder
# (dependencies, then the service) → runtime (distroless: the binary and nothing else).

# ---------------------------------------------------------------------------------------
# Rust 1.95 with cargo-chef, both pinned (tag `<cargo-chef version>-rust-<rust image tag>`).
# Debian 13 (trixie), the same release as the runtime image below: the binary links against
# glibc dynamically and must not need a newer glibc than the runtime image has.
FROM lukemathwalker/cargo-chef:0.1.77-rust-1.95-slim-trixie AS chef

# Native build dependencies (the slim image already has gcc and libc6-dev):
# - rdkafka-sys compiles the bundled librdkafka with its own `./configure` (bash) and
#   `make`, including its C++ wrapper, hence make and g++. No cmake: that is only for the
#   crate's non-default `cmake-build` feature. python3 is optional (a linker script).
# - librdkafka is built with TLS and SASL (PLAIN, SCRAM) against Debian's OpenSSL:
#   libssl-dev, found through pkg-config. At run time it needs libssl3, which the
#   distroless image below ships (and Debian's security updates reach it with the base
#   image, without a rebuild of the binary).
# - aws-lc-sys, zstd-sys and libz-sys compile C with gcc; no cmake, perl, Go or NASM on
#   Linux.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

# SQLX_OFFLINE: queries are checked against the committed .sqlx/ data, so the build needs
# no database (.cargo/config.toml says so too; an image build must not depend on it).
# LIBZ_SYS_STATIC: link zlib (used by librdkafka) statically, so the binary needs nothing
# but glibc, libgcc and OpenSSL's libssl3 at run time — all in the distroless image, which
# has no libz.so.1.
ENV SQLX_OFFLINE=true \
    LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never
WORKDIR /app

# ---------------------------------------------------------------------------------------
# The recipe: every Cargo.toml and the Cargo.lock with the sources stubbed out. It changes
# only when dependencies change, which is what keeps the next stage's cook layer cached.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------
FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json

# The dependencies of the four services, compiled once. SERVICE is deliberately not
# declared yet, so this layer is identical — and cached once — for the four images.
# The four packages together enable exactly the same dependency features as each
# service's own build below (checked with `cargo tree -e features`), so nothing that is
# cooked here is compiled again. Keep the list in step with the services in
# docker-compose.yml (deploy/compose/check.py verifies it).
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    -p user-service -p order-service -p payment-service -p inventory-service

COPY . .
ARG SERVICE
RUN test -n "$SERVICE" \
        || { echo 'set the service to build: --build-arg SERVICE=user-service (or order-service, payment-service, inventory-service)' >&2; exit 1; } \
    && cargo build --release --locked -p "$SERVICE" \
    && install -D -m 0755 "target/release/$SERVICE" /out/service

# ---------------------------------------------------------------------------------------
# Runtime: distroless "cc" — glibc, libgcc, OpenSSL (libssl3), CA certificates, tzdata and
# nothing else: no shell, no package manager, no curl. The `nonroot` variant runs as uid 65532.
FROM gcr.io/distroless/cc-debian13:nonroot AS runtime

# One fixed path whatever the service, so compose and Kubernetes say the same thing for
# all four: `/app/service` (serve), `/app/service healthcheck`, `/app/service seed-demo`.
COPY --from=builder /out/service /app/service
WORKDIR /app

# Numeric, so Kubernetes' `runAsNonRoot` can verify it without reading /etc/passwd.
USER 65532:65532

# No EXPOSE: the port depends on the service (HTTP_ADDR, default 8081-8084); compose and
# the Kubernetes manifests declare it.

# Without a shell or curl in the image, the binary checks itself: `healthcheck` exits 0
# when GET http://127.0.0.1:<port of HTTP_ADDR>/health/ready answers 200.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/service", "healthcheck"]

# The service drains in-flight requests on SIGTERM (HTTP_SHUTDOWN_TIMEOUT_SECS, 20 s by
# default): give it that long before SIGKILL (compose: stop_grace_period; Kubernetes:
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/service"]

# Which build this is: the service logs APP_VERSION and APP_GIT_SHA at start-up, and the
# OCI labels show them in `docker inspect` and registries. Declared last so that a new
# commit changes only these metadata layers.
ARG SERVICE
ARG VERSION=dev
ARG GIT_SHA=unknown
ENV APP_VERSION=${VERSION} \
    APP_GIT_SHA=${GIT_SHA}
LABEL org.opencontainers.image.title="${SERVICE}" \
      org.opencontainers.image.description="${SERVICE} of the Shop reference microservices" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian13:nonroot"
