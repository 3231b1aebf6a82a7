//! Helpers for the black-box tests of every service.
//!
//! - [`TestDatabase`]: a fresh PostgreSQL database per test, dropped afterwards, on the
//!   server named by `TEST_DATABASE_URL` (or `DATABASE_URL`), or in a container started
//!   with testcontainers when neither is set and a Docker engine answers.
//! - [`tokens`]: tokens signed with the development key, valid or deliberately broken.
//! - [`JwksServer`]: serves the development JWKS over HTTP, the way user-service does, so
//!   services under test verify tokens through their real remote-JWKS code path.
//! - [`ApiClient`]: a small HTTP client whose every response is checked for the rules that
//!   hold everywhere (never a 500; every error is problem+json).
//! - [`ChaosProxy`]: a TCP proxy a test can cut, to make PostgreSQL or a broker unreachable
//!   without touching the server that other tests share.
//! - [`Vhost`]: a RabbitMQ virtual host per test.
//! - [`SettledCheck`]: at the end of a passing test, the service under test published its
//!   whole outbox and dead-lettered nothing unexpected.
//! - [`tls`]: a throwaway CA and real TLS listeners (PostgreSQL, RabbitMQ, a TLS terminator
//!   in front of the Kafka broker) for the transport-security tests.

mod broker;
mod client;
mod database;
mod jwks;
pub mod openapi;
mod proxy;
mod rabbitmq;
mod settled;
pub mod tls;
pub mod tokens;

pub use broker::{TestBroker, Watcher};
pub use client::{ApiClient, TestResponse};
pub use database::TestDatabase;
pub use jwks::JwksServer;
pub use proxy::ChaosProxy;
pub use rabbitmq::Vhost;
pub use settled::{BackgroundApp, SettledCheck, background_app, metric};

use std::sync::Once;

/// Installs a log subscriber once per test binary. Logs are shown with `TEST_LOG=1`
/// (filtered by `RUST_LOG`), and swallowed otherwise. Spans are traced (with nothing
/// exported) as in a service, so trace context flows through the code under test.
pub fn init_test_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let show = std::env::var_os("TEST_LOG")
            .is_some()
            .then(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()));
        service_kit::telemetry::init_for_tests(show.as_deref());
    });
}

/// Polls `condition` until it returns `Some`, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
