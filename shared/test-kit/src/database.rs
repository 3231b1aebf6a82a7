//! One fresh database per test, so tests run in parallel and never see each other's rows.

use std::str::FromStr;

use secrecy::SecretString;
use sqlx::{Connection, Executor, PgConnection, postgres::PgConnectOptions};
use tokio::sync::OnceCell;

const HOW_TO: &str = "Tests need PostgreSQL. Set TEST_DATABASE_URL (or DATABASE_URL) to a server \
    where the user may create databases, e.g. \
    TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres, or start a Docker engine \
    so that the tests can run PostgreSQL in a container.";

/// A database created for one test and dropped when the value is dropped.
pub struct TestDatabase {
    name: String,
    url: SecretString,
    server: PgConnectOptions,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server_url = server_url().await;
        let server = PgConnectOptions::from_str(server_url.as_str())
            .unwrap_or_else(|e| panic!("the test PostgreSQL URL is invalid: {e}"));
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = PgConnection::connect_with(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}. {HOW_TO}"));
        // The name is generated above, never user input.
        let create = sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#));
        connection
            .execute(sqlx::raw_sql(create))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}. {HOW_TO}"));
        let mut url = server_url;
        url.set_path(&name);
        Self {
            name,
            url: SecretString::from(url.to_string()),
            server,
        }
    }

    /// The connection URL of this test's database.
    pub fn url(&self) -> SecretString {
        self.url.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside a runtime that is shutting down, so the
        // clean-up runs on its own thread with its own small runtime.
        let server = self.server.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut connection) = PgConnection::connect_with(&server).await {
                    let drop = sqlx::AssertSqlSafe(format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    ));
                    let _ = connection.execute(sqlx::raw_sql(drop)).await;
                }
            });
        })
        .join();
    }
}

async fn server_url() -> url::Url {
    let raw = match std::env::var("TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")) {
        Ok(raw) => raw,
        Err(_) => container_url().await,
    };
    url::Url::parse(&raw).unwrap_or_else(|e| panic!("TEST_DATABASE_URL is not a URL: {e}"))
}

/// Starts PostgreSQL in a container once per test binary, when Docker is available.
async fn container_url() -> String {
    use testcontainers_modules::{postgres::Postgres, testcontainers::runners::AsyncRunner};

    static URL: OnceCell<String> = OnceCell::const_new();
    let docker_available = std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists();
    assert!(docker_available, "{HOW_TO}");
    let url = URL
        .get_or_init(|| async {
            let container = Postgres::default()
                .start()
                .await
                .unwrap_or_else(|e| panic!("cannot start PostgreSQL in Docker: {e}. {HOW_TO}"));
            let port = container
                .get_host_port_ipv4(5432)
                .await
                .unwrap_or_else(|e| panic!("cannot read the container's port: {e}"));
            // The container lives as long as the test binary.
            std::mem::forget(container);
            format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres")
        })
        .await;
    url.clone()
}
