//! Black-box tests of inventory-service: the real application on a free port, against a
//! fresh PostgreSQL database and a Kafka broker per test and a JWKS server standing in for
//! user-service, driven over HTTP and through its saga's event handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod catalog;
mod demo;
mod helpers;
mod platform;
mod products;
mod saga;
mod stock;
