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
//! - publishes in `seq` order and waits for the broker's acknowledgement before marking a
//!   row published, so a crash in between republishes (consumers are idempotent);
//! - runs on one replica at a time: each batch takes a transaction-scoped advisory lock,
//!   so replicas never publish the same row concurrently and per-aggregate order holds
//!   (the rows are also claimed `FOR UPDATE SKIP LOCKED`); another replica takes over
//!   within a poll interval when the active one dies;
//! - stops at the first row that fails, retrying it with backoff, so later events of the
//!   same aggregate never overtake it;
//! - deletes published rows after the retention period.

use std::time::{Duration, Instant};

use prometheus::{IntGauge, Registry};
use shop_model::events::{CloudEvent, Event};
use sqlx::{PgConnection, PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

use super::{EventBus, Message, settings::OutboxSettings};
use crate::request_context::TraceParent;

/// Adds `event` to the outbox inside the caller's transaction. `source` is the publishing
/// service (`/order-service`); `traceparent` ties the event to the request or event that
/// caused it.
#[tracing::instrument(skip_all, fields(event_type = E::TYPE, subject = %event.subject()))]
pub async fn enqueue<E: Event>(
    conn: &mut PgConnection,
    source: &str,
    event: &E,
    traceparent: Option<&TraceParent>,
) -> Result<uuid::Uuid, sqlx::Error> {
    let envelope = CloudEvent::new(source, event);
    let message = Message::from_event(&envelope, event, traceparent)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let event_id =
        uuid::Uuid::parse_str(&envelope.id).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let headers =
        serde_json::to_value(&message.headers).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query!(
        r#"INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES ($1, $2, $3, $4, $5, $6)"#,
        event_id,
        message.topic,
        message.key,
        E::TYPE,
        headers,
        payload,
    )
    .execute(conn)
    .await?;
    Ok(event_id)
}

/// Outbox gauges, exported on `/metrics`.
#[derive(Clone)]
struct OutboxMetrics {
    pending: IntGauge,
    oldest_age_seconds: IntGauge,
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
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(oldest_age_seconds.clone()))?;
        Ok(Self {
            pending,
            oldest_age_seconds,
        })
    }
}

pub struct OutboxRelay {
    pool: PgPool,
    bus: EventBus,
    settings: OutboxSettings,
    metrics: OutboxMetrics,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

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
        })
    }

    /// Publishes until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = self.listen().await;
        let mut backoff = Duration::from_millis(100);
        let mut last_prune = Instant::now() - PRUNE_EVERY;
        while !shutdown.is_cancelled() {
            match self.publish_batch().await {
                Ok(published) => {
                    backoff = Duration::from_millis(100);
                    if published as i64 == self.settings.batch_size {
                        continue; // more may be waiting
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.as_millis() as u64,
                        "outbox relay: publishing failed"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            if let Err(error) = self.update_metrics().await {
                tracing::warn!(error = %error, "outbox relay: cannot read metrics");
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                if let Err(error) = self.prune().await {
                    tracing::warn!(error = %error, "outbox relay: pruning failed");
                }
            }
            // Sleep until a commit notifies us, the poll interval passes, or shutdown.
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop).map_err(|e| e.to_string()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                result = tokio::time::timeout(self.settings.poll_interval, notified) => {
                    if let Ok(Err(error)) = result {
                        tracing::warn!(%error, "outbox relay: notifications lost; polling until they are back");
                        listener = self.listen().await;
                    }
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen("outbox").await.ok()?;
        Some(listener)
    }

    /// Publishes one batch; returns how many rows were published.
    async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let leader: bool = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_xact_lock(hashtext('outbox-relay')) AS "leader!""#
        )
        .fetch_one(&mut *tx)
        .await?;
        if !leader {
            return Ok(0);
        }
        let rows = sqlx::query!(
            r#"SELECT seq, topic, partition_key, headers, payload
               FROM outbox WHERE published_at IS NULL
               ORDER BY seq LIMIT $1
               FOR UPDATE SKIP LOCKED"#,
            self.settings.batch_size,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut published = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in rows {
            let message = Message {
                topic: row.topic,
                key: row.partition_key,
                headers: serde_json::from_value(row.headers)?,
                payload: serde_json::to_vec(&row.payload)?,
            };
            match self.bus.publish(&message).await {
                Ok(()) => published.push(row.seq),
                Err(error) => {
                    failure = Some((row.seq, error));
                    break;
                }
            }
        }
        sqlx::query!(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE seq = ANY($1)",
            &published,
        )
        .execute(&mut *tx)
        .await?;
        if let Some((seq, error)) = &failure {
            sqlx::query!(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1",
                seq,
                error.to_string(),
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !published.is_empty() {
            tracing::debug!(count = published.len(), "outbox relay: published");
        }
        match failure {
            Some((_, error)) => Err(error.into()),
            None => Ok(published.len()),
        }
    }

    async fn update_metrics(&self) -> Result<(), sqlx::Error> {
        let row = sqlx::query!(
            r#"SELECT count(*) AS "pending!",
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS "oldest!"
               FROM outbox WHERE published_at IS NULL"#
        )
        .fetch_one(&self.pool)
        .await?;
        self.metrics.pending.set(row.pending);
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
