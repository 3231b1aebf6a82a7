//! The runtime kit every service is built on. Everything that is not a service's own
//! domain lives here once: settings, telemetry, the HTTP bootstrap (middleware, health,
//! metrics, OpenAPI, graceful shutdown), the error → problem+json mapping, authentication,
//! the database pool, the service-to-service HTTP client, rate limiting and pagination.
//!
//! A service crate holds only its domain, its handlers, its SQL and its event handlers.

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod pagination;
pub mod rate_limit;
pub mod request_context;
pub mod runtime;
pub mod tasks;
pub mod telemetry;

pub use error::{ApiError, FieldErrors, Problem};
