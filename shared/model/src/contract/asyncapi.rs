//! The AsyncAPI 3.0 document of the system: the two brokers, one channel per topic, one
//! message per event type (its CloudEvents headers, its payload, its partition key), and
//! who sends and receives what.
//!
//! Publishers come from the topic ([`super::publisher`]), consumers from
//! [`crate::events::CONSUMERS`], payloads from the event types: the document cannot say
//! something the code does not do. The payload schemas are those of
//! `docs/events/schemas/`, without their `$schema` and `$id` (AsyncAPI schemas take the
//! dialect of the document; the keywords used are common to both).

use serde_json::{Map, Value, json};

use super::{ContractError, EventContract};
use crate::events::{CONSUMERS, CloudEvent, ConsumerSpec, topics};

pub const ASYNCAPI_VERSION: &str = "3.0.0";
/// The RabbitMQ exchange every event is published to, with its type as the routing key.
pub const EXCHANGE: &str = "shop.events";

const KAFKA_BINDING_VERSION: &str = "0.5.0";
const AMQP_BINDING_VERSION: &str = "0.3.0";
const DEAD_LETTER: &str = "dead-letter";
const HEADERS: &str = "CloudEventHeaders";
const DEAD_LETTER_HEADERS: &str = "DeadLetterHeaders";

/// The whole document.
pub fn document() -> Result<Value, ContractError> {
    let events = super::events()?;
    let mut channels = Map::new();
    let mut operations = Map::new();
    for topic in topics::ALL {
        let on_topic: Vec<&EventContract> = events.iter().filter(|e| e.topic == topic).collect();
        let publisher = super::publisher(topic).ok_or(ContractError::NoPublisher(topic))?;
        channels.insert(topic.into(), event_channel(publisher, topic, &on_topic));
        operations.insert(
            format!("{publisher}.send.{topic}"),
            send(publisher, topic, &on_topic),
        );
    }
    channels.insert(topics::DEAD_LETTERS.into(), dead_letter_channel());
    for consumer in CONSUMERS {
        for topic in consumer.topics() {
            operations.insert(
                format!("{}.receive.{topic}", consumer.name),
                receive(&consumer, topic),
            );
        }
        operations.insert(
            format!("{}.send.{}", consumer.name, topics::DEAD_LETTERS),
            dead_letter_send(consumer.name),
        );
    }
    operations.insert("replay-dead-letters".into(), dead_letter_replay());

    let mut schemas = Map::new();
    let mut messages = Map::new();
    for event in &events {
        let mut payload = event.schema.clone();
        if let Value::Object(payload) = &mut payload {
            payload.remove("$schema");
            payload.remove("$id");
        }
        schemas.insert(event.event_type.into(), payload);
        messages.insert(event.event_type.into(), message(event));
    }
    schemas.insert(HEADERS.into(), cloud_event_headers());
    schemas.insert(DEAD_LETTER_HEADERS.into(), dead_letter_headers());
    messages.insert(DEAD_LETTER.into(), dead_letter_message());

    Ok(json!({
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:shop:events",
        "info": {
            "title": "Shop events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The events the shop services exchange to run the order saga \
                (choreography). Each message is a CloudEvents 1.0 event in binary content \
                mode: the attributes are message headers, the body is the event's data as \
                JSON. Event types carry their version (`.v1`); a breaking change is a new \
                type published alongside the old one. Generated from `shared/model` by \
                `make contract`; see `docs/events.md`.",
            "license": { "name": env!("CARGO_PKG_LICENSE") },
        },
        "defaultContentType": CloudEvent::CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "title": "Kafka (the default)",
                "description": "`EVENT_BUS=kafka` (the default), brokers at `KAFKA_BROKERS`. \
                    One topic per publishing service; the message key (the partition key) \
                    is the CloudEvents subject, so the events of one aggregate keep their \
                    order. Each consuming service is one consumer group named after it.",
            },
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "title": "RabbitMQ",
                "description": format!(
                    "`EVENT_BUS=rabbitmq`, broker at `AMQP_URL`. Every event is published to \
                    the topic exchange `{EXCHANGE}` with its event type as the routing key; \
                    each consuming service has a queue named after it, bound to the event \
                    types it handles. Dead letters go to the queue `{}`.",
                    topics::DEAD_LETTERS
                ),
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "correlationIds": {
                "subject": {
                    "description": "The aggregate id (an order's or a user's): every event \
                        of one order carries the same subject.",
                    "location": "$message.header#/ce_subject",
                },
            },
        },
    }))
}

