//! The event core tested directly: the outbox relay, the idempotent consumer and the dead
//! letters, against a real PostgreSQL database and a real broker — once on the
//! Kafka-protocol test broker, once on RabbitMQ (a virtual host per test). Outages are made
//! with proxies the tests control, never by stopping a shared server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;
use service_kit::{
    config::{ConfigSource, DatabaseSettings},
    db,
    events::{
        DEAD_LETTER_TOPIC, EventBus, EventBusSettings, IncomingEvent, Message, Receiver,
        Subscription,
        consumer::{Consumer, ConsumerMetrics, EventHandler, HandlerError},
        dead_letters, headers, outbox,
    },
    telemetry,
};
use shop_model::{
    UserId,
    events::{CloudEvent, ConsumerSpec, Event, UserRegistered},
};
use sqlx::{PgConnection, PgPool, migrate::Migrator, postgres::PgPoolOptions};
use test_kit::{ChaosProxy, TestBroker, TestDatabase, Vhost};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);
/// The consumer the tests read as: its RabbitMQ queue is bound to `UserRegistered` by
/// every publisher, like the real payment-service's.
const CONSUMER: &str = "payment-service";

/// Runs each scenario once per broker.
macro_rules! both_buses {
    ($($name:ident),* $(,)?) => {
        mod kafka {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::$name(super::BusKind::Kafka).await;
            })*
        }
        mod rabbitmq {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::$name(super::BusKind::RabbitMq).await;
            })*
        }
    };
}

both_buses!(
    the_consumer_lag_counts_what_waits_and_falls_to_zero_once_handled,
    one_aggregates_events_are_published_once_in_commit_order_by_two_relays_and_racing_writers,
    events_written_while_the_broker_is_down_are_published_once_it_returns,
    a_row_the_broker_refuses_is_parked_and_holds_back_only_its_own_aggregate,
    a_handler_that_is_not_idempotent_applies_each_event_once_when_it_is_delivered_again,
    a_handler_that_is_not_idempotent_applies_each_event_once_when_two_replicas_get_it_at_once,
    consumers_wait_out_a_45_second_database_outage_and_dead_letter_nothing,
    a_permanent_failure_is_dead_lettered_with_its_headers_and_later_events_flow,
    a_handler_error_that_persists_while_the_database_answers_is_dead_lettered_after_bounded_attempts,
    replay_republishes_what_waited_and_ends_even_for_a_message_that_fails_every_time,
    a_consumer_joining_its_group_mid_stream_loses_and_duplicates_nothing,
    the_trace_goes_from_the_enqueuing_span_through_the_row_and_the_broker_to_the_handler,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    Kafka,
    RabbitMq,
}

// ---------------------------------------------------------------------------------------
// The fixture: a database (direct, and through a proxy), a broker (through a proxy for
// RabbitMQ; the mock broker can be taken down by itself), and the kit's settings.

enum Broker {
    Kafka(TestBroker),
    RabbitMq { vhost: Vhost, proxy: ChaosProxy },
}

struct Fixture {
    kind: BusKind,
    _database: TestDatabase,
    /// Direct: for the test's own reads and writes.
    pool: PgPool,
    /// Through `db_proxy`: what the relay and the consumers use.
    service_pool: PgPool,
    db_proxy: ChaosProxy,
    broker: Broker,
    settings: EventBusSettings,
}

