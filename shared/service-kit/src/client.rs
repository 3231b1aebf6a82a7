//! The HTTP client for calls to another service.
//!
//! Three protections, because a slow or dead downstream must not take this service down
//! with it:
//! - a **timeout** on every attempt;
//! - **retries** with exponential backoff and full jitter, for idempotent methods only
//!   (a retried POST could place an order twice);
//! - a **circuit breaker** per downstream: after a run of failures it fails fast for a
//!   while instead of making every caller wait for a timeout, then lets one request probe.
//!
//! Each attempt is a CLIENT span of the caller's trace, whose context goes out in
//! `traceparent`. Each call forwards the caller's `x-request-id`, and, when it is made
//! on a user's behalf, the user's bearer token: the downstream then limits the call as
//! that user, not every user's calls together as one anonymous client. A 429 to such a
//! call is about that user, so it is passed on as 429, not retried, and does not count
//! against the circuit (one noisy user must not open it for everybody).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::{
    auth::BearerToken,
    config::ClientSettings,
    error::ApiError,
    request_context::{REQUEST_ID_HEADER, RequestContext},
    telemetry,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The downstream did not answer usefully (timeout, connection refused, 5xx, circuit
    /// open). The caller should answer 503.
    #[error("{service} is unavailable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
        retry_after: Duration,
    },
    /// The downstream limits the user on whose behalf the call was made: they should
    /// slow down. The caller should answer 429 with `Retry-After`.
    #[error("{service} rate-limits this user")]
    RateLimited {
        service: &'static str,
        retry_after: Duration,
    },
    /// The downstream answered with a client error; the request itself was wrong.
    #[error("{service} answered {status}")]
    Status {
        service: &'static str,
        status: StatusCode,
    },
    /// The downstream answered 2xx with a body we cannot read: a contract mismatch.
    #[error("{service} sent an unreadable response: {reason}")]
    Decode {
        service: &'static str,
        reason: String,
    },
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Unavailable {
                service,
                reason,
                retry_after,
            } => {
                tracing::warn!(service, %reason, "downstream unavailable");
                Self::Unavailable {
                    detail: format!(
                        "A service this request needs ({service}) is unavailable; try again shortly."
                    ),
                    retry_after,
                }
            }
            ClientError::RateLimited { retry_after, .. } => Self::TooManyRequests { retry_after },
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

/// A client for one downstream service.
pub struct ServiceClient {
    service: &'static str,
    http: reqwest::Client,
    settings: ClientSettings,
    breaker: CircuitBreaker,
}

