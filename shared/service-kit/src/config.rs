//! Typed settings read from environment variables.
//!
//! Every service describes its settings as a plain struct built by a `from_source`
//! function, so defaults sit next to the variable they belong to and are easy to document.
//! Values are layered: built-in defaults, then an optional file named by `CONFIG_FILE`
//! (`KEY=value` lines, `#` comments), then the process environment. Nothing here is global:
//! tests build settings structs directly and can run several applications in one process.

use std::{collections::HashMap, fmt::Display, path::Path, str::FromStr, time::Duration};

use secrecy::SecretString;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {key} is invalid: {reason}")]
    Invalid { key: String, reason: String },
    #[error("environment variable {key} is required")]
    Missing { key: String },
    #[error("cannot read configuration file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Where configuration values come from: the optional `CONFIG_FILE`, overlaid by the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    values: HashMap<String, String>,
}

impl ConfigSource {
    /// Reads `CONFIG_FILE` (when set) and then the process environment, which wins.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        if let Ok(path) = std::env::var("CONFIG_FILE") {
            values.extend(read_file(Path::new(&path))?);
        }
        values.extend(std::env::vars());
        Ok(Self { values })
    }

    /// A source made of the given pairs only; used by tests and tools.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if it is set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    pub fn required(&self, key: &str) -> Result<String, ConfigError> {
        self.get(key)
            .map(str::to_owned)
            .ok_or(ConfigError::Missing {
                key: key.to_owned(),
            })
    }

    pub fn parse<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    key: key.to_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    pub fn url(&self, key: &str, default: &str) -> Result<Url, ConfigError> {
        let raw = self.string(key, default);
        Url::parse(raw.trim()).map_err(|e| ConfigError::Invalid {
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }

    pub fn seconds(&self, key: &str, default_secs: u64) -> Result<Duration, ConfigError> {
        self.parse(key, default_secs).map(Duration::from_secs)
    }

    pub fn millis(&self, key: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.parse(key, default_ms).map(Duration::from_millis)
    }

    /// A secret. Its value is never echoed in errors or logs.
    pub fn secret(&self, key: &str, default: &str) -> SecretString {
        SecretString::from(self.string(key, default))
    }

    pub fn optional_secret(&self, key: &str) -> Option<SecretString> {
        self.get(key).map(SecretString::from)
    }

    /// The content of `KEY`, or of the file named by `KEY_FILE` (the usual way to mount a
    /// Kubernetes or Docker secret).
    pub fn secret_or_file(&self, key: &str) -> Result<Option<SecretString>, ConfigError> {
        if let Some(value) = self.get(key) {
            return Ok(Some(SecretString::from(value.to_owned())));
        }
        let file_key = format!("{key}_FILE");
        match self.get(&file_key) {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|content| Some(SecretString::from(content)))
                .map_err(|e| ConfigError::File {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }),
        }
    }
}

fn read_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let content = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut values = HashMap::new();
    for (number, line) in content.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| ConfigError::File {
            path: path.display().to_string(),
            reason: format!("line {} is not KEY=value", number + 1),
        })?;
        let value = value.trim().trim_matches('"');
        values.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(values)
}

/// Settings of the HTTP server, common to all services.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `HTTP_ADDR`: where to listen. Port 0 picks a free port (tests).
    pub addr: String,
    /// `HTTP_BODY_LIMIT_BYTES` (default 65536): larger request bodies get 413.
    pub body_limit_bytes: usize,
    /// `HTTP_SHUTDOWN_TIMEOUT_SECS` (default 20): how long in-flight requests may take to
    /// finish after SIGTERM. Keep it below the orchestrator's grace period.
    pub shutdown_timeout: Duration,
    /// `HTTP_WORKERS` (default: one per core).
    pub workers: Option<usize>,
    pub rate_limit: RateLimitSettings,
}

impl HttpSettings {
    pub fn from_source(source: &ConfigSource, default_addr: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            addr: source.string("HTTP_ADDR", default_addr),
            body_limit_bytes: source.parse("HTTP_BODY_LIMIT_BYTES", 64 * 1024)?,
            shutdown_timeout: source.seconds("HTTP_SHUTDOWN_TIMEOUT_SECS", 20)?,
            workers: match source.get("HTTP_WORKERS") {
                None => None,
                Some(_) => Some(source.parse("HTTP_WORKERS", 1)?),
            },
            rate_limit: RateLimitSettings::from_source(source)?,
        })
    }

    /// Settings for a test server on a free local port.
    pub fn for_tests() -> Self {
        Self {
            addr: "127.0.0.1:0".to_owned(),
            body_limit_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(5),
            workers: Some(2),
            rate_limit: RateLimitSettings::default(),
        }
    }
}