impl Fixture {
    async fn start(kind: BusKind, extra: &[(&str, &str)]) -> Self {
        test_kit::init_test_logging();
        let database = TestDatabase::create().await;
        let pool = db::connect_and_migrate(
            &DatabaseSettings::for_tests(database.url()),
            &Migrator::DEFAULT,
        )
        .await
        .expect("kit migrations");
        sqlx::query(
            "CREATE TABLE applied_counts (event_id UUID PRIMARY KEY, n INTEGER NOT NULL, \
             handled_by TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
        )
        .execute(&pool)
        .await
        .expect("test table");
        let db_proxy = ChaosProxy::start("127.0.0.1:5432".to_owned()).await;
        let mut url = url::Url::parse(database.url().expose_secret()).expect("database url");
        url.set_port(Some(db_proxy.port())).expect("port");
        let service_pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(url.as_str())
            .expect("pool through the proxy");
        let broker = match kind {
            BusKind::Kafka => Broker::Kafka(TestBroker::start()),
            BusKind::RabbitMq => {
                let vhost = Vhost::create_named("kit").await;
                let proxy = ChaosProxy::start(vhost.host_port()).await;
                Broker::RabbitMq { vhost, proxy }
            }
        };
        let mut pairs: Vec<(String, String)> = vec![
            ("OUTBOX_POLL_INTERVAL_MS".into(), "100".into()),
            ("CONSUMER_RETRY_BACKOFF_MS".into(), "50".into()),
            ("CONSUMER_MAX_ATTEMPTS".into(), "3".into()),
            ("CONSUMER_MAX_BACKOFF_MS".into(), "2000".into()),
            ("KAFKA_SESSION_TIMEOUT_MS".into(), "6000".into()),
        ];
        match &broker {
            Broker::Kafka(broker) => {
                pairs.push(("EVENT_BUS".into(), "kafka".into()));
                pairs.push(("KAFKA_BROKERS".into(), broker.bootstrap_servers().into()));
            }
            Broker::RabbitMq { vhost, proxy } => {
                pairs.push(("EVENT_BUS".into(), "rabbitmq".into()));
                pairs.push(("AMQP_URL".into(), vhost.url_via(proxy.port())));
            }
        }
        pairs.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let settings =
            EventBusSettings::from_source(&ConfigSource::from_pairs(pairs)).expect("settings");
        Self {
            kind,
            _database: database,
            pool,
            service_pool,
            db_proxy,
            broker,
            settings,
        }
    }

    async fn bus(&self, client_id: &str) -> EventBus {
        EventBus::connect(&self.settings, client_id)
            .await
            .expect("bus")
    }

    async fn set_broker_up(&self, up: bool) {
        match &self.broker {
            Broker::Kafka(broker) => broker.set_up(up),
            Broker::RabbitMq { proxy, .. } => proxy.set_open(up).await,
        }
    }

    /// Starts an outbox relay on the service pool; stops when `shutdown` is cancelled.
    async fn relay(&self, shutdown: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let relay = outbox::OutboxRelay::new(
            self.service_pool.clone(),
            self.bus("relay").await,
            self.settings.outbox.clone(),
            &prometheus::Registry::new(),
        )
        .expect("relay");
        tokio::spawn(relay.run(shutdown.clone()))
    }

    /// Starts a consumer named [`CONSUMER`] with `handler`; returns its metrics registry.
    async fn consumer<H: EventHandler>(
        &self,
        handler: H,
        shutdown: &CancellationToken,
    ) -> prometheus::Registry {
        let registry = prometheus::Registry::new();
        let consumer = Consumer::new(
            self.service_pool.clone(),
            self.bus("consumer").await,
            ConsumerSpec::named(CONSUMER).expect("spec"),
            handler,
            self.settings.consumer.clone(),
            ConsumerMetrics::register(&registry).expect("metrics"),
        );
        tokio::spawn(consumer.run(shutdown.clone()));
        registry
    }

    /// A receiver of [`CONSUMER`]'s subscription, to read what the relay published.
    async fn reader(&self) -> Receiver {
        self.bus("reader")
            .await
            .subscribe(&Subscription {
                consumer: CONSUMER.to_owned(),
                topics: vec![UserRegistered::TOPIC],
                event_types: vec![UserRegistered::TYPE],
            })
            .await
            .expect("subscribe")
    }

    /// How many dead letters wait on the broker.
    async fn dead_letters(&self) -> u64 {
        self.bus("dead-letter-count")
            .await
            .backlog(&dead_letter_subscription())
            .await
            .expect("dead-letter backlog")
            .len()
    }

    async fn applied(&self) -> BTreeMap<uuid::Uuid, i32> {
        sqlx::query_as::<_, (uuid::Uuid, i32)>("SELECT event_id, n FROM applied_counts")
            .fetch_all(&self.pool)
            .await
            .expect("counts")
            .into_iter()
            .collect()
    }
}

fn dead_letter_subscription() -> Subscription {
    Subscription {
        consumer: DEAD_LETTER_TOPIC.to_owned(),
        topics: vec![DEAD_LETTER_TOPIC],
        event_types: Vec::new(),
    }
}

fn registered(user: UserId) -> UserRegistered {
    UserRegistered {
        user_id: user,
        email: format!("{user}@example.com"),
        name: "Test".to_owned(),
    }
}

/// The message of a new `UserRegistered` event, as a relay would publish it.
fn message_for(event: &UserRegistered) -> Message {
    Message::from_event(&CloudEvent::new("/test", event), event).expect("message")
}

fn event_id(message: &Message) -> uuid::Uuid {
    uuid::Uuid::parse_str(message.header(headers::ID).expect("ce_id")).expect("uuid")
}

