//! The PostgreSQL pool every service owns, and its migrations.
//!
//! TLS is chosen by `DATABASE_URL` alone, libpq-style: `sslmode` (`disable`, `prefer` —
//! sqlx's default —, `require`, `verify-ca`, `verify-full`) and `sslrootcert` (the CA
//! file; without it, the Mozilla roots compiled into the binary), plus `sslcert`/`sslkey`
//! for a client certificate. Production uses `sslmode=verify-full`: the only mode that
//! checks both that the server's certificate chains to the CA and that it names the host
//! the URL connects to; `require` encrypts but accepts any certificate, so anyone on the
//! path can stand in for the database.

use std::time::Instant;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseSettings;

/// The kit's own tables (outbox, inbox), created in every service's database and tracked
/// in `_kit_migrations`, apart from the service's migrations.
static KIT_MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects (retrying while the database is still starting, up to the configured connect
/// timeout) and applies the kit's and then the service's embedded migrations. sqlx takes
/// a PostgreSQL advisory lock around each migration run, so several replicas starting at
/// once apply each migration exactly once and the others wait.
pub async fn connect_and_migrate(
    settings: &DatabaseSettings,
    migrator: &Migrator,
) -> anyhow::Result<PgPool> {
    let options = connect_options(settings)?;
    let pool_options = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout);
    let started = Instant::now();
    let mut delay = std::time::Duration::from_millis(200);
    let pool = loop {
        match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => break pool,
            Err(error) if started.elapsed() < settings.connect_timeout => {
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(error) => {
                return Err(error).context(format!(
                    "cannot connect to PostgreSQL at {}:{} (database {:?})",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or("<default>")
                ));
            }
        }
    };
    let mut kit = Migrator::with_migrations(KIT_MIGRATOR.iter().cloned().collect());
    kit.dangerous_set_table_name("_kit_migrations");
    kit.run(&pool)
        .await
        .context("applying the service kit's migrations failed")?;
    migrator
        .run(&pool)
        .await
        .context("applying database migrations failed")?;
    Ok(pool)
}

/// Connects without applying migrations: for the operator's commands, which must not
/// change the schema of a database that a newer or older version of the service serves.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let options = connect_options(settings)?;
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL (DATABASE_URL)")
}

/// Parses `DATABASE_URL` and checks that the TLS files it names can be read, so that a
/// wrong path stops the start-up at once, naming the parameter, rather than after the
/// connect timeout with a TLS error.
fn connect_options(settings: &DatabaseSettings) -> anyhow::Result<PgConnectOptions> {
    let url = settings.url.expose_secret();
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    if let Ok(url) = url::Url::parse(url) {
        const FILE_PARAMETERS: [&str; 7] = [
            "sslrootcert",
            "ssl-root-cert",
            "ssl-ca",
            "sslcert",
            "ssl-cert",
            "sslkey",
            "ssl-key",
        ];
        for (parameter, value) in url.query_pairs() {
            // sqlx also takes the PEM text itself instead of a path.
            if FILE_PARAMETERS.contains(&&*parameter) && !value.starts_with("-----BEGIN") {
                std::fs::File::open(&*value).with_context(|| {
                    format!("DATABASE_URL names {parameter}={value}, which cannot be read")
                })?;
            }
        }
    }
    Ok(options)
}

/// Whether `error` is a unique-constraint violation of the named constraint (or of any
/// constraint when `constraint` is `None`).
pub fn is_unique_violation(error: &sqlx::Error, constraint: Option<&str>) -> bool {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            constraint.is_none() || db.constraint() == constraint
        }
        _ => false,
    }
}

/// Whether `error` is a check-constraint violation of the named constraint.
pub fn is_check_violation(error: &sqlx::Error, constraint: &str) -> bool {
    match error {
        sqlx::Error::Database(db) if db.is_check_violation() => db.constraint() == Some(constraint),
        _ => false,
    }
}

/// `shop_db_pool_connections{state="in_use"|"idle"}` and `shop_db_pool_max_connections`,
/// read from the pool at every scrape.
pub fn register_pool_metrics(
    pool: &PgPool,
    max_connections: u32,
    registry: &prometheus::Registry,
) -> prometheus::Result<()> {
    let connections = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "shop_db_pool_connections",
            "Connections of the database pool, by state (in_use, idle)",
        ),
        &["state"],
    )?;
    let max = prometheus::IntGauge::new(
        "shop_db_pool_max_connections",
        "The most connections the database pool opens (DATABASE_MAX_CONNECTIONS)",
    )?;
    max.set(i64::from(max_connections));
    registry.register(Box::new(PoolCollector {
        pool: pool.clone(),
        connections,
    }))?;
    registry.register(Box::new(max))
}

struct PoolCollector {
    pool: PgPool,
    connections: prometheus::IntGaugeVec,
}

impl prometheus::core::Collector for PoolCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.connections.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        self.connections.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_file_named_in_the_url_that_cannot_be_read_is_refused_before_connecting() {
        let settings = DatabaseSettings::for_tests(
            "postgres://app:s3cret@db.internal/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
                .to_owned()
                .into(),
        );
        let message = format!(
            "{:#}",
            connect_options(&settings).expect_err("a missing CA file")
        );
        assert!(
            message.contains("sslrootcert=/nonexistent/ca.pem"),
            "{message}"
        );
        assert!(
            !message.contains("s3cret"),
            "the password stays out: {message}"
        );
    }

    #[test]
    fn a_url_without_tls_files_parses_as_before() {
        let settings = DatabaseSettings::for_tests(
            "postgres://app@db.internal/app?sslmode=verify-full"
                .to_owned()
                .into(),
        );
        let options = connect_options(&settings).expect("valid options");
        assert_eq!(options.get_host(), "db.internal");
    }
}