fn event_channel(publisher: &str, topic: &str, events: &[&EventContract]) -> Value {
    let messages: Map<String, Value> = events
        .iter()
        .map(|e| {
            (
                e.event_type.to_owned(),
                component_ref("messages", e.event_type),
            )
        })
        .collect();
    json!({
        "address": topic,
        "title": topic,
        "description": format!(
            "The events of {publisher}. Kafka: the topic `{topic}`. RabbitMQ: the exchange \
            `{EXCHANGE}`, routing key = the event type."
        ),
        "messages": messages,
        "bindings": {
            "kafka": { "topic": topic, "bindingVersion": KAFKA_BINDING_VERSION },
            "amqp": {
                "is": "routingKey",
                "exchange": { "name": EXCHANGE, "type": "topic" },
                "bindingVersion": AMQP_BINDING_VERSION,
            },
        },
    })
}

fn dead_letter_channel() -> Value {
    let topic = topics::DEAD_LETTERS;
    json!({
        "address": topic,
        "title": topic,
        "description": "Messages a consumer gave up on (undecodable, rejected, or failed on \
            every attempt), unchanged, with why. Replayed to their original topics by \
            `<service binary> replay-dead-letters`; see `docs/patterns/dead-letters.md`.",
        "messages": { DEAD_LETTER: component_ref("messages", DEAD_LETTER) },
        "bindings": {
            "kafka": { "topic": topic, "bindingVersion": KAFKA_BINDING_VERSION },
            "amqp": {
                "is": "queue",
                "queue": { "name": topic },
                "bindingVersion": AMQP_BINDING_VERSION,
            },
        },
    })
}

fn send(publisher: &str, topic: &str, events: &[&EventContract]) -> Value {
    let messages: Vec<Value> = events
        .iter()
        .map(|e| channel_message_ref(topic, e.event_type))
        .collect();
    json!({
        "action": "send",
        "channel": channel_ref(topic),
        "title": format!("{publisher} publishes to {topic}"),
        "description": "Through the transactional outbox: each event is written in the same \
            database transaction as the change it reports, and a relay publishes it at least \
            once, in order per aggregate.",
        "messages": messages,
    })
}

