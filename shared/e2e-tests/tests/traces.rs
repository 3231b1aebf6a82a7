//! Traces end to end, in Kafka mode and in RabbitMQ mode: the four service processes
//! export their spans over real OTLP/HTTP to a receiver in the test (`dev-otlp`), and one
//! order is one trace across them, with the parent links of W3C trace context carried by
//! HTTP headers, outbox rows and message headers. One scenario per broker: starting the
//! stack is the expensive part, so everything about traces is checked on the same run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use dev_otlp::{DevOtlp, SpanRecord};
use e2e_tests::{Mode, SAGA_DEADLINE, Service, Stack};
use shop_model::{
    api::{Order, OrderStatus, TokenResponse, User},
    events::{Event, OrderConfirmed, OrderPlaced, PaymentSucceeded, StockReserved, UserRegistered},
};

e2e_tests::both_brokers!(one_order_is_one_trace_across_the_four_services);

async fn one_order_is_one_trace_across_the_four_services(mode: Mode) {
    let receiver = DevOtlp::start("127.0.0.1:0").expect("the receiver");
    let endpoint = receiver.endpoint();
    let mut stack = Stack::start_with_env(
        mode,
        "traces",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let system = match mode {
        Mode::Kafka => "kafka",
        Mode::RabbitMq => "rabbitmq",
    };

    // Registration: UserRegistered is consumed in the registration's trace.
    let (token, registration) = register(&stack).await;
    let registration = wait_for(&receiver, &registration, "the wallet opened", |trace| {
        trace
            .consumer(UserRegistered::TYPE, "payment-service")
            .is_some()
    })
    .await;
    let signup = registration.root("user-service", "POST /api/v1/users");
    let registered = registration.producer(UserRegistered::TYPE, "user-service");
    assert!(registration.descends(registered, signup));
    let opened = registration
        .consumer(UserRegistered::TYPE, "payment-service")
        .unwrap();
    assert_eq!(opened.parent_span_id, registered.span_id);

    // One order, through the whole saga.
    let mug = stack.create_product(1_500, 10).await;
    let response = stack
        .api(Service::Order)
        .post("/api/v1/orders")
        .bearer(&token)
        .json(&serde_json::json!({"items": [{"product_id": mug.id, "quantity": 2}]}))
        .send()
        .await;
    response.assert_status(202);
    let order_trace = trace_id_of(&response.header("traceresponse"));
    let order: Order = response.json();
    test_kit::eventually(SAGA_DEADLINE, "the order confirmed", || async {
        let response = stack
            .api(Service::Order)
            .get(&format!("/api/v1/orders/{}", order.id))
            .bearer(&token)
            .send()
            .await;
        (response.json::<Order>().status == OrderStatus::Confirmed).then_some(())
    })
    .await;
    let trace = wait_for(&receiver, &order_trace, "the sale's span", |trace| {
        trace
            .consumer(OrderConfirmed::TYPE, "inventory-service")
            .is_some()
            && trace
                .consumer(StockReserved::TYPE, "order-service")
                .is_some()
    })
    .await;

    // The request: a SERVER span that starts the trace; the price lookup is a CLIENT span
    // whose context reached inventory-service's SERVER span.
    let place = trace.root("order-service", "POST /api/v1/orders");
    assert_eq!(place.attribute("http.route"), Some("/api/v1/orders"));
    assert_eq!(place.attributes["http.response.status_code"], 202);
    let lookup = trace
        .spans
        .iter()
        .find(|s| {
            s.kind == "client"
                && s.service == "order-service"
                && s.attribute("url.full")
                    .is_some_and(|u| u.contains("/api/v1/products"))
        })
        .unwrap_or_else(|| panic!("the price lookup's CLIENT span in {trace}"));
    assert!(trace.descends(lookup, place));
    assert_eq!(lookup.attribute("http.request.method"), Some("GET"));
    let priced = trace.child_of(lookup, "server", "inventory-service");
    assert_eq!(priced.name, "GET /api/v1/products");

    // The saga: each event's PRODUCER span is written by the step before it, and each
    // CONSUMER span is the child of the PRODUCER span of the event it handles, in the
    // service that handles it; every hop crosses a process and the broker.
    let placed = trace.producer(OrderPlaced::TYPE, "order-service");
    assert!(trace.descends(placed, place));
    let steps = [
        (OrderPlaced::TYPE, "order-service", "inventory-service"),
        (StockReserved::TYPE, "inventory-service", "payment-service"),
        (StockReserved::TYPE, "inventory-service", "order-service"),
        (PaymentSucceeded::TYPE, "payment-service", "order-service"),
        (OrderConfirmed::TYPE, "order-service", "inventory-service"),
    ];
    for (event_type, producer, consumer) in steps {
        let produced = trace.producer(event_type, producer);
        let consumed = trace
            .consumer(event_type, consumer)
            .unwrap_or_else(|| panic!("{consumer} consuming {event_type} in {trace}"));
        assert_eq!(
            consumed.parent_span_id, produced.span_id,
            "{event_type} → {consumer}"
        );
        assert_eq!(
            produced.attribute("messaging.operation.type"),
            Some("create")
        );
        assert_eq!(
            consumed.attribute("messaging.operation.type"),
            Some("process")
        );
        assert_eq!(consumed.attribute("messaging.system"), Some(system));
        assert_eq!(
            consumed.attribute("messaging.destination.name"),
            produced.attribute("messaging.destination.name")
        );
        assert_eq!(
            consumed.attribute("messaging.message.id"),
            produced.attribute("messaging.message.id")
        );
        // The handler's transaction and state change are spans below the delivery's.
        let transaction = trace.child_of(consumed, "internal", consumer);
        assert_eq!(transaction.name, "transaction");
        assert_eq!(transaction.attribute("db.system.name"), Some("postgresql"));
        let handle = trace.child_of(transaction, "internal", consumer);
        assert_eq!(handle.name, format!("handle {event_type}"));
    }
    // Each step's event comes out of the previous step's delivery.
    for (event_type, cause, producer) in [
        (StockReserved::TYPE, OrderPlaced::TYPE, "inventory-service"),
        (
            PaymentSucceeded::TYPE,
            StockReserved::TYPE,
            "payment-service",
        ),
        (
            OrderConfirmed::TYPE,
            PaymentSucceeded::TYPE,
            "order-service",
        ),
    ] {
        let delivery = trace.consumer(cause, producer).unwrap();
        assert!(
            trace.descends(trace.producer(event_type, producer), delivery),
            "{event_type} published while handling {cause}"
        );
    }
    let mut services: Vec<&str> = trace.spans.iter().map(|s| s.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    assert_eq!(
        services,
        ["inventory-service", "order-service", "payment-service"]
    );
    // The relay publishes in a trace of its own, linked to the row's PRODUCER span.
    let sent = receiver
        .spans()
        .into_iter()
        .find(|s| s.links.iter().any(|l| l.span_id == placed.span_id))
        .unwrap_or_else(|| panic!("no span links to the OrderPlaced PRODUCER span"));
    assert_eq!(sent.name, "send shop.orders");
    assert_eq!(sent.service, "order-service");
    assert_eq!(sent.attribute("messaging.system"), Some(system));
    assert_eq!(sent.attribute("messaging.operation.type"), Some("send"));
    assert_ne!(sent.trace_id, order_trace);

    // The order's log lines carry its trace id, and the span ids of its spans.
    for (service, message) in [
        (Service::Order, "request completed"),
        (Service::Inventory, "event applied"),
        (Service::Payment, "event applied"),
        (Service::Order, "event applied"),
    ] {
        let lines = log_lines(&stack.log(service), &order_trace);
        let line = lines
            .iter()
            .find(|line| line["message"] == message)
            .unwrap_or_else(|| panic!("{service:?}: no `{message}` line of the order's trace"));
        let span_id = line["span_id"].as_str().expect("a span_id");
        assert!(
            trace.spans.iter().any(|s| s.span_id == span_id),
            "{service:?}'s line names a span of the trace: {line}"
        );
    }

    // Without an endpoint: no exporter at all, and the ids are still there for the logs.
    let (replica, replica_log) = stack
        .add_replica_with(
            Service::Inventory,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", None),
            ],
        )
        .await;
    let unexported = "0af7651916cd43dd8448eb211c80319c";
    replica
        .get("/api/v1/products")
        .header(
            "traceparent",
            &format!("00-{unexported}-b7ad6b7169203331-01"),
        )
        .send()
        .await
        .assert_status(200);
    // The same request to an exporting replica shows what the receiver would have got by
    // now.
    let exported = "4bf92f3577b34da6a3ce929d0e0e4736";
    stack
        .api(Service::Inventory)
        .get("/api/v1/products")
        .header("traceparent", &format!("00-{exported}-00f067aa0ba902b7-01"))
        .send()
        .await
        .assert_status(200);
    wait_for(
        &receiver,
        exported,
        "the exporting replica's span",
        |trace| !trace.spans.is_empty(),
    )
    .await;
    assert_eq!(receiver.trace(unexported), []);
    let log = std::fs::read_to_string(&replica_log).expect("the replica's log");
    let starting = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "starting")
        .expect("a start-up line");
    assert_eq!(starting["traces"], "not exported");
    assert!(
        !log_lines(&log, unexported).is_empty(),
        "the replica's lines carry the request's trace id"
    );
    let otel_complaints: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("opentelemetry") && !line.contains(r#""level":"INFO""#))
        .collect();
    assert_eq!(otel_complaints, Vec::<&str>::new());
}

/// Registers a customer; returns their token and the registration's trace id.
async fn register(stack: &Stack) -> (String, String) {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let response = stack
        .api(Service::User)
        .post("/api/v1/users")
        .json(&serde_json::json!({"email": email, "password": "password123", "name": "Tracy"}))
        .send()
        .await;
    response.assert_status(201);
    let _: User = response.json();
    let trace_id = trace_id_of(&response.header("traceresponse"));
    let login = stack
        .api(Service::User)
        .post("/api/v1/auth/token")
        .json(&serde_json::json!({"email": email, "password": "password123"}))
        .send()
        .await;
    login.assert_status(200);
    (login.json::<TokenResponse>().access_token, trace_id)
}

/// The trace id in a `traceresponse` (`00-<trace id>-<span id>-<flags>`).
fn trace_id_of(header: &Option<String>) -> String {
    let header = header.as_deref().expect("a traceresponse header");
    let parts: Vec<&str> = header.split('-').collect();
    assert!(
        parts.len() == 4 && parts[1].len() == 32,
        "a traceresponse: {header}"
    );
    parts[1].to_owned()
}

/// The JSON log lines of `log` that belong to trace `trace_id`.
fn log_lines(log: &str, trace_id: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["trace_id"] == trace_id)
        .collect()
}

