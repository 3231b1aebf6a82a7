use inventory_service::{Application, InventorySaga, Settings};
use secrecy::ExposeSecret;
use service_kit::{
    config::ConfigSource,
    events::{
        IncomingEvent, Message,
        consumer::{EventHandler, HandlerError},
    },
};
use shop_model::{
    OrderId, ProductId, UserId,
    api::Product,
    events::{CloudEvent, Event, OrderLine, OrderPlaced, StockReserved},
};
use sqlx::{Connection, PgConnection};
use test_kit::{ApiClient, JwksServer, TestBroker, TestDatabase, TestResponse, tokens};

pub struct TestApp {
    /// Checked when the test ends: the outbox published, nothing dead-lettered unless the
    /// test expects it. First, so that it runs before the database and broker go.
    _settled: test_kit::SettledCheck,
    /// The application, stopped when the test ends, before the broker and the database.
    _running: test_kit::BackgroundApp,
    pub api: ApiClient,
    pub database: TestDatabase,
    /// The Kafka broker the application publishes to and consumes from.
    pub broker: TestBroker,
    /// Stands in for user-service; kept alive for as long as the application verifies tokens.
    _jwks: JwksServer,
}

/// Starts inventory-service as `main` would, from configuration values, with only the
/// database, the broker, the port and the user-service URL differing from the documented
/// defaults.
pub async fn spawn_app() -> TestApp {
    test_kit::init_test_logging();
    let database = TestDatabase::create().await;
    let broker = TestBroker::start();
    let jwks = JwksServer::start().await;
    let values = [
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("DATABASE_URL", database.url().expose_secret().to_owned()),
        ("KAFKA_BROKERS", broker.bootstrap_servers().to_owned()),
        ("USER_SERVICE_URL", jwks.base_url().to_string()),
        ("JWT_ALLOW_DEV_KEY", "true".to_owned()),
    ];
    let settings =
        Settings::from_source(&ConfigSource::from_pairs(values)).expect("valid settings");
    let running = test_kit::background_app(
        move || Application::build(settings),
        Application::port,
        Application::run_until_stopped,
    )
    .await;
    let port = running.port();
    let api = ApiClient::new(port);
    let settled = test_kit::SettledCheck::new(database.url(), port);
    TestApp {
        _settled: settled,
        _running: running,
        api,
        database,
        broker,
        _jwks: jwks,
    }
}

pub fn admin_token() -> String {
    tokens::admin().1
}

pub fn customer_token() -> String {
    tokens::customer().1
}

/// A valid body for `POST /api/v1/products`.
pub fn new_product(sku: &str) -> serde_json::Value {
    serde_json::json!({
        "sku": sku,
        "name": "Enamel mug",
        "description": "Survives the dishwasher.",
        "price_cents": 1250,
        "stock": 10,
    })
}

impl TestApp {
    pub async fn post_product(&self, body: &serde_json::Value, token: &str) -> TestResponse {
        self.api
            .post("/api/v1/products")
            .bearer(token)
            .json(body)
            .send()
            .await
    }

    /// Creates a product as an admin.
    pub async fn create_product(&self, sku: &str, stock: i64) -> Product {
        let mut body = new_product(sku);
        body["stock"] = stock.into();
        let response = self.post_product(&body, &admin_token()).await;
        response.assert_status(201);
        response.json()
    }

    pub async fn get_product(&self, id: ProductId) -> TestResponse {
        self.api.get(&format!("/api/v1/products/{id}")).send().await
    }

    pub async fn adjust_stock(&self, id: ProductId, delta: i64, token: &str) -> TestResponse {
        self.api
            .post(&format!("/api/v1/products/{id}/stock"))
            .bearer(token)
            .json(&serde_json::json!({ "delta": delta }))
            .send()
            .await
    }

    /// A connection to the application's database, to arrange what the API cannot.
    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect(self.database.url().expose_secret())
            .await
            .expect("connect to the test database")
    }

    /// Holds `units` of a product for a new order, the way `OrderPlaced` does.
    pub async fn reserve(&self, id: ProductId, units: i32) {
        let placed = order_placed(&[(id, units)]);
        self.handle(&placed).await.expect("handled");
        let reserved = self.outbox::<StockReserved>().await;
        assert!(
            reserved.iter().any(|e| e.order_id == placed.order_id),
            "{units} units of {id} could not be reserved"
        );
    }
}

/// An order of `quantity` units of each product, at 100 cents a unit.
pub fn order_placed(lines: &[(ProductId, i32)]) -> OrderPlaced {
    let items: Vec<OrderLine> = lines
        .iter()
        .map(|&(product_id, quantity)| OrderLine {
            product_id,
            quantity,
            unit_price_cents: 100,
        })
        .collect();
    OrderPlaced {
        order_id: OrderId::new(),
        user_id: UserId::new(),
        total_cents: items
            .iter()
            .map(|line| i64::from(line.quantity) * line.unit_price_cents)
            .sum(),
        items,
    }
}

/// `event` as the consumer receives it from the broker.
pub fn incoming<E: Event>(event: &E) -> IncomingEvent {
    let message = Message::from_event(&CloudEvent::new("/test", event), event).expect("encodes");
    IncomingEvent::from_message(&message).expect("decodes")
}

/// Applies `event` with the saga's handler in a transaction of its own on `conn`, and
/// commits it: what the consumer does once it has recorded the event in its inbox.
pub async fn handle_on<E: Event>(conn: &mut PgConnection, event: &E) -> Result<(), HandlerError> {
    let mut tx = conn.begin().await.expect("a transaction");
    InventorySaga.handle(&mut tx, &incoming(event)).await?;
    tx.commit().await.expect("committed");
    Ok(())
}

impl TestApp {
    /// Applies `event` with the saga's handler, in a transaction of its own.
    pub async fn handle<E: Event>(&self, event: &E) -> Result<(), HandlerError> {
        handle_on(&mut self.connection().await, event).await
    }

    /// `(available, reserved)` of a product, read over the API.
    pub async fn stock_of(&self, id: ProductId) -> (i32, i32) {
        let response = self.get_product(id).await;
        response.assert_status(200);
        let product: Product = response.json();
        (product.available, product.reserved)
    }

    /// The events of type `E` in the outbox, oldest first.
    pub async fn outbox<E: Event>(&self) -> Vec<E> {
        let payloads: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY seq")
                .bind(E::TYPE)
                .fetch_all(&mut self.connection().await)
                .await
                .expect("outbox rows");
        payloads
            .into_iter()
            .map(|payload| serde_json::from_value(payload).expect("an event of the type"))
            .collect()
    }

    /// How many events of type `E` the outbox relay has published to the broker.
    pub async fn published_count<E: Event>(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE event_type = $1 AND published_at IS NOT NULL",
        )
        .bind(E::TYPE)
        .fetch_one(&mut self.connection().await)
        .await
        .expect("a count")
    }
}
