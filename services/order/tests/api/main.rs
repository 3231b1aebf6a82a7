//! Black-box tests of order-service: the real application on a free port, against a fresh
//! PostgreSQL database per test. Prices come from the real inventory-service, started in
//! the same test with its own database; inventory is faked (wiremock) only in the tests
//! about inventory being slow or down, and in the saga tests that must decide themselves
//! in which order inventory's and payment's answers arrive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod idempotency;
mod inventory_failures;
mod orders;
mod platform;
mod price_lookups;
mod saga;
mod timeline;
