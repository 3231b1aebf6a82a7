//! user-service configuration. Every value has a default that works for a local run.

use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{
    ConfigError, ConfigSource, DEFAULT_JWT_AUDIENCE, DEFAULT_JWT_ISSUER, DatabaseSettings,
    HttpSettings,
};
use service_kit::{events::EventBusSettings, telemetry::TelemetrySettings};

/// The development signing key (see `config/dev/README.md`). It is public, so the service
/// warns at start-up when it is in use.
pub const DEV_SIGNING_KEY: &str = include_str!("../../../config/dev/jwt-signing-key.pem");

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub tokens: TokenSettings,
    pub admin: Option<AdminAccount>,
    /// `EVENT_BUS`, `KAFKA_BROKERS`, `AMQP_URL`, ...
    pub events: EventBusSettings,
    pub passwords: PasswordSettings,
}

/// How many Argon2 hashes run at once, and how long a request waits for its turn.
#[derive(Debug, Clone)]
pub struct PasswordSettings {
    /// `PASSWORD_HASH_CONCURRENCY` (default: the number of CPUs, at least 1). Each hash
    /// takes about 19 MiB and one CPU for tens of milliseconds.
    pub concurrency: usize,
    /// `PASSWORD_HASH_QUEUE_TIMEOUT_MS` (default 2000): past this, the request is answered
    /// 503 with `Retry-After`.
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `JWT_SIGNING_KEY` or `JWT_SIGNING_KEY_FILE`: Ed25519 private key, PKCS#8 PEM.
    /// Default: the development key. All replicas must share it.
    pub signing_key: SecretString,
    /// `JWT_PREVIOUS_PUBLIC_KEY` or `JWT_PREVIOUS_PUBLIC_KEY_FILE`: the public key that
    /// signed tokens before the last rotation, published until those tokens expire.
    pub previous_public_keys: Vec<String>,
    /// `JWT_ISSUER` (default `shop-user-service`).
    pub issuer: String,
    /// `JWT_AUDIENCE` (default `shop-api`).
    pub audience: String,
    /// `JWT_TTL_SECS` (default 900): access tokens are short-lived because they cannot be
    /// revoked.
    pub ttl: Duration,
}

/// `ADMIN_EMAIL` and `ADMIN_PASSWORD`: an admin account ensured at start-up.
#[derive(Debug, Clone)]
pub struct AdminAccount {
    pub email: String,
    pub password: SecretString,
}

impl Settings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        use secrecy::ExposeSecret;
        let previous = source
            .secret_or_file("JWT_PREVIOUS_PUBLIC_KEY")?
            .map(|key| vec![key.expose_secret().to_owned()])
            .unwrap_or_default();
        let admin = match (
            source.get("ADMIN_EMAIL"),
            source.optional_secret("ADMIN_PASSWORD"),
        ) {
            (Some(email), Some(password)) => Some(AdminAccount {
                email: email.to_owned(),
                password,
            }),
            _ => None,
        };
        Ok(Self {
            http: HttpSettings::from_source(source, "0.0.0.0:8081")?,
            database: DatabaseSettings::from_source(
                source,
                "postgres://postgres@127.0.0.1:5432/users",
            )?,
            telemetry: TelemetrySettings::from_source(source)?,
            tokens: TokenSettings {
                signing_key: source
                    .secret_or_file("JWT_SIGNING_KEY")?
                    .unwrap_or_else(|| SecretString::from(DEV_SIGNING_KEY)),
                previous_public_keys: previous,
                issuer: source.string("JWT_ISSUER", DEFAULT_JWT_ISSUER),
                audience: source.string("JWT_AUDIENCE", DEFAULT_JWT_AUDIENCE),
                ttl: source.seconds("JWT_TTL_SECS", 900)?,
            },
            admin,
            events: EventBusSettings::from_source(source)?,
            passwords: PasswordSettings {
                concurrency: source
                    .parse(
                        "PASSWORD_HASH_CONCURRENCY",
                        std::thread::available_parallelism().map_or(1, usize::from),
                    )?
                    .max(1),
                queue_timeout: source.millis("PASSWORD_HASH_QUEUE_TIMEOUT_MS", 2000)?,
            },
        })
    }
}
