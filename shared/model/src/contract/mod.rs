//! The machine-readable event contract, generated from the types in [`crate::events`].
//!
//! The services share those Rust types, so they cannot disagree with each other; but a
//! consumer written in another language, a reviewer reading a pull request, or a tool
//! (AsyncAPI Studio, a schema registry) cannot read Rust. So the contract is also published
//! under `docs/events/`:
//!
//! - `schemas/<event type>.json`: one self-contained JSON Schema (2020-12) per event type
//!   ([`json_schemas`]);
//! - `asyncapi.json`: an AsyncAPI 3.0 document of the whole system: brokers, topics,
//!   messages with their CloudEvents headers, who publishes and who consumes what
//!   ([`asyncapi::document`]);
//! - `released/`: the schemas as last released, which [`compat::breaking_changes`] compares
//!   the current ones with;
//! - the event tables of `docs/events.md` ([`catalogue::tables`]).
//!
//! `cargo run -p shop-model --example write-event-contract` (`make contract`) writes them;
//! `tests/contract.rs` fails when a committed file differs from what the code generates or
//! when a change would break the consumers of a released version. Everything here is pure:
//! the example and the tests do the file I/O.

pub mod asyncapi;
pub mod catalogue;
pub mod compat;
mod json_schema;

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

use crate::events::{
    CONSUMERS, EVENT_TYPES, Event, OrderCancelled, OrderConfirmed, OrderPlaced, PaymentFailed,
    PaymentRefunded, PaymentSucceeded, StockRejected, StockReleased, StockReserved, UserRegistered,
    topics,
};

/// Why the contract could not be generated. Each one is a mistake in this crate, found by
/// its tests, never a condition at run time.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the schema of {event_type} does not serialize to JSON: {source}")]
    Serialize {
        event_type: &'static str,
        source: serde_json::Error,
    },
    #[error("the schema of {event_type} refers to {reference}, which it does not define")]
    UnresolvedReference {
        event_type: &'static str,
        reference: String,
    },
    #[error(
        "the schema of {event_type} is recursive through {name}; a self-contained schema cannot inline it"
    )]
    RecursiveSchema {
        event_type: &'static str,
        name: String,
    },
    #[error("topic {0} has no publishing service: add it to contract::publisher")]
    NoPublisher(&'static str),
    #[error("the page has no generated event catalogue: add the lines {start:?} and {end:?}")]
    MissingMarkers {
        start: &'static str,
        end: &'static str,
    },
}

/// Everything the contract says about one event type.
#[derive(Debug, Clone, PartialEq)]
pub struct EventContract {
    /// The CloudEvents `type`, e.g. `shop.order.placed.v1`.
    pub event_type: &'static str,
    /// The Rust type that carries it, e.g. `OrderPlaced`.
    pub name: String,
    /// The topic it is published to.
    pub topic: &'static str,
    /// The payload field whose value is the CloudEvents `subject` and the partition key.
    pub partition_key: &'static str,
    /// The service that publishes it.
    pub publisher: &'static str,
    /// The services that consume it, in the order of [`CONSUMERS`].
    pub consumers: Vec<&'static str>,
    /// The payload's self-contained JSON Schema, as committed under `docs/events/schemas/`.
    pub schema: Value,
}

/// Every event type, in the order of [`crate::events::EVENT_TYPES`].
///
/// The partition key is named here because [`Event::subject`] is code, not data; a test
/// checks that the named field holds the subject of every event.
pub fn events() -> Result<Vec<EventContract>, ContractError> {
    Ok(vec![
        describe::<UserRegistered>("user_id")?,
        describe::<OrderPlaced>("order_id")?,
        describe::<OrderConfirmed>("order_id")?,
        describe::<OrderCancelled>("order_id")?,
        describe::<StockReserved>("order_id")?,
        describe::<StockRejected>("order_id")?,
        describe::<StockReleased>("order_id")?,
        describe::<PaymentSucceeded>("order_id")?,
        describe::<PaymentFailed>("order_id")?,
        describe::<PaymentRefunded>("order_id")?,
    ])
}

/// The JSON Schema of every event's payload, by event type.
pub fn json_schemas() -> Result<BTreeMap<&'static str, Value>, ContractError> {
    Ok(events()?
        .into_iter()
        .map(|event| (event.event_type, event.schema))
        .collect())
}

/// The service that publishes to `topic`: each topic belongs to one service, which owns
/// the aggregates its events are about.
pub fn publisher(topic: &str) -> Option<&'static str> {
    match topic {
        topics::USERS => Some("user-service"),
        topics::ORDERS => Some("order-service"),
        topics::INVENTORY => Some("inventory-service"),
        topics::PAYMENTS => Some("payment-service"),
        _ => None,
    }
}

/// The CloudEvents `source` of the events `publisher` publishes, e.g. `/order-service`.
pub fn source(publisher: &str) -> String {
    format!("/{publisher}")
}

/// The event types published to `topic`.
pub fn events_on(topic: &str) -> Vec<&'static str> {
    EVENT_TYPES
        .iter()
        .filter(|(_, t)| *t == topic)
        .map(|(event_type, _)| *event_type)
        .collect()
}

/// The consumers (of [`CONSUMERS`]) that handle `event_type`.
pub fn consumers_of(event_type: &str) -> Vec<&'static str> {
    CONSUMERS
        .iter()
        .filter(|consumer| consumer.event_types.contains(&event_type))
        .map(|consumer| consumer.name)
        .collect()
}

fn describe<E: Event + ToSchema>(
    partition_key: &'static str,
) -> Result<EventContract, ContractError> {
    Ok(EventContract {
        event_type: E::TYPE,
        name: E::name().into_owned(),
        topic: E::TOPIC,
        partition_key,
        publisher: publisher(E::TOPIC).ok_or(ContractError::NoPublisher(E::TOPIC))?,
        consumers: consumers_of(E::TYPE),
        schema: json_schema::standalone::<E>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_described_in_order_with_its_topic() {
        let events = events().expect("the contract generates");
        let described: Vec<(&str, &str)> = events.iter().map(|e| (e.event_type, e.topic)).collect();
        assert_eq!(described, EVENT_TYPES.to_vec());
    }

    #[test]
    fn every_event_type_says_what_it_means() {
        for event in events().expect("the contract generates") {
            let described = event.schema.get("description").and_then(|d| d.as_str());
            assert!(
                described.is_some_and(|d| !d.is_empty()),
                "{}: give {} a doc comment; it is the event's purpose in the contract",
                event.event_type,
                event.name
            );
        }
    }

    #[test]
    fn every_topic_has_a_publisher() {
        for topic in topics::ALL {
            assert!(publisher(topic).is_some(), "{topic}");
        }
        assert_eq!(publisher("shop.unknown"), None);
    }

    #[test]
    fn consumers_come_from_the_consumer_table() {
        assert_eq!(
            consumers_of(OrderCancelled::TYPE),
            vec!["inventory-service", "payment-service"]
        );
        assert_eq!(consumers_of(StockReleased::TYPE), Vec::<&str>::new());
    }
}
