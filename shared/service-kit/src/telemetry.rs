//! Logging and request tracing.
//!
//! Every log line is structured (JSON in production, readable text on a terminal) and
//! every line written while serving a request carries that request's id, because the
//! request span created here is the parent of everything the handler does.

use std::{
    future::{Ready, ready},
    time::Instant,
};

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::header::{HeaderName, HeaderValue},
};
use futures_util::future::LocalBoxFuture;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    config::{ConfigError, ConfigSource},
    request_context::{REQUEST_ID_HEADER, RequestId, TRACEPARENT_HEADER, TraceParent},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// `LOG_FORMAT` (default `json`) and `RUST_LOG` (default `info`).
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub filter: String,
}

impl TelemetrySettings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            format: source.parse("LOG_FORMAT", LogFormat::Json)?,
            filter: source.string("RUST_LOG", "info"),
        })
    }
}

/// Installs the global subscriber. Call once, at the top of `main` (tests use
/// `test_kit::init_test_logging`). Fails if a subscriber is already installed.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|e| anyhow::anyhow!("RUST_LOG is invalid: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .try_init()?,
        LogFormat::Pretty => registry.with(fmt::layer()).try_init()?,
    }
    // Images set APP_VERSION and APP_GIT_SHA at build time, so the log says which build
    // is running.
    tracing::info!(
        service,
        version = %build_info("APP_VERSION", env!("CARGO_PKG_VERSION")),
        git_sha = %build_info("APP_GIT_SHA", "unknown"),
        "starting"
    );
    Ok(())
}

/// A build fact the image sets in the environment, or `default` when unset or empty.
fn build_info(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Builds the root span of every request. It is where the request id is decided (taken
/// from `x-request-id` when the caller sent a safe one), so that it is a field of the span
/// and therefore of every log line below it.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = RequestId::from_header_or_new(header(REQUEST_ID_HEADER).as_deref());
        let traceparent = header(TRACEPARENT_HEADER)
            .and_then(|v| TraceParent::parse(&v))
            .unwrap_or_else(TraceParent::new_root);
        let span = tracing::info_span!(
            "http_request",
            request_id = %request_id.as_str(),
            http.method = %request.method(),
            http.route = %request.match_pattern().unwrap_or_else(|| "unmatched".to_owned()),
            http.target = %request.path(),
            http.status_code = tracing::field::Empty,
            trace_id = %traceparent.trace_id(),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
        );
        let mut extensions = request.extensions_mut();
        extensions.insert(request_id);
        extensions.insert(traceparent);
        span
    }

    /// Records the status on the span. Nothing is logged here: `ApiError` logs why a
    /// request was refused (or the whole cause chain of a 500) and `AccessLog` logs every
    /// request's status, so the library's default, one more line with the error's debug
    /// text for every 4xx, would only repeat them.
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("http.status_code", status.as_u16());
        span.record(
            "otel.status_code",
            if status.is_server_error() {
                "ERROR"
            } else {
                "OK"
            },
        );
    }
}

/// Runs inside the request span: writes one access-log line per request and returns the
/// request id to the caller in `x-request-id`.
pub struct AccessLog;

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = AccessLogMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogMiddleware { service }))
    }
}

pub struct AccessLogMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for AccessLogMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let request_id = request.extensions().get::<RequestId>().cloned();
        let quiet = is_probe(request.path());
        let future = self.service.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let status = response.status().as_u16();
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            if quiet {
                tracing::debug!(status, elapsed_ms, "request completed");
            } else if status >= 500 {
                tracing::error!(status, elapsed_ms, "request completed");
            } else {
                tracing::info!(status, elapsed_ms, "request completed");
            }
            if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
            }
            Ok(response)
        })
    }
}

/// Health probes and metric scrapes arrive every few seconds; logging each one at `info`
/// would drown the useful lines.
fn is_probe(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}
