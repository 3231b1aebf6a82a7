//! Event bus settings: `EVENT_BUS`, `KAFKA_BROKERS`, `AMQP_URL`, the transport security of
//! both brokers (TLS, SASL) and the tuning knobs of the outbox relay and the consumers.
//!
//! Transport security is checked here, at start-up, so that a combination that cannot work
//! or would quietly weaken it (SASL credentials without a SASL protocol, a CA file for a
//! connection that does not use TLS, a certificate without its key, a file that is not
//! there) stops the service with a message naming the variable to fix, instead of a
//! connection that fails later or, worse, succeeds without the protection asked for.

use std::{path::Path, time::Duration};

use secrecy::{ExposeSecret, SecretString};

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
    /// `KAFKA_FETCH_WAIT_MAX_MS` (default 500, librdkafka's): how long the broker may hold
    /// a consumer's fetch when it has nothing new. A Kafka broker answers as soon as data
    /// arrives, so this only sets how often an idle consumer asks; the development broker
    /// (librdkafka's mock cluster) holds every empty fetch this long, so it adds up to this
    /// to every hop there: `make run` and the tests set 10.
    pub fetch_wait_max_ms: u32,
    /// `KAFKA_GROUP_INSTANCE_ID` (default none): static group membership. A consumer that
    /// restarts with the same id (the same pod after its container was killed, say) takes
    /// its partitions back at once instead of waiting for the group to notice that the old
    /// member is gone. Must be unique per replica: set it from the pod name, never share it.
    pub group_instance_id: Option<String>,
    /// TLS and SASL towards the brokers, for every client the service creates (producer,
    /// consumers, admin).
    pub security: KafkaSecurity,
}

/// `KAFKA_SECURITY_PROTOCOL` and what goes with it.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// `KAFKA_SECURITY_PROTOCOL` (default `plaintext`).
    pub protocol: KafkaSecurityProtocol,
    /// Present exactly when the protocol is `sasl_plaintext` or `sasl_ssl`.
    pub sasl: Option<KafkaSasl>,
    /// Used only when the protocol is `ssl` or `sasl_ssl`.
    pub tls: KafkaTls,
}

/// How the Kafka clients talk to the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KafkaSecurityProtocol {
    /// No encryption, no authentication: local runs and tests only.
    #[default]
    Plaintext,
    /// TLS: the brokers' certificates are verified (and the client may present one).
    Ssl,
    /// SASL authentication over an unencrypted connection.
    SaslPlaintext,
    /// SASL authentication over TLS: what managed Kafka services offer.
    SaslSsl,
}

impl KafkaSecurityProtocol {
    /// The name librdkafka (and the variable) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::str::FromStr for KafkaSecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            other => Err(format!(
                "expected `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`, got `{other}`"
            )),
        }
    }
}

/// The SASL mechanisms librdkafka implements itself (with OpenSSL): no Kerberos (GSSAPI,
/// which needs Cyrus SASL) and no OAUTHBEARER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// The password itself crosses the connection: only over TLS (`sasl_ssl`).
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            other => Err(format!(
                "expected `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, got `{other}`"
            )),
        }
    }
}

/// SASL credentials. The password is a secret: never logged, redacted in `Debug`.
#[derive(Debug, Clone)]
pub struct KafkaSasl {
    /// `KAFKA_SASL_MECHANISM` (required with a `sasl_*` protocol).
    pub mechanism: SaslMechanism,
    /// `KAFKA_SASL_USERNAME`.
    pub username: String,
    /// `KAFKA_SASL_PASSWORD`, or the content of the file `KAFKA_SASL_PASSWORD_FILE` names
    /// (without its trailing newline).
    pub password: SecretString,
}

/// Files for TLS towards Kafka, in PEM. Paths, because librdkafka reads them itself when
/// a client is created.
#[derive(Debug, Clone, Default)]
pub struct KafkaTls {
    /// `KAFKA_SSL_CA_LOCATION`: the CA certificate(s) the brokers' certificates must chain
    /// to (a file, or a directory of hashed certificates). Unset: the system's trust
    /// store, which is right for brokers with publicly trusted certificates.
    pub ca_location: Option<String>,
    /// `KAFKA_SSL_CERTIFICATE_LOCATION` and `KAFKA_SSL_KEY_LOCATION`: a client certificate
    /// and its private key, for brokers that authenticate clients by certificate (mTLS).
    pub client_identity: Option<ClientIdentity>,
}

/// A client certificate (chain) and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub certificate: String,
    pub key: String,
}

