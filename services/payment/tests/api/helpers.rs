use payment_service::{
    Application, MIGRATOR, PaymentSaga, Settings,
    wallets::{self, AdminCredit, ChargeOutcome, RefundOutcome},
};
use secrecy::ExposeSecret;
use service_kit::config::{ConfigSource, DatabaseSettings};
use shop_model::{Cents, OrderId, UserId, api::Payment};
use sqlx::PgPool;
use test_kit::{ApiClient, JwksServer, TestBroker, TestDatabase};
use uuid::Uuid;

/// A migrated database for tests of the wallet operations, with a pool large enough for
/// every task of a concurrency test to hold its own connection.
pub struct TestLedger {
    pub pool: PgPool,
    _database: TestDatabase,
}

pub async fn ledger() -> TestLedger {
    test_kit::init_test_logging();
    let database = TestDatabase::create().await;
    let settings = DatabaseSettings {
        max_connections: 25,
        ..DatabaseSettings::for_tests(database.url())
    };
    let pool = service_kit::db::connect_and_migrate(&settings, &MIGRATOR)
        .await
        .expect("the test database is migrated");
    TestLedger {
        pool,
        _database: database,
    }
}

/// The `WALLET_INITIAL_CREDIT_CENTS` of the test application: not the default, so that a
/// test can tell the setting was read.
pub const INITIAL_CREDIT: i64 = 25_000;

pub struct TestApp {
    /// Checked when the test ends: the outbox published, nothing dead-lettered unless the
    /// test expects it. First, so that it runs before the database and broker go.
    _settled: test_kit::SettledCheck,
    /// The application, stopped when the test ends, before the broker and the database.
    _running: test_kit::BackgroundApp,
    pub api: ApiClient,
    /// The application's database, for arranging wallets and payments the way the event
    /// consumers do in production.
    pub pool: PgPool,
    /// The application's event handler, built from the same settings, for tests that hand
    /// it events the way the consumer does.
    pub saga: PaymentSaga,
    /// Owned here so that the database lives as long as the test, and is dropped after it.
    _database: TestDatabase,
    /// Serves the keys that verify the test tokens; it lives as long as the application.
    _jwks: JwksServer,
    /// The Kafka broker of the outbox relay, the consumer and the readiness check.
    _broker: TestBroker,
}

/// Starts payment-service as `main` would, from configuration values, with only the
/// database, the broker, the port, the user-service URL and the starting credit differing
/// from the documented defaults.
pub async fn spawn_app() -> TestApp {
    test_kit::init_test_logging();
    let database = TestDatabase::create().await;
    let jwks = JwksServer::start().await;
    let broker = TestBroker::start();
    let url = database.url().expose_secret().to_owned();
    let settings = Settings::from_source(&ConfigSource::from_pairs([
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
        ("DATABASE_URL", url.clone()),
        ("USER_SERVICE_URL", jwks.base_url().to_string()),
        ("JWT_ALLOW_DEV_KEY", "true".to_owned()),
        ("KAFKA_BROKERS", broker.bootstrap_servers().to_owned()),
        ("WALLET_INITIAL_CREDIT_CENTS", INITIAL_CREDIT.to_string()),
    ]))
    .expect("valid settings");
    let saga = PaymentSaga::new(settings.wallet_initial_credit);
    let running = test_kit::background_app(
        move || Application::build(settings),
        Application::port,
        Application::run_until_stopped,
    )
    .await;
    let port = running.port();
    let api = ApiClient::new(port);
    let settled = test_kit::SettledCheck::new(database.url(), port);
    let pool = PgPool::connect(&url).await.expect("connected");
    TestApp {
        _settled: settled,
        _running: running,
        api,
        pool,
        saga,
        _database: database,
        _jwks: jwks,
        _broker: broker,
    }
}

pub fn cents(amount: i64) -> Cents {
    Cents::new(amount).expect("a non-negative amount")
}