/// Receives (and acknowledges) `count` messages.
async fn receive(receiver: &mut Receiver, count: usize) -> Vec<Message> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut messages = Vec::new();
    while messages.len() < count {
        let delivery = tokio::time::timeout_at(deadline, receiver.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", messages.len()))
            .expect("receive");
        receiver.ack(&delivery).await.expect("ack");
        messages.push(delivery.message);
    }
    messages
}

/// Enqueues `event` in a transaction of its own; returns its event id.
async fn enqueue(pool: &PgPool, event: &UserRegistered) -> uuid::Uuid {
    let mut tx = pool.begin().await.expect("begin");
    let id = outbox::enqueue(&mut tx, "/test", event)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    id
}

/// The value of a counter or gauge in `registry` whose labels include `labels`.
fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

// ---------------------------------------------------------------------------------------
// Handlers.

/// Counts how often each event was applied: `n = n + 1` per call, which is NOT idempotent;
/// only the inbox keeps the count at one. Holds its transaction open for `hold`, so that
/// two deliveries of one event handled at once really overlap.
struct Counting {
    name: &'static str,
    hold: Duration,
}

impl EventHandler for Counting {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO applied_counts (event_id, n, handled_by) VALUES ($1, 1, $2) \
             ON CONFLICT (event_id) DO UPDATE SET n = applied_counts.n + 1",
        )
        .bind(event.id)
        .bind(self.name)
        .execute(&mut *tx)
        .await?;
        tokio::time::sleep(self.hold).await;
        Ok(())
    }
}

fn counting() -> Counting {
    Counting {
        name: "a",
        hold: Duration::ZERO,
    }
}

/// Fails the events of `user` with `fail`, counts the others.
struct FailingFor {
    user: UserId,
    fail: fn() -> HandlerError,
    attempts: Arc<Mutex<u32>>,
}

impl EventHandler for FailingFor {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if event.decode::<UserRegistered>()?.user_id == self.user {
            *self.attempts.lock().unwrap() += 1;
            return Err((self.fail)());
        }
        counting().handle(tx, event).await
    }
}

/// Remembers the trace context each event was handled in (`traceparent` of the current
/// span), by event id.
struct TraceRecording(Arc<Mutex<HashMap<uuid::Uuid, String>>>);

