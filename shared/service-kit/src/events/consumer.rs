//! The idempotent consumer: how every service handles the events it subscribes to.
//!
//! Brokers deliver at least once: after a crash, a rebalance or a lost acknowledgement the
//! same event comes again. Each delivery is therefore handled in one database transaction
//! that first records `(consumer, event id)` in the inbox table; if the row is already
//! there the event was applied before and the transaction changes nothing. The broker is
//! acknowledged only after that transaction commits, so an event is never lost either.
//!
//! A message that cannot be decoded, or whose handler still fails after a bounded number of
//! attempts with backoff, is published to the dead-letter topic with the error and its
//! original headers, then acknowledged: one bad message never stops the consumer.

use std::{future::Future, time::Duration};

use shop_model::events::ConsumerSpec;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    Delivery, EventBus, IncomingEvent, Receiver, Subscription, dead_letters,
    settings::ConsumerSettings,
};

/// Why a handler could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retrying cannot help (the event is invalid for this service): dead-letter it now.
    #[error("permanent failure: {0:#}")]
    Permanent(anyhow::Error),
    /// Might work on another attempt (database unavailable, a deadlock, ...).
    #[error("transient failure: {0:#}")]
    Transient(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Transient(error.into())
    }
}

impl From<super::DecodeError> for HandlerError {
    fn from(error: super::DecodeError) -> Self {
        Self::Permanent(error.into())
    }
}

/// A service's event handling: applies one event inside the transaction `tx`. Writes to
/// the outbox go through the same `tx`, so the effect, the inbox record and any events
/// it causes commit together.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Runs one subscription with one handler until shutdown.
pub struct Consumer<H> {
    pool: PgPool,
    bus: EventBus,
    subscription: Subscription,
    handler: H,
    settings: ConsumerSettings,
}

enum Outcome {
    Applied,
    Duplicate,
    Skipped,
}

impl<H: EventHandler> Consumer<H> {
    pub fn new(
        pool: PgPool,
        bus: EventBus,
        spec: ConsumerSpec,
        handler: H,
        settings: ConsumerSettings,
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
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let consumer = self.subscription.consumer.clone();
        let mut receiver = loop {
            match self.bus.subscribe(&self.subscription).await {
                Ok(receiver) => break receiver,
                Err(error) => {
                    tracing::warn!(%consumer, error = %error, "cannot subscribe yet");
                    if sleep_or_stop(&shutdown, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(%consumer, topics = ?self.subscription.topics, "consuming");
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                delivery = receiver.next() => delivery,
            };
            match delivery {
                Ok(delivery) => self.process(&mut receiver, delivery, &shutdown).await,
                Err(error) => {
                    tracing::warn!(%consumer, error = %error, "receiving failed; retrying");
                    if sleep_or_stop(&shutdown, Duration::from_millis(500)).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(%consumer, "consumer stopped");
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
                tracing::error!(error = %error, topic = %delivery.message.topic, "undecodable message");
                self.dead_letter(receiver, &delivery, &error.to_string(), shutdown)
                    .await;
                return;
            }
        };
        let span = tracing::info_span!(
            "consume",
            consumer = %self.subscription.consumer,
            event_id = %event.id,
            event_type = %event.event_type,
            subject = %event.subject,
            traceparent = event.traceparent.as_ref().map(|t| t.as_str()),
        );
        async {
            let mut attempt = 1;
            let outcome = loop {
                match self.apply(&event).await {
                    Ok(outcome) => break outcome,
                    Err(HandlerError::Permanent(error)) => {
                        tracing::error!(
                            error = format!("{error:#}"),
                            "event rejected by the handler"
                        );
                        self.dead_letter(receiver, &delivery, &format!("{error:#}"), shutdown)
                            .await;
                        return;
                    }
                    Err(HandlerError::Transient(error))
                        if attempt >= self.settings.max_attempts =>
                    {
                        tracing::error!(
                            error = format!("{error:#}"),
                            attempt,
                            "event failed on every attempt"
                        );
                        self.dead_letter(receiver, &delivery, &format!("{error:#}"), shutdown)
                            .await;
                        return;
                    }
                    Err(HandlerError::Transient(error)) => {
                        let wait = self.settings.retry_backoff * 2u32.saturating_pow(attempt - 1);
                        tracing::warn!(
                            error = format!("{error:#}"),
                            attempt,
                            retry_in_ms = wait.as_millis() as u64,
                            "event failed; retrying"
                        );
                        // Not acknowledged: on shutdown the broker redelivers it later.
                        if sleep_or_stop(shutdown, wait).await {
                            return;
                        }
                        attempt += 1;
                    }
                }
            };
            match outcome {
                Outcome::Applied => tracing::info!("event applied"),
                Outcome::Duplicate => tracing::info!("duplicate event ignored"),
                Outcome::Skipped => tracing::debug!("event type not handled here"),
            }
            self.ack(receiver, &delivery).await;
        }
        .instrument(span)
        .await;
    }

    /// One attempt: inbox record + handler, in one transaction.
    async fn apply(&self, event: &IncomingEvent) -> Result<Outcome, HandlerError> {
        if !self
            .subscription
            .event_types
            .contains(&event.event_type.as_str())
        {
            return Ok(Outcome::Skipped);
        }
        let mut tx = self.pool.begin().await?;
        let first_time = sqlx::query!(
            r#"INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3)
               ON CONFLICT (consumer, event_id) DO NOTHING"#,
            self.subscription.consumer,
            event.id,
            event.event_type,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !first_time {
            return Ok(Outcome::Duplicate);
        }
        self.handler.handle(&mut tx, event).await?;
        tx.commit().await?;
        Ok(Outcome::Applied)
    }

    async fn dead_letter(
        &self,
        receiver: &mut Receiver,
        delivery: &Delivery,
        error: &str,
        shutdown: &CancellationToken,
    ) {
        let letter = dead_letters::letter(&delivery.message, &self.subscription.consumer, error);
        // Never acknowledge a message whose dead letter is not safely stored.
        let mut wait = Duration::from_millis(200);
        loop {
            match self.bus.publish(&letter).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot publish the dead letter yet");
                    if sleep_or_stop(shutdown, wait).await {
                        return;
                    }
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        tracing::warn!(consumer = %self.subscription.consumer, topic = %delivery.message.topic, "message dead-lettered");
        self.ack(receiver, delivery).await;
    }

    async fn ack(&self, receiver: &mut Receiver, delivery: &Delivery) {
        if let Err(error) = receiver.ack(delivery).await {
            // The effect is committed; the broker will redeliver and the inbox will say
            // "duplicate".
            tracing::warn!(error = %error, "acknowledgement failed; the message will be redelivered");
        }
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
async fn sleep_or_stop(shutdown: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