/// Polls the receiver until the trace satisfies `done`.
async fn wait_for(
    receiver: &DevOtlp,
    trace_id: &str,
    what: &str,
    done: impl Fn(&Trace) -> bool,
) -> Trace {
    let found = tokio::time::timeout(SAGA_DEADLINE, async {
        loop {
            let trace = Trace {
                spans: receiver.trace(trace_id),
            };
            if done(&trace) {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        let trace = Trace {
            spans: receiver.trace(trace_id),
        };
        panic!("timed out waiting for {what} in {trace}")
    })
}

/// The spans of one trace as the receiver got them.
struct Trace {
    spans: Vec<SpanRecord>,
}

impl Trace {
    fn span(&self, id: &str) -> Option<&SpanRecord> {
        self.spans.iter().find(|s| s.span_id == id)
    }

    /// The trace's root: a SERVER span of `service` named `name`, with no parent.
    fn root(&self, service: &str, name: &str) -> &SpanRecord {
        let root = self
            .spans
            .iter()
            .find(|s| s.parent_span_id.is_empty())
            .unwrap_or_else(|| panic!("no root span in {self}"));
        assert_eq!(
            (
                root.service.as_str(),
                root.kind.as_str(),
                root.name.as_str()
            ),
            (service, "server", name),
            "{self}"
        );
        root
    }

    /// Whether `ancestor` is above `span`.
    fn descends(&self, span: &SpanRecord, ancestor: &SpanRecord) -> bool {
        let mut next = self.span(&span.parent_span_id);
        while let Some(parent) = next {
            if parent.span_id == ancestor.span_id {
                return true;
            }
            next = self.span(&parent.parent_span_id);
        }
        false
    }

    /// The one child of `parent` of `kind` in `service`.
    fn child_of(&self, parent: &SpanRecord, kind: &str, service: &str) -> &SpanRecord {
        let children: Vec<&SpanRecord> = self
            .spans
            .iter()
            .filter(|s| {
                s.parent_span_id == parent.span_id && s.kind == kind && s.service == service
            })
            .collect();
        match children.as_slice() {
            [child] => child,
            _ => panic!("one {kind} child of {} in {service}: {self}", parent.name),
        }
    }

    /// The one PRODUCER span of an event of `event_type`, written by `service`.
    fn producer(&self, event_type: &str, service: &str) -> &SpanRecord {
        let producers: Vec<&SpanRecord> = self
            .spans
            .iter()
            .filter(|s| {
                s.kind == "producer"
                    && s.service == service
                    && s.attribute("cloudevents.event_type") == Some(event_type)
            })
            .collect();
        match producers.as_slice() {
            [producer] => producer,
            _ => panic!("one PRODUCER span of {event_type} in {service}: {self}"),
        }
    }

    /// The CONSUMER span of `service` handling an event of `event_type`.
    fn consumer(&self, event_type: &str, service: &str) -> Option<&SpanRecord> {
        self.spans.iter().find(|s| {
            s.kind == "consumer"
                && s.service == service
                && s.attribute("event_type") == Some(event_type)
        })
    }
}

/// The tree, for failure messages.
impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} spans:", self.spans.len())?;
        for span in &self.spans {
            let depth = std::iter::successors(Some(span), |s| self.span(&s.parent_span_id)).count();
            writeln!(
                f,
                "{}{} [{} {}] {} parent={}",
                "  ".repeat(depth),
                span.name,
                span.service,
                span.kind,
                span.span_id,
                span.parent_span_id
            )?;
        }
        Ok(())
    }
}