impl EventHandler for TraceRecording {
    async fn handle(
        &self,
        _: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let current = telemetry::traceparent(&tracing::Span::current()).unwrap_or_default();
        self.0.lock().unwrap().insert(event.id, current);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Trace context.

/// `traceparent` → (trace id, span id).
fn trace_and_span(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "a traceparent: {traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

async fn the_trace_goes_from_the_enqueuing_span_through_the_row_and_the_broker_to_the_handler(
    kind: BusKind,
) {
    use tracing::Instrument;
    let fixture = Fixture::start(kind, &[]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let request = tracing::info_span!("request");
    telemetry::continue_trace(
        &request,
        &[(
            headers::TRACEPARENT.to_owned(),
            format!("00-{trace_id}-00f067aa0ba902b7-01"),
        )]
        .into(),
    );
    let request_span_id = trace_and_span(&telemetry::traceparent(&request).unwrap()).1;
    let event_id = enqueue(&fixture.pool, &registered(UserId::new()))
        .instrument(request)
        .await;
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let shutdown = CancellationToken::new();
    fixture
        .consumer(TraceRecording(Arc::clone(&seen)), &shutdown)
        .await;
    let relay = fixture.relay(&shutdown).await;

    let handled_in = test_kit::eventually(DEADLINE, "the event handled", || async {
        seen.lock().unwrap().get(&event_id).cloned()
    })
    .await;
    shutdown.cancel();
    relay.await.expect("relay");

    // The row keeps the context of the event's own (PRODUCER) span, a child of the request's.
    let stored: String =
        sqlx::query_scalar("SELECT headers->>'traceparent' FROM outbox WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&fixture.pool)
            .await
            .expect("the row's traceparent");
    let (stored_trace, producer_span_id) = trace_and_span(&stored);
    assert_eq!(stored_trace, trace_id, "{stored}");
    assert_ne!(
        producer_span_id, request_span_id,
        "the event's own span: {stored}"
    );
    // The message carried it, and the consumer continued the trace in spans of its own.
    let (handled_trace, handler_span_id) = trace_and_span(&handled_in);
    assert_eq!(
        handled_trace, trace_id,
        "handled in the request's trace: {handled_in}"
    );
    assert_ne!(handler_span_id, producer_span_id);
    assert_ne!(handler_span_id, request_span_id);
}

// ---------------------------------------------------------------------------------------
// The outbox relay.

async fn one_aggregates_events_are_published_once_in_commit_order_by_two_relays_and_racing_writers(
    kind: BusKind,
) {
    let fixture = Fixture::start(kind, &[]).await;
    let mut reader = fixture.reader().await;
    let shutdown = CancellationToken::new();
    let relays = [
        fixture.relay(&shutdown).await,
        fixture.relay(&shutdown).await,
    ];
    let users: Vec<UserId> = (0..4).map(|_| UserId::new()).collect();

    // 8 writers, 10 events each, spread over 4 aggregates. Each transaction stays open a
    // little after its insert, so that without per-aggregate serialisation a later `seq`
    // would often commit (and be published) before an earlier one.
    let writers = (0..8).map(|writer| {
        let pool = fixture.pool.clone();
        let users = users.clone();
        tokio::spawn(async move {
            for i in 0..10 {
                let user = users[(writer + i) % users.len()];
                let mut tx = pool.begin().await.expect("begin");
                outbox::enqueue(&mut tx, "/test", &registered(user))
                    .await
                    .expect("enqueue");
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..15))).await;
                tx.commit().await.expect("commit");
            }
        })
    });
    for writer in futures_util::future::join_all(writers).await {
        writer.expect("writer");
    }
    let messages = receive(&mut reader, 80).await;
    shutdown.cancel();
    for relay in relays {
        relay.await.expect("relay");
    }

    let seqs: HashMap<uuid::Uuid, (String, i64)> = sqlx::query_as::<_, (uuid::Uuid, String, i64)>(
        "SELECT event_id, partition_key, seq FROM outbox",
    )
    .fetch_all(&fixture.pool)
    .await
    .expect("rows")
    .into_iter()
    .map(|(id, key, seq)| (id, (key, seq)))
    .collect();
    let mut received: HashMap<String, Vec<i64>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for message in &messages {
        let id = event_id(message);
        assert!(seen.insert(id), "event {id} published twice");
        let (key, seq) = &seqs[&id];
        assert_eq!(&message.key, key);
        received.entry(key.clone()).or_default().push(*seq);
    }
    for (key, order) in &received {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, &sorted, "aggregate {key}: published out of order");
    }
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM outbox")
        .fetch_all(&fixture.pool)
        .await
        .expect("attempts");
    assert!(
        attempts.iter().all(|a| *a == 1),
        "each row published by one relay, once: {attempts:?}"
    );
}

async fn events_written_while_the_broker_is_down_are_published_once_it_returns(kind: BusKind) {
    let fixture = Fixture::start(kind, &[]).await;
    let shutdown = CancellationToken::new();
    let relay = fixture.relay(&shutdown).await;
    {
        let mut reader = fixture.reader().await;
        enqueue(&fixture.pool, &registered(UserId::new())).await;
        receive(&mut reader, 1).await;
    }

    fixture.set_broker_up(false).await;
    let mut written = Vec::new();
    for _ in 0..10 {
        written.push(enqueue(&fixture.pool, &registered(UserId::new())).await);
    }
    // A while with the broker away: nothing is marked published, nothing is parked.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (published, parked): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE published_at IS NOT NULL), \
                    count(*) FILTER (WHERE parked_at IS NOT NULL) \
             FROM outbox WHERE event_id = ANY($1)",
        )
        .bind(&written)
        .fetch_one(&fixture.pool)
        .await
        .expect("state");
        assert_eq!((published, parked), (0, 0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fixture.set_broker_up(true).await;

    // A new reader: the first one's connection went down with the broker. (RabbitMQ may
    // hand it the first event again, whose acknowledgement was lost with that connection.)
    let mut reader = fixture.reader().await;
    let mut ids = Vec::new();
    while ids.len() < written.len() {
        let id = event_id(&receive(&mut reader, 1).await[0]);
        if written.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    written.sort_unstable();
    assert_eq!(ids, written, "each event published once");
    test_kit::eventually(DEADLINE, "every row marked published", || async {
        let unpublished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&fixture.pool)
                .await
                .expect("count");
        (unpublished == 0).then_some(())
    })
    .await;
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM outbox")
        .fetch_all(&fixture.pool)
        .await
        .expect("attempts");
    assert!(
        attempts.iter().all(|a| *a == 1),
        "an outage counts against no row: {attempts:?}"
    );
    shutdown.cancel();
    relay.await.expect("relay");
}

/// Writes a row that this broker refuses for good: RabbitMQ cannot route a message without
/// a type; Kafka refuses a message larger than `message.max.bytes`.
async fn refused_row(fixture: &Fixture, user: UserId) -> i64 {
    let event = registered(user);
    let mut message = message_for(&event);
    let payload = match fixture.kind {
        BusKind::RabbitMq => {
            message.headers.remove(headers::TYPE);
            serde_json::to_value(&event).expect("json")
        }
        BusKind::Kafka => serde_json::json!({ "padding": "x".repeat(2 * 1024 * 1024) }),
    };
    sqlx::query_scalar(
        "INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
    )
    .bind(event_id(&message))
    .bind(&message.topic)
    .bind(&message.key)
    .bind(UserRegistered::TYPE)
    .bind(serde_json::to_value(&message.headers).expect("headers"))
    .bind(payload)
    .fetch_one(&fixture.pool)
    .await
    .expect("refused row")
}

async fn a_row_the_broker_refuses_is_parked_and_holds_back_only_its_own_aggregate(kind: BusKind) {
    let fixture = Fixture::start(kind, &[("OUTBOX_MAX_ATTEMPTS", "2")]).await;
    let (held_back, other, unreadable) = (UserId::new(), UserId::new(), UserId::new());
    let refused = refused_row(&fixture, held_back).await;
    let behind = enqueue(&fixture.pool, &registered(held_back)).await;
    // A row whose headers cannot be read back at all: parked at once.
    let broken: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload) \
         VALUES (gen_random_uuid(), 'shop.users', $1, 'shop.user.registered.v1', '{\"ce_id\": 7}', '{}') \
         RETURNING seq",
    )
    .bind(unreadable.to_string())
    .fetch_one(&fixture.pool)
    .await
    .expect("broken row");
    let flowing = enqueue(&fixture.pool, &registered(other)).await;
    let mut reader = fixture.reader().await;
    let shutdown = CancellationToken::new();
    let relay = fixture.relay(&shutdown).await;

