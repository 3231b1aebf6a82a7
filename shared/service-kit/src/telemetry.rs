//! Logs and traces.
//!
//! Every log line is structured (JSON in production, readable text on a terminal) and
//! carries the `trace_id` and `span_id` of the span it was written in, so that a line
//! leads to its trace and a trace to its lines. Spans are OpenTelemetry spans (through
//! `tracing-opentelemetry`): they have real W3C ids whether or not anything is exported,
//! and when an OTLP endpoint is configured a batch exporter sends them in the background.
//!
//! The spans that make one order one trace across the services (W3C TraceContext):
//! - SERVER, one per HTTP request ([`RequestSpan`]), continuing the caller's `traceparent`;
//! - CLIENT, one per call to another service ([`crate::client`]) and per JWKS fetch, whose
//!   context leaves in the request's `traceparent`;
//! - PRODUCER, one per event written to the outbox ([`crate::events::outbox::enqueue`]),
//!   whose context is stored in the row and travels in the message headers;
//! - CONSUMER, one per delivery ([`crate::events::consumer`]), a child of that PRODUCER
//!   span, however long the event waited in the outbox or on the broker.
//!
//! Configuration is the standard OpenTelemetry variables only, read through
//! [`ConfigSource`] like every other setting (see [`TelemetrySettings`]). Without an
//! endpoint nothing is exported and nothing tries to connect; the ids still exist.

use std::{
    collections::BTreeMap,
    future::{Ready, ready},
    str::FromStr,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage,
    body::MessageBody,
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::header::{HeaderName, HeaderValue},
};
use futures_util::future::LocalBoxFuture;
use opentelemetry::{
    Context, KeyValue,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    resource::TelemetryResourceDetector,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider},
};
use tracing::{Dispatch, Span, Subscriber, dispatcher::WeakDispatch, level_filters::LevelFilter};
use tracing_actix_web::RootSpanBuilder;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::Targets,
    fmt::{self, FmtContext, FormatEvent, FormatFields, format::Writer},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};
use url::Url;

use crate::{
    config::{ConfigError, ConfigSource},
    request_context::{REQUEST_ID_HEADER, RequestId},
};

/// The W3C Trace Context headers.
pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";
/// The response header that names the request's trace (W3C Trace Context Level 2):
/// `00-<trace id>-<id of the server span>-<flags>`. A client that wants to find its
/// request's trace (`make demo` does) reads the trace id from it.
pub const TRACERESPONSE_HEADER: &str = "traceresponse";

/// How long shutting down may wait for the last spans to leave. A collector that is
/// down must not hold a stopping pod (the exporter would otherwise wait seconds).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Err("http/json is not supported; use grpc or http/protobuf".to_owned()),
            other => Err(format!("expected `grpc` or `http/protobuf`, got `{other}`")),
        }
    }
}

impl std::fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// For HTTP the whole URL spans are posted to (`…/v1/traces`); for gRPC the
    /// collector's address.
    pub endpoint: Url,
    pub protocol: OtlpProtocol,
    /// The time one export may take.
    pub timeout: Duration,
    /// How long a finished span may wait to be sent with others.
    pub batch_delay: Duration,
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSampler {
    /// A span with a parent follows the parent's decision (the `parentbased_*` samplers):
    /// a trace is recorded in every service or in none.
    pub parent_based: bool,
    /// The decision for a trace that starts here.
    pub root: RootSampler,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    /// This fraction of new traces, by trace id.
    Ratio(f64),
}

impl Default for TraceSampler {
    fn default() -> Self {
        Self {
            parent_based: true,
            root: RootSampler::AlwaysOn,
        }
    }
}