impl KafkaSecurity {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        const PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
        let protocol: KafkaSecurityProtocol =
            source.parse(PROTOCOL, KafkaSecurityProtocol::default())?;
        let sasl = if protocol.uses_sasl() {
            Some(KafkaSasl::from_source(source, protocol)?)
        } else {
            let unused = [
                "KAFKA_SASL_MECHANISM",
                "KAFKA_SASL_USERNAME",
                "KAFKA_SASL_PASSWORD",
                "KAFKA_SASL_PASSWORD_FILE",
            ];
            if let Some(key) = unused.into_iter().find(|key| source.get(key).is_some()) {
                return Err(invalid(
                    key,
                    format!(
                        "it is set, but {PROTOCOL}={} does not authenticate with SASL: set \
                         {PROTOCOL}=sasl_ssl (or sasl_plaintext), or remove it",
                        protocol.as_str()
                    ),
                ));
            }
            None
        };
        let ca_location = tls_file(source, "KAFKA_SSL_CA_LOCATION", protocol)?;
        let certificate = tls_file(source, "KAFKA_SSL_CERTIFICATE_LOCATION", protocol)?;
        let key = tls_file(source, "KAFKA_SSL_KEY_LOCATION", protocol)?;
        let client_identity = client_identity(
            certificate,
            key,
            "KAFKA_SSL_CERTIFICATE_LOCATION",
            "KAFKA_SSL_KEY_LOCATION",
        )?;
        Ok(Self {
            protocol,
            sasl,
            tls: KafkaTls {
                ca_location,
                client_identity,
            },
        })
    }
}

impl KafkaSasl {
    fn from_source(
        source: &ConfigSource,
        protocol: KafkaSecurityProtocol,
    ) -> Result<Self, ConfigError> {
        let needed = |key: &str, what: &str| {
            invalid(
                key,
                format!(
                    "it is not set, but KAFKA_SECURITY_PROTOCOL={} needs {what}",
                    protocol.as_str()
                ),
            )
        };
        let mechanism = match source.get("KAFKA_SASL_MECHANISM") {
            None => {
                return Err(needed(
                    "KAFKA_SASL_MECHANISM",
                    "it: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, as the brokers offer",
                ));
            }
            Some(_) => source.parse("KAFKA_SASL_MECHANISM", SaslMechanism::Plain)?,
        };
        let username = source
            .get("KAFKA_SASL_USERNAME")
            .map(|name| name.trim().to_owned())
            .ok_or_else(|| needed("KAFKA_SASL_USERNAME", "the SASL user name"))?;
        let password = source
            .secret_or_file("KAFKA_SASL_PASSWORD")?
            .ok_or_else(|| {
                needed(
                    "KAFKA_SASL_PASSWORD",
                    "the SASL password (or KAFKA_SASL_PASSWORD_FILE naming a file that holds it)",
                )
            })?;
        // A file written by `echo` or an editor ends with a newline that is no part of
        // the password.
        let trimmed = password.expose_secret().trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(invalid(
                "KAFKA_SASL_PASSWORD",
                "the password is empty".to_owned(),
            ));
        }
        Ok(Self {
            mechanism,
            username,
            password: SecretString::from(trimmed.to_owned()),
        })
    }
}

#[derive(Debug, Clone)]
pub struct RabbitMqSettings {
    /// `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). `amqps://` for TLS;
    /// the broker's certificate is then verified against the system's trust store and
    /// `AMQP_CA_FILE`, and its name against the URL's host.
    pub url: SecretString,
    /// `AMQP_PREFETCH` (default 64): unacknowledged messages a consumer may hold; also
    /// the largest batch the consumer can apply at once (`CONSUMER_BATCH_SIZE`).
    pub prefetch: u16,
    /// Files for `amqps://`.
    pub tls: AmqpTls,
}

/// Files for TLS towards RabbitMQ, in PEM. Read again at every (re)connection, so that a
/// renewed certificate is picked up without a restart.
#[derive(Debug, Clone, Default)]
pub struct AmqpTls {
    /// `AMQP_CA_FILE`: CA certificate(s) trusted for the broker's certificate, on top of
    /// the system's trust store (a private CA, or a self-signed broker).
    pub ca_file: Option<String>,
    /// `AMQP_CLIENT_CERT_FILE` and `AMQP_CLIENT_KEY_FILE`: a client certificate and its
    /// private key, for a broker that requires one (mutual TLS).
    pub client_identity: Option<ClientIdentity>,
}

