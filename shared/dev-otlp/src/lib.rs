//! A development OTLP trace receiver: what `make run` sends the services' spans to when
//! there is no collector, what `make demo` asks for an order's span tree, and what the
//! end-to-end tests start (on port 0) to check the traces the four processes export.
//!
//! It speaks real OTLP, the way a collector does, so a service configured for it is
//! configured for a real collector too: OTLP/HTTP with protobuf bodies (`POST /v1/traces`,
//! an `ExportTraceServiceRequest`, answered with an `ExportTraceServiceResponse`) and, on
//! a second port when asked for, OTLP/gRPC (`TraceService/Export`).
//! It keeps the most recent spans in memory (nothing on disk) and shows them as JSON:
//!
//! - `GET /traces/{trace_id}`: every span of the trace, in start order (404 if none);
//! - `GET /traces`: the most recent traces, newest first, with their root span;
//! - `GET /health`: 200 while it runs.
//!
//! Not for production: no persistence, no authentication, no sampling, no gzip.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::TcpListener,
    sync::{Arc, Mutex, MutexGuard},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, http::header, web};
use anyhow::Context;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::span::SpanKind,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How many spans are kept; the oldest go first.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// The largest export request accepted.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One received span, as `GET /traces/{trace_id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `internal`, `server`, `client`, `producer` or `consumer`.
    pub kind: String,
    /// The resource's `service.name`.
    pub service: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub duration_ms: f64,
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub links: Vec<LinkRecord>,
    /// `unset`, `ok` or `error`.
    pub status: String,
    pub status_message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub trace_id: String,
    pub span_id: String,
}

impl SpanRecord {
    /// The attribute `key` as a string, if it is one.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(serde_json::Value::as_str)
    }
}

/// A trace in `GET /traces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub spans: usize,
    /// The root span's service and name, when it has arrived.
    pub root: Option<String>,
    pub services: Vec<String>,
    pub start_unix_nano: u64,
}

/// The spans received, oldest first.
#[derive(Debug)]
struct Store {
    capacity: usize,
    spans: VecDeque<SpanRecord>,
    requests: u64,
}

impl Store {
    fn add(&mut self, spans: impl IntoIterator<Item = SpanRecord>) {
        self.requests += 1;
        for span in spans {
            if self.spans.len() == self.capacity {
                self.spans.pop_front();
            }
            self.spans.push_back(span);
        }
    }

    fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        let trace_id = trace_id.to_ascii_lowercase();
        let mut spans: Vec<SpanRecord> = self
            .spans
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect();
        spans.sort_by_key(|span| span.start_unix_nano);
        spans
    }

    fn recent(&self, limit: usize) -> Vec<TraceSummary> {
        let mut traces: HashMap<&str, TraceSummary> = HashMap::new();
        for span in &self.spans {
            let summary = traces
                .entry(span.trace_id.as_str())
                .or_insert_with(|| TraceSummary {
                    trace_id: span.trace_id.clone(),
                    spans: 0,
                    root: None,
                    services: Vec::new(),
                    start_unix_nano: span.start_unix_nano,
                });
            summary.spans += 1;
            summary.start_unix_nano = summary.start_unix_nano.min(span.start_unix_nano);
            if span.parent_span_id.is_empty() {
                summary.root = Some(format!("{}: {}", span.service, span.name));
            }
            if !summary.services.contains(&span.service) {
                summary.services.push(span.service.clone());
            }
        }
        let mut traces: Vec<TraceSummary> = traces.into_values().collect();
        traces.sort_by_key(|trace| std::cmp::Reverse(trace.start_unix_nano));
        traces.truncate(limit);
        traces
    }
}