impl ServiceClient {
    pub fn new(service: &'static str, settings: ClientSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            service,
            breaker: CircuitBreaker::new(settings.failure_threshold, settings.open_duration),
            http,
            settings,
        })
    }

    /// Shows this client's breaker on `/metrics`: `shop_circuit_breaker_state{client}`
    /// (0 closed, 1 open, 2 half-open) and `shop_client_rejected_calls_total{client}`
    /// (calls failed fast because the circuit was open).
    pub fn with_metrics(mut self, registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let state = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "shop_circuit_breaker_state",
                "State of the circuit breaker towards a downstream service: 0 closed, 1 open, 2 half-open",
            ),
            &["client"],
        )?;
        let rejected = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "shop_client_rejected_calls_total",
                "Calls to a downstream service failed fast because its circuit was open",
            ),
            &["client"],
        )?;
        registry.register(Box::new(state.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        let metrics = BreakerMetrics {
            state: state.with_label_values(&[self.service]),
            rejected: rejected.with_label_values(&[self.service]),
        };
        metrics.show(&self.breaker.lock());
        self.breaker.metrics = Some(metrics);
        Ok(self)
    }

    /// `GET path?query` and decode the JSON answer; `on_behalf_of` is the user's token
    /// when the call is made for a user.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        context: &RequestContext,
        on_behalf_of: Option<&BearerToken>,
    ) -> Result<T, ClientError> {
        let response = self
            .send(Method::GET, path, query, context, on_behalf_of)
            .await?;
        response.json().await.map_err(|e| ClientError::Decode {
            service: self.service,
            reason: e.to_string(),
        })
    }

    /// Sends a request without a body, retrying idempotent methods.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        context: &RequestContext,
        on_behalf_of: Option<&BearerToken>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = self
            .settings
            .base_url
            .join(path)
            .map_err(|e| ClientError::Decode {
                service: self.service,
                reason: format!("bad path {path}: {e}"),
            })?;
        let attempts = if is_idempotent(&method) {
            self.settings.max_attempts
        } else {
            1
        };
        let mut last_failure = String::new();
        for attempt in 1..=attempts {
            if let Err(retry_after) = self.breaker.try_acquire() {
                return Err(ClientError::Unavailable {
                    service: self.service,
                    reason: "circuit open".to_owned(),
                    retry_after,
                });
            }
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .query(query)
                .timeout(self.settings.timeout)
                .header(REQUEST_ID_HEADER, context.request_id.as_str());
            if let Some(token) = on_behalf_of {
                request = request.bearer_auth(token.expose());
            }
            let sent = match request.build() {
                Ok(mut request) => {
                    let span =
                        telemetry::client_span(&mut request, Some(self.service), attempt - 1);
                    let sent = self.http.execute(request).instrument(span.clone()).await;
                    telemetry::record_response(&span, &sent);
                    sent
                }
                Err(error) => Err(error),
            };
            match sent {
                Ok(response)
                    if on_behalf_of.is_some()
                        && response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    self.breaker.on_success();
                    return Err(ClientError::RateLimited {
                        service: self.service,
                        retry_after: retry_after(&response),
                    });
                }
                Ok(response) if !is_transient(response.status()) => {
                    self.breaker.on_success();
                    if response.status().is_client_error() {
                        return Err(ClientError::Status {
                            service: self.service,
                            status: response.status(),
                        });
                    }
                    return Ok(response);
                }
                Ok(response) => last_failure = format!("answered {}", response.status()),
                Err(error) if error.is_timeout() => last_failure = "timed out".to_owned(),
                Err(error) => last_failure = format!("request failed: {error}"),
            }
            self.breaker.on_failure(self.service);
            tracing::warn!(
                service = self.service,
                %method,
                %url,
                attempt,
                attempts,
                failure = %last_failure,
                "downstream call failed"
            );
            if attempt < attempts {
                tokio::time::sleep(backoff(self.settings.initial_backoff, attempt)).await;
            }
        }
        Err(ClientError::Unavailable {
            service: self.service,
            reason: last_failure,
            retry_after: Duration::from_secs(5),
        })
    }
}

/// The downstream's `Retry-After` (seconds), or one second.
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs)
}

/// Methods that RFC 9110 defines as idempotent: repeating them has the effect of sending
/// them once, so a retry after an ambiguous failure is safe.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Answers that say "try again later" rather than "your request is wrong".
fn is_transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    ) || status == StatusCode::INTERNAL_SERVER_ERROR
}

/// Exponential backoff with full jitter: a random wait in `[0, base * 2^(attempt-1)]`, so
/// that many clients failing at once do not retry in lock-step.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let cap_ms = u64::try_from(cap.as_millis())
        .unwrap_or(u64::MAX)
        .min(10_000);
    Duration::from_millis(fastrand::u64(0..=cap_ms))
}

/// A consecutive-failure circuit breaker.
struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
    metrics: Option<BreakerMetrics>,
}

struct BreakerMetrics {
    state: prometheus::IntGauge,
    rejected: prometheus::IntCounter,
}