    let messages = receive(&mut reader, 1).await;
    assert_eq!(event_id(&messages[0]), flowing, "the other aggregate flows");
    let parked = test_kit::eventually(DEADLINE, "both bad rows parked", || async {
        let parked = outbox::list_parked(&fixture.pool).await.expect("list");
        (parked.len() == 2).then_some(parked)
    })
    .await;
    assert_eq!(parked[0].seq, refused);
    assert_eq!(parked[0].attempts, 2, "retried, then parked");
    assert!(parked[0].last_error.is_some());
    assert_eq!(parked[1].seq, broken);
    let behind_published: bool =
        sqlx::query_scalar("SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1")
            .bind(behind)
            .fetch_one(&fixture.pool)
            .await
            .expect("state");
    assert!(
        !behind_published,
        "a later event of the parked aggregate waits behind it"
    );

    // The operator discards the refused row: the event behind it follows.
    let discarded = outbox::discard_parked(&fixture.pool, refused)
        .await
        .expect("discard");
    assert_eq!(discarded.map(|d| d.seq), Some(refused));
    let messages = receive(&mut reader, 1).await;
    assert_eq!(event_id(&messages[0]), behind);
    shutdown.cancel();
    relay.await.expect("relay");
}

// ---------------------------------------------------------------------------------------
// The consumer.

