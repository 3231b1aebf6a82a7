//! Black-box tests of user-service: the real application on a free port, against a fresh
//! PostgreSQL database per test, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod auth;
mod events;
mod helpers;
mod limits;
mod platform;
mod signing_key;
mod users;
