//! Events between services: the bus, the transactional outbox that feeds it, and the
//! idempotent consumer that reads from it.
//!
//! - [`outbox`]: a service writes the event in the same transaction as the state change;
//!   a relay publishes it. Nothing is lost if the broker is down or the process dies.
//! - [`consumer`]: each delivery is handled in one transaction that also records the event
//!   id (the inbox), and is acknowledged only after that commit. Redelivery changes
//!   nothing; a message that cannot be handled goes to the dead-letter topic.
//! - [`EventBus`]: Kafka (default) or RabbitMQ, chosen by `EVENT_BUS`; the code above it
//!   is the same for both.

pub mod consumer;
pub mod dead_letters;
pub mod fault;
pub mod kafka;
pub mod outbox;
pub mod rabbitmq;
pub mod settings;

use std::collections::BTreeMap;

pub use settings::{BusKind, EventBusSettings};
use shop_model::events::{CloudEvent, ConsumerSpec, Event};
use sqlx::PgPool;

use crate::tasks::BackgroundTasks;

/// Starts the outbox relay of a publishing service as a background task.
pub fn spawn_relay(
    tasks: &mut BackgroundTasks,
    pool: PgPool,
    bus: EventBus,
    settings: &EventBusSettings,
    metrics: &prometheus::Registry,
) -> anyhow::Result<()> {
    let relay = outbox::OutboxRelay::new(pool, bus, settings.outbox.clone(), metrics)?;
    tasks.spawn("outbox-relay", |shutdown| relay.run(shutdown));
    Ok(())
}

/// Starts the consumer named `consumer` (an entry of `shop_model::events::CONSUMERS`) with
/// `handler` as a background task, and the task that prunes its inbox.
pub fn spawn_consumer<H: consumer::EventHandler>(
    tasks: &mut BackgroundTasks,
    pool: PgPool,
    bus: EventBus,
    consumer: &str,
    handler: H,
    settings: &EventBusSettings,
    metrics: &prometheus::Registry,
) -> anyhow::Result<()> {
    let spec = ConsumerSpec::named(consumer).ok_or_else(|| {
        anyhow::anyhow!("no consumer named {consumer} in shop_model::events::CONSUMERS")
    })?;
    let pruner = consumer::InboxPruner::new(pool.clone(), &settings.consumer);
    let metrics = consumer::ConsumerMetrics::register(metrics)?;
    let consumer =
        consumer::Consumer::new(pool, bus, spec, handler, settings.consumer.clone(), metrics);
    let lag = consumer.lag_probe();
    tasks.spawn("event-consumer", |shutdown| consumer.run(shutdown));
    tasks.spawn("consumer-lag-probe", |shutdown| lag.run(shutdown));
    tasks.spawn("inbox-pruner", |shutdown| pruner.run(shutdown));
    Ok(())
}

/// Header names of the CloudEvents Kafka binding (binary content mode), used as the
/// canonical names inside the services. The RabbitMQ implementation maps them to its own
/// binding's names.
pub mod headers {
    pub const ID: &str = "ce_id";
    pub const SOURCE: &str = "ce_source";
    pub const TYPE: &str = "ce_type";
    pub const SPEC_VERSION: &str = "ce_specversion";
    pub const TIME: &str = "ce_time";
    pub const SUBJECT: &str = "ce_subject";
    pub const CONTENT_TYPE: &str = "content-type";
    /// W3C Trace Context: the context of the span that created the message (the outbox's
    /// PRODUCER span); its consumer's span is that span's child.
    pub const TRACEPARENT: &str = crate::telemetry::TRACEPARENT_HEADER;
    pub const TRACESTATE: &str = crate::telemetry::TRACESTATE_HEADER;
    /// Added to dead letters: why the message failed, where it came from, who failed it.
    pub const DEAD_LETTER_ERROR: &str = "x-dead-letter-error";
    pub const DEAD_LETTER_TOPIC: &str = "x-dead-letter-topic";
    pub const DEAD_LETTER_CONSUMER: &str = "x-dead-letter-consumer";
    pub const DEAD_LETTER_AT: &str = "x-dead-letter-at";
    /// Added by `replay-dead-letters`: how many times the message was replayed. Kept when
    /// it fails again, so a message that fails every time is seen as such.
    pub const DEAD_LETTER_REPLAYS: &str = "x-dead-letter-replays";
}