impl TraceSampler {
    fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        const KEY: &str = "OTEL_TRACES_SAMPLER";
        let Some(name) = source.get(KEY) else {
            return Ok(Self::default());
        };
        let ratio = || -> Result<f64, ConfigError> {
            let ratio: f64 = source.parse("OTEL_TRACES_SAMPLER_ARG", 1.0)?;
            if (0.0..=1.0).contains(&ratio) {
                Ok(ratio)
            } else {
                Err(ConfigError::Invalid {
                    key: "OTEL_TRACES_SAMPLER_ARG".to_owned(),
                    reason: format!("expected a ratio between 0 and 1, got {ratio}"),
                })
            }
        };
        let name = name.trim().to_ascii_lowercase();
        let (parent_based, root) = match name.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name.as_str()),
        };
        let root = match root {
            "always_on" => RootSampler::AlwaysOn,
            "always_off" => RootSampler::AlwaysOff,
            "traceidratio" => RootSampler::Ratio(ratio()?),
            _ => {
                return Err(ConfigError::Invalid {
                    key: KEY.to_owned(),
                    reason: format!(
                        "expected always_on, always_off, traceidratio or their parentbased_ forms, got `{name}`"
                    ),
                });
            }
        };
        Ok(Self { parent_based, root })
    }

    fn sampler(self) -> Sampler {
        let root = match self.root {
            RootSampler::AlwaysOn => Sampler::AlwaysOn,
            RootSampler::AlwaysOff => Sampler::AlwaysOff,
            RootSampler::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }
}

/// Logging and tracing settings:
/// - `LOG_FORMAT` (`json`, the default, or `pretty`) and `RUST_LOG` (default `info`);
/// - `OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's base URL; for HTTP `/v1/traces` is
///   appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is): without either,
///   nothing is exported;
/// - `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: `http/protobuf`
///   (default) or `grpc`;
/// - `OTEL_EXPORTER_OTLP_TIMEOUT` / `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` (ms, default 10000)
///   and `OTEL_BSP_SCHEDULE_DELAY` (ms, default 5000: how long spans wait to go in a batch);
/// - `OTEL_SERVICE_NAME` (default: the binary's name, e.g. `order-service`) and
///   `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`);
/// - `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`);
/// - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: export nothing, even with an
///   endpoint (spans and their ids still exist, for the logs and for propagation).
///
/// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_COMPRESSION` are read by the
/// exporter itself.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub filter: String,
    /// `None`: the service's own name.
    pub service_name: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: TraceSampler,
    /// `None`: no exporter at all.
    pub export: Option<TraceExport>,
}

impl TelemetrySettings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            format: source.parse("LOG_FORMAT", LogFormat::Json)?,
            filter: source.string("RUST_LOG", "info"),
            service_name: source.get("OTEL_SERVICE_NAME").map(|s| s.trim().to_owned()),
            resource_attributes: resource_attributes(source)?,
            sampler: TraceSampler::from_source(source)?,
            export: trace_export(source)?,
        })
    }

    /// Logs only (what tests and tools use): no exporter, every span sampled.
    pub fn logs_only(format: LogFormat, filter: &str) -> Self {
        Self {
            format,
            filter: filter.to_owned(),
            service_name: None,
            resource_attributes: Vec::new(),
            sampler: TraceSampler::default(),
            export: None,
        }
    }
}

fn flag(source: &ConfigSource, key: &str) -> Result<bool, ConfigError> {
    match source.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("expected `true` or `false`, got `{v}`"),
        }),
    }
}

/// The signal-specific variable when set, else the general one.
fn either<'a>(source: &'a ConfigSource, traces: &'a str, general: &'a str) -> &'a str {
    if source.get(traces).is_some() {
        traces
    } else {
        general
    }
}

fn trace_export(source: &ConfigSource) -> Result<Option<TraceExport>, ConfigError> {
    let disabled = flag(source, "OTEL_SDK_DISABLED")?;
    match source
        .get("OTEL_TRACES_EXPORTER")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "OTEL_TRACES_EXPORTER".to_owned(),
                reason: format!("expected `otlp` or `none`, got `{other}`"),
            });
        }
    }
    let protocol_key = either(
        source,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    );
    let protocol = source.parse(protocol_key, OtlpProtocol::HttpProtobuf)?;
    let endpoint = if let Some(raw) = source.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        endpoint_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raw)?
    } else if let Some(raw) = source.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let mut url = endpoint_url("OTEL_EXPORTER_OTLP_ENDPOINT", raw)?;
        if protocol == OtlpProtocol::HttpProtobuf {
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}/v1/traces"));
        }
        url
    } else {
        return Ok(None);
    };
    if disabled {
        return Ok(None);
    }
    let timeout_key = either(
        source,
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    );
    Ok(Some(TraceExport {
        endpoint,
        protocol,
        timeout: source.millis(timeout_key, 10_000)?,
        batch_delay: source.millis("OTEL_BSP_SCHEDULE_DELAY", 5_000)?,
    }))
}

