//! The idempotent consumer: how every service handles the events it subscribes to.
//!
//! Brokers deliver at least once: after a crash, a rebalance or a lost acknowledgement the
//! same event comes again. Each delivery is therefore handled in one database transaction
//! that first records `(consumer, event id)` in the inbox table; if the row is already
//! there the event was applied before and the transaction changes nothing. The broker is
//! acknowledged only after that transaction commits, so an event is never lost either.
//!
//! When an attempt fails, what happens next depends on whose fault it was
//! ([`super::fault`]):
//!
//! | failure | what the consumer does |
//! |---|---|
//! | the database or the link to it (unreachable, pool exhausted, deadlock, fail-over) | pauses: keeps the message unacknowledged and retries with capped backoff for as long as the fault lasts, still a live member of its Kafka group; `shop_consumer_paused` is 1 meanwhile |
//! | the message cannot be decoded, or the handler says retrying cannot help | dead-letters it at once |
//! | the handler fails while the database answers | retries `CONSUMER_MAX_ATTEMPTS` times with backoff, then dead-letters it |
//!
//! Deliveries that have already arrived are applied together, up to `CONSUMER_BATCH_SIZE`:
//! one transaction, a savepoint and an inbox row per event, acknowledged together after the
//! commit, so the commit's wait for the disk is paid once per batch instead of once per
//! event. The consumer never waits for a batch to fill. An event that fails in a batch is
//! rolled back alone; the events before it commit, and it and those after it are handled
//! one at a time as described below, so one order's events keep their order.
//!
//! A dead letter is the original message with the error and its origin added; it is
//! acknowledged only once the dead letter is stored, so one bad message never stops the
//! consumer and none is lost.
//!
//! Tracing: each delivery the consumer handles is a CONSUMER span ("process"), the child
//! of the span whose context the message carries (the PRODUCER span of the outbox row it
//! came from), so the event's effects are part of the trace that caused it. Below it,
//! each attempt is a `transaction` span (inbox record, handler, commit) with the
//! handler's `handle <type>` span inside: the state change and the events it publishes.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use shop_model::events::ConsumerSpec;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::{
    Delivery, EventBus, IncomingEvent, Receiver, Subscription, dead_letters, fault, headers,
    settings::ConsumerSettings,
};
use crate::telemetry;

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retrying cannot help (the event is invalid for this service): dead-letter it now.
    #[error("permanent failure: {0:#}")]
    Permanent(anyhow::Error),
    /// Might work on another attempt. A database fault in its causes makes the consumer
    /// pause until the database is back; anything else is retried a bounded number of
    /// times while the database answers.
    #[error("transient failure: {0:#}")]
    Transient(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        if fault::is_permanent(&error) {
            Self::Permanent(error.into())
        } else {
            Self::Transient(error.into())
        }
    }
}

impl From<super::DecodeError> for HandlerError {
    fn from(error: super::DecodeError) -> Self {
        Self::Permanent(error.into())
    }
}

/// A service's event handling: applies one event inside the transaction `tx`. Writes to
/// the outbox go through the same `tx`, so the effect, the inbox record and any events
/// it causes commit together. It runs inside the delivery's span: the events it enqueues
/// continue the delivery's trace without the handler seeing any trace context.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// The consumer's metrics, exported on `/metrics`.
#[derive(Clone)]
pub struct ConsumerMetrics {
    consumed: IntCounterVec,
    dead_lettered: IntCounterVec,
    paused: IntGaugeVec,
    duration: HistogramVec,
    lag: IntGaugeVec,
}

