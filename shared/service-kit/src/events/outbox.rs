//! The transactional outbox: events are written to the service's own database in the same
//! transaction as the state change, and a relay publishes them.
//!
//! Without it a service would change its state and then publish — and a crash or a broker
//! outage between the two would lose the event (or, publishing first, announce a change
//! that was rolled back). With it, an event exists if and only if its change committed, and
//! it is published at least once, however long the broker is down.
//!
//! The relay:
//! - wakes on `NOTIFY outbox` (sent by a trigger at commit) and polls as a fallback;
//! - runs on one replica at a time: the holder of a lease in `outbox_relay_lease`, renewed
//!   while it works; another replica takes over when the lease expires (`OUTBOX_LEASE_SECS`
//!   after the active one died; at once after a graceful stop, which gives the lease up);
//! - reads a batch in `seq` order with a plain query, publishes it with no database
//!   transaction open, and then marks what the broker acknowledged in a short transaction
//!   of its own. A crash in between republishes those rows; consumers are idempotent.
//!   The batch goes out in waves of one row per aggregate, each wave's acknowledgements
//!   awaited together, so the broker's round trip is paid per wave, not per event;
//! - keeps per-aggregate order: rows of one aggregate (`partition_key`) are published in
//!   `seq` order, and `seq` order is their commit order because [`enqueue`] serialises the
//!   writers of one aggregate;
//! - when the broker is unreachable, stops the batch and backs off (capped); nothing counts
//!   against the rows;
//! - when the broker refuses a row for good (too large, unroutable), retries it with
//!   backoff `OUTBOX_MAX_ATTEMPTS` times, then parks it with its error
//!   (`shop_outbox_parked`, an error log line). Later rows of that aggregate wait behind it;
//!   other aggregates flow on. `outbox-parked list|retry|discard` is the operator's tool.
//!   A row that cannot even be read back is parked at once;
//! - deletes published rows after the retention period.
//!
//! Tracing: [`enqueue`] is the PRODUCER span ("create") of the event, and its context is
//! stored in the row's headers (`traceparent`); the message goes out with those headers,
//! so the consumer's span is that span's child however late the relay publishes. The
//! relay's own span per publish ("send") starts a trace of its own, linked to the row's.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use shop_model::events::{CloudEvent, Event};
use sqlx::{PgConnection, PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{BusError, EventBus, Message, headers, settings::OutboxSettings};
use crate::telemetry::{self, MessageHeadersMut};

/// The advisory-lock namespace of [`enqueue`] (the two-key form, which never collides with
/// the one-key locks that services take on their own rows): "outb".
const AGGREGATE_LOCK_SPACE: i32 = 0x6f75_7462;

/// Adds `event` to the outbox inside the caller's transaction. `source` is the publishing
/// service (`/order-service`). The event belongs to the trace of the current span (the
/// request or the delivery that caused it): its PRODUCER span is a child of that span.
///
/// Per-aggregate order is enforced here: the transaction takes a transaction-scoped lock
/// on the event's aggregate (its partition key) before the row gets its `seq`, so a second
/// writer of the same aggregate waits until the first has committed and its row's `seq` is
/// always the larger. Without that, two transactions could take `seq` 7 and 8 and commit
/// in the opposite order, and the relay could publish 8 before 7 became visible. Callers
/// need hold nothing for this; a caller that writes several aggregates in one transaction
/// should enqueue them in a stable order (a deadlock is retried, but costs a round).
///
/// An event that cannot be encoded is a bug: the error is `sqlx::Error::Encode`, which the
/// consumer treats as permanent.
pub async fn enqueue<E: Event>(
    conn: &mut PgConnection,
    source: &str,
    event: &E,
) -> Result<uuid::Uuid, sqlx::Error> {
    let envelope = CloudEvent::new(source, event);
    let span = tracing::info_span!(
        "outbox.enqueue",
        otel.name = %format_args!("create {}", E::TOPIC),
        otel.kind = "producer",
        messaging.operation.type = "create",
        messaging.operation.name = "create",
        messaging.destination.name = E::TOPIC,
        messaging.message.id = %envelope.id,
        cloudevents.event_type = E::TYPE,
        cloudevents.event_source = source,
        cloudevents.event_subject = %envelope.subject,
        db.system.name = "postgresql",
    );
    let encode = |e: serde_json::Error| sqlx::Error::Encode(Box::new(e));
    let mut message = Message::from_event(&envelope, event).map_err(encode)?;
    telemetry::inject(&span, &mut MessageHeadersMut(&mut message.headers));
    let row = OutboxRow {
        event_id: uuid::Uuid::parse_str(&envelope.id)
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
        event_type: E::TYPE,
        headers: serde_json::to_value(&message.headers).map_err(encode)?,
        payload: serde_json::to_value(event).map_err(encode)?,
        message,
    };
    insert(conn, &row).instrument(span).await?;
    Ok(row.event_id)
}

/// A row [`enqueue`] writes.
struct OutboxRow {
    event_id: uuid::Uuid,
    event_type: &'static str,
    message: Message,
    headers: serde_json::Value,
    payload: serde_json::Value,
}

async fn insert(conn: &mut PgConnection, row: &OutboxRow) -> Result<(), sqlx::Error> {
    let message = &row.message;
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        AGGREGATE_LOCK_SPACE,
        message.key,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        row.event_id,
        message.topic,
        message.key,
        row.event_type,
        row.headers,
        row.payload,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Outbox gauges, exported on `/metrics`.
#[derive(Clone)]
struct OutboxMetrics {
    pending: IntGauge,
    oldest_age_seconds: IntGauge,
    parked: IntGauge,
    published: IntCounterVec,
}

impl OutboxMetrics {
    fn register(registry: &Registry) -> anyhow::Result<Self> {
        let pending = IntGauge::new(
            "shop_outbox_pending",
            "Events written but not yet published",
        )?;
        let oldest_age_seconds = IntGauge::new(
            "shop_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished event (0 when none)",
        )?;
        let parked = IntGauge::new(
            "shop_outbox_parked",
            "Events the broker refused for good, parked for an operator (outbox-parked)",
        )?;
        let published = IntCounterVec::new(
            Opts::new(
                "shop_events_published_total",
                "Events the broker acknowledged, by type (at least once: a row whose mark \
                 failed is published, and counted, again)",
            ),
            &["event_type"],
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(oldest_age_seconds.clone()))?;
        registry.register(Box::new(parked.clone()))?;
        registry.register(Box::new(published.clone()))?;
        Ok(Self {
            pending,
            oldest_age_seconds,
            parked,
            published,
        })
    }
}

pub struct OutboxRelay {
    pool: PgPool,
    bus: EventBus,
    settings: OutboxSettings,
    metrics: OutboxMetrics,
    /// This relay's identity in `outbox_relay_lease`.
    holder: uuid::Uuid,
    /// Until when this relay holds the lease, as far as it knows.
    lease_until: Option<Instant>,
}

/// The lease's name: one relay per database.
const LEASE: &str = "outbox";

/// A row read back for publishing.
struct Row {
    seq: i64,
    topic: String,
    partition_key: String,
    headers: serde_json::Value,
    payload: serde_json::Value,
    attempts: i32,
}

/// Why a batch stopped.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("the database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the broker is unavailable: {0}")]
    Broker(String),
}

/// What publishing one batch did.
#[derive(Debug, Default)]
struct BatchOutcome {
    /// Rows read.
    read: usize,
    published: Vec<i64>,
    /// Rows the broker refused, with the error.
    refused: Vec<(i64, i32, String)>,
    /// Rows that could not be read back, with the error: parked at once.
    unreadable: Vec<(i64, String)>,
    /// The broker became unreachable: the rest of the batch waits.
    unavailable: Option<String>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often a busy relay reads its gauges (an idle one reads them on every wake).
const METRICS_EVERY: Duration = Duration::from_millis(250);

impl OutboxRelay {
    pub fn new(
        pool: PgPool,
        bus: EventBus,
        settings: OutboxSettings,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            bus,
            settings,
            metrics: OutboxMetrics::register(registry)?,
            holder: uuid::Uuid::new_v4(),
            lease_until: None,
        })
    }

    /// Publishes until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut listener = self.listen().await;
        let mut backoff = Duration::from_millis(100);
        let mut last_prune = Instant::now() - PRUNE_EVERY;
        let mut last_metrics = Instant::now() - METRICS_EVERY;
        while !shutdown.is_cancelled() {
            match self.publish_batch().await {
                Ok(read) => {
                    backoff = Duration::from_millis(100);
                    if read as i64 == self.settings.batch_size {
                        continue; // more may be waiting
                    }
                    // Busy: the gauges are read at most a few times a second. Idle (a
                    // batch found nothing, at least every poll interval): always.
                    if read > 0 && last_metrics.elapsed() < METRICS_EVERY {
                        self.wait_for_work(&mut listener, &shutdown).await;
                        continue;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "outbox relay: publishing paused"
                    );
                    // The gauges must keep moving while the broker is away: that is when
                    // the oldest pending event's age matters.
                    if matches!(error, RelayError::Broker(_))
                        && let Err(error) = self.update_metrics().await
                    {
                        tracing::warn!(error = %error, "outbox relay: cannot read metrics");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            last_metrics = Instant::now();
            if let Err(error) = self.update_metrics().await {
                tracing::warn!(error = %error, "outbox relay: cannot read metrics");
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                if let Err(error) = self.prune().await {
                    tracing::warn!(error = %error, "outbox relay: pruning failed");
                }
            }
            self.wait_for_work(&mut listener, &shutdown).await;
        }
        self.give_up_lease().await;
        tracing::info!("outbox relay stopped");
    }

    /// Sleeps until a commit notifies the relay, the poll interval passes, or shutdown.
    async fn wait_for_work(&self, listener: &mut Option<PgListener>, shutdown: &CancellationToken) {
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    let woken = l.recv().await.map(drop).map_err(|e| e.to_string());
                    // Every commit notifies; one batch reads what all of them wrote.
                    while l.next_buffered().is_some() {}
                    woken
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            result = tokio::time::timeout(self.settings.poll_interval, notified) => {
                if let Ok(Err(error)) = result {
                    tracing::warn!(%error, "outbox relay: notifications lost; polling until they are back");
                    *listener = self.listen().await;
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen("outbox").await.ok()?;
        Some(listener)
    }

    /// Takes or renews the lease; whether this relay may publish now. Renewed when a third
    /// of it has passed, so a busy relay does not write the lease on every batch.
    async fn hold_lease(&mut self) -> Result<bool, sqlx::Error> {
        let lease = self.settings.lease;
        if self
            .lease_until
            .is_some_and(|until| until > Instant::now() + lease.mul_f64(2.0 / 3.0))
        {
            return Ok(true);
        }
        let asked = Instant::now();
        let held = sqlx::query_scalar!(
            r#"INSERT INTO outbox_relay_lease (name, holder, expires_at)
               VALUES ($1, $2, now() + make_interval(secs => $3))
               ON CONFLICT (name) DO UPDATE
                   SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                   WHERE outbox_relay_lease.holder = EXCLUDED.holder
                      OR outbox_relay_lease.expires_at < now()
               RETURNING holder"#,
            LEASE,
            self.holder,
            lease.as_secs_f64(),
        )
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        if held && self.lease_until.is_none() {
            tracing::info!(holder = %self.holder, "outbox relay: active on this replica");
        } else if !held && self.lease_until.is_some() {
            tracing::warn!("outbox relay: lease lost; another replica publishes");
        }
        // Counted from before the question, so this relay stops before the database's
        // idea of the lease ends.
        self.lease_until = held.then(|| asked + lease);
        Ok(held)
    }

    async fn give_up_lease(&mut self) {
        if self.lease_until.take().is_none() {
            return;
        }
        let released = sqlx::query!(
            "DELETE FROM outbox_relay_lease WHERE name = $1 AND holder = $2",
            LEASE,
            self.holder,
        )
        .execute(&self.pool)
        .await;
        if let Err(error) = released {
            tracing::warn!(error = %error, "outbox relay: could not give the lease up; it expires by itself");
        }
    }

    /// Publishes one batch; returns how many rows it read. An error means the database or
    /// the broker is unavailable: the caller backs off.
    async fn publish_batch(&mut self) -> Result<usize, RelayError> {
        if !self.hold_lease().await? {
            return Ok(0);
        }
        // A plain read: no row lock, no transaction kept open while the broker works. Only
        // the lease holder publishes; rows of an aggregate held back by an earlier parked or
        // waiting row are left out.
        let rows = sqlx::query_as!(
            Row,
            r#"SELECT seq, topic, partition_key, headers, payload, attempts FROM outbox o
               WHERE published_at IS NULL AND parked_at IS NULL
                 AND (retry_at IS NULL OR retry_at <= now())
                 AND NOT EXISTS (
                     SELECT 1 FROM outbox held
                     WHERE held.published_at IS NULL
                       AND (held.parked_at IS NOT NULL OR held.retry_at > now())
                       AND held.partition_key = o.partition_key AND held.seq < o.seq)
               ORDER BY seq LIMIT $1"#,
            self.settings.batch_size,
        )
        .fetch_all(&self.pool)
        .await?;
        let outcome = self.publish_rows(rows).await;
        self.record(&outcome).await?;
        if !outcome.published.is_empty() {
            tracing::debug!(count = outcome.published.len(), "outbox relay: published");
        }
        match outcome.unavailable {
            Some(error) => Err(RelayError::Broker(error)),
            None => Ok(outcome.read),
        }
    }

    /// Publishes `rows` in waves. A wave holds, of every aggregate, the earliest row not yet
    /// sent; its rows go out together and the wave ends when the broker has answered for
    /// all of them. The broker's round trip is paid once per wave instead of once per row,
    /// and per-aggregate order holds: a row is sent only after the broker acknowledged the
    /// one before it of its aggregate, and a row that failed holds its aggregate's later
    /// rows back for the next batch.
    async fn publish_rows(&self, rows: Vec<Row>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            read: rows.len(),
            ..BatchOutcome::default()
        };
        // Aggregates with a row that failed in this batch: their later rows wait.
        let mut held: HashSet<String> = HashSet::new();
        // Stop while a third of the lease is left, so that a slow broker cannot make this
        // batch run on after another replica has taken over (which would only duplicate,
        // but needlessly); the rest waits for the next batch, after the lease is renewed.
        let stop_at = self
            .lease_until
            .map(|until| until - self.settings.lease / 3);
        let mut waiting: VecDeque<Row> = rows.into();
        while !waiting.is_empty() && outcome.unavailable.is_none() {
            if stop_at.is_some_and(|stop| Instant::now() >= stop) {
                break;
            }
            let mut wave = Vec::new();
            let mut in_wave: HashSet<String> = HashSet::new();
            let mut later = VecDeque::new();
            for row in waiting.drain(..) {
                if held.contains(&row.partition_key) {
                    continue;
                }
                if in_wave.contains(&row.partition_key) {
                    later.push_back(row);
                    continue;
                }
                match message_of(&row) {
                    Ok(message) => {
                        in_wave.insert(row.partition_key.clone());
                        wave.push((row, message));
                    }
                    Err(error) => {
                        held.insert(row.partition_key.clone());
                        outcome.unreadable.push((row.seq, error));
                    }
                }
            }
            waiting = later;
            let sent = wave.iter().map(|(row, message)| {
                let span = self.publish_span(row, message);
                self.bus
                    .publish(message)
                    .instrument(span.clone())
                    .map(move |published| (span, published))
            });
            let answers = futures_util::future::join_all(sent).await;
            for ((row, message), (span, published)) in wave.into_iter().zip(answers) {
                if let Err(error) = &published {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", error.kind());
                }
                match published {
                    Ok(()) => {
                        let event_type = message.header(headers::TYPE).unwrap_or("unknown");
                        self.metrics
                            .published
                            .with_label_values(&[event_type])
                            .inc();
                        outcome.published.push(row.seq);
                    }
                    Err(BusError::Other(error)) => {
                        held.insert(row.partition_key.clone());
                        outcome.refused.push((row.seq, row.attempts, error));
                    }
                    Err(BusError::Unavailable(error)) => {
                        // Rows of this wave the broker did take are marked; the rest of the
                        // batch waits for the broker.
                        held.insert(row.partition_key.clone());
                        outcome.unavailable = Some(error);
                    }
                }
            }
        }
        outcome
    }

    /// The span of one publish ("send"): a trace of its own (the relay works for no
    /// request), linked to the PRODUCER span whose context the row stored.
    fn publish_span(&self, row: &Row, message: &Message) -> tracing::Span {
        let span = tracing::info_span!(
            parent: None,
            "outbox.publish",
            otel.name = %format_args!("send {}", message.topic),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            messaging.system = self.bus.system(),
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = %message.topic,
            messaging.message.id = message.header(headers::ID),
            messaging.kafka.message.key = tracing::field::Empty,
            error.type = tracing::field::Empty,
            outbox.seq = row.seq,
            outbox.attempt = row.attempts + 1,
        );
        if matches!(self.bus, EventBus::Kafka(_)) {
            span.record("messaging.kafka.message.key", message.key.as_str());
        }
        if let Some(created) = telemetry::remote_span_context(&message.headers) {
            span.add_link(created);
        }
        span
    }

    /// Marks what was published, and what was refused, in one short transaction.
    async fn record(&self, outcome: &BatchOutcome) -> Result<(), sqlx::Error> {
        if outcome.published.is_empty()
            && outcome.refused.is_empty()
            && outcome.unreadable.is_empty()
        {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            r#"UPDATE outbox SET published_at = now(), attempts = attempts + 1,
                   retry_at = NULL, last_error = NULL
               WHERE seq = ANY($1)"#,
            &outcome.published,
        )
        .execute(&mut *tx)
        .await?;
        for (seq, attempts, error) in &outcome.refused {
            let attempts = attempts + 1;
            let park = attempts >= self.settings.max_attempts;
            // 1 s, 2 s, 4 s, ... between refusals, at most 5 minutes.
            let retry_in = 2f64.powi(attempts - 1).min(300.0);
            sqlx::query!(
                r#"UPDATE outbox SET attempts = $2, last_error = $3,
                       retry_at = CASE WHEN $4 THEN NULL ELSE now() + make_interval(secs => $5) END,
                       parked_at = CASE WHEN $4 THEN now() END
                   WHERE seq = $1"#,
                seq,
                attempts,
                error,
                park,
                retry_in,
            )
            .execute(&mut *tx)
            .await?;
            if park {
                tracing::error!(seq, attempts, %error, "outbox relay: the broker refused an event for good; parked (see outbox-parked)");
            } else {
                tracing::warn!(seq, attempts, %error, retry_in_s = retry_in, "outbox relay: the broker refused an event; retrying later");
            }
        }
        for (seq, error) in &outcome.unreadable {
            sqlx::query!(
                r#"UPDATE outbox SET attempts = attempts + 1, last_error = $2, parked_at = now()
                   WHERE seq = $1"#,
                seq,
                error,
            )
            .execute(&mut *tx)
            .await?;
            tracing::error!(seq, %error, "outbox relay: an event cannot be read back; parked (see outbox-parked)");
        }
        tx.commit().await
    }

    async fn update_metrics(&self) -> Result<(), sqlx::Error> {
        // Two counts, each over the rows of one partial index: published rows (kept for
        // the retention period, most of the table) are never read.
        let row = sqlx::query!(
            r#"SELECT waiting.n + parked.n AS "pending!", parked.n AS "parked!",
                      COALESCE(EXTRACT(EPOCH FROM now() - LEAST(waiting.oldest, parked.oldest)), 0)::bigint
                          AS "oldest!"
               FROM (SELECT count(*) AS n, min(created_at) AS oldest FROM outbox
                     WHERE published_at IS NULL AND parked_at IS NULL) waiting,
                    (SELECT count(*) AS n, min(created_at) AS oldest FROM outbox
                     WHERE published_at IS NULL AND parked_at IS NOT NULL) parked"#
        )
        .fetch_one(&self.pool)
        .await?;
        self.metrics.pending.set(row.pending);
        self.metrics.parked.set(row.parked);
        self.metrics.oldest_age_seconds.set(row.oldest);
        Ok(())
    }

    async fn prune(&self) -> Result<(), sqlx::Error> {
        let retention_secs = self.settings.retention.as_secs_f64();
        let deleted = sqlx::query!(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            retention_secs,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if deleted > 0 {
            tracing::info!(deleted, "outbox relay: pruned published events");
        }
        Ok(())
    }
}

/// The message of a row, or why it cannot be read back.
fn message_of(row: &Row) -> Result<Message, String> {
    let headers: BTreeMap<String, String> = serde_json::from_value(row.headers.clone())
        .map_err(|e| format!("the headers are not a map of strings: {e}"))?;
    let payload = serde_json::to_vec(&row.payload)
        .map_err(|e| format!("the payload does not encode: {e}"))?;
    Ok(Message {
        topic: row.topic.clone(),
        key: row.partition_key.clone(),
        headers,
        payload,
    })
}

/// A parked row, as `outbox-parked list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParkedEvent {
    pub seq: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub partition_key: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub parked_at: time::OffsetDateTime,
}

/// The parked rows, oldest first.
pub async fn list_parked(pool: &PgPool) -> Result<Vec<ParkedEvent>, sqlx::Error> {
    sqlx::query_as!(
        ParkedEvent,
        r#"SELECT seq, event_id, event_type, partition_key, attempts, last_error,
                  parked_at AS "parked_at!"
           FROM outbox WHERE parked_at IS NOT NULL AND published_at IS NULL ORDER BY seq"#
    )
    .fetch_all(pool)
    .await
}

/// Puts parked rows back in line (all of them, or the one with `seq`), with their attempt
/// count reset; returns how many.
pub async fn retry_parked(pool: &PgPool, seq: Option<i64>) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        r#"UPDATE outbox SET parked_at = NULL, retry_at = NULL, attempts = 0
           WHERE parked_at IS NOT NULL AND published_at IS NULL
             AND ($1::bigint IS NULL OR seq = $1)"#,
        seq,
    )
    .execute(pool)
    .await?;
    sqlx::query!("SELECT pg_notify('outbox', '')")
        .execute(pool)
        .await?;
    Ok(result.rows_affected())
}

/// Deletes the parked row `seq` for good, so that the events behind it flow; returns it.
pub async fn discard_parked(pool: &PgPool, seq: i64) -> Result<Option<ParkedEvent>, sqlx::Error> {
    let discarded = sqlx::query_as!(
        ParkedEvent,
        r#"DELETE FROM outbox WHERE seq = $1 AND parked_at IS NOT NULL AND published_at IS NULL
           RETURNING seq, event_id, event_type, partition_key, attempts, last_error,
                     parked_at AS "parked_at!""#,
        seq,
    )
    .fetch_optional(pool)
    .await?;
    if discarded.is_some() {
        sqlx::query!("SELECT pg_notify('outbox', '')")
            .execute(pool)
            .await?;
    }
    Ok(discarded)
}