/// Per-client request rate limit (a token bucket per user, or per address for anonymous
/// callers).
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_PER_SECOND` (default 100; 0 disables the limit).
    pub per_second: u32,
    /// `RATE_LIMIT_BURST` (default 200): requests allowed at once before the rate applies.
    pub burst: u32,
    /// `RATE_LIMIT_TRUST_FORWARDED_FOR` (default false): key anonymous callers on the first
    /// `X-Forwarded-For` address. Only enable behind a proxy that sets it.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 200,
            trust_forwarded_for: false,
        }
    }
}

impl RateLimitSettings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        let default = Self::default();
        Ok(Self {
            per_second: source.parse("RATE_LIMIT_PER_SECOND", default.per_second)?,
            burst: source.parse("RATE_LIMIT_BURST", default.burst)?,
            trust_forwarded_for: source.parse("RATE_LIMIT_TRUST_FORWARDED_FOR", false)?,
        })
    }
}

/// The database a service owns.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`.
    pub url: SecretString,
    /// `DATABASE_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_SECS` (default 5): a request waiting longer for a
    /// connection gets 503.
    pub acquire_timeout: Duration,
    /// `DATABASE_CONNECT_TIMEOUT_SECS` (default 30): how long start-up keeps retrying to
    /// reach the database (it may start after the service in compose or Kubernetes).
    pub connect_timeout: Duration,
}

impl DatabaseSettings {
    pub fn from_source(source: &ConfigSource, default_url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            url: source.secret("DATABASE_URL", default_url),
            max_connections: source.parse("DATABASE_MAX_CONNECTIONS", 10)?,
            acquire_timeout: source.seconds("DATABASE_ACQUIRE_TIMEOUT_SECS", 5)?,
            connect_timeout: source.seconds("DATABASE_CONNECT_TIMEOUT_SECS", 30)?,
        })
    }

    pub fn for_tests(url: SecretString) -> Self {
        Self {
            url,
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// How a service checks the bearer tokens that user-service issues.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `USER_SERVICE_URL` (default `http://127.0.0.1:8081`) + `/.well-known/jwks.json`.
    pub jwks_url: Url,
    /// `JWT_ISSUER` (default `shop-user-service`).
    pub issuer: String,
    /// `JWT_AUDIENCE` (default `shop-api`).
    pub audience: String,
    /// `JWT_ALLOW_DEV_KEY` (default `false`): accept (and, in user-service, sign with) the
    /// public development key. Set by `make run`, the tests, compose and the dev overlay only.
    pub allow_dev_key: bool,
    /// How the key set is kept fresh; not read from the environment (tests shorten it).
    pub jwks: JwksPolicy,
}

/// How a verifier keeps user-service's key set (`crate::auth`): the defaults are the
/// documented policy (docs/decisions.md, "Security").
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// At most one fetch is *attempted* per interval, whether it succeeds or fails (10 s):
    /// tokens naming unknown key ids cannot make a fetch storm, even while user-service is
    /// down.
    pub min_fetch_interval: Duration,
    /// The known keys are confirmed again in the background this often (5 min), so a key
    /// removed from the set stops being trusted within this time. Requests never wait for it.
    pub refresh_interval: Duration,
    /// After a failed background refresh, the next one is tried after this long (30 s).
    pub retry_interval: Duration,
    /// Keys that no fetch has confirmed for this long are dropped (1 h): four times the
    /// 15-minute token lifetime, so an outage of user-service never fails a token that is
    /// still valid, while a verifier cut off from user-service stops trusting a key that
    /// may have been withdrawn within the hour.
    pub max_key_staleness: Duration,
    /// A key id that a successful fetch did not contain is rejected (401) without another
    /// fetch for this long (30 s).
    pub unknown_kid_ttl: Duration,
    /// At most this many such key ids are remembered (1024), so random key ids cannot
    /// grow memory; the oldest is forgotten first.
    pub unknown_kid_capacity: usize,
    /// One fetch gives up after this long (3 s); a request waits at most this long for the
    /// fetch in flight.
    pub fetch_timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            min_fetch_interval: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(5 * 60),
            retry_interval: Duration::from_secs(30),
            max_key_staleness: Duration::from_secs(60 * 60),
            unknown_kid_ttl: Duration::from_secs(30),
            unknown_kid_capacity: 1024,
            fetch_timeout: Duration::from_secs(3),
        }
    }
}

pub const DEFAULT_JWT_ISSUER: &str = "shop-user-service";
pub const DEFAULT_JWT_AUDIENCE: &str = "shop-api";
pub const DEFAULT_USER_SERVICE_URL: &str = "http://127.0.0.1:8081";