/// The topic where every consumer puts the messages it gave up on.
pub const DEAD_LETTER_TOPIC: &str = shop_model::events::topics::DEAD_LETTERS;

/// A message as it travels on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    /// The partition key: the aggregate id.
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Message {
    /// The message that carries `event` with the attributes `envelope` (and no trace
    /// context: [`outbox::enqueue`] adds its span's).
    pub fn from_event<E: Event>(
        envelope: &CloudEvent,
        event: &E,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            topic: E::TOPIC.to_owned(),
            key: envelope.subject.clone(),
            headers: envelope_headers(envelope),
            payload: serde_json::to_vec(event)?,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn envelope_headers(envelope: &CloudEvent) -> BTreeMap<String, String> {
    let time = envelope
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    BTreeMap::from([
        (headers::ID.to_owned(), envelope.id.clone()),
        (headers::SOURCE.to_owned(), envelope.source.clone()),
        (headers::TYPE.to_owned(), envelope.event_type.clone()),
        (
            headers::SPEC_VERSION.to_owned(),
            envelope.specversion.clone(),
        ),
        (headers::TIME.to_owned(), time),
        (headers::SUBJECT.to_owned(), envelope.subject.clone()),
        (
            headers::CONTENT_TYPE.to_owned(),
            envelope.datacontenttype.clone(),
        ),
    ])
}

/// A received event: its attributes and its still-encoded data. (Its trace context is
/// the consumer's business: the handler runs inside the delivery's span.)
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    pub id: uuid::Uuid,
    pub event_type: String,
    pub subject: String,
    pub source: String,
    payload: Vec<u8>,
}

/// Why a message could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is invalid")]
    InvalidHeader(&'static str),
    #[error("unsupported CloudEvents spec version {0}")]
    SpecVersion(String),
    #[error("the data of a {event_type} event does not decode: {reason}")]
    Data { event_type: String, reason: String },
}

impl IncomingEvent {
    /// Reads the CloudEvents attributes from the headers.
    pub fn from_message(message: &Message) -> Result<Self, DecodeError> {
        let required =
            |name: &'static str| message.header(name).ok_or(DecodeError::MissingHeader(name));
        let spec = required(headers::SPEC_VERSION)?;
        if spec != CloudEvent::SPEC_VERSION {
            return Err(DecodeError::SpecVersion(spec.to_owned()));
        }
        let id = uuid::Uuid::parse_str(required(headers::ID)?)
            .map_err(|_| DecodeError::InvalidHeader(headers::ID))?;
        Ok(Self {
            id,
            event_type: required(headers::TYPE)?.to_owned(),
            subject: message
                .header(headers::SUBJECT)
                .unwrap_or_default()
                .to_owned(),
            source: required(headers::SOURCE)?.to_owned(),
            payload: message.payload.clone(),
        })
    }

    /// The data as event `E`.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        serde_json::from_slice(&self.payload).map_err(|e| DecodeError::Data {
            event_type: self.event_type.clone(),
            reason: e.to_string(),
        })
    }

    /// Whether this is an event of type `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::TYPE
    }
}

/// What a consumer subscribes to.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The consumer's name: its Kafka consumer group, its RabbitMQ queue. One per service,
    /// so replicas of a service share the work and every service gets every event.
    pub consumer: String,
    /// The topics to read.
    pub topics: Vec<&'static str>,
    /// The event types the consumer handles; RabbitMQ binds only these, Kafka delivers the
    /// whole topics and the consumer skips other types.
    pub event_types: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("broker error: {0}")]
    Other(String),
}

impl BusError {
    /// A low-cardinality name of the failure (a span's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "broker_unavailable",
            Self::Other(_) => "broker_refused",
        }
    }
}

/// The event bus of a service: one connection, shared by the outbox relay, the consumers
/// and the readiness check.
#[derive(Clone)]
pub enum EventBus {
    Kafka(kafka::KafkaBus),
    RabbitMq(rabbitmq::RabbitBus),
}

impl EventBus {
    /// Connects and makes sure the topics (Kafka) or exchange (RabbitMQ) exist.
    pub async fn connect(settings: &EventBusSettings, client_id: &str) -> anyhow::Result<Self> {
        match settings.kind {
            BusKind::Kafka => Ok(Self::Kafka(
                kafka::KafkaBus::connect(&settings.kafka, client_id).await?,
            )),
            BusKind::RabbitMq => Ok(Self::RabbitMq(
                rabbitmq::RabbitBus::connect(&settings.rabbitmq, client_id).await?,
            )),
        }
    }

