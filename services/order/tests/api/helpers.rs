use secrecy::ExposeSecret;
use service_kit::config::ConfigSource;
use shop_model::{
    ProductId,
    api::{Order, OrderTimeline, Product},
};
use test_kit::{ApiClient, JwksServer, TestBroker, TestDatabase, TestResponse, tokens};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

pub struct TestApp {
    /// Checked when the test ends: the outbox published, nothing dead-lettered unless the
    /// test expects it. First, so that it runs before the database and broker go.
    pub settled: test_kit::SettledCheck,
    /// The same check for the real inventory-service, when there is one.
    _inventory_settled: Option<test_kit::SettledCheck>,
    /// The applications, stopped when the test ends, before the broker and the databases.
    _running: test_kit::BackgroundApp,
    _inventory_running: Option<test_kit::BackgroundApp>,
    pub api: ApiClient,
    /// The real inventory-service, when the test runs against it.
    pub inventory: Option<ApiClient>,
    pub broker: TestBroker,
    /// order-service's database.
    pub database: TestDatabase,
    _jwks: JwksServer,
    _inventory_database: Option<TestDatabase>,
}

/// order-service and a real inventory-service, each with its own database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_inventory_settings(&[]).await
}

/// The same, with `inventory_extra` added to inventory-service's settings.
pub async fn spawn_app_with_inventory_settings(inventory_extra: &[(&str, &str)]) -> TestApp {
    test_kit::init_test_logging();
    let jwks = JwksServer::start().await;
    let broker = TestBroker::start();
    let inventory_db = TestDatabase::create().await;
    let inventory_settings = inventory_service::Settings::from_source(&ConfigSource::from_pairs(
        [
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("HTTP_WORKERS", "2".to_owned()),
            (
                "DATABASE_URL",
                inventory_db.url().expose_secret().to_owned(),
            ),
            ("USER_SERVICE_URL", jwks.base_url().to_string()),
            ("JWT_ALLOW_DEV_KEY", "true".to_owned()),
            ("KAFKA_BROKERS", broker.bootstrap_servers().to_owned()),
        ]
        .into_iter()
        .chain(inventory_extra.iter().map(|(k, v)| (*k, (*v).to_owned()))),
    ))
    .expect("inventory settings");
    let inventory_running = test_kit::background_app(
        move || inventory_service::Application::build(inventory_settings),
        inventory_service::Application::port,
        inventory_service::Application::run_until_stopped,
    )
    .await;
    let inventory_port = inventory_running.port();
    let inventory_url = format!("http://127.0.0.1:{inventory_port}");
    let inventory_settled = test_kit::SettledCheck::new(inventory_db.url(), inventory_port);

    let mut app = spawn_order_service(jwks, broker, &inventory_url, &[]).await;
    app.inventory = Some(ApiClient::with_base_url(inventory_url));
    app._inventory_database = Some(inventory_db);
    app._inventory_settled = Some(inventory_settled);
    app._inventory_running = Some(inventory_running);
    app
}

/// order-service calling whatever answers at `inventory_url` (a wiremock server).
pub async fn spawn_app_with_fake_inventory(inventory_url: &str, extra: &[(&str, &str)]) -> TestApp {
    test_kit::init_test_logging();
    spawn_order_service(
        JwksServer::start().await,
        TestBroker::start(),
        inventory_url,
        extra,
    )
    .await
}

/// order-service alone, pricing from a fake inventory (wiremock) that knows one product,
/// returned with it. No inventory-service consumes its `OrderPlaced`, so a test publishes
/// inventory's answers itself, in the order it needs; the server must live as long as the
/// test.
pub async fn spawn_app_without_inventory_consumer() -> (TestApp, MockServer, ProductId) {
    let inventory = MockServer::start().await;
    let product_id = ProductId::new();
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"id": product_id, "sku": "MUG-001", "name": "Mug", "description": "",
                       "price_cents": 500, "available": 10, "reserved": 0}],
            "next_cursor": null
        })))
        .mount(&inventory)
        .await;
    let app = spawn_app_with_fake_inventory(&inventory.uri(), &[]).await;
    (app, inventory, product_id)
}

async fn spawn_order_service(
    jwks: JwksServer,
    broker: TestBroker,
    inventory_url: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    let database = TestDatabase::create().await;
    let mut values = vec![
        ("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS".to_owned(), "2".to_owned()),
        (
            "DATABASE_URL".to_owned(),
            database.url().expose_secret().to_owned(),
        ),
        ("USER_SERVICE_URL".to_owned(), jwks.base_url().to_string()),
        ("JWT_ALLOW_DEV_KEY".to_owned(), "true".to_owned()),
        ("INVENTORY_SERVICE_URL".to_owned(), inventory_url.to_owned()),
        ("INVENTORY_BACKOFF_MS".to_owned(), "10".to_owned()),
        (
            "KAFKA_BROKERS".to_owned(),
            broker.bootstrap_servers().to_owned(),
        ),
    ];
    values.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = order_service::Settings::from_source(&ConfigSource::from_pairs(values))
        .expect("order settings");
    let running = test_kit::background_app(
        move || order_service::Application::build(settings),
        order_service::Application::port,
        order_service::Application::run_until_stopped,
    )
    .await;
    let port = running.port();
    let api = ApiClient::new(port);
    let settled = test_kit::SettledCheck::new(database.url(), port);
    TestApp {
        settled,
        _running: running,
        api,
        inventory: None,
        broker,
        database,
        _jwks: jwks,
        _inventory_settled: None,
        _inventory_running: None,
        _inventory_database: None,
    }
}

