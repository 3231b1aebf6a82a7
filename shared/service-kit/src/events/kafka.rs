//! The Kafka implementation of the event bus (rdkafka).
//!
//! - The producer is idempotent with `acks=all`: a retried send never duplicates or
//!   reorders a message within a partition, and a send returns only when every in-sync
//!   replica has it. The message key is the aggregate id, so one order's events share a
//!   partition and keep their order.
//! - Each service is one consumer group; offsets are committed by hand, only after the
//!   handler's database transaction committed (`enable.auto.commit=false`). The consumer
//!   commits asynchronously, one commit per batch of deliveries, and synchronously when it
//!   stops: a commit lost in a crash only means redelivery, which the inbox makes harmless.
//! - `KAFKA_FETCH_WAIT_MAX_MS` is the consumers' `fetch.wait.max.ms`. A Kafka broker
//!   answers a fetch as soon as data arrives; the development broker (librdkafka's mock
//!   cluster) holds an empty fetch that long even when data arrives meanwhile, so the dev
//!   stack sets 10 ms, or every hop of the saga waits up to the default 500 ms.
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
//! - Every client (producer, consumers, admin) gets the same transport security from
//!   `KAFKA_SECURITY_PROTOCOL` and its companions (`security_config`): TLS with the
//!   broker's certificate and host name verified, SASL PLAIN or SCRAM credentials. A
//!   broker that anyone on the network can reach without them accepts a forged
//!   `PaymentSucceeded` from anyone.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use futures_util::FutureExt;
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
use secrecy::ExposeSecret as _;
use shop_model::events::topics;

