//! The end-to-end harness: starts the four real service binaries as processes against
//! real PostgreSQL databases (one per service, fresh per test) and a real broker, and
//! drives them only over HTTP, as a client would.
//!
//! Broker per mode:
//! - Kafka: an in-process Kafka-protocol broker (`test_kit::TestBroker`), or the external
//!   broker named by `TEST_KAFKA_BROKERS`;
//! - RabbitMQ: the server at `TEST_AMQP_URL` (default the local one), with a virtual host
//!   of its own per test, reached through a proxy the test can cut to simulate an outage.
//!
//! The services reach PostgreSQL through a proxy of their own too
//! ([`Stack::set_database_up`]); the test's own connections (creating and dropping the
//! databases, [`Stack::db`], the consistency oracle) go to the server directly.
//!
//! Services log to `target/e2e-logs/<test>/<service>.log`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod consistency;
mod load;
mod process;

use std::{path::PathBuf, sync::Mutex, time::Duration};

use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use shop_model::{
    ProductId,
    api::{Order, OrderStatus, Page, Payment, Product, TokenResponse, User, Wallet},
};
use test_kit::{ApiClient, TestBroker, TestDatabase, TestResponse, Vhost};

pub use consistency::Consistency;
pub use load::{Attempt, Load, LoadPlan, LoadReport, Outcome};
pub use process::ServiceProcess;
pub use test_kit::ChaosProxy;

/// Runs each named scenario (an `async fn(Mode)` of the calling test file) once per
/// broker, as `kafka::<name>` and `rabbitmq::<name>`.
#[macro_export]
macro_rules! both_brokers {
    ($($name:ident),* $(,)?) => {
        mod kafka {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::$name($crate::Mode::Kafka).await;
            })*
        }
        mod rabbitmq {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::$name($crate::Mode::RabbitMq).await;
            })*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Kafka,
    RabbitMq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    User,
    Inventory,
    Payment,
    Order,
}

impl Service {
    pub const ALL: [Service; 4] = [Self::User, Self::Inventory, Self::Payment, Self::Order];

    pub fn binary(self) -> &'static str {
        match self {
            Self::User => "user-service",
            Self::Inventory => "inventory-service",
            Self::Payment => "payment-service",
            Self::Order => "order-service",
        }
    }
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";
pub const INITIAL_CREDIT: i64 = 100_000;
/// How long any saga outcome may take before a test fails.
pub const SAGA_DEADLINE: Duration = Duration::from_secs(60);

/// The broker the services use, seen from the test.
pub enum Broker {
    Kafka {
        local: Option<TestBroker>,
        brokers: String,
    },
    RabbitMq {
        vhost: Vhost,
        proxy: ChaosProxy,
    },
}

/// The four services, their databases and their broker.
pub struct Stack {
    pub mode: Mode,
    pub broker: Broker,
    databases: Vec<(Service, TestDatabase)>,
    /// Between every service and PostgreSQL.
    database_proxy: ChaosProxy,
    /// Every product created through [`Stack::create_product`], with its initial stock,
    /// for the consistency oracle.
    products: Mutex<Vec<(ProductId, i64)>>,
    processes: Vec<(Service, ServiceProcess)>,
    ports: Vec<(Service, u16)>,
    log_dir: PathBuf,
    /// Set for every service process, after the harness's own variables.
    extra_env: Vec<(String, String)>,
    pub admin_token: String,
}

