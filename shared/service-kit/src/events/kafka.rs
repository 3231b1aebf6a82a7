//! The Kafka implementation of the event bus (rdkafka).
//!
//! - The producer is idempotent with `acks=all`: a retried send never duplicates or
//!   reorders a message within a partition, and a send returns only when every in-sync
//!   replica has it. The message key is the aggregate id, so one order's events share a
//!   partition and keep their order.
//! - Each service is one consumer group; offsets are committed by hand, only after the
//!   handler's database transaction committed (`enable.auto.commit=false`). A crash before
//!   the commit means redelivery, which the inbox makes harmless.
//! - While the consumer waits out a fault it pauses its partitions and keeps polling
//!   ([`KafkaReceiver::stay_alive`]): it stays a member of the group for as long as the
//!   fault lasts instead of being thrown out after `max.poll.interval.ms`.
//! - Rebalances are logged. On revocation the message being handled is finished: its
//!   effect and inbox row commit, and if its partition moved the offset commit is refused
//!   and the new owner's copy of it is a duplicate the inbox recognises. Messages read
//!   ahead for a partition that moved are dropped; its new owner reads them.
//! - With `KAFKA_GROUP_INSTANCE_ID` (static membership) a restarted replica takes its
//!   partitions back at once, without waiting for the session of its old self to expire.
//! - Topics are created at start-up through the admin API when missing, because a
//!   production broker should not auto-create topics (and some do not).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use rdkafka::{
    ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
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

impl Position {
    pub fn partition_offset(&self) -> (i32, i64) {
        (self.partition, self.offset)
    }
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
            .map_err(|(error, _)| classify_send_error(&error))
    }

    pub fn subscribe(&self, subscription: &Subscription) -> Result<KafkaReceiver, BusError> {
        let mut config = base_config(&self.settings, &self.client_id);
        if let Some(instance) = &self.settings.group_instance_id {
            config.set("group.instance.id", instance);
        }
        let context = GroupContext {
            group: subscription.consumer.clone(),
        };
        let consumer: StreamConsumer<GroupContext> = config
            .set("group.id", &subscription.consumer)
            .set("enable.auto.commit", "false")
            // A new group starts at the beginning: events published before the service
            // first started are not skipped.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .set("session.timeout.ms", self.settings.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (self.settings.session_timeout_ms / 4).max(100).to_string())
            .create_with_context(context)
            .map_err(|e| BusError::Other(e.to_string()))?;
        consumer
            .subscribe(&subscription.topics)
            .map_err(|e| BusError::Other(e.to_string()))?;
        Ok(KafkaReceiver {
            consumer: Arc::new(consumer),
            read_ahead: VecDeque::new(),
        })
    }

    /// Per partition of the subscription's topics, the group's committed offset (or the
    /// first offset kept, if it has none) and the end offset, where anything lies between.
    pub async fn backlog(
        &self,
        subscription: &Subscription,
    ) -> Result<BTreeMap<i32, (i64, i64)>, BusError> {
        // A consumer of the group that never joins it: reading committed offsets does not
        // need membership, and it takes no partition away from anyone.
        let consumer: BaseConsumer = base_config(&self.settings, &self.client_id)
            .set("group.id", &subscription.consumer)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| BusError::Other(e.to_string()))?;
        let topics: Vec<String> = subscription
            .topics
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        tokio::task::spawn_blocking(move || {
            let unavailable = |e: KafkaError| BusError::Unavailable(e.to_string());
            let mut backlog = BTreeMap::new();
            for topic in &topics {
                let metadata = consumer
                    .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                    .map_err(unavailable)?;
                let partitions: Vec<i32> = metadata
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                let mut wanted = TopicPartitionList::new();
                for partition in &partitions {
                    wanted.add_partition(topic, *partition);
                }
                let committed = consumer
                    .committed_offsets(wanted, METADATA_TIMEOUT)
                    .map_err(unavailable)?;
                for partition in partitions {
                    let (low, high) = consumer
                        .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
                        .map_err(unavailable)?;
                    let start = match committed
                        .find_partition(topic, partition)
                        .map(|p| p.offset())
                    {
                        Some(Offset::Offset(offset)) => offset.max(low),
                        _ => low,
                    };
                    if start < high {
                        backlog.insert(partition, (start, high));
                    }
                }
            }
            Ok(backlog)
        })
        .await
        .map_err(|e| BusError::Other(e.to_string()))?
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

/// Which errors of a send can never succeed as the message is: the relay parks such a
/// row after a few attempts. Everything else (timeouts, a broker or leader away) is the
/// broker's state and is retried for as long as it lasts.
fn classify_send_error(error: &KafkaError) -> BusError {
    use RDKafkaErrorCode::{
        InvalidMessage, InvalidMessageSize, InvalidRecord, InvalidTopic, MessageBatchTooLarge,
        MessageSizeTooLarge, TopicAuthorizationFailed,
    };
    match error.rdkafka_error_code() {
        Some(
            MessageSizeTooLarge
            | InvalidMessageSize
            | InvalidMessage
            | InvalidRecord
            | MessageBatchTooLarge
            | InvalidTopic
            | TopicAuthorizationFailed,
        ) => BusError::Other(error.to_string()),
        _ => BusError::Unavailable(error.to_string()),
    }
}

/// Logs the group's rebalances: which partitions this member was given or lost.
pub struct GroupContext {
    group: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::info!(group = %self.group, partitions = %describe(partitions), "Kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(group = %self.group, partitions = %describe(partitions), "Kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.group, error = %error, "Kafka rebalance failed");
            }
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|p| format!("{}/{}", p.topic(), p.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

pub struct KafkaReceiver {
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// Messages read while waiting out a fault, handed out before anything new.
    read_ahead: VecDeque<(Message, Position)>,
}

impl KafkaReceiver {
    pub async fn next(&mut self) -> Result<(Message, Position), BusError> {
        while let Some((message, position)) = self.read_ahead.pop_front() {
            if self.owns(&position) {
                return Ok((message, position));
            }
            // Its partition moved to another member, which reads it from the group's
            // committed offset.
        }
        let received = self
            .consumer
            .recv()
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        Ok(convert(&received))
    }

    /// See [`super::Receiver::stay_alive`].
    pub async fn stay_alive(
        &mut self,
        duration: Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + duration;
        let paused = self.consumer.assignment().ok();
        if let Some(partitions) = &paused
            && let Err(error) = self.consumer.pause(partitions)
        {
            tracing::debug!(%error, "pausing the partitions failed");
        }
        let stopped = loop {
            // Each call to `recv` polls the consumer: that is what keeps it in the group,
            // and what serves rebalances meanwhile.
            let poll_until = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => break true,
                received = tokio::time::timeout_at(poll_until, self.consumer.recv()) => {
                    if let Ok(Ok(received)) = received {
                        // Fetched before the pause took effect: kept, in order.
                        self.read_ahead.push_back(convert(&received));
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
        };
        // Resume what is assigned now, which may differ after a rebalance.
        if let Ok(partitions) = self.consumer.assignment()
            && let Err(error) = self.consumer.resume(&partitions)
        {
            tracing::debug!(%error, "resuming the partitions failed");
        }
        stopped
    }

    fn owns(&self, position: &Position) -> bool {
        self.consumer.assignment().is_ok_and(|assigned| {
            assigned
                .find_partition(&position.topic, position.partition)
                .is_some()
        })
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

fn convert(received: &rdkafka::message::BorrowedMessage<'_>) -> (Message, Position) {
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
    (message, position)
}