    /// The broker, as OpenTelemetry's `messaging.system` names it.
    pub fn system(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::RabbitMq(_) => "rabbitmq",
        }
    }

    /// Publishes and waits until the broker has stored the message.
    pub async fn publish(&self, message: &Message) -> Result<(), BusError> {
        match self {
            Self::Kafka(bus) => bus.publish(message).await,
            Self::RabbitMq(bus) => bus.publish(message).await,
        }
    }

    /// Starts receiving the subscription's messages.
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<Receiver, BusError> {
        match self {
            Self::Kafka(bus) => bus.subscribe(subscription).map(Receiver::Kafka),
            Self::RabbitMq(bus) => bus
                .subscribe(subscription)
                .await
                .map(|receiver| Receiver::RabbitMq(Box::new(receiver))),
        }
    }

    /// What waits for `subscription` right now: what a reader that must stop once it has
    /// read that much (`replay-dead-letters`) has to read. Call before subscribing.
    pub async fn backlog(&self, subscription: &Subscription) -> Result<Backlog, BusError> {
        match self {
            Self::Kafka(bus) => bus.backlog(subscription).await.map(Backlog::Offsets),
            Self::RabbitMq(bus) => bus.backlog(subscription).await.map(Backlog::Count),
        }
    }

    /// Whether the broker answers (readiness).
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Self::Kafka(bus) => bus.check().await,
            Self::RabbitMq(bus) => bus.check().await,
        }
    }
}

/// The messages that waited for a subscription at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backlog {
    /// Kafka: per partition, the next offset to read and the end offset (exclusive).
    Offsets(BTreeMap<i32, (i64, i64)>),
    /// RabbitMQ: how many messages were ready in the queue.
    Count(u32),
}

impl Backlog {
    /// Whether every message of the backlog has been taken.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Offsets(partitions) => partitions.is_empty(),
            Self::Count(count) => *count == 0,
        }
    }

    /// How many messages are left to take.
    pub fn len(&self) -> u64 {
        match self {
            Self::Offsets(partitions) => partitions
                .values()
                .map(|(next, end)| u64::try_from(end - next).unwrap_or(0))
                .sum(),
            Self::Count(count) => u64::from(*count),
        }
    }

    /// Whether `delivery` is one of the messages that waited (and counts it off). A
    /// message that arrived later is not: its reader leaves it for next time.
    pub fn take(&mut self, delivery: &Delivery) -> bool {
        match (self, delivery.kafka_position()) {
            (Self::Offsets(partitions), Some((partition, offset))) => {
                let Some((next, end)) = partitions.get_mut(&partition) else {
                    return false;
                };
                if offset >= *end {
                    return false;
                }
                *next = offset + 1;
                if *next >= *end {
                    partitions.remove(&partition);
                }
                true
            }
            (Self::Count(count), None) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }
}

/// A message received and not yet acknowledged.
pub struct Delivery {
    pub message: Message,
    token: DeliveryToken,
}

impl Delivery {
    /// Kafka: the partition and offset of the message.
    pub fn kafka_position(&self) -> Option<(i32, i64)> {
        match &self.token {
            DeliveryToken::Kafka(position) => Some(position.partition_offset()),
            DeliveryToken::RabbitMq(_) => None,
        }
    }
}

enum DeliveryToken {
    Kafka(kafka::Position),
    RabbitMq(u64),
}

/// Receives the messages of one subscription, one at a time, in order per partition key.
pub enum Receiver {
    Kafka(kafka::KafkaReceiver),
    // Boxed: the RabbitMQ receiver carries its reconnection state and is much larger.
    RabbitMq(Box<rabbitmq::RabbitReceiver>),
}