/// A port for a service to listen on, free when this returns.
///
/// The service binds it a moment later, so the port must not be taken in between. Ports
/// the kernel hands out by itself (for `bind` to port 0, and as the local end of every
/// outgoing connection: to PostgreSQL, to the broker, between services) come from the
/// ephemeral range, and the other tests running beside this one take them by the hundred.
/// So the port is picked below that range, where nothing is assigned without asking, and
/// end-to-end tests run one at a time (`.config/nextest.toml`), so no other test picks
/// from it at the same time.
fn free_port() -> u16 {
    const RANGE: std::ops::Range<u16> = 20_000..32_000;
    let span = u32::from(RANGE.end - RANGE.start);
    let start = (uuid::Uuid::new_v4().as_u128() % u128::from(span)) as u32;
    (0..span)
        .map(|i| RANGE.start + ((start + i) % span) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below the ephemeral range")
}

impl Stack {
    pub async fn start(mode: Mode, test: &str) -> Self {
        Self::start_with_env(mode, test, &[]).await
    }

    /// Starts the stack with `extra` variables set for every service (the trace
    /// receiver's endpoint, say).
    pub async fn start_with_env(mode: Mode, test: &str, extra: &[(&str, &str)]) -> Self {
        test_kit::init_test_logging();
        failure::record_panics();
        process::build_binaries();
        let broker = match mode {
            Mode::Kafka => match std::env::var("TEST_KAFKA_BROKERS") {
                Ok(brokers) => Broker::Kafka {
                    local: None,
                    brokers,
                },
                Err(_) => {
                    let local = TestBroker::start();
                    let brokers = local.bootstrap_servers().to_owned();
                    Broker::Kafka {
                        local: Some(local),
                        brokers,
                    }
                }
            },
            Mode::RabbitMq => {
                let vhost = Vhost::create().await;
                let proxy = ChaosProxy::start(vhost.host_port()).await;
                Broker::RabbitMq { vhost, proxy }
            }
        };
        let mut databases = Vec::new();
        for service in Service::ALL {
            databases.push((service, TestDatabase::create().await));
        }
        let database_proxy = ChaosProxy::start(server_address(&databases[0].1)).await;
        let log_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/e2e-logs")
            .join(format!(
                "{test}-{}",
                match mode {
                    Mode::Kafka => "kafka",
                    Mode::RabbitMq => "rabbitmq",
                }
            ));
        let _ = std::fs::remove_dir_all(&log_dir);
        std::fs::create_dir_all(&log_dir).expect("log directory");
        let ports = Service::ALL.iter().map(|s| (*s, free_port())).collect();
        let mut stack = Self {
            mode,
            broker,
            databases,
            database_proxy,
            products: Mutex::new(Vec::new()),
            processes: Vec::new(),
            ports,
            log_dir,
            extra_env: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            admin_token: String::new(),
        };
        for service in Service::ALL {
            stack.spawn(service, stack.port(service), "");
        }
        for service in Service::ALL {
            stack.wait_ready(service, stack.port(service)).await;
        }
        stack.admin_token = stack.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        stack
    }

    /// The last warnings and errors of every service log, and the panic that failed the
    /// test: printed when a test fails, so that a CI log that keeps only the end of a
    /// failing test's output still says what happened. The whole logs stay on disk.
    #[allow(clippy::print_stderr)] // the test's output is where the report belongs
    fn print_failure_report(&self, exited: &[(String, std::process::ExitStatus)]) {
        const LINES: usize = 8;
        const WIDTH: usize = 300;
        let mut logs: Vec<_> = std::fs::read_dir(&self.log_dir)
            .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        eprintln!(
            "\n=== end-to-end failure report; whole logs in {}",
            self.log_dir.display()
        );
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // Everything but the routine JSON lines: warnings, errors, and whatever the
            // process printed outside the logger (a panic, an exit message).
            let notable: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains(r#""level":"INFO""#) && !l.contains(r#""level":"DEBUG""#))
                .collect();
            let name = log.file_name().map(|n| n.to_string_lossy().into_owned());
            eprintln!(
                "--- {}: {} warnings or errors, the last:",
                name.unwrap_or_default(),
                notable.len()
            );
            for line in &notable[notable.len().saturating_sub(LINES)..] {
                let end = line
                    .char_indices()
                    .nth(WIDTH)
                    .map_or(line.len(), |(i, _)| i);
                eprintln!("{}", &line[..end]);
            }
        }
        for (log, status) in exited {
            eprintln!("--- {log}: the process had exited before the test ended ({status})");
        }
        for message in failure::messages() {
            eprintln!("=== the test failed: {message}");
        }
    }

    pub fn port(&self, service: Service) -> u16 {
        self.ports
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, p)| *p)
            .expect("port")
    }

    /// The URL of a service's database on the server itself, as the test connects.
    pub fn database_url(&self, service: Service) -> String {
        self.databases
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, db)| db.url().expose_secret().to_owned())
            .expect("database")
    }

    /// The URL of a service's database through the proxy, as the service connects.
    fn service_database_url(&self, service: Service) -> String {
        let mut url = url::Url::parse(&self.database_url(service)).expect("a database URL");
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(self.database_proxy.port()))
            .expect("a port");
        url.to_string()
    }

    fn environment(&self, service: Service, port: u16) -> Vec<(String, String)> {
        let mut env = vec![
            ("HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("HTTP_WORKERS", "2".to_owned()),
            ("DATABASE_URL", self.service_database_url(service)),
            ("DATABASE_MAX_CONNECTIONS", "10".to_owned()),
            (
                "USER_SERVICE_URL",
                format!("http://127.0.0.1:{}", self.port(Service::User)),
            ),
            // The tests sign (user-service) and verify with the public development key.
            ("JWT_ALLOW_DEV_KEY", "true".to_owned()),
            (
                "INVENTORY_SERVICE_URL",
                format!("http://127.0.0.1:{}", self.port(Service::Inventory)),
            ),
            ("RATE_LIMIT_PER_SECOND", "0".to_owned()),
            ("OUTBOX_POLL_INTERVAL_MS", "250".to_owned()),
            ("CONSUMER_MAX_ATTEMPTS", "3".to_owned()),
            ("CONSUMER_RETRY_BACKOFF_MS", "50".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
            ("ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("WALLET_INITIAL_CREDIT_CENTS", INITIAL_CREDIT.to_string()),
        ];
        env.extend(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.clone())));
        match &self.broker {
            Broker::Kafka { brokers, local } => {
                env.push(("EVENT_BUS", "kafka".to_owned()));
                env.push(("KAFKA_BROKERS", brokers.clone()));
                if local.is_some() {
                    // The mock cluster holds every empty fetch for this long.
                    env.push(("KAFKA_FETCH_WAIT_MAX_MS", "10".to_owned()));
                }
                // Static membership, as the Kubernetes manifests set it from the pod name:
                // a process restarted on its port is the same member again; a replica on
                // another port is another member.
                env.push((
                    "KAFKA_GROUP_INSTANCE_ID",
                    format!("{}-{port}", service.binary()),
                ));
            }
            Broker::RabbitMq { vhost, proxy } => {
                env.push(("EVENT_BUS", "rabbitmq".to_owned()));
                env.push(("AMQP_URL", vhost.url_via(proxy.port())));
            }
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn spawn(&mut self, service: Service, port: u16, suffix: &str) {
        let env = self.environment(service, port);
        self.spawn_with(service, suffix, &env);
    }

    fn spawn_with(&mut self, service: Service, suffix: &str, env: &[(String, String)]) {
        let log = self
            .log_dir
            .join(format!("{}{suffix}.log", service.binary()));
        let process = ServiceProcess::spawn(service.binary(), env, &log);
        self.processes.push((service, process));
    }

    async fn wait_ready(&mut self, service: Service, port: u16) {
        let client = ApiClient::new(port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, process)) = self.processes.iter_mut().rev().find(|(s, _)| *s == service)
            {
                process.assert_running();
            }
            let ready = reqwest::get(format!("{}/health/ready", client.base_url()))
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready in 60 s",
                service.binary()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills every process of `service` with SIGKILL: no graceful shutdown, no flushing.
    pub fn kill(&mut self, service: Service) {
        for (s, process) in &mut self.processes {
            if *s == service {
                process.kill();
            }
        }
        self.processes.retain(|(s, _)| *s != service);
    }

    /// Sends SIGTERM to every process of `service`; returns their exit statuses and logs.
    pub fn terminate(&mut self, service: Service) -> Vec<(std::process::ExitStatus, String)> {
        let mut stopped = Vec::new();
        for (s, process) in &mut self.processes {
            if *s == service {
                stopped.push((process.terminate(), process.log()));
            }
        }
        self.processes.retain(|(s, _)| *s != service);
        stopped
    }

    /// Starts `service` again on its port, and waits until it is ready.
    pub async fn restart(&mut self, service: Service) {
        let port = self.port(service);
        self.spawn(service, port, "-restarted");
        self.wait_ready(service, port).await;
    }

    /// Starts another replica of `service` on the same database; returns its API.
    pub async fn add_replica(&mut self, service: Service) -> ApiClient {
        let port = free_port();
        self.spawn(service, port, "-replica");
        self.wait_ready(service, port).await;
        ApiClient::new(port)
    }

    /// Starts another replica of `service` whose environment differs by `changes` (a
    /// value to set, or `None` to leave the variable out); returns its API and its log.
    pub async fn add_replica_with(
        &mut self,
        service: Service,
        changes: &[(&str, Option<&str>)],
    ) -> (ApiClient, PathBuf) {
        let port = free_port();
        let mut env: Vec<(String, String)> = self
            .environment(service, port)
            .into_iter()
            .filter(|(key, _)| !changes.iter().any(|(changed, _)| changed == key))
            .collect();
        env.extend(
            changes
                .iter()
                .filter_map(|(key, value)| Some(((*key).to_owned(), (*value)?.to_owned()))),
        );
        self.spawn_with(service, "-replica", &env);
        self.wait_ready(service, port).await;
        let log = self.processes.last().map(|(_, p)| p.log_path().to_owned());
        (ApiClient::new(port), log.expect("the replica's log"))
    }

    /// The log of the first process of `service` so far (JSON lines).
    pub fn log(&self, service: Service) -> String {
        self.processes
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, process)| process.log())
            .unwrap_or_default()
    }

    /// Makes the broker unreachable (`false`) or reachable again (`true`).
    pub async fn set_broker_up(&self, up: bool) {
        match &self.broker {
            Broker::Kafka {
                local: Some(broker),
                ..
            } => broker.set_up(up),
            Broker::Kafka { local: None, .. } => panic!("cannot stop an external Kafka broker"),
            Broker::RabbitMq { proxy, .. } => proxy.set_open(up).await,
        }
    }

    /// Makes PostgreSQL unreachable for every service (`false`: open connections are cut,
    /// new ones refused), or reachable again (`true`). The test's own connections stay.
    pub async fn set_database_up(&self, up: bool) {
        self.database_proxy.set_open(up).await;
    }

    /// A client of the broker, as the services have.
    pub async fn bus(&self) -> service_kit::events::EventBus {
        let pairs: Vec<(String, String)> = self
            .environment(Service::User, 0)
            .into_iter()
            .filter(|(k, _)| ["EVENT_BUS", "KAFKA_BROKERS", "AMQP_URL"].contains(&k.as_str()))
            .collect();
        let settings = service_kit::events::EventBusSettings::from_source(
            &service_kit::config::ConfigSource::from_pairs(pairs),
        )
        .expect("bus settings");
        service_kit::events::EventBus::connect(&settings, "e2e-test")
            .await
            .expect("bus")
    }

    pub fn api(&self, service: Service) -> ApiClient {
        ApiClient::new(self.port(service))
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self
            .api(Service::User)
            .post("/api/v1/auth/token")
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await;
        response.assert_status(200);
        response.json::<TokenResponse>().access_token
    }

    /// Registers a customer, logs in, and waits until payment-service opened the wallet.
    pub async fn customer(&self) -> Customer {
        let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
        let response = self
            .api(Service::User)
            .post("/api/v1/users")
            .json(
                &serde_json::json!({"email": email, "password": "password123", "name": "Customer"}),
            )
            .send()
            .await;
        response.assert_status(201);
        let user: User = response.json();
        let token = self.token(&email, "password123").await;
        let customer = Customer { user, token };
        let balance = self.wait_for_wallet(&customer).await;
        assert_eq!(balance, INITIAL_CREDIT);
        customer
    }

    async fn wait_for_wallet(&self, customer: &Customer) -> i64 {
        test_kit::eventually(SAGA_DEADLINE, "the wallet to be opened", || async {
            let response = self
                .api(Service::Payment)
                .get("/api/v1/wallets/me")
                .bearer(&customer.token)
                .send()
                .await;
            (response.status == 200).then(|| response.json::<Wallet>().balance_cents)
        })
        .await
    }

    pub async fn balance(&self, customer: &Customer) -> i64 {
        let response = self
            .api(Service::Payment)
            .get("/api/v1/wallets/me")
            .bearer(&customer.token)
            .send()
            .await;
        response.assert_status(200);
        response.json::<Wallet>().balance_cents
    }

    pub async fn create_product(&self, price_cents: i64, stock: i64) -> Product {
        let response = self
            .api(Service::Inventory)
            .post("/api/v1/products")
            .bearer(&self.admin_token)
            .json(&serde_json::json!({
                "sku": format!("E2E-{}", uuid::Uuid::new_v4().simple()),
                "name": "E2E product", "description": "", "price_cents": price_cents, "stock": stock
            }))
            .send()
            .await;
        response.assert_status(201);
        let product: Product = response.json();
        self.products
            .lock()
            .expect("the products")
            .push((product.id, stock));
        product
    }

    pub async fn product(&self, product: &Product) -> Product {
        let response = self
            .api(Service::Inventory)
            .get(&format!("/api/v1/products/{}", product.id))
            .send()
            .await;
        response.assert_status(200);
        response.json()
    }

    pub async fn place_order(&self, customer: &Customer, lines: &[(&Product, i64)]) -> Order {
        self.place_order_via(&self.api(Service::Order), customer, lines)
            .await
    }

    pub async fn place_order_via(
        &self,
        api: &ApiClient,
        customer: &Customer,
        lines: &[(&Product, i64)],
    ) -> Order {
        let items: Vec<_> = lines
            .iter()
            .map(|(p, q)| serde_json::json!({"product_id": p.id, "quantity": q}))
            .collect();
        let response = api
            .post("/api/v1/orders")
            .bearer(&customer.token)
            .json(&serde_json::json!({ "items": items }))
            .send()
            .await;
        response.assert_status(202);
        response.json()
    }

    pub async fn order(&self, customer: &Customer, order: &Order) -> Order {
        get_json(
            self.api(Service::Order)
                .get(&format!("/api/v1/orders/{}", order.id))
                .bearer(&customer.token)
                .send()
                .await,
        )
    }

    /// Waits until the order leaves `pending`.
    pub async fn settled(&self, customer: &Customer, order: &Order) -> Order {
        test_kit::eventually(SAGA_DEADLINE, "the order to settle", || async {
            let current = self.order(customer, order).await;
            (current.status != OrderStatus::Pending).then_some(current)
        })
        .await
    }

    /// Waits until the order has `status`.
    pub async fn wait_for_status(
        &self,
        customer: &Customer,
        order: &Order,
        status: OrderStatus,
    ) -> Order {
        test_kit::eventually(SAGA_DEADLINE, "the order status", || async {
            let current = self.order(customer, order).await;
            (current.status == status).then_some(current)
        })
        .await
    }

    pub async fn cancel(&self, customer: &Customer, order: &Order) -> Order {
        get_json(
            self.api(Service::Order)
                .post(&format!("/api/v1/orders/{}/cancel", order.id))
                .bearer(&customer.token)
                .send()
                .await,
        )
    }

    /// The payments and refunds of an order (as an admin).
    pub async fn payments(&self, order: &Order) -> Vec<Payment> {
        let page: Page<Payment> = get_json(
            self.api(Service::Payment)
                .get(&format!("/api/v1/payments?order_id={}&limit=100", order.id))
                .bearer(&self.admin_token)
                .send()
                .await,
        );
        page.items
    }

    /// The sum of the samples of metric `name` on `service`'s `/metrics` whose labels
    /// include every pair of `labels`.
    pub async fn metric(&self, service: Service, name: &str, labels: &[(&str, &str)]) -> f64 {
        test_kit::metric(self.api(service).base_url(), name, labels).await
    }

    /// Connects to a service's database, for assertions about its inbox and outbox.
    pub async fn db(&self, service: Service) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.database_url(service))
            .await
            .expect("connect")
    }
}