use super::{
    BusError, DEAD_LETTER_TOPIC, Message, Subscription,
    settings::{KafkaSecurity, KafkaSecurityProtocol, KafkaSettings, SaslMechanism},
};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct KafkaBus {
    producer: FutureProducer,
    /// Shared: every client made later (consumers, admin) is configured from it.
    settings: Arc<KafkaSettings>,
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
        let security = &settings.security;
        if security.protocol == KafkaSecurityProtocol::SaslPlaintext
            && security
                .sasl
                .as_ref()
                .is_some_and(|sasl| sasl.mechanism == SaslMechanism::Plain)
        {
            tracing::warn!(
                "KAFKA_SECURITY_PROTOCOL=sasl_plaintext with KAFKA_SASL_MECHANISM=PLAIN sends the \
                 password unencrypted: use sasl_ssl"
            );
        }
        let producer: FutureProducer = base_config(settings, client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Fail a send after 10 s instead of queueing forever: the outbox relay retries.
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "5")
            .create()?;
        let bus = Self {
            producer,
            settings: Arc::new(settings.clone()),
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
            .set("fetch.wait.max.ms", self.settings.fetch_wait_max_ms.to_string())
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
            committed: BTreeMap::new(),
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
    security_config(&mut config, &settings.security);
    config
}

/// The TLS and SASL properties of a client. The settings were checked when they were read
/// (a SASL protocol has its credentials, the files exist), so this only translates.
fn security_config(config: &mut ClientConfig, security: &KafkaSecurity) {
    config.set("security.protocol", security.protocol.as_str());
    if security.protocol.uses_tls() {
        // Both are librdkafka's defaults today; stated so that no default can change them:
        // the certificate must chain to a trusted CA and name the broker's host.
        config
            .set("enable.ssl.certificate.verification", "true")
            .set("ssl.endpoint.identification.algorithm", "https");
        // Without a CA file, the system's trust store; `probe` finds it wherever the
        // image keeps it.
        config.set(
            "ssl.ca.location",
            security.tls.ca_location.as_deref().unwrap_or("probe"),
        );
        if let Some(identity) = &security.tls.client_identity {
            config
                .set("ssl.certificate.location", &identity.certificate)
                .set("ssl.key.location", &identity.key);
        }
    }
    if let Some(sasl) = &security.sasl {
        config
            .set("sasl.mechanism", sasl.mechanism.as_str())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose_secret());
    }
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
    /// The offsets committed asynchronously, per topic and partition: committed again,
    /// synchronously, when the receiver closes.
    committed: BTreeMap<(String, i32), i64>,
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
        loop {
            match self.consumer.recv().await {
                Ok(received) => return Ok(convert(&received)),
                // librdkafka reports every failed connection attempt through the consumer
                // too (and logs it), and reconnects by itself. Such an error is news that
                // the broker is away, not a reason for this consumer to back off: an
                // outage queues many of them, and waiting out each in turn would keep the
                // consumer from its messages for minutes after the broker is back.
                Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown,
                )) => {}
                Err(error) => return Err(BusError::Unavailable(error.to_string())),
            }
        }
    }

    /// A message that has already arrived, without waiting for one.
    pub fn ready(&mut self) -> Option<(Message, Position)> {
        while let Some((message, position)) = self.read_ahead.pop_front() {
            if self.owns(&position) {
                return Some((message, position));
            }
        }
        // `recv` takes a message only when it returns it: dropping it unfinished loses
        // nothing. An error here is the same transient one `next` would report.
        match self.consumer.recv().now_or_never() {
            Some(Ok(received)) => Some(convert(&received)),
            Some(Err(_)) | None => None,
        }
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

    /// Commits the offset after `position`: everything up to it is done. Synchronous: when
    /// this returns, the group's offset is stored.
    pub async fn commit(&mut self, position: &Position) -> Result<(), BusError> {
        let offsets = Self::offsets([(
            position.topic.as_str(),
            position.partition,
            position.offset + 1,
        )])?;
        self.commit_sync(offsets).await
    }

    /// Commits, per partition, the offset after the last of `positions`, without waiting
    /// for the broker's answer (librdkafka sends commits in order). A commit that fails
    /// is logged by librdkafka and made good by the next one or by [`Self::close`].
    pub fn commit_async<'a>(
        &mut self,
        positions: impl IntoIterator<Item = &'a Position>,
    ) -> Result<(), BusError> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for position in positions {
            let entry = next
                .entry((position.topic.as_str(), position.partition))
                .or_insert(position.offset + 1);
            *entry = (*entry).max(position.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        for ((topic, partition), offset) in &next {
            self.committed
                .insert(((*topic).to_owned(), *partition), *offset);
        }
        let offsets = Self::offsets(next.iter().map(|((t, p), o)| (*t, *p, *o)))?;
        self.consumer
            .commit(&offsets, CommitMode::Async)
            .map_err(|e| BusError::Unavailable(e.to_string()))
    }

    /// Commits again, synchronously, what was committed asynchronously, so that a
    /// graceful stop leaves nothing to redeliver. Partitions no longer assigned are left
    /// to their new owner.
    pub async fn close(&mut self) {
        let committed = std::mem::take(&mut self.committed);
        let owned: Vec<(&str, i32, i64)> = committed
            .iter()
            .filter(|((topic, partition), _)| {
                self.consumer
                    .assignment()
                    .is_ok_and(|a| a.find_partition(topic, *partition).is_some())
            })
            .map(|((topic, partition), offset)| (topic.as_str(), *partition, *offset))
            .collect();
        if owned.is_empty() {
            return;
        }
        let result = match Self::offsets(owned) {
            Ok(offsets) => self.commit_sync(offsets).await,
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(%error, "final offset commit failed; the last messages will be redelivered");
        }
    }

    fn offsets<'a>(
        offsets: impl IntoIterator<Item = (&'a str, i32, i64)>,
    ) -> Result<TopicPartitionList, BusError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| BusError::Other(e.to_string()))?;
        }
        Ok(list)
    }

    async fn commit_sync(&self, offsets: TopicPartitionList) -> Result<(), BusError> {
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

#[cfg(test)]
mod tests {
    //! The client configuration each security setting produces, and that librdkafka takes
    //! it: creating a client fails when librdkafka lacks the feature a property needs
    //! ("OpenSSL not available at build time", "SASL SCRAM is not supported"), or cannot
    //! load a file it names. No Kafka broker with TLS or SASL listeners can run on these
    //! machines (the in-process mock broker has neither); `tests/transport_security.rs`
    //! shows TLS against a real TLS listener.

    use rdkafka::producer::BaseProducer;

    use super::*;
    use crate::{config::ConfigSource, events::EventBusSettings};

    fn settings(pairs: &[(&str, &str)]) -> KafkaSettings {
        let pairs = [("KAFKA_BROKERS", "127.0.0.1:9")]
            .into_iter()
            .chain(pairs.iter().copied());
        EventBusSettings::from_source(&ConfigSource::from_pairs(pairs))
            .expect("valid settings")
            .kafka
    }

    fn property<'a>(config: &'a ClientConfig, key: &str) -> Option<&'a str> {
        config.get(key)
    }

    #[test]
    fn plaintext_sets_no_tls_or_sasl_property() {
        let config = base_config(&settings(&[]), "test");
        assert_eq!(property(&config, "security.protocol"), Some("plaintext"));
        for key in [
            "ssl.ca.location",
            "sasl.mechanism",
            "sasl.username",
            "sasl.password",
        ] {
            assert_eq!(property(&config, key), None, "{key}");
        }
        config.create::<BaseProducer>().expect("a plaintext client");
    }

    #[test]
    fn every_sasl_protocol_and_mechanism_is_configured_and_taken_by_librdkafka() {
        for protocol in ["sasl_plaintext", "sasl_ssl"] {
            for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
                let config = base_config(
                    &settings(&[
                        ("KAFKA_SECURITY_PROTOCOL", protocol),
                        ("KAFKA_SASL_MECHANISM", mechanism),
                        ("KAFKA_SASL_USERNAME", "order-service"),
                        ("KAFKA_SASL_PASSWORD", "s3cret"),
                    ]),
                    "test",
                );
                let case = format!("{protocol} {mechanism}");
                assert_eq!(
                    property(&config, "security.protocol"),
                    Some(protocol),
                    "{case}"
                );
                assert_eq!(
                    property(&config, "sasl.mechanism"),
                    Some(mechanism),
                    "{case}"
                );
                assert_eq!(
                    property(&config, "sasl.username"),
                    Some("order-service"),
                    "{case}"
                );
                assert_eq!(property(&config, "sasl.password"), Some("s3cret"), "{case}");
                let tls = protocol == "sasl_ssl";
                assert_eq!(
                    property(&config, "ssl.ca.location").is_some(),
                    tls,
                    "{case}"
                );
                if let Err(error) = config.create::<BaseProducer>() {
                    panic!("librdkafka refuses {case}: {error}");
                }
            }
        }
    }

    #[test]
    fn tls_verifies_the_broker_with_the_system_roots_or_the_ca_file() {
        let system = base_config(&settings(&[("KAFKA_SECURITY_PROTOCOL", "ssl")]), "test");
        assert_eq!(property(&system, "security.protocol"), Some("ssl"));
        assert_eq!(property(&system, "ssl.ca.location"), Some("probe"));
        assert_eq!(
            property(&system, "enable.ssl.certificate.verification"),
            Some("true")
        );
        assert_eq!(
            property(&system, "ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        system.create::<BaseProducer>().expect("an ssl client");

        let pki = test_kit::tls::TestPki::generate();
        let config = base_config(
            &settings(&[
                ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                ("KAFKA_SSL_CA_LOCATION", &pki.ca_file()),
                (
                    "KAFKA_SSL_CERTIFICATE_LOCATION",
                    &pki.client_certificate_file(),
                ),
                ("KAFKA_SSL_KEY_LOCATION", &pki.client_key_file()),
            ]),
            "test",
        );
        assert_eq!(
            property(&config, "ssl.ca.location"),
            Some(pki.ca_file().as_str())
        );
        assert_eq!(
            property(&config, "ssl.certificate.location"),
            Some(pki.client_certificate_file().as_str())
        );
        assert_eq!(
            property(&config, "ssl.key.location"),
            Some(pki.client_key_file().as_str())
        );
        // librdkafka loads the CA, the certificate and the key when the client is made.
        config
            .create::<BaseProducer>()
            .expect("an ssl client with its files");
    }

    #[tokio::test]
    async fn a_ca_file_librdkafka_cannot_load_stops_the_start_up() {
        // A PEM file, readable, but a private key: no CA certificate in it.
        let pki = test_kit::tls::TestPki::generate();
        let settings = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", &pki.client_key_file()),
        ]);
        let Err(error) = KafkaBus::connect(&settings, "test").await else {
            panic!("a client with an unreadable CA file was created");
        };
        let message = format!("{error:#}");
        assert!(message.contains("ssl.ca.location"), "{message}");
    }
}
