//! Dead letters: messages a consumer gave up on, kept with the reason, and the replay that
//! sends them back once the cause is fixed.
//!
//! A dead letter is the original message (same key, headers and body) on the topic
//! `shop.dead-letters`, with `x-dead-letter-error`, `-topic`, `-consumer` and `-at` headers
//! added. Replaying republishes it to its original topic without those headers. Every
//! consumer of that topic sees it again; the ones that had applied it already recognise
//! the event id in their inbox and change nothing.

use std::time::Duration;

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

/// Republishes the dead letters that arrive until none has come for `idle`; returns how
/// many were replayed. Each is acknowledged only after its republication succeeded.
pub async fn replay(bus: &EventBus, idle: Duration) -> anyhow::Result<usize> {
    let subscription = Subscription {
        consumer: DEAD_LETTER_TOPIC.to_owned(),
        topics: vec![DEAD_LETTER_TOPIC],
        event_types: Vec::new(),
    };
    let mut receiver = bus.subscribe(&subscription).await?;
    let mut replayed = 0;
    loop {
        let delivery = match tokio::time::timeout(idle, receiver.next()).await {
            Err(_) => break,
            Ok(delivery) => delivery?,
        };
        match original(&delivery.message) {
            Some(message) => {
                bus.publish(&message).await?;
                tracing::info!(
                    topic = %message.topic,
                    event_id = message.header(headers::ID).unwrap_or("?"),
                    "dead letter replayed"
                );
                replayed += 1;
            }
            None => tracing::warn!("a dead letter without its original topic was dropped"),
        }
        receiver.ack(&delivery).await?;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