fn endpoint_url(key: &str, raw: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: key.to_owned(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(format!(
            "expected an http:// or https:// URL, got `{raw}`"
        )));
    }
    Ok(url)
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, values
/// percent-encoded (as W3C Baggage).
fn resource_attributes(source: &ConfigSource) -> Result<Vec<(String, String)>, ConfigError> {
    const KEY: &str = "OTEL_RESOURCE_ATTRIBUTES";
    let Some(raw) = source.get(KEY) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), percent_decode(value.trim())))
            }
            _ => Err(ConfigError::Invalid {
                key: KEY.to_owned(),
                reason: format!("expected key=value pairs separated by commas, got `{pair}`"),
            }),
        })
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// What [`init`] set up; keep it until `main` returns. Dropping it exports the spans still
/// waiting, for at most [`SHUTDOWN_TIMEOUT`].
#[must_use = "dropping it stops trace export: keep it until main returns"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if !self.exporting {
            return;
        }
        let started = Instant::now();
        if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::warn!(
                error = %error,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "traces: the last spans may not have been exported"
            );
        }
    }
}

/// Installs the global subscriber (logs, and traces through OpenTelemetry). Call once,
/// at the top of `main`, inside the Tokio runtime (the gRPC exporter runs on it); tests
/// use `test_kit::init_test_logging`. Fails if a subscriber is already installed.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&settings.filter)
        .map_err(|e| anyhow::anyhow!("RUST_LOG is invalid: {e}"))?;
    let provider = tracer_provider(service, settings)?;
    install(&provider, service, settings.format, filter, false)?;
    // Images set APP_VERSION and APP_GIT_SHA at build time, so the log says which build
    // is running.
    let traces = match &settings.export {
        Some(export) => format!("OTLP {} to {}", export.protocol, export.endpoint),
        None => "not exported".to_owned(),
    };
    tracing::info!(
        service,
        version = %build_info("APP_VERSION", env!("CARGO_PKG_VERSION")),
        git_sha = %build_info("APP_GIT_SHA", "unknown"),
        %traces,
        "starting"
    );
    Ok(Telemetry {
        provider,
        exporting: settings.export.is_some(),
    })
}

/// The test binaries' subscriber: spans with real ids (nothing exported), so that trace
/// context flows through HTTP, the outbox and the broker as in production; log lines
/// written to the test's output only when `show` is set. Installed once per process;
/// later calls do nothing.
pub fn init_for_tests(show: Option<&str>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let settings = TelemetrySettings::logs_only(LogFormat::Pretty, "info");
        let filter = match show {
            Some(filter) => EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info")),
            None => EnvFilter::default().add_directive(LevelFilter::OFF.into()),
        };
        if let Ok(provider) = tracer_provider("test", &settings) {
            let _ = install(&provider, "test", LogFormat::Pretty, filter, true);
        }
    });
}

fn install(
    provider: &SdkTracerProvider,
    service: &'static str,
    format: LogFormat,
    filter: EnvFilter,
    test_writer: bool,
) -> anyhow::Result<()> {
    let dispatch = if test_writer {
        dispatch(
            provider,
            service,
            format,
            filter,
            fmt::TestWriter::new(),
            false,
        )
    } else {
        dispatch(provider, service, format, filter, std::io::stdout, true)
    };
    dispatch.try_init()?;
    Ok(())
}