async fn the_consumer_lag_counts_what_waits_and_falls_to_zero_once_handled(kind: BusKind) {
    let fixture = Fixture::start(kind, &[]).await;
    let bus = fixture.bus("publisher").await;
    for _ in 0..3 {
        let message = message_for(&registered(UserId::new()));
        bus.publish(&message).await.expect("publish");
    }
    let registry = prometheus::Registry::new();
    let consumer = Consumer::new(
        fixture.service_pool.clone(),
        fixture.bus("consumer").await,
        ConsumerSpec::named(CONSUMER).expect("spec"),
        counting(),
        fixture.settings.consumer.clone(),
        ConsumerMetrics::register(&registry).expect("metrics"),
    );
    let probe = consumer.lag_probe();
    let lag = || {
        metric(
            &registry,
            "shop_consumer_lag_messages",
            &[("consumer", CONSUMER)],
        )
    };

    probe.measure().await;
    assert_eq!(
        lag(),
        3.0,
        "three messages wait for a consumer that has not started"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(consumer.run(shutdown.clone()));
    test_kit::eventually(DEADLINE, "the lag back to zero", || async {
        probe.measure().await;
        (lag() == 0.0).then_some(())
    })
    .await;
    // Every handled type shows a dead-letter series, at zero, from the start.
    assert_eq!(
        metric(
            &registry,
            "shop_events_dead_lettered_total",
            &[("consumer", CONSUMER), ("event_type", UserRegistered::TYPE)]
        ),
        0.0
    );
    assert!(
        registry
            .gather()
            .iter()
            .any(|family| family.name() == "shop_events_dead_lettered_total"),
        "the dead-letter counter is exported before any dead letter"
    );
    shutdown.cancel();
}

async fn a_handler_that_is_not_idempotent_applies_each_event_once_when_it_is_delivered_again(
    kind: BusKind,
) {
    let fixture = Fixture::start(kind, &[]).await;
    let bus = fixture.bus("publisher").await;
    let (twice, once) = (
        message_for(&registered(UserId::new())),
        message_for(&registered(UserId::new())),
    );
    for message in [&twice, &twice, &once, &twice] {
        bus.publish(message).await.expect("publish");
    }
    let shutdown = CancellationToken::new();
    let registry = fixture.consumer(counting(), &shutdown).await;

    test_kit::eventually(DEADLINE, "all four deliveries handled", || async {
        let handled = metric(&registry, "shop_events_consumed_total", &[]);
        (handled >= 4.0).then_some(())
    })
    .await;
    shutdown.cancel();

    let applied = fixture.applied().await;
    assert_eq!(
        applied.get(&event_id(&twice)),
        Some(&1),
        "applied once though delivered three times"
    );
    assert_eq!(applied.get(&event_id(&once)), Some(&1));
    assert_eq!(
        metric(
            &registry,
            "shop_events_consumed_total",
            &[("outcome", "duplicate")]
        ),
        2.0
    );
}

async fn a_handler_that_is_not_idempotent_applies_each_event_once_when_two_replicas_get_it_at_once(
    kind: BusKind,
) {
    let fixture = Fixture::start(kind, &[]).await;
    let shutdown = CancellationToken::new();
    let hold = Duration::from_millis(400);
    let first = fixture
        .consumer(Counting { name: "a", hold }, &shutdown)
        .await;
    let second = fixture
        .consumer(Counting { name: "b", hold }, &shutdown)
        .await;
    let bus = fixture.bus("publisher").await;
    // Kafka hands each partition to one member: warm up until both members handle events,
    // so that the copies below land on both.
    test_kit::eventually(DEADLINE, "both replicas consuming", || async {
        for _ in 0..3 {
            bus.publish(&message_for(&registered(UserId::new())))
                .await
                .expect("publish");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let by: Vec<String> = sqlx::query_scalar("SELECT DISTINCT handled_by FROM applied_counts")
            .fetch_all(&fixture.pool)
            .await
            .expect("handled_by");
        (by.len() == 2).then_some(())
    })
    .await;
    let consumed =
        |registry: &prometheus::Registry| metric(registry, "shop_events_consumed_total", &[]);
    let before = consumed(&first) + consumed(&second);

    // Copies of one event under keys that cover every partition (RabbitMQ hands them out
    // round-robin): both replicas get one while the other's transaction is still open.
    let event = registered(UserId::new());
    let mut copy = message_for(&event);
    for i in 0..6 {
        copy.key = format!("key-{i}");
        bus.publish(&copy).await.expect("publish");
    }
    let duplicates = || {
        metric(
            &first,
            "shop_events_consumed_total",
            &[("outcome", "duplicate")],
        ) + metric(
            &second,
            "shop_events_consumed_total",
            &[("outcome", "duplicate")],
        )
    };
    test_kit::eventually(DEADLINE, "all six copies handled", || async {
        (consumed(&first) + consumed(&second) - before >= 6.0 && duplicates() >= 5.0).then_some(())
    })
    .await;
    shutdown.cancel();

    assert_eq!(fixture.applied().await.get(&event_id(&copy)), Some(&1));
    assert_eq!(
        duplicates(),
        5.0,
        "five of the six copies recognised by the inbox"
    );
    assert!(
        metric(&first, "shop_events_consumed_total", &[]) > 0.0
            && metric(&second, "shop_events_consumed_total", &[]) > 0.0
    );
}

async fn consumers_wait_out_a_45_second_database_outage_and_dead_letter_nothing(kind: BusKind) {
    let fixture = Fixture::start(kind, &[]).await;
    let bus = fixture.bus("publisher").await;
    let shutdown = CancellationToken::new();
    let registry = fixture.consumer(counting(), &shutdown).await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        let message = message_for(&registered(UserId::new()));
        bus.publish(&message).await.expect("publish");
        sent.push(event_id(&message));
    }
    test_kit::eventually(DEADLINE, "the first events applied", || async {
        (fixture.applied().await.len() == 3).then_some(())
    })
    .await;

    fixture.db_proxy.set_open(false).await;
    let outage = Instant::now();
    for _ in 0..5 {
        let message = message_for(&registered(UserId::new()));
        bus.publish(&message).await.expect("publish");
        sent.push(event_id(&message));
    }
    test_kit::eventually(
        DEADLINE,
        "the consumer to report that it paused",
        || async {
            (metric(&registry, "shop_consumer_paused", &[("consumer", CONSUMER)]) == 1.0)
                .then_some(())
        },
    )
    .await;
    while outage.elapsed() < Duration::from_secs(45) {
        assert_eq!(
            metric(&registry, "shop_events_dead_lettered_total", &[]),
            0.0
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fixture.db_proxy.set_open(true).await;

    test_kit::eventually(DEADLINE, "every event applied after the outage", || async {
        (fixture.applied().await.len() == sent.len()).then_some(())
    })
    .await;
    let applied = fixture.applied().await;
    for id in &sent {
        assert_eq!(applied.get(id), Some(&1), "event {id} applied once");
    }
    test_kit::eventually(DEADLINE, "the consumer to resume", || async {
        (metric(&registry, "shop_consumer_paused", &[("consumer", CONSUMER)]) == 0.0).then_some(())
    })
    .await;
    shutdown.cancel();
    assert_eq!(
        metric(&registry, "shop_events_dead_lettered_total", &[]),
        0.0
    );
    assert_eq!(
        fixture.dead_letters().await,
        0,
        "no dead letter on the broker"
    );
}

async fn a_permanent_failure_is_dead_lettered_with_its_headers_and_later_events_flow(
    kind: BusKind,
) {
    let fixture = Fixture::start(kind, &[]).await;
    let bad_user = UserId::new();
    let attempts = Arc::new(Mutex::new(0));
    let handler = FailingFor {
        user: bad_user,
        fail: || HandlerError::Permanent(anyhow::anyhow!("this user cannot be registered here")),
        attempts: Arc::clone(&attempts),
    };
    let bus = fixture.bus("publisher").await;
    let bad = message_for(&registered(bad_user));
    bus.publish(&bad).await.expect("publish");
    let good: Vec<Message> = (0..3)
        .map(|_| message_for(&registered(UserId::new())))
        .collect();
    for message in &good {
        bus.publish(message).await.expect("publish");
    }
    let shutdown = CancellationToken::new();
    let registry = fixture.consumer(handler, &shutdown).await;

    // Kafka may hand the later events over first (they sit on other partitions): wait for
    // both outcomes.
    test_kit::eventually(
        DEADLINE,
        "the later events applied, the bad one dead-lettered",
        || async {
            (fixture.applied().await.len() == 3
                && metric(&registry, "shop_events_dead_lettered_total", &[]) == 1.0)
                .then_some(())
        },
    )
    .await;
    shutdown.cancel();
    assert_eq!(
        *attempts.lock().unwrap(),
        1,
        "a permanent failure is not retried"
    );
    assert_eq!(
        metric(&registry, "shop_events_dead_lettered_total", &[]),
        1.0
    );
    let mut letters = fixture
        .bus("dead-letter-reader")
        .await
        .subscribe(&dead_letter_subscription())
        .await
        .expect("subscribe");
    let letter = &receive(&mut letters, 1).await[0];
    for name in [
        headers::ID,
        headers::TYPE,
        headers::SOURCE,
        headers::SUBJECT,
    ] {
        assert_eq!(letter.header(name), bad.header(name), "header {name} kept");
    }
    assert_eq!(letter.payload, bad.payload);
    assert!(
        letter
            .header(headers::DEAD_LETTER_ERROR)
            .is_some_and(|e| e.contains("cannot be registered")),
        "{:?}",
        letter.header(headers::DEAD_LETTER_ERROR)
    );
    assert_eq!(letter.header(headers::DEAD_LETTER_CONSUMER), Some(CONSUMER));
    assert_eq!(
        letter.header(headers::DEAD_LETTER_TOPIC),
        Some(UserRegistered::TOPIC)
    );
}

async fn a_handler_error_that_persists_while_the_database_answers_is_dead_lettered_after_bounded_attempts(
    kind: BusKind,
) {
    let fixture = Fixture::start(kind, &[]).await;
    let bad_user = UserId::new();
    let attempts = Arc::new(Mutex::new(0));
    let handler = FailingFor {
        user: bad_user,
        fail: || HandlerError::Transient(anyhow::anyhow!("the handler keeps failing")),
        attempts: Arc::clone(&attempts),
    };
    let bus = fixture.bus("publisher").await;
    bus.publish(&message_for(&registered(bad_user)))
        .await
        .expect("publish");
    let later = message_for(&registered(UserId::new()));
    bus.publish(&later).await.expect("publish");
    let shutdown = CancellationToken::new();
    let registry = fixture.consumer(handler, &shutdown).await;

    // Kafka may hand the later event over first (it sits on another partition): wait for
    // both outcomes.
    test_kit::eventually(
        DEADLINE,
        "the later event applied, the bad one dead-lettered",
        || async {
            (fixture.applied().await.contains_key(&event_id(&later))
                && metric(&registry, "shop_events_dead_lettered_total", &[]) == 1.0)
                .then_some(())
        },
    )
    .await;
    shutdown.cancel();
    assert_eq!(
        *attempts.lock().unwrap(),
        3,
        "CONSUMER_MAX_ATTEMPTS attempts"
    );
    assert_eq!(
        metric(&registry, "shop_events_dead_lettered_total", &[]),
        1.0
    );
    assert_eq!(fixture.dead_letters().await, 1);
}

// ---------------------------------------------------------------------------------------
// Dead letters and groups.

async fn replay_republishes_what_waited_and_ends_even_for_a_message_that_fails_every_time(
    kind: BusKind,
) {
    let fixture = Fixture::start(kind, &[]).await;
    let bus = fixture.bus("publisher").await;
    let fixed = message_for(&registered(UserId::new()));
    let hopeless_user = UserId::new();
    let hopeless = message_for(&registered(hopeless_user));
    for message in [&fixed, &hopeless] {
        bus.publish(&dead_letters::letter(message, CONSUMER, "it failed"))
            .await
            .expect("dead letter");
    }

    let report = dead_letters::replay(&bus).await.expect("replay");
    assert_eq!(report.replayed(), 2);
    assert_eq!(report.per_topic.get(UserRegistered::TOPIC), Some(&2));
    assert_eq!(report.replayed_before, 0);

    // The consumer applies the fixed one and fails the hopeless one again.
    let shutdown = CancellationToken::new();
    let handler = FailingFor {
        user: hopeless_user,
        fail: || HandlerError::Permanent(anyhow::anyhow!("still failing")),
        attempts: Arc::new(Mutex::new(0)),
    };
    let registry = fixture.consumer(handler, &shutdown).await;
    test_kit::eventually(DEADLINE, "the replayed events handled", || async {
        (metric(&registry, "shop_events_dead_lettered_total", &[]) == 1.0
            && fixture.applied().await.contains_key(&event_id(&fixed)))
        .then_some(())
    })
    .await;
    shutdown.cancel();

    // The second replay ends too, with the one that came back, and says it came back.
    let report = tokio::time::timeout(DEADLINE, dead_letters::replay(&bus))
        .await
        .expect("the replay ends")
        .expect("replay");
    assert_eq!(report.replayed(), 1);
    assert_eq!(report.replayed_before, 1);
    let report = dead_letters::replay(&bus).await.expect("replay");
    assert_eq!(report.replayed(), 0, "nothing waits any more");
}

async fn a_consumer_joining_its_group_mid_stream_loses_and_duplicates_nothing(kind: BusKind) {
    let fixture = Fixture::start(kind, &[]).await;
    let bus = fixture.bus("publisher").await;
    let shutdown = CancellationToken::new();
    let hold = Duration::from_millis(20);
    let _first = fixture
        .consumer(Counting { name: "a", hold }, &shutdown)
        .await;
    let mut sent = Vec::new();
    for i in 0..60 {
        let message = message_for(&registered(UserId::new()));
        bus.publish(&message).await.expect("publish");
        sent.push(event_id(&message));
        if i == 20 {
            // A second replica joins: Kafka rebalances the partitions mid-stream.
            let _second = fixture
                .consumer(Counting { name: "b", hold }, &shutdown)
                .await;
        }
    }
    test_kit::eventually(DEADLINE, "every event applied", || async {
        (fixture.applied().await.len() == sent.len()).then_some(())
    })
    .await;
    shutdown.cancel();
    let applied = fixture.applied().await;
    assert!(
        applied.values().all(|n| *n == 1),
        "each applied once: {applied:?}"
    );
    assert_eq!(fixture.dead_letters().await, 0);
}