impl ConsumerMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let consumed = IntCounterVec::new(
            Opts::new(
                "shop_events_consumed_total",
                "Events received, by consumer, type and outcome (applied, duplicate, skipped)",
            ),
            &["consumer", "event_type", "outcome"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "shop_events_dead_lettered_total",
                "Messages given up on and published to the dead-letter topic",
            ),
            &["consumer", "event_type"],
        )?;
        let paused = IntGaugeVec::new(
            Opts::new(
                "shop_consumer_paused",
                "1 while the consumer waits for the database or the broker to come back",
            ),
            &["consumer"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "shop_event_handler_duration_seconds",
                "Time to apply one event: inbox record, handler and commit",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["consumer", "event_type"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "shop_consumer_lag_messages",
                "Messages waiting for the consumer: Kafka, the lag behind the group's committed \
                 offsets over every partition; RabbitMQ, the messages ready in its queue",
            ),
            &["consumer"],
        )?;
        registry.register(Box::new(consumed.clone()))?;
        registry.register(Box::new(dead_lettered.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self {
            consumed,
            dead_lettered,
            paused,
            duration,
            lag,
        })
    }

    /// Shows every series of `subscription` at 0 before anything happens, so that a
    /// dashboard draws a line and `increase(..)` sees the first dead letter.
    fn start(&self, subscription: &Subscription) {
        let consumer = subscription.consumer.as_str();
        self.paused.with_label_values(&[consumer]).set(0);
        self.lag.with_label_values(&[consumer]).set(0);
        for event_type in &subscription.event_types {
            self.dead_lettered
                .with_label_values(&[consumer, event_type])
                .inc_by(0);
        }
    }
}

/// How often the consumer's backlog is measured for `shop_consumer_lag_messages`.
const LAG_PROBE_INTERVAL: Duration = Duration::from_secs(15);

/// Measures the consumer's backlog every few seconds (`shop_consumer_lag_messages`): on
/// Kafka from the group's committed offsets, without joining the group; on RabbitMQ from
/// its queue. A probe that fails keeps the last value.
pub struct LagProbe {
    bus: EventBus,
    subscription: Subscription,
    gauge: prometheus::IntGauge,
}

impl LagProbe {
    /// Measures the backlog once.
    pub async fn measure(&self) {
        match self.bus.backlog(&self.subscription).await {
            Ok(backlog) => self
                .gauge
                .set(i64::try_from(backlog.len()).unwrap_or(i64::MAX)),
            Err(error) => {
                tracing::debug!(%error, consumer = %self.subscription.consumer, "lag probe failed");
            }
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.measure().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(LAG_PROBE_INTERVAL) => {}
            }
        }
    }
}

/// Runs one subscription with one handler until shutdown.
pub struct Consumer<H> {
    pool: PgPool,
    bus: EventBus,
    subscription: Subscription,
    handler: H,
    settings: ConsumerSettings,
    metrics: ConsumerMetrics,
}

/// What one attempt did.
enum Applied {
    /// The handler ran and its transaction committed.
    Now,
    /// The inbox had the event already: nothing changed.
    Before,
}

impl Applied {
    fn label(&self) -> &'static str {
        match self {
            Self::Now => "applied",
            Self::Before => "duplicate",
        }
    }
}

/// What [`Consumer::apply_together`] left to handle one at a time.
struct Leftover {
    /// The event whose attempt in the batch failed, with its error.
    failed: Option<Failed>,
    /// The deliveries after it (or after the run the batch settled), in order.
    rest: Vec<Delivery>,
}

struct Failed {
    delivery: Delivery,
    event: IncomingEvent,
    span: Span,
    error: HandlerError,
}

/// Whose fault a failed attempt was.
enum Verdict {
    Infrastructure(anyhow::Error),
    Message(anyhow::Error),
    Permanent(anyhow::Error),
}