impl AuthSettings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        let base = source.url("USER_SERVICE_URL", DEFAULT_USER_SERVICE_URL)?;
        Ok(Self {
            jwks_url: jwks_url(&base),
            issuer: source.string("JWT_ISSUER", DEFAULT_JWT_ISSUER),
            audience: source.string("JWT_AUDIENCE", DEFAULT_JWT_AUDIENCE),
            allow_dev_key: source.parse("JWT_ALLOW_DEV_KEY", false)?,
            jwks: JwksPolicy::default(),
        })
    }

    /// Settings for a test verifier of the user-service at `base` (default issuer and
    /// audience). The development key is allowed: tests sign with it.
    pub fn for_tests(base: &Url) -> Self {
        Self {
            jwks_url: jwks_url(base),
            issuer: DEFAULT_JWT_ISSUER.to_owned(),
            audience: DEFAULT_JWT_AUDIENCE.to_owned(),
            allow_dev_key: true,
            jwks: JwksPolicy::default(),
        }
    }
}

/// The JWKS address of a user-service reachable at `base`.
pub fn jwks_url(base: &Url) -> Url {
    let mut url = base.clone();
    url.set_path("/.well-known/jwks.json");
    url
}

/// Settings of a client for one downstream service.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub base_url: Url,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts for idempotent requests (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubled each retry, with full jitter.
    pub initial_backoff: Duration,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit fails fast before letting one request probe.
    pub open_duration: Duration,
}

impl ClientSettings {
    /// Reads `<PREFIX>_TIMEOUT_MS` (default 2000), `<PREFIX>_MAX_ATTEMPTS` (3),
    /// `<PREFIX>_BACKOFF_MS` (100), `<PREFIX>_BREAKER_THRESHOLD` (5) and
    /// `<PREFIX>_BREAKER_OPEN_SECS` (10) for the service whose URL is in `url_key`.
    pub fn from_source(
        source: &ConfigSource,
        url_key: &str,
        default_url: &str,
        prefix: &str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            base_url: source.url(url_key, default_url)?,
            timeout: source.millis(&format!("{prefix}_TIMEOUT_MS"), 2000)?,
            max_attempts: source.parse(&format!("{prefix}_MAX_ATTEMPTS"), 3)?.max(1),
            initial_backoff: source.millis(&format!("{prefix}_BACKOFF_MS"), 100)?,
            failure_threshold: source
                .parse(&format!("{prefix}_BREAKER_THRESHOLD"), 5)?
                .max(1),
            open_duration: source.seconds(&format!("{prefix}_BREAKER_OPEN_SECS"), 10)?,
        })
    }

    pub fn for_tests(base_url: Url) -> Self {
        Self {
            base_url,
            timeout: Duration::from_millis(1000),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            failure_threshold: 5,
            open_duration: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_variables_are_unset_or_empty() {
        let source = ConfigSource::from_pairs([("HTTP_BODY_LIMIT_BYTES", " ")]);
        let http = HttpSettings::from_source(&source, "0.0.0.0:9000").expect("valid");
        assert_eq!(http.addr, "0.0.0.0:9000");
        assert_eq!(http.body_limit_bytes, 64 * 1024);
    }

    #[test]
    fn invalid_numbers_name_the_variable() {
        let source = ConfigSource::from_pairs([("HTTP_BODY_LIMIT_BYTES", "lots")]);
        let err = HttpSettings::from_source(&source, "0.0.0.0:9000").expect_err("invalid");
        assert!(err.to_string().contains("HTTP_BODY_LIMIT_BYTES"), "{err}");
    }

    #[test]
    fn jwks_url_is_derived_from_the_user_service_url() {
        let source = ConfigSource::from_pairs([("USER_SERVICE_URL", "http://users:8081/base")]);
        let auth = AuthSettings::from_source(&source).expect("valid");
        assert_eq!(
            auth.jwks_url.as_str(),
            "http://users:8081/.well-known/jwks.json"
        );
        assert_eq!(auth.issuer, DEFAULT_JWT_ISSUER);
    }

    #[test]
    fn a_config_file_is_overridden_by_the_environment_map() {
        let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("service.env");
        std::fs::write(
            &path,
            "# comment\nHTTP_ADDR=1.2.3.4:5\nRATE_LIMIT_BURST=\"7\"\n",
        )
        .expect("write");
        let values = read_file(&path).expect("parsed");
        assert_eq!(
            values.get("HTTP_ADDR").map(String::as_str),
            Some("1.2.3.4:5")
        );
        assert_eq!(
            values.get("RATE_LIMIT_BURST").map(String::as_str),
            Some("7")
        );
        std::fs::write(&path, "no equals sign\n").expect("write");
        assert!(read_file(&path).is_err());
    }

    #[test]
    fn secrets_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("secret");
        std::fs::write(&path, "s3cret").expect("write");
        let source = ConfigSource::from_pairs([("KEY_FILE", path.display().to_string())]);
        let secret = source.secret_or_file("KEY").expect("readable");
        use secrecy::ExposeSecret;
        assert_eq!(secret.as_ref().map(|s| s.expose_secret()), Some("s3cret"));
        let missing = ConfigSource::from_pairs([("KEY_FILE", "/nonexistent/secret")]);
        assert!(missing.secret_or_file("KEY").is_err());
    }
}