/// Opens a wallet with `balance_cents`, as the `UserRegistered` consumer will.
pub async fn open_wallet(pool: &PgPool, user_id: UserId, balance_cents: i64) {
    let mut conn = pool.acquire().await.expect("connection");
    let opened = wallets::open_wallet(&mut conn, user_id, cents(balance_cents))
        .await
        .expect("wallet opened");
    assert!(opened, "the wallet existed already");
}

/// Charges an order, as the `StockReserved` consumer will, and expects it to succeed.
pub async fn charge(pool: &PgPool, order_id: OrderId, user_id: UserId, amount: i64) -> Payment {
    let mut conn = pool.acquire().await.expect("connection");
    match wallets::charge(&mut conn, order_id, user_id, cents(amount)).await {
        Ok(ChargeOutcome::Charged(payment)) => payment,
        other => panic!("expected a charge, got {other:?}"),
    }
}

/// Refunds an order, as the `OrderCancelled` consumer will, and expects it to succeed.
pub async fn refund(pool: &PgPool, order_id: OrderId) -> Payment {
    let mut conn = pool.acquire().await.expect("connection");
    match wallets::refund(&mut conn, order_id).await {
        Ok(RefundOutcome::Refunded(payment)) => payment,
        other => panic!("expected a refund, got {other:?}"),
    }
}

/// The balance as stored.
pub async fn balance(pool: &PgPool, user_id: UserId) -> i64 {
    sqlx::query_scalar("SELECT balance_cents FROM wallets WHERE user_id = $1")
        .bind(user_id.as_uuid())
        .fetch_one(pool)
        .await
        .expect("the wallet exists")
}

/// How many payments of an order are stored.
pub async fn payment_count(pool: &PgPool, order_id: OrderId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = $1")
        .bind(order_id.as_uuid())
        .fetch_one(pool)
        .await
        .expect("counted")
}

/// An admin credit of `amount` without an idempotency key, by some admin.
pub fn admin_credit(user_id: UserId, amount: i64) -> AdminCredit<'static> {
    AdminCredit {
        user_id,
        amount: cents(amount),
        admin_id: UserId::new(),
        idempotency_key: None,
    }
}

/// One row of the wallet ledger, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub kind: String,
    pub amount_cents: i64,
    pub balance_after_cents: i64,
    pub order_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub credited_by: Option<Uuid>,
    pub idempotency_key: Option<String>,
}

type LedgerColumns = (
    String,
    i64,
    i64,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
);

/// A wallet's ledger rows as stored, oldest first.
pub async fn ledger_rows(pool: &PgPool, user_id: UserId) -> Vec<LedgerRow> {
    sqlx::query_as::<_, LedgerColumns>(
        "SELECT kind, amount_cents, balance_after_cents, order_id, payment_id, credited_by, \
         idempotency_key FROM wallet_ledger WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id.as_uuid())
    .fetch_all(pool)
    .await
    .expect("the ledger is read")
    .into_iter()
    .map(
        |(kind, amount_cents, balance_after_cents, order_id, payment_id, credited_by, key)| {
            LedgerRow {
                kind,
                amount_cents,
                balance_after_cents,
                order_id,
                payment_id,
                credited_by,
                idempotency_key: key,
            }
        },
    )
    .collect()
}

/// Every wallet whose balance is not the sum of its ledger rows, with both numbers.
pub async fn unbalanced_wallets(pool: &PgPool) -> Vec<(Uuid, i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT w.user_id, w.balance_cents, l.total FROM wallets w \
         LEFT JOIN (SELECT user_id, SUM(amount_cents)::BIGINT AS total FROM wallet_ledger \
                    GROUP BY user_id) l ON l.user_id = w.user_id \
         WHERE l.total IS DISTINCT FROM w.balance_cents",
    )
    .fetch_all(pool)
    .await
    .expect("the wallets and the ledger are read")
}
