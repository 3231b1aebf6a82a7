//! user-service configuration. Every value has a default that works for a local run, except
//! the signing key: without `JWT_SIGNING_KEY` / `JWT_SIGNING_KEY_FILE` the service refuses
//! to start unless `JWT_ALLOW_DEV_KEY=true` (see `keys.rs`).

use std::time::Duration;

use secrecy::SecretString;
use service_kit::config::{
    AuthSettings, ConfigError, ConfigSource, DatabaseSettings, HttpSettings,
};
use service_kit::{events::EventBusSettings, telemetry::TelemetrySettings};

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
    pub limits: LimitSettings,
}

/// Limits on logins and sign-ups, kept in the database (`limits.rs`) so that they hold
/// across replicas and restarts. `0` turns a limit off.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// `LOGIN_MAX_FAILURES_PER_MINUTE` (default 10): failed logins for one e-mail within a
    /// minute; past them every login for that e-mail gets 429 until the minute is over.
    pub login_failures_per_account: u32,
    /// `LOGIN_MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS` (default 60): logins from one client
    /// address (an IPv6 /64) within a minute, whatever the account.
    pub login_attempts_per_address: u32,
    /// `SIGNUP_MAX_PER_HOUR_PER_ADDRESS` (default 50): sign-ups from one client address
    /// within an hour.
    pub signups_per_address: u32,
    /// `RATE_LIMIT_TRUST_FORWARDED_FOR`, shared with the kit's rate limiter: key on the
    /// first `X-Forwarded-For` address instead of the peer.
    pub trust_forwarded_for: bool,
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
    /// `JWT_SIGNING_KEY` or `JWT_SIGNING_KEY_FILE`: Ed25519 private key, PKCS#8 PEM. All
    /// replicas must share it. No default: without it the service refuses to start, unless
    /// `allow_dev_key`.
    pub signing_key: Option<SecretString>,
    /// `JWT_ALLOW_DEV_KEY` (default `false`): sign with the public development key when no
    /// key is set, and accept it when it is set as `JWT_SIGNING_KEY`. Development only.
    pub allow_dev_key: bool,
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
        let auth = AuthSettings::from_source(source)?;
        let http = HttpSettings::from_source(source, "0.0.0.0:8081")?;
        let limits = LimitSettings {
            login_failures_per_account: source.parse("LOGIN_MAX_FAILURES_PER_MINUTE", 10)?,
            login_attempts_per_address: source
                .parse("LOGIN_MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS", 60)?,
            signups_per_address: source.parse("SIGNUP_MAX_PER_HOUR_PER_ADDRESS", 50)?,
            trust_forwarded_for: http.rate_limit.trust_forwarded_for,
        };
        Ok(Self {
            http,
            database: DatabaseSettings::from_source(
                source,
                "postgres://postgres@127.0.0.1:5432/users",
            )?,
            telemetry: TelemetrySettings::from_source(source)?,
            tokens: TokenSettings {
                signing_key: source.secret_or_file("JWT_SIGNING_KEY")?,
                allow_dev_key: auth.allow_dev_key,
                previous_public_keys: previous,
                issuer: auth.issuer,
                audience: auth.audience,
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
            limits,
        })
    }
}