impl<H: EventHandler> Consumer<H> {
    pub fn new(
        pool: PgPool,
        bus: EventBus,
        spec: ConsumerSpec,
        handler: H,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            pool,
            bus,
            subscription: Subscription {
                consumer: spec.name.to_owned(),
                topics: spec.topics(),
                event_types: spec.event_types.to_vec(),
            },
            handler,
            settings,
            metrics,
        }
    }

    /// The probe that keeps `shop_consumer_lag_messages` of this consumer current.
    pub fn lag_probe(&self) -> LagProbe {
        LagProbe {
            bus: self.bus.clone(),
            subscription: self.subscription.clone(),
            gauge: self
                .metrics
                .lag
                .with_label_values(&[self.subscription.consumer.as_str()]),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        self.metrics.start(&self.subscription);
        let consumer = self.subscription.consumer.clone();
        let mut backoff = Backoff::new(Duration::from_millis(250), self.settings.max_backoff);
        let mut receiver = loop {
            match self.bus.subscribe(&self.subscription).await {
                Ok(receiver) => break receiver,
                Err(error) => {
                    let wait = backoff.next();
                    tracing::warn!(%consumer, error = %error, retry_in_ms = wait.as_millis() as u64, "cannot subscribe yet");
                    if sleep_or_stop(&shutdown, wait).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(%consumer, topics = ?self.subscription.topics, "consuming");
        backoff.reset();
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                delivery = receiver.next() => delivery,
            };
            match delivery {
                Ok(delivery) => {
                    backoff.reset();
                    // Whatever else has already arrived joins it; nothing waits for more.
                    let mut batch = vec![delivery];
                    while batch.len() < self.settings.batch_size {
                        match receiver.ready() {
                            Some(delivery) => batch.push(delivery),
                            None => break,
                        }
                    }
                    self.process_batch(&mut receiver, batch, &shutdown).await;
                }
                Err(error) => {
                    let wait = backoff.next();
                    tracing::warn!(%consumer, error = %error, retry_in_ms = wait.as_millis() as u64, "receiving failed; retrying");
                    if sleep_or_stop(&shutdown, wait).await {
                        break;
                    }
                }
            }
        }
        receiver.close().await;
        tracing::info!(%consumer, "consumer stopped");
    }

    /// Whether this consumer handles events of `event`'s type (Kafka delivers whole topics).
    fn handles(&self, event: &IncomingEvent) -> bool {
        self.subscription
            .event_types
            .contains(&event.event_type.as_str())
    }

    /// Handles `batch`, deliveries in the order they were received: as long a run of them
    /// as possible in one transaction ([`Self::apply_together`]), the rest one by one.
    async fn process_batch(
        &self,
        receiver: &mut Receiver,
        batch: Vec<Delivery>,
        shutdown: &CancellationToken,
    ) {
        let Leftover { failed, rest } = if batch.len() > 1 {
            self.apply_together(receiver, batch).await
        } else {
            Leftover {
                failed: None,
                rest: batch,
            }
        };
        if let Some(failed) = failed {
            self.settle(
                receiver,
                failed.delivery,
                failed.event,
                failed.span,
                Some(failed.error),
                shutdown,
            )
            .await;
        }
        for delivery in rest {
            if shutdown.is_cancelled() {
                return; // unacknowledged: redelivered after the restart
            }
            self.process(receiver, delivery, shutdown).await;
        }
    }

    /// Applies the longest possible run of `batch`, from its start, in one database
    /// transaction: each event in a savepoint of its own, with its inbox row, so that one
    /// event that fails is rolled back alone and its predecessors still commit. Then
    /// acknowledges that run, after the commit, in one go. What it did not settle is left,
    /// in order, to be handled one at a time with the retries, pauses and dead letters of
    /// [`Self::process`]: the event that failed (its failure counts as its first attempt)
    /// or the message that could not be decoded, and everything after it, so the events of
    /// one order keep their order. If the transaction fails as a whole (the database went
    /// away), that is all of them.
    async fn apply_together(&self, receiver: &mut Receiver, batch: Vec<Delivery>) -> Leftover {
        let mut entries: Vec<(Delivery, Option<(IncomingEvent, Span)>)> = Vec::new();
        let mut batch = batch.into_iter();
        let mut undecodable = None;
        for delivery in batch.by_ref() {
            match IncomingEvent::from_message(&delivery.message) {
                Ok(event) if self.handles(&event) => {
                    let span = self.delivery_span(&delivery);
                    entries.push((delivery, Some((event, span))));
                }
                Ok(_) => entries.push((delivery, None)),
                Err(_) => {
                    undecodable = Some(delivery);
                    break;
                }
            }
        }
        let (settled, error) = self.transaction_together(&entries).await;
        let mut entries = entries.into_iter();
        let mut done = Vec::with_capacity(settled.len());
        let consumer = self.subscription.consumer.as_str();
        for outcome in settled {
            let Some((delivery, handled)) = entries.next() else {
                break;
            };
            let Some((event, span)) = handled else {
                let event_type = delivery.message.header(headers::TYPE).unwrap_or("unknown");
                self.metrics
                    .consumed
                    .with_label_values(&[consumer, event_type, "skipped"])
                    .inc();
                done.push((delivery, None));
                continue;
            };
            if let Some((applied, took)) = outcome {
                span.in_scope(|| match applied {
                    Applied::Now => tracing::info!("event applied"),
                    Applied::Before => tracing::info!("duplicate event ignored"),
                });
                span.record("outcome", applied.label());
                let event_type = event.event_type.as_str();
                self.metrics
                    .consumed
                    .with_label_values(&[consumer, event_type, applied.label()])
                    .inc();
                self.metrics
                    .duration
                    .with_label_values(&[consumer, event_type])
                    .observe(took.as_secs_f64());
            }
            // The CONSUMER span ends after the acknowledgement, as it does alone.
            done.push((delivery, Some(span)));
        }
        let (deliveries, spans): (Vec<Delivery>, Vec<Option<Span>>) = done.into_iter().unzip();
        if let Err(error) = receiver.ack_all(&deliveries).await {
            tracing::warn!(%consumer, error = %error, "acknowledgement failed; the messages will be redelivered");
        }
        drop(spans);
        let mut failed = None;
        if let Some(error) = error
            && let Some((delivery, Some((event, span)))) = entries.next()
        {
            failed = Some(Failed {
                delivery,
                event,
                span,
                error,
            });
        }
        Leftover {
            failed,
            rest: entries
                .map(|(delivery, _)| delivery)
                .chain(undecodable)
                .chain(batch)
                .collect(),
        }
    }

    /// The transaction of [`Self::apply_together`]: per entry, in order, what it did and
    /// how long it took (commit included), up to the first that failed, and that one's
    /// error; nothing if the transaction did not commit. An entry the consumer does not
    /// handle is `None`.
    async fn transaction_together(
        &self,
        entries: &[(Delivery, Option<(IncomingEvent, Span)>)],
    ) -> (Vec<Option<(Applied, Duration)>>, Option<HandlerError>) {
        let Ok(mut tx) = self.pool.begin().await else {
            return (Vec::new(), None);
        };
        let mut settled = Vec::with_capacity(entries.len());
        let mut failure = None;
        let size = entries.len() as i64;
        for (_, handled) in entries {
            let Some((event, delivery_span)) = handled else {
                settled.push(None);
                continue;
            };
            let span = tracing::info_span!(
                parent: delivery_span,
                "transaction",
                db.system.name = "postgresql",
                attempt = 1_i64,
                batch.size = size,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            );
            let started = Instant::now();
            let attempt = async {
                let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
                match self.record_and_handle(&mut savepoint, event).await {
                    Ok(applied) => {
                        savepoint.commit().await?;
                        Ok(applied)
                    }
                    Err(error) => {
                        // The event's own changes go; its predecessors' stay.
                        let _ = savepoint.rollback().await;
                        Err(error)
                    }
                }
            }
            .instrument(span.clone())
            .await;
            match attempt {
                Ok(applied) => settled.push(Some((applied, started.elapsed()))),
                Err(error) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", error_type(&error));
                    failure = Some(error);
                    break;
                }
            }
        }
        let committing = Instant::now();
        if let Err(error) = tx.commit().await {
            tracing::warn!(error = %error, "batch transaction failed; its events are tried again one by one");
            return (Vec::new(), None);
        }
        let commit = committing.elapsed();
        for entry in settled.iter_mut().flatten() {
            entry.1 += commit;
        }
        (settled, failure)
    }

    async fn process(
        &self,
        receiver: &mut Receiver,
        delivery: Delivery,
        shutdown: &CancellationToken,
    ) {
        let event = match IncomingEvent::from_message(&delivery.message) {
            Ok(event) => event,
            Err(error) => {
                let span = self.delivery_span(&delivery);
                async {
                    span.record("otel.status_code", "ERROR");
                    tracing::error!(error = %error, topic = %delivery.message.topic, "undecodable message");
                    self.dead_letter(receiver, &delivery, "unknown", &error.to_string(), shutdown)
                        .await;
                }
                .instrument(span.clone())
                .await;
                return;
            }
        };
        let consumer = self.subscription.consumer.as_str();
        if !self.handles(&event) {
            // Kafka delivers whole topics. A type this consumer does not handle gets no
            // span: the trace of an order holds the deliveries that did something.
            tracing::debug!(%consumer, event_type = %event.event_type, "event type not handled here");
            self.metrics
                .consumed
                .with_label_values(&[consumer, event.event_type.as_str(), "skipped"])
                .inc();
            self.ack(receiver, &delivery).await;
            return;
        }
        let span = self.delivery_span(&delivery);
        self.settle(receiver, delivery, event, span, None, shutdown)
            .await;
    }

    /// Applies `event` until it is applied, dead-lettered or shutdown, then acknowledges
    /// it, in its CONSUMER span. `failed` is the error of an attempt already made (in a
    /// batch): it counts as the first.
    async fn settle(
        &self,
        receiver: &mut Receiver,
        delivery: Delivery,
        event: IncomingEvent,
        span: Span,
        failed: Option<HandlerError>,
        shutdown: &CancellationToken,
    ) {
        async {
            let Some(applied) = self
                .apply_until_done(receiver, &delivery, &event, failed, shutdown)
                .await
            else {
                return; // dead-lettered, or shutdown while retrying (redelivered later)
            };
            match applied {
                Applied::Now => tracing::info!("event applied"),
                Applied::Before => tracing::info!("duplicate event ignored"),
            }
            Span::current().record("outcome", applied.label());
            self.metrics
                .consumed
                .with_label_values(&[
                    self.subscription.consumer.as_str(),
                    event.event_type.as_str(),
                    applied.label(),
                ])
                .inc();
            self.ack(receiver, &delivery).await;
        }
        .instrument(span)
        .await;
    }

    /// The CONSUMER span of a delivery: a child of the context in the message's headers
    /// (a new trace when there is none).
    fn delivery_span(&self, delivery: &Delivery) -> Span {
        let message = &delivery.message;
        let span = tracing::info_span!(
            parent: None,
            "consume",
            otel.name = %format_args!("process {}", message.topic),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = self.bus.system(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %message.topic,
            messaging.consumer.group.name = %self.subscription.consumer,
            messaging.message.id = message.header(headers::ID),
            messaging.destination.partition.id = tracing::field::Empty,
            messaging.kafka.offset = tracing::field::Empty,
            consumer = %self.subscription.consumer,
            event_id = message.header(headers::ID),
            event_type = message.header(headers::TYPE),
            subject = message.header(headers::SUBJECT),
            outcome = tracing::field::Empty,
        );
        if let Some((partition, offset)) = delivery.kafka_position() {
            span.record("messaging.destination.partition.id", partition.to_string());
            span.record("messaging.kafka.offset", offset);
        }
        telemetry::continue_trace(&span, &message.headers);
        span
    }

    /// Attempts `event` until it is applied (`Some`), dead-lettered or shutdown (`None`).
    async fn apply_until_done(
        &self,
        receiver: &mut Receiver,
        delivery: &Delivery,
        event: &IncomingEvent,
        mut failed: Option<HandlerError>,
        shutdown: &CancellationToken,
    ) -> Option<Applied> {
        let consumer = self.subscription.consumer.as_str();
        let mut failures = 0;
        let mut attempts = 0;
        let mut message_backoff =
            Backoff::new(self.settings.retry_backoff, self.settings.max_backoff);
        let mut pause = Backoff::new(self.settings.retry_backoff, self.settings.max_backoff);
        let mut paused_since: Option<Instant> = None;
        let result = loop {
            let started = Instant::now();
            attempts += 1;
            let attempt = match failed.take() {
                Some(error) => Err(error),
                None => self.apply(event, attempts).await,
            };
            if attempt.is_ok() {
                self.metrics
                    .duration
                    .with_label_values(&[consumer, event.event_type.as_str()])
                    .observe(started.elapsed().as_secs_f64());
            }
            let error = match attempt {
                Ok(applied) => break Ok(Some(applied)),
                Err(error) => error,
            };
            let wait = match self.judge(error).await {
                Verdict::Infrastructure(error) => {
                    let wait = pause.next();
                    if paused_since.is_none() {
                        paused_since = Some(Instant::now());
                        self.metrics.paused.with_label_values(&[consumer]).set(1);
                    }
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = wait.as_millis() as u64,
                        "consumer paused: the database is unavailable; the event stays unacknowledged"
                    );
                    wait
                }
                Verdict::Permanent(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "event rejected by the handler"
                    );
                    break Err(error);
                }
                Verdict::Message(error) => {
                    failures += 1;
                    if failures >= self.settings.max_attempts {
                        tracing::error!(
                            error = format!("{error:#}"),
                            attempts = failures,
                            "event failed on every attempt while the database answered"
                        );
                        break Err(error);
                    }
                    let wait = message_backoff.next();
                    tracing::warn!(
                        error = format!("{error:#}"),
                        attempt = failures,
                        retry_in_ms = wait.as_millis() as u64,
                        "event failed; retrying"
                    );
                    wait
                }
            };
            // Not acknowledged: on shutdown the broker redelivers it later.
            if receiver.stay_alive(wait, shutdown).await {
                break Ok(None);
            }
        };
        if let Some(since) = paused_since {
            self.metrics.paused.with_label_values(&[consumer]).set(0);
            tracing::info!(
                paused_ms = since.elapsed().as_millis() as u64,
                "consumer resumed"
            );
        }
        match result {
            Ok(applied) => applied,
            Err(error) => {
                Span::current().record("otel.status_code", "ERROR");
                let reason = format!("{error:#}");
                self.dead_letter(receiver, delivery, &event.event_type, &reason, shutdown)
                    .await;
                None
            }
        }
    }

    /// Decides whose fault a failed attempt was.
    async fn judge(&self, error: HandlerError) -> Verdict {
        match error {
            HandlerError::Permanent(error) => Verdict::Permanent(error),
            HandlerError::Transient(error) if fault::is_infrastructure_chain(&error) => {
                Verdict::Infrastructure(error)
            }
            // Not recognisably the database's fault: it is the message's only if the
            // database is answering right now.
            HandlerError::Transient(error) if self.database_answers().await => {
                Verdict::Message(error)
            }
            HandlerError::Transient(error) => Verdict::Infrastructure(error),
        }
    }

    async fn database_answers(&self) -> bool {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(_))
        )
    }

    /// One attempt: inbox record + handler, in one transaction (a span of its own, with the
    /// handler's inside).
    async fn apply(&self, event: &IncomingEvent, attempt: u32) -> Result<Applied, HandlerError> {
        let span = tracing::info_span!(
            "transaction",
            db.system.name = "postgresql",
            attempt = i64::from(attempt),
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let result = self.transaction(event).instrument(span.clone()).await;
        if let Err(error) = &result {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error_type(error));
        }
        result
    }

    async fn transaction(&self, event: &IncomingEvent) -> Result<Applied, HandlerError> {
        let mut tx = self.pool.begin().await?;
        let applied = self.record_and_handle(&mut tx, event).await?;
        if matches!(applied, Applied::Now) {
            tx.commit().await?;
        }
        Ok(applied)
    }

    /// Records `event` in the inbox and, if it was not there, lets the handler apply it,
    /// in the transaction (or savepoint) `conn` is in.
    async fn record_and_handle(
        &self,
        conn: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<Applied, HandlerError> {
        let first_time = sqlx::query!(
            r#"INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3)
               ON CONFLICT (consumer, event_id) DO NOTHING"#,
            self.subscription.consumer,
            event.id,
            event.event_type,
        )
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !first_time {
            return Ok(Applied::Before);
        }
        let handle = tracing::info_span!(
            "handle",
            otel.name = %format_args!("handle {}", event.event_type),
        );
        self.handler.handle(conn, event).instrument(handle).await?;
        Ok(Applied::Now)
    }

    async fn dead_letter(
        &self,
        receiver: &mut Receiver,
        delivery: &Delivery,
        event_type: &str,
        error: &str,
        shutdown: &CancellationToken,
    ) {
        let letter = dead_letters::letter(&delivery.message, &self.subscription.consumer, error);
        // Never acknowledge a message whose dead letter is not safely stored.
        let mut backoff = Backoff::new(Duration::from_millis(200), self.settings.max_backoff);
        loop {
            match self.bus.publish(&letter).await {
                Ok(()) => break,
                Err(error) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "cannot publish the dead letter yet");
                    if receiver.stay_alive(wait, shutdown).await {
                        return;
                    }
                }
            }
        }
        self.metrics
            .dead_lettered
            .with_label_values(&[self.subscription.consumer.as_str(), event_type])
            .inc();
        tracing::warn!(consumer = %self.subscription.consumer, topic = %delivery.message.topic, "message dead-lettered");
        self.ack(receiver, delivery).await;
    }

    async fn ack(&self, receiver: &mut Receiver, delivery: &Delivery) {
        if let Err(error) = receiver.ack_all(std::slice::from_ref(delivery)).await {
            // The effect is committed; the broker will redeliver and the inbox will say
            // "duplicate".
            tracing::warn!(error = %error, "acknowledgement failed; the message will be redelivered");
        }
    }
}