impl TestApp {
    /// Creates a product in the real inventory-service as an admin.
    pub async fn create_product(&self, price_cents: i64, stock: i64) -> Product {
        let inventory = self.inventory.as_ref().expect("a real inventory-service");
        let (_, admin) = tokens::admin();
        let sku = format!("SKU-{}", uuid::Uuid::new_v4().simple());
        let response = inventory
            .post("/api/v1/products")
            .bearer(&admin)
            .json(&serde_json::json!({
                "sku": sku, "name": "Test product", "description": "", "price_cents": price_cents, "stock": stock
            }))
            .send()
            .await;
        response.assert_status(201);
        response.json()
    }

    pub async fn place_order(&self, token: &str, items: &[(String, i64)]) -> TestResponse {
        self.api
            .post("/api/v1/orders")
            .bearer(token)
            .json(&order_body(items))
            .send()
            .await
    }

    pub async fn get_order(&self, token: &str, id: impl std::fmt::Display) -> TestResponse {
        self.api
            .get(&format!("/api/v1/orders/{id}"))
            .bearer(token)
            .send()
            .await
    }

    pub async fn list_orders(&self, token: &str, query: &str) -> TestResponse {
        self.api
            .get(&format!("/api/v1/orders{query}"))
            .bearer(token)
            .send()
            .await
    }

    pub async fn get_timeline(&self, token: &str, id: impl std::fmt::Display) -> TestResponse {
        self.api
            .get(&format!("/api/v1/orders/{id}/timeline"))
            .bearer(token)
            .send()
            .await
    }

    /// The order's timeline, which the caller may read.
    pub async fn timeline(&self, token: &str, id: impl std::fmt::Display) -> OrderTimeline {
        let response = self.get_timeline(token, id).await;
        response.assert_status(200);
        response.json()
    }

    /// Polls the order's timeline until it has `len` entries (events arriving from the
    /// real inventory-service are not awaited otherwise) and returns it.
    pub async fn wait_for_timeline(
        &self,
        token: &str,
        id: impl std::fmt::Display,
        len: usize,
    ) -> OrderTimeline {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let timeline = self.timeline(token, &id).await;
            if timeline.items.len() >= len {
                return timeline;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the timeline of {id} has {} entries after 30 s, not {len}",
                timeline.items.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Places an order for one unit of a new product and returns it.
    pub async fn placed_order(&self, token: &str) -> Order {
        let product = self.create_product(500, 10).await;
        let response = self
            .place_order(token, &[(product.id.to_string(), 1)])
            .await;
        response.assert_status(202);
        response.json()
    }
}

pub fn order_body(items: &[(String, i64)]) -> serde_json::Value {
    serde_json::json!({
        "items": items
            .iter()
            .map(|(id, quantity)| serde_json::json!({"product_id": id, "quantity": quantity}))
            .collect::<Vec<_>>()
    })
}

impl TestApp {
    /// Publishes `event` to the broker as another service would; returns its event id.
    pub async fn publish<E: shop_model::events::Event>(&self, event: &E) -> uuid::Uuid {
        self.publish_from("/test", event).await
    }

    /// Publishes `event` with the CloudEvents `source` `source` (e.g. `/payment-service`);
    /// returns its event id.
    pub async fn publish_from<E: shop_model::events::Event>(
        &self,
        source: &str,
        event: &E,
    ) -> uuid::Uuid {
        let envelope = shop_model::events::CloudEvent::new(source, event);
        let message = service_kit::events::Message::from_event(&envelope, event).expect("encodes");
        self.broker
            .bus()
            .await
            .publish(&message)
            .await
            .expect("published");
        uuid::Uuid::parse_str(&envelope.id).expect("uuid")
    }

    pub async fn db(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(self.database.url().expose_secret())
            .await
            .expect("connect")
    }

    /// Waits until order-service's consumer has applied (or skipped as a duplicate) the
    /// event `id`.
    pub async fn wait_until_processed(&self, id: uuid::Uuid) {
        let mut db = self.db().await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let seen: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)")
                    .bind(id)
                    .fetch_one(&mut db)
                    .await
                    .expect("inbox query");
            if seen {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {id} not processed in 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn outbox_count(&self, event_type: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(&mut self.db().await)
            .await
            .expect("count")
    }
}

/// The `PaymentSucceeded` payment-service publishes for `order`.
pub fn paid(order: &Order) -> shop_model::events::PaymentSucceeded {
    shop_model::events::PaymentSucceeded {
        order_id: order.id,
        user_id: order.user_id,
        payment_id: shop_model::PaymentId::new(),
        amount_cents: order.total_cents,
    }
}

/// The `PaymentFailed` payment-service publishes for `order`, with `reason`.
pub fn payment_failed(order: &Order, reason: &str) -> shop_model::events::PaymentFailed {
    shop_model::events::PaymentFailed {
        order_id: order.id,
        user_id: order.user_id,
        reason: reason.to_owned(),
    }
}

impl TestApp {
    /// Cancels `order` as `token`'s holder and checks the answer.
    pub async fn cancel(&self, token: &str, order: &Order) {
        self.api
            .post(&format!("/api/v1/orders/{}/cancel", order.id))
            .bearer(token)
            .send()
            .await
            .assert_status(200);
    }
}
