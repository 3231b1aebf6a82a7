//! A real Kafka-protocol broker for tests: librdkafka's mock cluster, in this process,
//! listening on a free local port. Each test gets its own, with the system's topics
//! created up front, so tests never share offsets or consumer groups.

use std::time::Duration;

use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};
use service_kit::{
    config::ConfigSource,
    events::{DEAD_LETTER_TOPIC, EventBus, EventBusSettings, Message, Receiver, Subscription},
};
use shop_model::events::topics;

pub struct TestBroker {
    // Dropping the cluster stops the broker.
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap_servers: String,
}

impl TestBroker {
    pub const PARTITIONS: i32 = 3;

    pub fn start() -> Self {
        let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock Kafka cluster: {e}"));
        for topic in topics::ALL.into_iter().chain([DEAD_LETTER_TOPIC]) {
            cluster
                .create_topic(topic, Self::PARTITIONS, 1)
                .unwrap_or_else(|e| panic!("creating topic {topic}: {e}"));
        }
        let bootstrap_servers = cluster.bootstrap_servers();
        Self {
            cluster,
            bootstrap_servers,
        }
    }

    /// The value for `KAFKA_BROKERS`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Makes the broker unreachable (`false`) or reachable again (`true`).
    pub fn set_up(&self, up: bool) {
        let result = if up {
            self.cluster.broker_up(1)
        } else {
            self.cluster.broker_down(1)
        };
        result.unwrap_or_else(|e| panic!("mock broker state: {e}"));
    }
}

impl TestBroker {
    /// A client of this broker, as the services have.
    pub async fn bus(&self) -> EventBus {
        let settings = EventBusSettings::from_source(&ConfigSource::from_pairs([(
            "KAFKA_BROKERS",
            self.bootstrap_servers.as_str(),
        )]))
        .unwrap_or_else(|e| panic!("bus settings: {e}"));
        EventBus::connect(&settings, "test")
            .await
            .unwrap_or_else(|e| panic!("connecting to the test broker: {e}"))
    }

    /// Reads `topic` from the beginning with a consumer group of its own.
    pub async fn watch(&self, topic: &'static str) -> Watcher {
        let subscription = Subscription {
            consumer: format!("test-watcher-{}", uuid::Uuid::new_v4().simple()),
            topics: vec![topic],
            event_types: Vec::new(),
        };
        let receiver = self
            .bus()
            .await
            .subscribe(&subscription)
            .await
            .unwrap_or_else(|e| panic!("subscribing to {topic}: {e}"));
        Watcher { receiver }
    }
}

/// Reads the messages of one topic, for assertions.
pub struct Watcher {
    receiver: Receiver,
}

impl Watcher {
    /// The next message whose `ce_type` is `event_type`, or a failed test after `timeout`.
    pub async fn next_of_type(&mut self, event_type: &str, timeout: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let delivery = tokio::time::timeout_at(deadline, self.receiver.next())
                .await
                .unwrap_or_else(|_| panic!("no {event_type} event within {timeout:?}"))
                .unwrap_or_else(|e| panic!("receiving: {e}"));
            if delivery.message.header(service_kit::events::headers::TYPE) == Some(event_type) {
                return delivery.message;
            }
        }
    }
}
