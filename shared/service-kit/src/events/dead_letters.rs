//! Dead letters: messages a consumer gave up on, kept with the reason, and the replay that
//! sends them back once the cause is fixed.
//!
//! A dead letter is the original message (same key, headers and body) on the topic
//! `shop.dead-letters`, with `x-dead-letter-error`, `-topic`, `-consumer` and `-at` headers
//! added. Replaying republishes it to its original topic without those headers. Every
//! consumer of that topic sees it again; the ones that had applied it already recognise
//! the event id in their inbox and change nothing. Dead letters are for failures of the
//! message itself: a consumer never dead-letters because the database or the broker was
//! away (it pauses instead, see `consumer`).

use std::{collections::BTreeMap, time::Duration};

use time::OffsetDateTime;

use super::{DEAD_LETTER_TOPIC, EventBus, Message, Subscription, headers};

/// The dead letter for `message`, which `consumer` failed with `error`.
pub fn letter(message: &Message, consumer: &str, error: &str) -> Message {
    let mut letter = message.clone();
    letter.topic = DEAD_LETTER_TOPIC.to_owned();
    let now = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    letter.headers.extend([
        (
            headers::DEAD_LETTER_ERROR.to_owned(),
            error.chars().take(2000).collect(),
        ),
        (headers::DEAD_LETTER_TOPIC.to_owned(), message.topic.clone()),
        (
            headers::DEAD_LETTER_CONSUMER.to_owned(),
            consumer.to_owned(),
        ),
        (headers::DEAD_LETTER_AT.to_owned(), now),
    ]);
    letter
}

/// The original message of a dead letter, or `None` if it does not name its topic.
pub fn original(letter: &Message) -> Option<Message> {
    let topic = letter.header(headers::DEAD_LETTER_TOPIC)?.to_owned();
    let mut message = letter.clone();
    message.topic = topic;
    for header in [
        headers::DEAD_LETTER_ERROR,
        headers::DEAD_LETTER_TOPIC,
        headers::DEAD_LETTER_CONSUMER,
        headers::DEAD_LETTER_AT,
    ] {
        message.headers.remove(header);
    }
    Some(message)
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Dead letters republished, per original topic.
    pub per_topic: BTreeMap<String, u64>,
    /// Of those, how many had been replayed before and failed again.
    pub replayed_before: u64,
    /// Dead letters that did not name their topic, dropped.
    pub dropped: u64,
}

impl ReplayReport {
    pub fn replayed(&self) -> u64 {
        self.per_topic.values().sum()
    }
}

/// Republishes the dead letters that wait when it starts, each to its original topic, then
/// returns. A dead letter is acknowledged only after its republication succeeded.
///
/// Dead letters that arrive meanwhile are left for the next run, and that includes the
/// replayed messages that fail again: each goes back to the dead-letter topic once more,
/// with its replay count in `x-dead-letter-replays`, instead of going round for ever.
pub async fn replay(bus: &EventBus) -> anyhow::Result<ReplayReport> {
    let subscription = Subscription {
        consumer: DEAD_LETTER_TOPIC.to_owned(),
        topics: vec![DEAD_LETTER_TOPIC],
        event_types: Vec::new(),
    };
    let mut backlog = bus.backlog(&subscription).await?;
    let mut report = ReplayReport::default();
    if backlog.is_empty() {
        return Ok(report);
    }
    tracing::info!(waiting = backlog.len(), "replaying dead letters");
    let mut receiver = bus.subscribe(&subscription).await?;
    while !backlog.is_empty() {
        let delivery = tokio::time::timeout(RECEIVE_TIMEOUT, receiver.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no dead letter arrived within {RECEIVE_TIMEOUT:?}, with {} still expected",
                    backlog.len()
                )
            })??;
        if !backlog.take(&delivery) {
            continue; // newer than the replay: the next run's
        }
        match original(&delivery.message) {
            Some(mut message) => {
                let replays = replay_count(&message);
                if replays > 0 {
                    report.replayed_before += 1;
                }
                message.headers.insert(
                    headers::DEAD_LETTER_REPLAYS.to_owned(),
                    (replays + 1).to_string(),
                );
                bus.publish(&message).await?;
                tracing::info!(
                    topic = %message.topic,
                    event_id = message.header(headers::ID).unwrap_or("?"),
                    replays = replays + 1,
                    "dead letter replayed"
                );
                *report.per_topic.entry(message.topic.clone()).or_default() += 1;
            }
            None => {
                tracing::warn!("a dead letter without its original topic was dropped");
                report.dropped += 1;
            }
        }
        receiver.ack(&delivery).await?;
    }
    Ok(report)
}

/// How long a replay waits for the next dead letter it knows is there.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the message was replayed before.
pub fn replay_count(message: &Message) -> u64 {
    message
        .header(headers::DEAD_LETTER_REPLAYS)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_keeps_the_message_and_says_why_and_the_original_comes_back() {
        let message = Message {
            topic: "shop.orders".to_owned(),
            key: "order-1".to_owned(),
            headers: BTreeMap::from([(headers::ID.to_owned(), "e1".to_owned())]),
            payload: b"{\"x\":1}".to_vec(),
        };

        let letter = letter(&message, "inventory-service", "boom");

        assert_eq!(letter.topic, DEAD_LETTER_TOPIC);
        assert_eq!(letter.header(headers::DEAD_LETTER_ERROR), Some("boom"));
        assert_eq!(
            letter.header(headers::DEAD_LETTER_CONSUMER),
            Some("inventory-service")
        );
        assert_eq!(letter.payload, message.payload);
        assert_eq!(original(&letter), Some(message));
    }
}