impl AmqpTls {
    fn from_source(source: &ConfigSource, url: &SecretString) -> Result<Self, ConfigError> {
        let keys = [
            "AMQP_CA_FILE",
            "AMQP_CLIENT_CERT_FILE",
            "AMQP_CLIENT_KEY_FILE",
        ];
        let is_amqps = url
            .expose_secret()
            .trim_start()
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("amqps://"));
        if !is_amqps && let Some(key) = keys.into_iter().find(|key| source.get(key).is_some()) {
            return Err(invalid(
                key,
                "it is set, but AMQP_URL is not an amqps:// URL, so the connection would not \
                 use TLS: make AMQP_URL amqps://, or remove it"
                    .to_owned(),
            ));
        }
        let pem_file = |key: &str, wanted: fn(&str) -> bool, what: &str| {
            source
                .get(key)
                .map(|path| {
                    let path = path.trim();
                    let content = read_file(key, path)?;
                    let blocks = pem::parse_many(&content).unwrap_or_default();
                    if blocks.iter().any(|block| wanted(block.tag())) {
                        Ok(path.to_owned())
                    } else {
                        Err(invalid(key, format!("{path} holds no PEM {what}")))
                    }
                })
                .transpose()
        };
        let is_certificate = |tag: &str| tag == "CERTIFICATE";
        let ca_file = pem_file("AMQP_CA_FILE", is_certificate, "certificate")?;
        let certificate = pem_file("AMQP_CLIENT_CERT_FILE", is_certificate, "certificate")?;
        let key = pem_file(
            "AMQP_CLIENT_KEY_FILE",
            |tag| tag.ends_with("PRIVATE KEY"),
            "private key",
        )?;
        Ok(Self {
            ca_file,
            client_identity: client_identity(
                certificate,
                key,
                "AMQP_CLIENT_CERT_FILE",
                "AMQP_CLIENT_KEY_FILE",
            )?,
        })
    }
}

fn invalid(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason,
    }
}

fn read_file(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))
}

/// A Kafka TLS file setting: only with a protocol that uses TLS, and it must be readable
/// now (librdkafka reads it when each client is created).
fn tls_file(
    source: &ConfigSource,
    key: &str,
    protocol: KafkaSecurityProtocol,
) -> Result<Option<String>, ConfigError> {
    let Some(path) = source.get(key).map(str::trim) else {
        return Ok(None);
    };
    if !protocol.uses_tls() {
        return Err(invalid(
            key,
            format!(
                "it is set, but KAFKA_SECURITY_PROTOCOL={} does not use TLS: set \
                 KAFKA_SECURITY_PROTOCOL=ssl (or sasl_ssl), or remove it",
                protocol.as_str()
            ),
        ));
    }
    // A CA location may be a directory of hashed certificates.
    if !Path::new(path).is_dir() {
        read_file(key, path)?;
    }
    Ok(Some(path.to_owned()))
}