#[derive(Debug, Clone)]
struct Shared(Arc<Mutex<Store>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // The store is plain data: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running receiver. Stops when dropped.
pub struct DevOtlp {
    port: u16,
    store: Shared,
    handle: ServerHandle,
    grpc: Option<(u16, oneshot::Sender<()>)>,
}

impl DevOtlp {
    /// Listens for OTLP/HTTP on `addr` (`127.0.0.1:0` for a free port) and serves in the
    /// background on the current Tokio runtime.
    pub fn start(addr: &str) -> anyhow::Result<Self> {
        Self::with_capacity(addr, DEFAULT_CAPACITY)
    }

    /// Also listens for OTLP/gRPC on `grpc_addr`, into the same store.
    pub async fn start_with_grpc(addr: &str, grpc_addr: &str) -> anyhow::Result<Self> {
        let mut receiver = Self::start(addr)?;
        let listener = tokio::net::TcpListener::bind(grpc_addr)
            .await
            .with_context(|| format!("cannot listen on {grpc_addr}"))?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc(receiver.store.clone())))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        receiver.grpc = Some((port, stop));
        Ok(receiver)
    }

    pub fn with_capacity(addr: &str, capacity: usize) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let port = listener.local_addr()?.port();
        let store = Shared(Arc::new(Mutex::new(Store {
            capacity: capacity.max(1),
            spans: VecDeque::new(),
            requests: 0,
        })));
        let state = web::Data::new(store.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .route("/v1/traces", web::post().to(export))
                .route("/traces", web::get().to(recent))
                .route("/traces/{trace_id}", web::get().to(trace))
                .route("/health", web::get().to(HttpResponse::Ok))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            port,
            store,
            handle,
            grpc: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`,
    /// when it listens for gRPC.
    pub fn grpc_endpoint(&self) -> Option<String> {
        self.grpc
            .as_ref()
            .map(|(port, _)| format!("http://127.0.0.1:{port}"))
    }

    /// The spans of `trace_id` received so far, in start order.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        self.store.lock().trace(trace_id)
    }

    /// Every span kept, oldest first.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.store.lock().spans.iter().cloned().collect()
    }

    /// How many export requests were accepted.
    pub fn requests(&self) -> u64 {
        self.store.lock().requests
    }

    /// Stops serving; in-flight requests get a second.
    pub async fn stop(mut self) {
        if let Some((_, stop)) = self.grpc.take() {
            let _ = stop.send(());
        }
        self.handle.stop(true).await;
    }
}

impl Drop for DevOtlp {
    fn drop(&mut self) {
        if let Some((_, stop)) = self.grpc.take() {
            let _ = stop.send(());
        }
        drop(self.handle.stop(false));
    }
}

/// `TraceService/Export` over gRPC.
struct Grpc(Shared);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().add(records(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `POST /v1/traces`.
async fn export(request: HttpRequest, body: web::Bytes, store: web::Data<Shared>) -> HttpResponse {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-protobuf") {
        return HttpResponse::UnsupportedMediaType()
            .body("dev-otlp takes OTLP/HTTP with protobuf bodies (OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)\n");
    }
    if request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return HttpResponse::UnsupportedMediaType()
            .body("dev-otlp takes uncompressed bodies (unset OTEL_EXPORTER_OTLP_COMPRESSION)\n");
    }
    let decoded = match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(decoded) => decoded,
        Err(error) => {
            return HttpResponse::BadRequest()
                .body(format!("not an ExportTraceServiceRequest: {error}\n"));
        }
    };
    store.lock().add(records(decoded));
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

/// `GET /traces/{trace_id}`.
async fn trace(trace_id: web::Path<String>, store: web::Data<Shared>) -> HttpResponse {
    let spans = store.lock().trace(&trace_id);
    if spans.is_empty() {
        return HttpResponse::NotFound().json(serde_json::json!({
            "error": format!("no spans of trace {trace_id} (yet)"),
        }));
    }
    HttpResponse::Ok().json(serde_json::json!({
        "trace_id": trace_id.to_ascii_lowercase(),
        "spans": spans,
    }))
}

/// `GET /traces`.
async fn recent(store: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(store.lock().recent(50))
}

/// The spans of an export request, flattened with their service.
fn records(request: ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut records = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| resource.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(json_value)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown_service".to_owned());
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            let (status, status_message) = match span.status {
                Some(status) => (
                    match status.code {
                        1 => "ok",
                        2 => "error",
                        _ => "unset",
                    },
                    status.message,
                ),
                None => ("unset", String::new()),
            };
            records.push(SpanRecord {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: kind_name(span.kind).to_owned(),
                service: service.clone(),
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
                duration_ms: span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano) as f64
                    / 1e6,
                attributes: attributes(&span.attributes),
                links: span
                    .links
                    .iter()
                    .map(|link| LinkRecord {
                        trace_id: hex(&link.trace_id),
                        span_id: hex(&link.span_id),
                    })
                    .collect(),
                status: status.to_owned(),
                status_message,
                name: span.name,
            });
        }
    }
    records
}

fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal | SpanKind::Unspecified => "internal",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, serde_json::Value> {
    attributes
        .iter()
        .map(|kv| {
            let value = kv
                .value
                .as_ref()
                .map_or(serde_json::Value::Null, json_value);
            (kv.key.clone(), value)
        })
        .collect()
}

fn json_value(value: &AnyValue) -> serde_json::Value {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone().into(),
        Some(Value::BoolValue(b)) => (*b).into(),
        Some(Value::IntValue(i)) => (*i).into(),
        Some(Value::DoubleValue(d)) => (*d).into(),
        Some(Value::ArrayValue(array)) => array.values.iter().map(json_value).collect(),
        Some(Value::KvlistValue(list)) => {
            serde_json::Value::Object(attributes(&list.values).into_iter().collect())
        }
        Some(Value::BytesValue(bytes)) => hex(bytes).into(),
        // A reference into a profiles string table: not used by traces.
        Some(Value::StringValueStrindex(_)) | None => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, KeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link},
    };

    use super::*;

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn span(trace: u8, id: u8, parent: Option<u8>, start: u64) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("span {id}"),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 2_500_000,
            attributes: vec![string("http.route", "/x")],
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                ..Link::default()
            }],
            ..Span::default()
        }
    }

    fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string("service.name", service)],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
    }

    async fn post(receiver: &DevOtlp, body: Vec<u8>, content_type: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/traces", receiver.endpoint()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn spans_posted_over_otlp_http_come_back_by_trace_in_start_order() {
        let receiver = DevOtlp::start("127.0.0.1:0").unwrap();
        let first = request(
            "order-service",
            vec![span(1, 2, Some(1), 20), span(2, 7, None, 5)],
        );
        let second = request("inventory-service", vec![span(1, 1, None, 10)]);

        for body in [first, second] {
            let response = post(&receiver, body.encode_to_vec(), "application/x-protobuf").await;
            assert_eq!(response.status(), 200);
            let answer = response.bytes().await.unwrap();
            ExportTraceServiceResponse::decode(answer.as_ref()).expect("an OTLP response");
        }

        let trace = receiver.trace(&"01".repeat(16));
        assert_eq!(trace.len(), 2);
        assert_eq!(trace[0].span_id, "01".repeat(8));
        assert_eq!(trace[0].service, "inventory-service");
        assert_eq!(trace[0].parent_span_id, "");
        assert_eq!(trace[1].parent_span_id, "01".repeat(8));
        assert_eq!(trace[1].kind, "server");
        assert_eq!(trace[1].duration_ms, 2.5);
        assert_eq!(trace[1].attribute("http.route"), Some("/x"));
        assert_eq!(trace[1].links[0].span_id, "09".repeat(8));
        assert_eq!(receiver.requests(), 2);

        let json: serde_json::Value = reqwest::get(format!(
            "{}/traces/{}",
            receiver.endpoint(),
            "01".repeat(16)
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(json["spans"].as_array().map(Vec::len), Some(2));
        let recent: Vec<TraceSummary> = reqwest::get(format!("{}/traces", receiver.endpoint()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(recent[0].trace_id, "01".repeat(16), "newest first");
        assert_eq!(recent[0].root.as_deref(), Some("inventory-service: span 1"));
        let unknown = reqwest::get(format!(
            "{}/traces/{}",
            receiver.endpoint(),
            "ab".repeat(16)
        ))
        .await
        .unwrap();
        assert_eq!(unknown.status(), 404);
    }

    #[tokio::test]
    async fn spans_exported_over_grpc_land_in_the_same_store() {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
        let receiver = DevOtlp::start_with_grpc("127.0.0.1:0", "127.0.0.1:0")
            .await
            .unwrap();
        let mut client = TraceServiceClient::connect(receiver.grpc_endpoint().unwrap())
            .await
            .unwrap();

        client
            .export(request("payment-service", vec![span(3, 1, None, 1)]))
            .await
            .unwrap();

        let trace = receiver.trace(&"03".repeat(16));
        assert_eq!(trace.len(), 1);
        assert_eq!(trace[0].service, "payment-service");
    }

    #[tokio::test]
    async fn bodies_it_cannot_read_are_refused_and_keep_nothing() {
        let receiver = DevOtlp::start("127.0.0.1:0").unwrap();

        let json = post(&receiver, b"{}".to_vec(), "application/json").await;
        let garbage = post(&receiver, vec![0xff, 0xff, 0xff], "application/x-protobuf").await;

        assert_eq!(json.status(), 415);
        assert_eq!(garbage.status(), 400);
        assert_eq!(receiver.requests(), 0);
        assert!(receiver.spans().is_empty());
    }

    #[test]
    fn the_oldest_spans_make_room() {
        let mut store = Store {
            capacity: 2,
            spans: VecDeque::new(),
            requests: 0,
        };
        store.add(records(request(
            "s",
            vec![span(1, 1, None, 1), span(1, 2, None, 2)],
        )));
        store.add(records(request("s", vec![span(1, 3, None, 3)])));
        let ids: Vec<String> = store.spans.iter().map(|s| s.span_id.clone()).collect();
        assert_eq!(ids, ["02".repeat(8), "03".repeat(8)]);
    }
}