/// The subscriber: spans go to OpenTelemetry, log lines (with their ids) to `writer`.
fn dispatch<W>(
    provider: &SdkTracerProvider,
    service: &'static str,
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Dispatch
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let ids = DispatchCell::default();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        // Attributes a reader of a trace needs; not the tracing internals.
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(trace_filter());
    let subscriber = tracing_subscriber::registry()
        .with(traces)
        .with(log_layer(format, ids.clone(), writer, ansi).with_filter(filter));
    let dispatch = Dispatch::new(subscriber);
    ids.set(&dispatch);
    dispatch
}

fn log_layer<S, W>(
    format: LogFormat,
    ids: DispatchCell,
    writer: W,
    ansi: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(writer)
            .event_format(WithTraceIds {
                inner: fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
                ids,
                json: true,
            })
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .event_format(WithTraceIds {
                inner: fmt::format().with_ansi(ansi),
                ids,
                json: false,
            })
            .boxed(),
    }
}

/// What becomes a span of the trace: spans at `info` and above, whatever `RUST_LOG` says
/// about the log lines (a service started with `RUST_LOG=warn` still propagates its
/// context) — except those of the libraries that carry the export itself, which would
/// otherwise trace their own exporting.
fn trace_filter() -> Targets {
    const TRANSPORT: [&str; 10] = [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "reqwest",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "opentelemetry_http",
    ];
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_targets(TRANSPORT.map(|target| (target, LevelFilter::OFF)))
}

fn tracer_provider(
    service: &'static str,
    settings: &TelemetrySettings,
) -> anyhow::Result<SdkTracerProvider> {
    let service_name = settings
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    // OTEL_SERVICE_NAME wins over a `service.name` in OTEL_RESOURCE_ATTRIBUTES.
    let resource = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_attribute(KeyValue::new(
            "service.version",
            build_info("APP_VERSION", env!("CARGO_PKG_VERSION")),
        ))
        .with_attribute(KeyValue::new(
            "service.instance.id",
            uuid::Uuid::new_v4().to_string(),
        ))
        .with_service_name(service_name)
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(settings.sampler.sampler());
    if let Some(export) = &settings.export {
        let exporter = match export.protocol {
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(export.endpoint.as_str())
                .with_timeout(export.timeout)
                .build(),
            OtlpProtocol::Grpc => {
                let builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .with_endpoint(export.endpoint.as_str())
                    .with_timeout(export.timeout);
                let builder = if export.endpoint.scheme() == "https" {
                    builder.with_tls_config(
                        opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                            .with_native_roots(),
                    )
                } else {
                    builder
                };
                builder.build()
            }
        }
        .map_err(|e| anyhow::anyhow!("the OTLP exporter cannot be set up: {e}"))?;
        // The batch processor runs on a thread of its own: a span ends by joining a
        // bounded queue (dropped when it is full), so a slow or dead collector never
        // slows a request down.
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(export.batch_delay)
                    .build(),
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    Ok(builder.build())
}

/// A build fact the image sets in the environment, or `default` when unset or empty.
fn build_info(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

// --- Trace context in and out: W3C TraceContext (`traceparent`, `tracestate`) ---

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// The context of `span`, as the headers of a request or message it causes.
pub fn inject(span: &Span, carrier: &mut dyn Injector) {
    propagator().inject_context(&span.context(), carrier);
}

/// The remote context in `carrier`'s headers (empty when there is none, or it is invalid).
pub fn extract(carrier: &dyn Extractor) -> Context {
    propagator().extract(carrier)
}

/// Makes `span` continue the trace whose context the `headers` carry (a message's
/// `traceparent`); without a valid one, `span` starts a trace of its own. Call before
/// the span is first entered.
pub fn continue_trace(span: &Span, headers: &BTreeMap<String, String>) {
    let _ = span.set_parent(extract(&MessageHeaders(headers)));
}

/// The span context behind a `traceparent` in `headers`, if valid: what a span links to.
pub fn remote_span_context(headers: &BTreeMap<String, String>) -> Option<SpanContext> {
    let cx = extract(&MessageHeaders(headers));
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// `00-<trace id>-<span id>-<flags>` of `span`, if it has a valid context.
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The CLIENT span of one outgoing HTTP request (OpenTelemetry's HTTP client
/// conventions), its context put in the request's `traceparent`. `peer` names the
/// service called, when known. Send the request inside the span, then [`record_response`].
pub fn client_span(
    request: &mut reqwest::Request,
    peer: Option<&'static str>,
    resend: u32,
) -> Span {
    let url = request.url();
    let span = tracing::info_span!(
        "http_client",
        otel.name = %request.method(),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        http.request.resend_count = (resend > 0).then_some(i64::from(resend)),
        http.response.status_code = tracing::field::Empty,
        url.full = %url,
        server.address = url.host_str(),
        server.port = url.port_or_known_default().map(i64::from),
        peer.service = peer,
        error.type = tracing::field::Empty,
    );
    inject(&span, &mut RequestHeaders(request.headers_mut()));
    span
}

/// Records the outcome of a request on its [`client_span`]: the status, and for a 4xx/5xx
/// or a request that got no answer, an error.
pub fn record_response(span: &Span, outcome: &Result<reqwest::Response, reqwest::Error>) {
    match outcome {
        Ok(response) => {
            let status = response.status();
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_client_error() || status.is_server_error() {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", status.as_str());
            }
        }
        Err(error) => {
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.type",
                if error.is_timeout() {
                    "timeout"
                } else if error.is_connect() {
                    "connection_failed"
                } else {
                    "request_failed"
                },
            );
        }
    }
}

/// A message's headers as a propagation carrier.
pub(crate) struct MessageHeaders<'a>(pub &'a BTreeMap<String, String>);

impl Extractor for MessageHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// A message's headers, to put a context in.
pub(crate) struct MessageHeadersMut<'a>(pub &'a mut BTreeMap<String, String>);

impl Injector for MessageHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// An outgoing request's headers, to put a context in.
pub(crate) struct RequestHeaders<'a>(pub &'a mut reqwest::header::HeaderMap);