impl BreakerMetrics {
    fn show(&self, state: &BreakerState) {
        self.state.set(match state {
            BreakerState::Closed { .. } => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen { .. } => 2,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe request is in flight; others fail fast until it reports back (or until
    /// `open_for` passes, in case the probe was abandoned).
    HalfOpen {
        since: Instant,
    },
}

impl CircuitBreaker {
    fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold,
            open_for,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            metrics: None,
        }
    }

    fn show(&self, state: &BreakerState) {
        if let Some(metrics) = &self.metrics {
            metrics.show(state);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Err(retry_after)` while the circuit is open.
    fn try_acquire(&self) -> Result<(), Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        let acquired = match *state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } if now >= until => {
                *state = BreakerState::HalfOpen { since: now };
                Ok(())
            }
            BreakerState::Open { until } => Err(until - now),
            BreakerState::HalfOpen { since } if now.duration_since(since) >= self.open_for => {
                *state = BreakerState::HalfOpen { since: now };
                Ok(())
            }
            BreakerState::HalfOpen { .. } => Err(self.open_for),
        };
        self.show(&state);
        if let (Err(_), Some(metrics)) = (&acquired, &self.metrics) {
            metrics.rejected.inc();
        }
        acquired
    }

    fn on_success(&self) {
        let mut state = self.lock();
        if !matches!(*state, BreakerState::Closed { failures: 0 }) {
            if !matches!(*state, BreakerState::Closed { .. }) {
                tracing::info!("circuit closed");
            }
            *state = BreakerState::Closed { failures: 0 };
            self.show(&state);
        }
    }

    fn on_failure(&self, service: &'static str) {
        let mut state = self.lock();
        let next = match *state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Open { until } => BreakerState::Open { until },
            _ => {
                tracing::warn!(
                    service,
                    open_for_ms = self.open_for.as_millis() as u64,
                    "circuit opened"
                );
                BreakerState::Open {
                    until: Instant::now() + self.open_for,
                }
            }
        };
        *state = next;
        self.show(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_are_retried() {
        assert!(is_idempotent(&Method::GET));
        assert!(is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST));
        assert!(!is_idempotent(&Method::PATCH));
    }

    #[test]
    fn backoff_stays_within_the_exponential_cap() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let cap = 100 * 2u64.pow(attempt - 1);
            for _ in 0..50 {
                assert!(backoff(base, attempt) <= Duration::from_millis(cap));
            }
        }
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_probes_after_the_pause() {
        let breaker = CircuitBreaker::new(2, Duration::from_millis(0));
        breaker.on_failure("svc");
        assert!(breaker.try_acquire().is_ok(), "one failure keeps it closed");
        breaker.on_failure("svc");
        assert!(matches!(*breaker.lock(), BreakerState::Open { .. }));
        // open_for is zero: the next call is the half-open probe.
        assert!(breaker.try_acquire().is_ok());
        assert!(matches!(*breaker.lock(), BreakerState::HalfOpen { .. }));
        breaker.on_success();
        assert_eq!(*breaker.lock(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn the_breaker_state_and_its_rejections_are_on_the_metrics() {
        let registry = prometheus::Registry::new();
        let settings = ClientSettings {
            failure_threshold: 1,
            open_duration: Duration::from_secs(60),
            ..ClientSettings::for_tests(url::Url::parse("http://127.0.0.1:1").expect("url"))
        };
        let client = ServiceClient::new("inventory-service", settings)
            .and_then(|c| Ok(c.with_metrics(&registry)?))
            .expect("client");
        let value = |name: &str| {
            registry
                .gather()
                .iter()
                .find(|family| family.name() == name)
                .and_then(|family| family.get_metric().first().cloned())
                .map(|m| {
                    if name.ends_with("_total") {
                        m.get_counter().get_value()
                    } else {
                        m.get_gauge().get_value()
                    }
                })
        };
        assert_eq!(value("shop_circuit_breaker_state"), Some(0.0), "closed");

        client.breaker.on_failure("inventory-service");
        assert_eq!(value("shop_circuit_breaker_state"), Some(1.0), "open");
        assert!(client.breaker.try_acquire().is_err());
        assert!(client.breaker.try_acquire().is_err());
        assert_eq!(value("shop_client_rejected_calls_total"), Some(2.0));

        client.breaker.on_success();
        assert_eq!(
            value("shop_circuit_breaker_state"),
            Some(0.0),
            "closed again"
        );
    }

    #[test]
    fn an_open_breaker_fails_fast() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
        breaker.on_failure("svc");
        let retry_after = breaker.try_acquire().expect_err("open");
        assert!(retry_after > Duration::from_secs(50));
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(0));
        breaker.on_failure("svc");
        assert!(breaker.try_acquire().is_ok());
        breaker.on_failure("svc");
        assert!(matches!(*breaker.lock(), BreakerState::Open { .. }));
    }

    fn client(server: &wiremock::MockServer, attempts: u32) -> ServiceClient {
        let mut settings =
            ClientSettings::for_tests(url::Url::parse(&server.uri()).expect("mock url"));
        settings.max_attempts = attempts;
        settings.initial_backoff = Duration::from_millis(1);
        ServiceClient::new("test-service", settings).expect("client")
    }

    #[tokio::test]
    async fn a_failing_post_is_sent_once_and_a_failing_get_is_retried() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        let server = MockServer::start().await;
        Mock::given(matchers::method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(matchers::method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .expect(3)
            .mount(&server)
            .await;
        let client = client(&server, 3);
        let context = RequestContext::detached();

        let post = client
            .send(Method::POST, "/things", &[], &context, None)
            .await;
        let get = client
            .send(Method::GET, "/things", &[], &context, None)
            .await;

        assert!(matches!(post, Err(ClientError::Unavailable { .. })));
        assert!(matches!(get, Err(ClientError::Unavailable { .. })));
    }

    #[tokio::test]
    async fn the_request_id_is_forwarded_and_the_call_is_a_span_of_the_callers_trace() {
        use tracing::Instrument;
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        crate::telemetry::init_for_tests(None);
        let server = MockServer::start().await;
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller = format!("00-{trace_id}-00f067aa0ba902b7-01");
        Mock::given(matchers::method("GET"))
            .and(matchers::header(REQUEST_ID_HEADER, "req-7"))
            .and(matchers::header_regex(
                "traceparent",
                &format!("^00-{trace_id}-[0-9a-f]{{16}}-01$"),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": true})))
            .expect(1)
            .mount(&server)
            .await;
        let context = RequestContext {
            request_id: crate::request_context::RequestId::from_header_or_new(Some("req-7")),
        };
        let span = tracing::info_span!("handler");
        crate::telemetry::continue_trace(
            &span,
            &[("traceparent".to_owned(), caller.clone())].into(),
        );

        let body: serde_json::Value = client(&server, 1)
            .get_json("/x", &[], &context, None)
            .instrument(span)
            .await
            .expect("forwarded headers matched");

        assert_eq!(body["ok"], true);
        let sent = server.received_requests().await.expect("recorded");
        let traceparent = sent[0].headers.get("traceparent").expect("sent");
        assert_ne!(
            traceparent.to_str().ok(),
            Some(caller.as_str()),
            "the call's own span, a child of the caller's"
        );
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried_and_does_not_open_the_circuit() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        let server = MockServer::start().await;
        Mock::given(matchers::method("GET"))
            .respond_with(ResponseTemplate::new(404))
            .expect(6)
            .mount(&server)
            .await;
        let client = client(&server, 3);
        let context = RequestContext::detached();

        for _ in 0..6 {
            let result = client
                .send(Method::GET, "/missing", &[], &context, None)
                .await;
            assert!(
                matches!(result, Err(ClientError::Status { status, .. }) if status == StatusCode::NOT_FOUND)
            );
        }
    }

    #[tokio::test]
    async fn a_call_on_a_users_behalf_carries_their_token_and_passes_a_429_on_without_retrying() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        let server = MockServer::start().await;
        Mock::given(matchers::method("GET"))
            .and(matchers::header("authorization", "Bearer the-users-token"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
            .expect(6)
            .mount(&server)
            .await;
        let client = client(&server, 3);
        let context = RequestContext::detached();
        let token = BearerToken::new("the-users-token");

        for _ in 0..6 {
            let result = client.get_json::<serde_json::Value>("/x", &[], &context, Some(&token));
            assert!(
                matches!(result.await, Err(ClientError::RateLimited { retry_after, .. }) if retry_after == Duration::from_secs(7))
            );
        }
        // Six 429s in a row (above the threshold of five), and the circuit is still closed.
        assert!(client.breaker.try_acquire().is_ok());
    }

    #[tokio::test]
    async fn an_anonymous_call_treats_a_429_as_transient() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers};
        let server = MockServer::start().await;
        Mock::given(matchers::method("GET"))
            .respond_with(ResponseTemplate::new(429))
            .expect(3)
            .mount(&server)
            .await;
        let client = client(&server, 3);

        let result = client
            .send(Method::GET, "/x", &[], &RequestContext::detached(), None)
            .await;

        assert!(matches!(result, Err(ClientError::Unavailable { .. })));
    }
}
