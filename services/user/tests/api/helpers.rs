use service_kit::config::ConfigSource;
use shop_model::api::{TokenResponse, User};
use test_kit::{ApiClient, TestBroker, TestDatabase, TestResponse};
use user_service::{Application, Settings};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";

pub struct TestApp {
    /// Checked when the test ends: the outbox published, nothing dead-lettered unless the
    /// test expects it. First, so that it runs before the database and broker go.
    pub settled: test_kit::SettledCheck,
    /// The application, stopped when the test ends, before the broker and the database.
    _running: test_kit::BackgroundApp,
    pub api: ApiClient,
    pub database: TestDatabase,
    pub broker: TestBroker,
}

/// Starts user-service as `main` would, from configuration values, with only the database,
/// the port and `JWT_ALLOW_DEV_KEY=true` (tests sign with the development key) differing
/// from the documented defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    test_kit::init_test_logging();
    let database = TestDatabase::create().await;
    let broker = TestBroker::start();
    let running = start(settings(&database, &broker, extra)).await;
    let port = running.port();
    let api = ApiClient::new(port);
    let settled = test_kit::SettledCheck::new(database.url(), port);
    TestApp {
        settled,
        _running: running,
        api,
        database,
        broker,
    }
}

/// The settings of a test app on `database` and `broker`, as `main` reads them from
/// configuration values; `extra` adds or overrides values.
fn settings(database: &TestDatabase, broker: &TestBroker, extra: &[(&str, &str)]) -> Settings {
    let url = secrecy::ExposeSecret::expose_secret(&database.url()).to_owned();
    let mut values = vec![
        ("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS".to_owned(), "2".to_owned()),
        ("DATABASE_URL".to_owned(), url),
        (
            "KAFKA_BROKERS".to_owned(),
            broker.bootstrap_servers().to_owned(),
        ),
        ("JWT_ALLOW_DEV_KEY".to_owned(), "true".to_owned()),
        ("ADMIN_EMAIL".to_owned(), ADMIN_EMAIL.to_owned()),
        ("ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
    ];
    values.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Settings::from_source(&ConfigSource::from_pairs(values)).expect("valid settings")
}

async fn start(settings: Settings) -> test_kit::BackgroundApp {
    test_kit::background_app(
        move || Application::build(settings),
        Application::port,
        Application::run_until_stopped,
    )
    .await
}

impl TestApp {
    /// user-service started once more on this test's database and broker, as another
    /// replica, or a restart with other settings, would be. It stops when dropped.
    pub async fn start_another(&self, extra: &[(&str, &str)]) -> test_kit::BackgroundApp {
        start(settings(&self.database, &self.broker, extra)).await
    }

    /// Why user-service, started once more on this test's database and broker with
    /// `extra`, refuses to start (the whole cause chain). Fails the test if it starts.
    pub async fn start_error(&self, extra: &[(&str, &str)]) -> String {
        let settings = settings(&self.database, &self.broker, extra);
        // On a runtime of its own, shut down before this returns: whatever the failed
        // start had begun (the relay, the broker client) ends with it.
        let outcome = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let error = runtime
                .block_on(Application::build(settings))
                .err()
                .map(|e| format!("{e:#}"));
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            error
        })
        .await
        .expect("the start-up thread");
        outcome.expect("user-service started, but it should have refused")
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> TestResponse {
        self.api
            .post("/api/v1/users")
            .json(&serde_json::json!({ "email": email, "password": password, "name": name }))
            .send()
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.api
            .post("/api/v1/auth/token")
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self.login(email, password).await;
        response.assert_status(200);
        response.json::<TokenResponse>().access_token
    }

    /// Registers a customer with a unique e-mail and logs in.
    pub async fn customer(&self) -> (User, String) {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let response = self.register(&email, "password123", "Test Customer").await;
        response.assert_status(201);
        let token = self.token(&email, "password123").await;
        (response.json(), token)
    }

    /// A connection of the test's own to the service's database.
    pub async fn connect(&self) -> sqlx::PgConnection {
        use secrecy::ExposeSecret;
        use sqlx::Connection;
        sqlx::PgConnection::connect(self.database.url().expose_secret())
            .await
            .expect("connect")
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }
}