impl Injector for RequestHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// An incoming request's headers.
struct IncomingHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for IncomingHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

// --- The ids on every log line ---

/// The subscriber a formatter belongs to, known once it is built (the formatter is part
/// of it): how the formatter reaches the OpenTelemetry context of the event's span.
#[derive(Clone, Default)]
struct DispatchCell(Arc<OnceLock<WeakDispatch>>);

impl DispatchCell {
    fn set(&self, dispatch: &Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }

    /// The trace and span id of the span `event` was written in: the nearest span, from
    /// the event's own outwards, that is part of the trace (one that only the log filter
    /// let through is not).
    fn ids(&self, event: &tracing::Event<'_>) -> Option<(String, String)> {
        let dispatch = self.0.get()?.upgrade()?;
        let registry = dispatch.downcast_ref::<Registry>()?;
        let mut next = if event.is_contextual() {
            registry.current_span().id().cloned()
        } else {
            event.parent().cloned()
        };
        while let Some(id) = next {
            if let Some(cx) = tracing_opentelemetry::get_otel_context(&id, &dispatch) {
                let span = cx.span();
                let span_context = span.span_context();
                if span_context.is_valid() {
                    return Some((
                        span_context.trace_id().to_string(),
                        span_context.span_id().to_string(),
                    ));
                }
            }
            next = registry
                .span(&id)
                .and_then(|span| span.parent().map(|parent| parent.id()));
        }
        None
    }
}

/// Wraps a log line format: the line gets `trace_id` and `span_id` (as the first JSON
/// fields, or at the end of a text line).
struct WithTraceIds<F> {
    inner: F,
    ids: DispatchCell,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = self.ids.ids(event) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) if self.json => write!(
                writer,
                r#"{{"trace_id":"{trace_id}","span_id":"{span_id}",{rest}"#
            ),
            _ => {
                let text = line.trim_end_matches('\n');
                writeln!(writer, "{text} trace_id={trace_id} span_id={span_id}")
            }
        }
    }
}