fn receive(consumer: &ConsumerSpec, topic: &str) -> Value {
    let handled: Vec<&str> = consumer
        .event_types
        .iter()
        .copied()
        .filter(|t| super::events_on(topic).contains(t))
        .collect();
    let messages: Vec<Value> = handled
        .iter()
        .map(|t| channel_message_ref(topic, t))
        .collect();
    json!({
        "action": "receive",
        "channel": channel_ref(topic),
        "title": format!("{} consumes from {topic}", consumer.name),
        "description": format!(
            "Idempotent consumer: the effect and the event id (in the inbox) commit in one \
            transaction, and the message is acknowledged only after it. Kafka: consumer group \
            `{0}`, which skips the topic's other event types. RabbitMQ: queue `{0}`, bound to \
            the event types it handles.",
            consumer.name
        ),
        "messages": messages,
        "bindings": {
            "kafka": {
                "groupId": { "type": "string", "const": consumer.name },
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
            "amqp": { "ack": true, "bindingVersion": AMQP_BINDING_VERSION },
        },
    })
}

fn dead_letter_send(consumer: &str) -> Value {
    json!({
        "action": "send",
        "channel": channel_ref(topics::DEAD_LETTERS),
        "title": format!("{consumer} dead-letters what it cannot handle"),
        "messages": [channel_message_ref(topics::DEAD_LETTERS, DEAD_LETTER)],
    })
}

fn dead_letter_replay() -> Value {
    json!({
        "action": "receive",
        "channel": channel_ref(topics::DEAD_LETTERS),
        "title": "Replay of the dead letters",
        "description": "`<service binary> replay-dead-letters` (`make replay-dead-letters`) \
            republishes each dead letter that waits when it starts to its original topic, \
            without the `x-dead-letter-*` headers but with `x-dead-letter-replays` counting \
            the replays, prints how many went to which topic, and stops. A replayed message \
            that fails again waits for the next replay.",
        "messages": [channel_message_ref(topics::DEAD_LETTERS, DEAD_LETTER)],
        "bindings": {
            "kafka": {
                "groupId": { "type": "string", "const": topics::DEAD_LETTERS },
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
        },
    })
}

fn message(event: &EventContract) -> Value {
    let mut message = json!({
        "name": event.event_type,
        "title": event.name,
        "description": format!(
            "Published by {} to `{}`. Partition key (Kafka message key) and `ce_subject`: \
            `{}`. RabbitMQ routing key: `{}`.",
            event.publisher, event.topic, event.partition_key, event.event_type
        ),
        "contentType": CloudEvent::CONTENT_TYPE,
        "headers": {
            "type": "object",
            "allOf": [
                component_ref("schemas", HEADERS),
                {
                    "properties": {
                        "ce_type": { "const": event.event_type },
                        "ce_source": { "const": super::source(event.publisher) },
                    },
                },
            ],
        },
        "payload": component_ref("schemas", event.event_type),
        "correlationId": component_ref("correlationIds", "subject"),
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "format": "uuid",
                    "description": format!(
                        "The partition key: the CloudEvents subject, the payload's `{}`.",
                        event.partition_key
                    ),
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
        },
    });
    // The type's doc comment: what happened, and what it sets off.
    if let (Some(summary), Value::Object(message)) = (event.schema.get("description"), &mut message)
    {
        message.insert("summary".into(), summary.clone());
    }
    message
}

fn dead_letter_message() -> Value {
    json!({
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A message a consumer gave up on, unchanged, with why.",
        "description": "The original message with the same key, headers and body, plus the \
            `x-dead-letter-*` headers.",
        "headers": component_ref("schemas", DEAD_LETTER_HEADERS),
        "payload": {
            "description": "The original body, unchanged: usually an event payload, or \
                whatever could not be decoded.",
        },
        "bindings": {
            "kafka": {
                "key": { "type": "string", "description": "The original message's key." },
                "bindingVersion": KAFKA_BINDING_VERSION,
            },
        },
    })
}

/// The CloudEvents attributes as headers: the names of the CloudEvents Kafka protocol
/// binding, which the services use on both brokers (`service_kit::events::headers`).
fn cloud_event_headers() -> Value {
    json!({
        "type": "object",
        "title": "CloudEvents attributes",
        "description": "CloudEvents 1.0 in binary content mode: the attributes travel as \
            message headers and the body is the event's data alone.",
        "required": [
            "ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject",
            "content-type",
        ],
        "properties": {
            "ce_id": {
                "type": "string",
                "format": "uuid",
                "description": "The event id (a UUID v7), unique per event: consumers record \
                    it in their inbox so that a redelivery changes nothing.",
            },
            "ce_source": {
                "type": "string",
                "format": "uri-reference",
                "description": "The publishing service, e.g. `/order-service`.",
            },
            "ce_type": {
                "type": "string",
                "description": "The event type with its version, e.g. `shop.order.placed.v1`; \
                    tells the consumer how to decode the body.",
            },
            "ce_specversion": {
                "type": "string",
                "const": CloudEvent::SPEC_VERSION,
                "description": "The CloudEvents version; consumers reject any other.",
            },
            "ce_time": {
                "type": "string",
                "format": "date-time",
                "description": "When the event was written, in the transaction of the \
                    change it reports (RFC 3339, UTC).",
            },
            "ce_subject": {
                "type": "string",
                "format": "uuid",
                "description": "The aggregate id (the order's or the user's): also the \
                    partition key.",
            },
            "content-type": {
                "type": "string",
                "const": CloudEvent::CONTENT_TYPE,
                "description": "The CloudEvents `datacontenttype` of the body.",
            },
            "traceparent": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context of the request or event that caused this \
                    event, kept in the outbox row: the whole saga of an order is one trace. \
                    Absent or invalid, the consumer starts a new trace.",
            },
        },
    })
}

fn dead_letter_headers() -> Value {
    json!({
        "type": "object",
        "title": "Dead-letter headers",
        "description": "The headers of the original message, unchanged (see \
            CloudEventHeaders; they may be missing or invalid, which may be why the message \
            is here), plus where and why it failed.",
        "required": [
            "x-dead-letter-error", "x-dead-letter-topic", "x-dead-letter-consumer",
            "x-dead-letter-at",
        ],
        "properties": {
            "x-dead-letter-error": {
                "type": "string",
                "description": "The error, with its cause chain (at most 2000 characters).",
            },
            "x-dead-letter-topic": {
                "type": "string",
                "description": "The topic the message came from, where a replay sends it.",
            },
            "x-dead-letter-consumer": {
                "type": "string",
                "description": "The consuming service that gave up on it.",
            },
            "x-dead-letter-at": {
                "type": "string",
                "format": "date-time",
                "description": "When it was dead-lettered (RFC 3339).",
            },
            "x-dead-letter-replays": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "How many times the message was replayed before; absent if never.",
            },
        },
        "additionalProperties": { "type": "string" },
    })
}

fn component_ref(kind: &str, name: &str) -> Value {
    json!({ "$ref": format!("#/components/{kind}/{name}") })
}

fn channel_ref(topic: &str) -> Value {
    json!({ "$ref": format!("#/channels/{topic}") })
}

fn channel_message_ref(topic: &str, message: &str) -> Value {
    json!({ "$ref": format!("#/channels/{topic}/messages/{message}") })
}
