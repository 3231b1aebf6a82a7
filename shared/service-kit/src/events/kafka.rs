//! The Kafka implementation of the event bus (rdkafka).
//!
//! - The producer is idempotent with `acks=all`: a retried send never duplicates or
//!   reorders a message within a partition, and a send returns only when every in-sync
//!   replica has it. The message key is the aggregate id, so one order's events share a
//!   partition and keep their order.
//! - Each service is one consumer group; offsets are committed by hand, only after the
//!   handler's database transaction committed (`enable.auto.commit=false`). A crash before
//!   the commit means redelivery, which the inbox makes harmless.
//! - Topics are created at start-up through the admin API when missing, because a
//!   production broker should not auto-create topics (and some do not).

use std::{sync::Arc, time::Duration};

use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::RDKafkaErrorCode,
    message::{Header, Headers, OwnedHeaders},
    producer::Producer as _,
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use shop_model::events::topics;

use super::{BusError, DEAD_LETTER_TOPIC, Message, Subscription, settings::KafkaSettings};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct KafkaBus {
    producer: FutureProducer,
    settings: KafkaSettings,
    client_id: String,
}

/// Where a received message sits, for its offset commit.
#[derive(Debug, Clone)]
pub struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

impl KafkaBus {
    /// Creates the producer and makes sure the topics exist. A broker that is down does
    /// not stop the service from starting: the outbox keeps events until it is back.
    pub async fn connect(settings: &KafkaSettings, client_id: &str) -> anyhow::Result<Self> {
        let producer: FutureProducer = base_config(settings, client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Fail a send after 10 s instead of queueing forever: the outbox relay retries.
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "5")
            .create()?;
        let bus = Self {
            producer,
            settings: settings.clone(),
            client_id: client_id.to_owned(),
        };
        if let Err(error) = bus.ensure_topics().await {
            tracing::warn!(error = %error, "cannot check Kafka topics yet; will retry when publishing");
        }
        Ok(bus)
    }

    /// Creates the topics of the system (and the dead-letter topic) that do not exist.
    pub async fn ensure_topics(&self) -> Result<(), BusError> {
        let wanted: Vec<&str> = topics::ALL
            .iter()
            .copied()
            .chain([DEAD_LETTER_TOPIC])
            .collect();
        let existing = self.existing_topics().await?;
        let missing: Vec<&str> = wanted
            .into_iter()
            .filter(|t| !existing.contains(&(*t).to_owned()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = base_config(&self.settings, &self.client_id)
            .create()
            .map_err(|e| BusError::Other(e.to_string()))?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.settings.partitions,
                    TopicReplication::Fixed(self.settings.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Timeout::After(METADATA_TIMEOUT)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(%topic, "Kafka topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Other(format!(
                        "creating topic {topic} failed: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn existing_topics(&self) -> Result<Vec<String>, BusError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .map(|t| t.name().to_owned())
                        .collect()
                })
                .map_err(|e| BusError::Unavailable(e.to_string()))
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
    }

    pub async fn publish(&self, message: &Message) -> Result<(), BusError> {
        let headers = message
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                })
            });
        let record = FutureRecord::to(&message.topic)
            .key(message.key.as_bytes())
            .payload(&message.payload)
            .headers(headers);
        self.producer
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .map(drop)
            .map_err(|(error, _)| BusError::Unavailable(error.to_string()))
    }

    pub fn subscribe(&self, subscription: &Subscription) -> Result<KafkaReceiver, BusError> {
        let consumer: StreamConsumer = base_config(&self.settings, &self.client_id)
            .set("group.id", &subscription.consumer)
            .set("enable.auto.commit", "false")
            // A new group starts at the beginning: events published before the service
            // first started are not skipped.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("session.timeout.ms", self.settings.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.settings.session_timeout_ms / 4).max(100).to_string())
            .create()
            .map_err(|e| BusError::Other(e.to_string()))?;
        consumer
            .subscribe(&subscription.topics)
            .map_err(|e| BusError::Other(e.to_string()))?;
        Ok(KafkaReceiver {
            consumer: Arc::new(consumer),
        })
    }

    pub async fn check(&self) -> Result<(), String> {
        self.existing_topics()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

fn base_config(settings: &KafkaSettings, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.brokers)
        .set("client.id", client_id)
        .set("allow.auto.create.topics", "false");
    config
}

pub struct KafkaReceiver {
    consumer: Arc<StreamConsumer>,
}

impl KafkaReceiver {
    pub async fn next(&mut self) -> Result<(Message, Position), BusError> {
        let received = self
            .consumer
            .recv()
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let headers = received
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter_map(|h| {
                        h.value
                            .map(|v| (h.key.to_owned(), String::from_utf8_lossy(v).into_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = Message {
            topic: received.topic().to_owned(),
            key: received
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            headers,
            payload: received.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let position = Position {
            topic: received.topic().to_owned(),
            partition: received.partition(),
            offset: received.offset(),
        };
        Ok((message, position))
    }

    /// Commits the offset after `position`: everything up to it is done.
    pub async fn commit(&mut self, position: &Position) -> Result<(), BusError> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(
                &position.topic,
                position.partition,
                Offset::Offset(position.offset + 1),
            )
            .map_err(|e| BusError::Other(e.to_string()))?;
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Other(e.to_string()))?
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }
}
