//! Tests of payment-service against a fresh PostgreSQL database per test: the money-moving
//! operations called as the event consumers call them, the consumer's event handler, and
//! the real application on a free port (with a Kafka test broker), driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod helpers;
mod payments;
mod platform;
mod saga;
mod wallet_operations;
mod wallets;