// --- The SERVER span of every request ---

/// Builds the root span of every request: the SERVER span of the trace, continuing the
/// caller's `traceparent` when it sent a valid one. It is also where the request id is
/// decided (taken from `x-request-id` when the caller sent a safe one), so that it is a
/// field of the span and therefore of every log line below it.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = RequestId::from_header_or_new(
            request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        let route = request.match_pattern();
        let method = request.method().as_str();
        // Low-cardinality names (OpenTelemetry's HTTP conventions): `GET /api/v1/orders/{id}`.
        let name = match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        };
        let connection = request.connection_info().clone();
        let (host, port) = split_host(connection.host());
        let user_agent = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        macro_rules! request_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "http_request",
                    otel.name = %name,
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    request_id = %request_id.as_str(),
                    http.request.method = %method,
                    http.route = route.as_deref(),
                    http.response.status_code = tracing::field::Empty,
                    url.path = %request.path(),
                    url.scheme = %connection.scheme(),
                    server.address = %host,
                    server.port = port.map(i64::from),
                    client.address = connection.peer_addr(),
                    user_agent.original = user_agent,
                )
            };
        }
        // Probes and scrapes every few seconds would bury the traces worth reading: their
        // spans are below the level that becomes a trace (and a log line, at `info`).
        let span = if is_probe(request.path()) {
            request_span!(tracing::Level::DEBUG)
        } else {
            request_span!(tracing::Level::INFO)
        };
        let _ = span.set_parent(extract(&IncomingHeaders(request.headers())));
        request.extensions_mut().insert(request_id);
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
        span.record("http.response.status_code", i64::from(status.as_u16()));
        // A 4xx is the client's doing, not a failure of the server span.
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// `host[:port]` → host and port (when given).
fn split_host(host: &str) -> (String, Option<u16>) {
    match host
        .rsplit_once(':')
        .map(|(name, port)| (name, port.parse()))
    {
        Some((name, Ok(port))) => (name.to_owned(), Some(port)),
        _ => (host.to_owned(), None),
    }
}