/// `host:port` of the PostgreSQL server that holds `database`.
fn server_address(database: &TestDatabase) -> String {
    let url = url::Url::parse(database.url().expose_secret()).expect("a database URL");
    format!(
        "{}:{}",
        url.host_str().expect("a database host"),
        url.port().unwrap_or(5432)
    )
}

fn get_json<T: DeserializeOwned>(response: TestResponse) -> T {
    response.assert_status(200);
    response.json()
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Processes that stopped by themselves (or were stopped by someone else) while
        // the test ran, for the failure report.
        let exited: Vec<_> = self
            .processes
            .iter_mut()
            .filter_map(|(_, process)| {
                let status = process.exit_status()?;
                let log = process
                    .log_path()
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                Some((log, status))
            })
            .collect();
        // The services stop before their databases and their broker are removed.
        for (_, process) in &mut self.processes {
            process.kill();
        }
        if std::thread::panicking() {
            self.print_failure_report(&exited);
        }
    }
}

/// Remembers the messages of the panics in this test process, for the failure report.
mod failure {
    use std::sync::{Mutex, Once};

    static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn record_panics() {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let payload = info.payload();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                if let Ok(mut messages) = MESSAGES.lock() {
                    messages.push(format!("{text}{location}"));
                }
                previous(info);
            }));
        });
    }

    pub fn messages() -> Vec<String> {
        MESSAGES.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

pub struct Customer {
    pub user: User,
    pub token: String,
}