impl Receiver {
    /// The next message. Errors are transient (the broker is unreachable); call again.
    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        match self {
            Self::Kafka(receiver) => receiver.next().await.map(|(message, position)| Delivery {
                message,
                token: DeliveryToken::Kafka(position),
            }),
            Self::RabbitMq(receiver) => receiver.next().await.map(|(message, tag)| Delivery {
                message,
                token: DeliveryToken::RabbitMq(tag),
            }),
        }
    }

    /// A message that has already arrived, if any, without waiting: how the consumer
    /// fills a batch from what is there and never waits for a batch to fill.
    pub fn ready(&mut self) -> Option<Delivery> {
        match self {
            Self::Kafka(receiver) => receiver.ready().map(|(message, position)| Delivery {
                message,
                token: DeliveryToken::Kafka(position),
            }),
            Self::RabbitMq(receiver) => receiver.ready().map(|(message, tag)| Delivery {
                message,
                token: DeliveryToken::RabbitMq(tag),
            }),
        }
    }

    /// Waits `duration` (or until shutdown: then `true`) without giving up the
    /// subscription. Kafka: the assigned partitions are paused and the consumer keeps
    /// polling, so it stays a live member of its group however long a fault lasts (a
    /// consumer that stops polling for `max.poll.interval.ms` is thrown out of the group,
    /// and its in-flight message goes to another member while it still works on it).
    /// RabbitMQ: the unacknowledged message and the prefetch limit hold the queue back.
    pub async fn stay_alive(
        &mut self,
        duration: std::time::Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        match self {
            Self::Kafka(receiver) => receiver.stay_alive(duration, shutdown).await,
            Self::RabbitMq(_) => consumer::sleep_or_stop(shutdown, duration).await,
        }
    }

    /// Tells the broker the message is done with: Kafka commits the offset after it,
    /// RabbitMQ acknowledges it. Call only after the handler's transaction committed.
    pub async fn ack(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        match (self, &delivery.token) {
            (Self::Kafka(receiver), DeliveryToken::Kafka(position)) => {
                receiver.commit(position).await
            }
            (Self::RabbitMq(receiver), DeliveryToken::RabbitMq(tag)) => receiver.ack(*tag).await,
            _ => Err(BusError::Other("delivery from another bus".to_owned())),
        }
    }

    /// Tells the broker that `deliveries`, received in this order, are done with, without
    /// waiting for it to have stored that: Kafka commits, per partition, the offset after
    /// the last of them asynchronously (a commit lost in a crash means redeliveries, which
    /// the inbox absorbs); RabbitMQ acknowledges each. Call only after their transaction
    /// committed. [`Self::close`] makes the last commits durable.
    pub async fn ack_all(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        match self {
            Self::Kafka(receiver) => receiver.commit_async(deliveries.iter().filter_map(
                |delivery| match &delivery.token {
                    DeliveryToken::Kafka(position) => Some(position),
                    DeliveryToken::RabbitMq(_) => None,
                },
            )),
            Self::RabbitMq(receiver) => {
                let mut result = Ok(());
                for delivery in deliveries {
                    if let DeliveryToken::RabbitMq(tag) = &delivery.token
                        && let Err(error) = receiver.ack(*tag).await
                    {
                        result = Err(error);
                    }
                }
                result
            }
        }
    }

    /// Ends the subscription cleanly: Kafka commits, synchronously, the offsets committed
    /// asynchronously, so a graceful stop leaves nothing to redeliver.
    pub async fn close(&mut self) {
        if let Self::Kafka(receiver) = self {
            receiver.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use shop_model::{OrderId, UserId, events::OrderConfirmed};

    use super::*;

    #[test]
    fn an_event_round_trips_through_a_message() {
        let event = OrderConfirmed {
            order_id: OrderId::new(),
            user_id: UserId::new(),
        };
        let envelope = CloudEvent::new("/order-service", &event);
        let message = Message::from_event(&envelope, &event).expect("encodes");

        assert_eq!(message.topic, "shop.orders");
        assert_eq!(message.key, event.order_id.to_string());
        let incoming = IncomingEvent::from_message(&message).expect("decodes");
        assert_eq!(incoming.id.to_string(), envelope.id);
        assert!(incoming.is::<OrderConfirmed>());
        assert_eq!(incoming.decode::<OrderConfirmed>().expect("data"), event);
    }

    #[test]
    fn messages_without_attributes_or_with_bad_data_are_refused() {
        let mut message = Message {
            topic: "shop.orders".to_owned(),
            key: "k".to_owned(),
            headers: BTreeMap::new(),
            payload: b"{}".to_vec(),
        };
        assert!(matches!(
            IncomingEvent::from_message(&message),
            Err(DecodeError::MissingHeader(_))
        ));
        let event = OrderConfirmed {
            order_id: OrderId::new(),
            user_id: UserId::new(),
        };
        message.headers = envelope_headers(&CloudEvent::new("/x", &event));
        let incoming = IncomingEvent::from_message(&message).expect("attributes are fine");
        assert!(matches!(
            incoming.decode::<OrderConfirmed>(),
            Err(DecodeError::Data { .. })
        ));
    }
}
