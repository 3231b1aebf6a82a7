//! Event bus settings: `EVENT_BUS`, `KAFKA_BROKERS`, `AMQP_URL` and the tuning knobs of the
//! outbox relay and the consumers.

use std::time::Duration;

use secrecy::SecretString;

use crate::config::{ConfigError, ConfigSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Kafka,
    RabbitMq,
}

impl std::str::FromStr for BusKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "kafka" => Ok(Self::Kafka),
            "rabbitmq" => Ok(Self::RabbitMq),
            other => Err(format!("expected `kafka` or `rabbitmq`, got `{other}`")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventBusSettings {
    /// `EVENT_BUS` (default `kafka`).
    pub kind: BusKind,
    pub kafka: KafkaSettings,
    pub rabbitmq: RabbitMqSettings,
    pub outbox: OutboxSettings,
    pub consumer: ConsumerSettings,
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `KAFKA_BROKERS` (default `127.0.0.1:9092`).
    pub brokers: String,
    /// `KAFKA_TOPIC_PARTITIONS` (default 3): partitions of topics the service creates.
    pub partitions: i32,
    /// `KAFKA_REPLICATION_FACTOR` (default 1).
    pub replication_factor: i32,
    /// `KAFKA_SESSION_TIMEOUT_MS` (default 10000): how long a consumer that stopped
    /// heartbeating (crashed, killed) keeps its partitions before the group rebalances
    /// them to the others. Lower means faster failover, higher tolerates longer pauses.
    pub session_timeout_ms: u32,
    /// `KAFKA_GROUP_INSTANCE_ID` (default none): static group membership. A consumer that
    /// restarts with the same id (the same pod after its container was killed, say) takes
    /// its partitions back at once instead of waiting for the group to notice that the old
    /// member is gone. Must be unique per replica: set it from the pod name, never share it.
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RabbitMqSettings {
    /// `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub url: SecretString,
    /// `AMQP_PREFETCH` (default 16): unacknowledged messages a consumer may hold.
    pub prefetch: u16,
}

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `OUTBOX_POLL_INTERVAL_MS` (default 1000): the relay also wakes on every insert
    /// (LISTEN/NOTIFY); polling is the fallback if a notification is missed.
    pub poll_interval: Duration,
    /// `OUTBOX_BATCH_SIZE` (default 100).
    pub batch_size: i64,
    /// `OUTBOX_RETENTION_HOURS` (default 72): published rows are deleted after this.
    pub retention: Duration,
    /// `OUTBOX_MAX_ATTEMPTS` (default 5): how often the broker may refuse a row for good
    /// (too large, unroutable, not authorised) before the row is parked for an operator.
    /// A broker that is merely unreachable never counts towards this.
    pub max_attempts: i32,
    /// `OUTBOX_LEASE_SECS` (default 10): how long the active relay's lease lasts without
    /// renewal. A replica takes over at most this long after the active one died.
    pub lease: Duration,
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `CONSUMER_MAX_ATTEMPTS` (default 5): attempts before a message that keeps failing
    /// while the database answers is dead-lettered. Infrastructure faults do not count.
    pub max_attempts: u32,
    /// `CONSUMER_RETRY_BACKOFF_MS` (default 200): first wait between attempts, doubled
    /// each time.
    pub retry_backoff: Duration,
    /// `CONSUMER_MAX_BACKOFF_MS` (default 30000): the longest wait between two attempts,
    /// however long a fault lasts. Well below Kafka's `max.poll.interval.ms`, and the
    /// consumer keeps polling while it waits anyway.
    pub max_backoff: Duration,
    /// `INBOX_RETENTION_HOURS` (default 168, at least 1): how long the inbox remembers an
    /// applied event. Redeliveries come within minutes (a lost acknowledgement, a
    /// rebalance, a relay that crashed before marking a row published); a week is far
    /// beyond that, and keeps the table from growing without bound.
    pub inbox_retention: Duration,
}

impl EventBusSettings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            kind: source.parse("EVENT_BUS", BusKind::Kafka)?,
            kafka: KafkaSettings {
                brokers: source.string("KAFKA_BROKERS", "127.0.0.1:9092"),
                partitions: source.parse("KAFKA_TOPIC_PARTITIONS", 3)?,
                replication_factor: source.parse("KAFKA_REPLICATION_FACTOR", 1)?,
                session_timeout_ms: source.parse("KAFKA_SESSION_TIMEOUT_MS", 10_000)?,
                group_instance_id: source
                    .get("KAFKA_GROUP_INSTANCE_ID")
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned),
            },
            rabbitmq: RabbitMqSettings {
                url: source.secret("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
                prefetch: source.parse("AMQP_PREFETCH", 16)?,
            },
            outbox: OutboxSettings {
                poll_interval: source.millis("OUTBOX_POLL_INTERVAL_MS", 1000)?,
                batch_size: source.parse("OUTBOX_BATCH_SIZE", 100)?,
                retention: Duration::from_secs(3600 * source.parse("OUTBOX_RETENTION_HOURS", 72)?),
                max_attempts: source.parse("OUTBOX_MAX_ATTEMPTS", 5)?.max(1),
                lease: source
                    .seconds("OUTBOX_LEASE_SECS", 10)?
                    .max(Duration::from_secs(1)),
            },
            consumer: ConsumerSettings {
                max_attempts: source.parse("CONSUMER_MAX_ATTEMPTS", 5)?.max(1),
                retry_backoff: source.millis("CONSUMER_RETRY_BACKOFF_MS", 200)?,
                max_backoff: source
                    .millis("CONSUMER_MAX_BACKOFF_MS", 30_000)?
                    .max(Duration::from_millis(1)),
                inbox_retention: Duration::from_secs(
                    3600 * source.parse::<u64>("INBOX_RETENTION_HOURS", 168)?.max(1),
                ),
            },
        })
    }
}