fn error_type(error: &HandlerError) -> &'static str {
    match error {
        HandlerError::Permanent(_) => "permanent",
        HandlerError::Transient(_) => "transient",
    }
}

/// Capped exponential backoff with jitter, so that replicas that failed together do not
/// retry together.
struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, cap: Duration) -> Self {
        let first = first.max(Duration::from_millis(1)).min(cap);
        Self {
            first,
            cap,
            next: first,
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.cap);
        // ±20 %, never above the cap.
        wait.mul_f64(0.8 + 0.4 * fastrand::f64()).min(self.cap)
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Forgets applied events once they are older than the retention period
/// (`INBOX_RETENTION_HOURS`), so the inbox does not grow for ever.
///
/// Forgetting is safe because redeliveries come soon after the first delivery (a lost
/// acknowledgement, a rebalance, a relay that crashed before marking its row published),
/// never days later; and behind the inbox every handler's effects are guarded by the
/// service's own state (an order is reserved once, charged once, refunded once).
/// Replicas may prune at the same time: a row is deleted once, whoever deletes it.
pub struct InboxPruner {
    pool: PgPool,
    retention: Duration,
}

impl InboxPruner {
    /// How often the inbox is pruned.
    pub const EVERY: Duration = Duration::from_secs(3600);
    /// Rows deleted per statement, so that pruning a large backlog never holds many row
    /// locks or a long transaction.
    const BATCH: i64 = 5_000;

    pub fn new(pool: PgPool, settings: &ConsumerSettings) -> Self {
        Self {
            pool,
            retention: settings.inbox_retention,
        }
    }

    /// Prunes at start-up, then every [`Self::EVERY`], until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.prune().await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "inbox: forgot events past retention"),
                Err(error) => tracing::warn!(error = %error, "inbox: pruning failed"),
            }
            if sleep_or_stop(&shutdown, Self::EVERY).await {
                return;
            }
        }
    }

    /// Deletes every row older than the retention period; returns how many.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let retention_secs = self.retention.as_secs_f64();
        let mut deleted = 0;
        loop {
            let batch = sqlx::query!(
                r#"DELETE FROM inbox WHERE (consumer, event_id) IN (
                       SELECT consumer, event_id FROM inbox
                       WHERE processed_at < now() - make_interval(secs => $1)
                       LIMIT $2)"#,
                retention_secs,
                Self::BATCH,
            )
            .execute(&self.pool)
            .await?
            .rows_affected();
            deleted += batch;
            if batch < Self::BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

/// Sleeps for `duration`; returns `true` if shutdown was requested meanwhile.
pub(crate) async fn sleep_or_stop(shutdown: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_its_cap() {
        let cap = Duration::from_secs(30);
        let mut backoff = Backoff::new(Duration::from_millis(200), cap);
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next()).collect();
        assert!(waits[0] >= Duration::from_millis(160) && waits[0] <= Duration::from_millis(240));
        assert!(
            waits[3] >= Duration::from_millis(1280),
            "doubled: {waits:?}"
        );
        assert!(waits.iter().all(|w| *w <= cap), "capped: {waits:?}");
        assert!(waits[11] >= cap.mul_f64(0.8), "reaches the cap: {waits:?}");
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(240));
    }

    #[test]
    fn an_encode_error_from_the_outbox_is_permanent() {
        let error = HandlerError::from(sqlx::Error::Encode("bad value".into()));
        assert!(matches!(error, HandlerError::Permanent(_)));
        let error = HandlerError::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(error, HandlerError::Transient(_)));
    }
}