/// A certificate and a key come together or not at all.
fn client_identity(
    certificate: Option<String>,
    key: Option<String>,
    certificate_key: &str,
    key_key: &str,
) -> Result<Option<ClientIdentity>, ConfigError> {
    match (certificate, key) {
        (Some(certificate), Some(key)) => Ok(Some(ClientIdentity { certificate, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            key_key,
            format!(
                "it is not set, but {certificate_key} is: a client certificate needs its private key"
            ),
        )),
        (None, Some(_)) => Err(invalid(
            certificate_key,
            format!("it is not set, but {key_key} is: a private key needs its client certificate"),
        )),
    }
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
    /// `CONSUMER_BATCH_SIZE` (default 64, at least 1): at most this many deliveries that
    /// have already arrived are applied in one database transaction (a savepoint each), so
    /// one commit's wait for the disk is shared by all of them. The consumer never waits
    /// for a batch to fill: alone, an event is applied at once. 1 turns batching off.
    pub batch_size: usize,
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
                fetch_wait_max_ms: source.parse("KAFKA_FETCH_WAIT_MAX_MS", 500)?,
                group_instance_id: source
                    .get("KAFKA_GROUP_INSTANCE_ID")
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned),
                security: KafkaSecurity::from_source(source)?,
            },
            rabbitmq: {
                let url = source.secret("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
                RabbitMqSettings {
                    tls: AmqpTls::from_source(source, &url)?,
                    url,
                    prefetch: source.parse("AMQP_PREFETCH", 64)?,
                }
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
                batch_size: source.parse("CONSUMER_BATCH_SIZE", 64)?.max(1),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `content` that is removed when the value is dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(content: &str) -> Self {
            let path = std::env::temp_dir().join(format!("settings-{}", uuid::Uuid::new_v4()));
            std::fs::write(&path, content).expect("temp file written");
            Self(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temp path")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

    fn settings(pairs: &[(&str, &str)]) -> Result<EventBusSettings, ConfigError> {
        EventBusSettings::from_source(&ConfigSource::from_pairs(pairs.iter().copied()))
    }

    /// The error's text, which the operator reads.
    fn error(pairs: &[(&str, &str)]) -> String {
        settings(pairs).expect_err("invalid settings").to_string()
    }

    #[test]
    fn kafka_is_plaintext_without_sasl_or_tls_by_default() {
        let kafka = settings(&[]).expect("defaults").kafka.security;
        assert_eq!(kafka.protocol, KafkaSecurityProtocol::Plaintext);
        assert!(kafka.sasl.is_none());
        assert!(kafka.tls.ca_location.is_none() && kafka.tls.client_identity.is_none());
    }

    #[test]
    fn sasl_ssl_reads_the_credentials_and_the_password_file_without_its_newline() {
        let password = TempFile::new("s3cret\n");
        let ca = TempFile::new(CERTIFICATE);
        let security = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "order-service"),
            ("KAFKA_SASL_PASSWORD_FILE", password.path()),
            ("KAFKA_SSL_CA_LOCATION", ca.path()),
        ])
        .expect("valid settings")
        .kafka
        .security;
        assert_eq!(security.protocol, KafkaSecurityProtocol::SaslSsl);
        let sasl = security.sasl.expect("SASL credentials");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.username, "order-service");
        assert_eq!(sasl.password.expose_secret(), "s3cret");
        assert_eq!(security.tls.ca_location.as_deref(), Some(ca.path()));
    }

    #[test]
    fn the_sasl_password_never_shows_in_debug_output() {
        let settings = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ("AMQP_URL", "amqps://u:amqp-secret@broker/%2f"),
        ])
        .expect("valid settings");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2-secret"), "{printed}");
        assert!(!printed.contains("amqp-secret"), "{printed}");
    }

    #[test]
    fn an_unknown_security_protocol_or_mechanism_is_refused() {
        let protocol = error(&[("KAFKA_SECURITY_PROTOCOL", "tls")]);
        assert!(protocol.contains("KAFKA_SECURITY_PROTOCOL"), "{protocol}");
        assert!(protocol.contains("sasl_ssl"), "{protocol}");
        let mechanism = error(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "p"),
        ]);
        assert!(mechanism.contains("KAFKA_SASL_MECHANISM"), "{mechanism}");
        assert!(mechanism.contains("SCRAM-SHA-512"), "{mechanism}");
    }

    #[test]
    fn a_sasl_protocol_needs_a_mechanism_a_user_and_a_password() {
        let complete = [
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "p"),
        ];
        assert!(settings(&complete).is_ok());
        for missing in [
            "KAFKA_SASL_MECHANISM",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
        ] {
            let pairs: Vec<_> = complete
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let message = error(&pairs);
            assert!(message.contains(missing), "{missing}: {message}");
            assert!(message.contains("sasl_plaintext"), "{missing}: {message}");
        }
    }

    #[test]
    fn a_password_file_that_is_missing_or_empty_is_refused() {
        let base = [
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
            ("KAFKA_SASL_USERNAME", "u"),
        ];
        let missing = [
            base.as_slice(),
            &[("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/password")],
        ]
        .concat();
        assert!(error(&missing).contains("/nonexistent/password"));
        let empty = TempFile::new("\n");
        let empty_pairs = [
            base.as_slice(),
            &[("KAFKA_SASL_PASSWORD_FILE", empty.path())],
        ]
        .concat();
        assert!(error(&empty_pairs).contains("empty"));
    }

    #[test]
    fn sasl_settings_without_a_sasl_protocol_are_refused() {
        // Credentials but no protocol that uses them: the connection would be anonymous.
        let message = error(&[("KAFKA_SASL_USERNAME", "u"), ("KAFKA_SASL_PASSWORD", "p")]);
        assert!(message.contains("KAFKA_SASL_USERNAME"), "{message}");
        assert!(
            message.contains("KAFKA_SECURITY_PROTOCOL=plaintext"),
            "{message}"
        );
        let with_ssl = error(&[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ]);
        assert!(with_ssl.contains("KAFKA_SASL_MECHANISM"), "{with_ssl}");
    }

    #[test]
    fn tls_files_without_a_tls_protocol_are_refused() {
        let ca = TempFile::new(CERTIFICATE);
        let plaintext = error(&[("KAFKA_SSL_CA_LOCATION", ca.path())]);
        assert!(plaintext.contains("KAFKA_SSL_CA_LOCATION"), "{plaintext}");
        assert!(
            plaintext.contains("plaintext does not use TLS"),
            "{plaintext}"
        );
        let sasl_plaintext = error(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "p"),
            ("KAFKA_SSL_CA_LOCATION", ca.path()),
        ]);
        assert!(
            sasl_plaintext.contains("sasl_plaintext does not use TLS"),
            "{sasl_plaintext}"
        );
    }

    #[test]
    fn a_kafka_tls_file_that_does_not_exist_is_refused_with_its_path() {
        let message = error(&[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ]);
        assert!(message.contains("KAFKA_SSL_CA_LOCATION"), "{message}");
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_other_way_round() {
        let certificate = TempFile::new(CERTIFICATE);
        let key = TempFile::new(KEY);
        let ssl = ("KAFKA_SECURITY_PROTOCOL", "ssl");
        let both = settings(&[
            ssl,
            ("KAFKA_SSL_CERTIFICATE_LOCATION", certificate.path()),
            ("KAFKA_SSL_KEY_LOCATION", key.path()),
        ])
        .expect("a certificate and its key");
        assert!(both.kafka.security.tls.client_identity.is_some());
        let message = error(&[ssl, ("KAFKA_SSL_CERTIFICATE_LOCATION", certificate.path())]);
        assert!(message.contains("KAFKA_SSL_KEY_LOCATION"), "{message}");
        let message = error(&[ssl, ("KAFKA_SSL_KEY_LOCATION", key.path())]);
        assert!(
            message.contains("KAFKA_SSL_CERTIFICATE_LOCATION"),
            "{message}"
        );
    }

    #[test]
    fn amqp_tls_files_are_read_for_an_amqps_url() {
        let ca = TempFile::new(CERTIFICATE);
        let certificate = TempFile::new(CERTIFICATE);
        let key = TempFile::new(KEY);
        let tls = settings(&[
            ("AMQP_URL", "AMQPS://u:p@broker:5671/%2f"),
            ("AMQP_CA_FILE", ca.path()),
            ("AMQP_CLIENT_CERT_FILE", certificate.path()),
            ("AMQP_CLIENT_KEY_FILE", key.path()),
        ])
        .expect("valid settings")
        .rabbitmq
        .tls;
        assert_eq!(tls.ca_file.as_deref(), Some(ca.path()));
        let identity = tls.client_identity.expect("a client identity");
        assert_eq!(identity.certificate, certificate.path());
        assert_eq!(identity.key, key.path());
    }

    #[test]
    fn amqp_tls_files_for_a_plain_amqp_url_are_refused() {
        let ca = TempFile::new(CERTIFICATE);
        let message = error(&[
            ("AMQP_URL", "amqp://u:p@broker/%2f"),
            ("AMQP_CA_FILE", ca.path()),
        ]);
        assert!(message.contains("AMQP_CA_FILE"), "{message}");
        assert!(message.contains("amqps://"), "{message}");
        assert!(!message.contains("u:p@"), "the URL is a secret: {message}");
    }

    #[test]
    fn an_amqp_ca_file_that_is_missing_or_not_pem_is_refused() {
        let url = ("AMQP_URL", "amqps://broker/%2f");
        let message = error(&[url, ("AMQP_CA_FILE", "/nonexistent/ca.pem")]);
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");
        let garbage = TempFile::new("not a certificate");
        let message = error(&[url, ("AMQP_CA_FILE", garbage.path())]);
        assert!(
            message.contains("AMQP_CA_FILE") && message.contains("no PEM"),
            "{message}"
        );
        let key_as_ca = TempFile::new(KEY);
        let message = error(&[url, ("AMQP_CA_FILE", key_as_ca.path())]);
        assert!(message.contains("no PEM certificate"), "{message}");
    }

    #[test]
    fn an_amqp_client_certificate_needs_its_key() {
        let certificate = TempFile::new(CERTIFICATE);
        let message = error(&[
            ("AMQP_URL", "amqps://broker/%2f"),
            ("AMQP_CLIENT_CERT_FILE", certificate.path()),
        ]);
        assert!(message.contains("AMQP_CLIENT_KEY_FILE"), "{message}");
    }
}