/// Runs inside the request span: writes one access-log line per request and returns the
/// request id to the caller in `x-request-id`, and the trace in `traceresponse`.
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
        let trace = traceparent(&Span::current());
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
            let headers = response.headers_mut();
            if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
                headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
            }
            if let Some(trace) = trace.and_then(|t| HeaderValue::from_str(&t).ok()) {
                headers.insert(HeaderName::from_static(TRACERESPONSE_HEADER), trace);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<TelemetrySettings, ConfigError> {
        TelemetrySettings::from_source(&ConfigSource::from_pairs(pairs.iter().copied()))
    }

    fn export(pairs: &[(&str, &str)]) -> Option<TraceExport> {
        settings(pairs).expect("valid settings").export
    }

    #[test]
    fn without_an_endpoint_nothing_is_exported() {
        assert_eq!(export(&[]), None);
        assert_eq!(export(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]), None);
    }

    #[test]
    fn the_http_endpoint_gets_the_traces_path_and_the_signal_endpoint_is_kept_as_it_is() {
        let base =
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).expect("exported");
        assert_eq!(base.endpoint.as_str(), "http://collector:4318/v1/traces");
        assert_eq!(base.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(base.timeout, Duration::from_secs(10));

        let prefixed =
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gw:8080/otlp/")]).expect("exported");
        assert_eq!(prefixed.endpoint.as_str(), "http://gw:8080/otlp/v1/traces");

        let signal = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:9999/custom"),
        ])
        .expect("exported");
        assert_eq!(signal.endpoint.as_str(), "http://c:9999/custom");
    }

    #[test]
    fn grpc_uses_the_endpoint_as_it_is() {
        let grpc = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .expect("exported");
        assert_eq!(grpc.protocol, OtlpProtocol::Grpc);
        assert_eq!(grpc.endpoint.as_str(), "http://collector:4317/");
        assert_eq!(grpc.timeout, Duration::from_millis(2500));
        let per_signal = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .expect("exported");
        assert_eq!(per_signal.protocol, OtlpProtocol::Grpc);
    }

    #[test]
    fn a_disabled_sdk_or_exporter_exports_nothing() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(export(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]), None);
        assert_eq!(export(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]), None);
        assert!(export(&[endpoint, ("OTEL_SDK_DISABLED", "false")]).is_some());
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        for pairs in [
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")][..],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector")],
            &[("OTEL_TRACES_SAMPLER", "sometimes")],
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ],
            &[("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign")],
            &[("OTEL_SDK_DISABLED", "yes")],
            &[("OTEL_TRACES_EXPORTER", "zipkin")],
        ] {
            let error = settings(pairs).expect_err("refused");
            assert!(
                error.to_string().contains(pairs[pairs.len() - 1].0),
                "{error} names {pairs:?}"
            );
        }
    }

    #[test]
    fn the_sampler_defaults_to_parent_based_always_on() {
        let default = settings(&[]).expect("valid").sampler;
        assert_eq!(default, TraceSampler::default());
        assert!(matches!(default.sampler(), Sampler::ParentBased(_)));
        let ratio = settings(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .expect("valid")
        .sampler;
        assert_eq!(
            ratio,
            TraceSampler {
                parent_based: true,
                root: RootSampler::Ratio(0.25)
            }
        );
        let off = settings(&[("OTEL_TRACES_SAMPLER", "always_off")])
            .expect("valid")
            .sampler;
        assert!(!off.parent_based);
    }

    #[test]
    fn resource_attributes_are_pairs_with_percent_encoded_values() {
        let settings = settings(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=dev, team=shop%20core",
            ),
            ("OTEL_SERVICE_NAME", "orders-eu"),
        ])
        .expect("valid");
        assert_eq!(
            settings.resource_attributes,
            [
                ("deployment.environment.name".to_owned(), "dev".to_owned()),
                ("team".to_owned(), "shop core".to_owned())
            ]
        );
        assert_eq!(settings.service_name.as_deref(), Some("orders-eu"));
    }

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn json(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().expect("lines").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(|line| serde_json::from_str(line).expect("a JSON line"))
                .collect()
        }
    }

    fn logging_to(lines: &Lines, filter: &str) -> Dispatch {
        let settings = TelemetrySettings::logs_only(LogFormat::Json, filter);
        let provider = tracer_provider("test", &settings).expect("provider");
        let lines = lines.clone();
        dispatch(
            &provider,
            "test",
            LogFormat::Json,
            EnvFilter::new(filter),
            move || lines.clone(),
            false,
        )
    }

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_line_carries_the_trace_and_span_id_of_its_span_without_any_exporter() {
        let lines = Lines::default();
        let (inner_id, outer_id) =
            tracing::dispatcher::with_default(&logging_to(&lines, "info"), || {
                let outer = tracing::info_span!("outer", request_id = "r-1");
                continue_trace(
                    &outer,
                    &[(TRACEPARENT_HEADER.to_owned(), CALLER.to_owned())].into(),
                );
                let inner = outer.in_scope(|| tracing::info_span!("inner"));
                outer.in_scope(|| tracing::info!("in the outer span"));
                inner.in_scope(|| tracing::warn!("in the inner span"));
                tracing::info!("in no span");
                (traceparent(&inner), traceparent(&outer))
            });

        let lines = lines.json();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let span_id = |traceparent: Option<String>| {
            traceparent
                .expect("a valid context")
                .split('-')
                .nth(2)
                .map(str::to_owned)
        };
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(lines[0]["span_id"].as_str(), span_id(outer_id).as_deref());
        assert_ne!(
            lines[0]["span_id"], "00f067aa0ba902b7",
            "the service's own span"
        );
        assert_eq!(
            lines[0]["spans"][0]["request_id"], "r-1",
            "span fields stay"
        );
        assert_eq!(lines[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(lines[1]["span_id"].as_str(), span_id(inner_id).as_deref());
        assert!(lines[2].get("trace_id").is_none(), "{:?}", lines[2]);
        assert_eq!(
            lines[2]["fields"].get("message"),
            None,
            "flattened: {:?}",
            lines[2]
        );
        assert_eq!(lines[2]["message"], "in no span");
    }

    #[test]
    fn spans_the_log_filter_leaves_out_still_give_their_ids_to_the_lines() {
        let lines = Lines::default();
        tracing::dispatcher::with_default(&logging_to(&lines, "warn"), || {
            let span = tracing::info_span!("request");
            continue_trace(
                &span,
                &[(TRACEPARENT_HEADER.to_owned(), CALLER.to_owned())].into(),
            );
            span.in_scope(|| {
                tracing::info!("filtered out");
                tracing::warn!("kept");
            });
        });

        let lines = lines.json();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["message"], "kept");
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    fn exporting_to(endpoint: String, protocol: OtlpProtocol) -> TelemetrySettings {
        TelemetrySettings {
            export: Some(TraceExport {
                endpoint: Url::parse(&endpoint).expect("url"),
                protocol,
                timeout: Duration::from_secs(10),
                batch_delay: Duration::from_millis(50),
            }),
            ..TelemetrySettings::logs_only(LogFormat::Json, "info")
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_real_receiver_over_http_and_over_grpc() {
        use opentelemetry::trace::Tracer as _;
        let receiver = dev_otlp::DevOtlp::start_with_grpc("127.0.0.1:0", "127.0.0.1:0")
            .await
            .expect("receiver");
        let http = format!("{}/v1/traces", receiver.endpoint());
        let grpc = receiver.grpc_endpoint().expect("grpc");
        for (endpoint, protocol) in [
            (http, OtlpProtocol::HttpProtobuf),
            (grpc, OtlpProtocol::Grpc),
        ] {
            let provider = tracer_provider("order-service", &exporting_to(endpoint, protocol))
                .expect("provider");
            provider
                .tracer("test")
                .in_span(format!("over {protocol}"), |_| {});
            // The batch processor's thread blocks on the export; the runtime drives it.
            tokio::task::spawn_blocking(move || provider.force_flush())
                .await
                .expect("flushed")
                .expect("exported");
        }

        let names: Vec<(String, String)> = receiver
            .spans()
            .into_iter()
            .map(|span| (span.name, span.service))
            .collect();
        assert_eq!(
            names,
            [
                ("over http/protobuf".to_owned(), "order-service".to_owned()),
                ("over grpc".to_owned(), "order-service".to_owned()),
            ]
        );
    }

    /// A collector that takes the connection and never answers: the worst kind of down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutting_down_waits_at_most_two_seconds_for_a_collector_that_hangs() {
        use opentelemetry::trace::Tracer as _;
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = silent.local_addr().expect("address");
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            let endpoint = format!("http://{address}");
            let provider =
                tracer_provider("test", &exporting_to(endpoint, protocol)).expect("provider");
            provider.tracer("test").in_span("stuck", |_| {});
            let telemetry = Telemetry {
                provider,
                exporting: true,
            };
            // The export is in flight once the exporter has connected.
            let (_connection, _) = tokio::time::timeout(Duration::from_secs(10), silent.accept())
                .await
                .expect("the exporter connects")
                .expect("accepted");

            let started = Instant::now();
            tokio::task::spawn_blocking(move || drop(telemetry))
                .await
                .expect("dropped");

            let took = started.elapsed();
            assert!(
                took < SHUTDOWN_TIMEOUT + Duration::from_millis(500),
                "{protocol}: shutdown took {took:?}"
            );
        }
    }

    #[test]
    fn hosts_are_split_from_their_ports() {
        assert_eq!(split_host("shop:8082"), ("shop".to_owned(), Some(8082)));
        assert_eq!(split_host("shop"), ("shop".to_owned(), None));
        assert_eq!(split_host("[::1]:80"), ("[::1]".to_owned(), Some(80)));
        assert_eq!(split_host("[::1]"), ("[::1]".to_owned(), None));
    }
}
