//! The outbox and the inbox keep rows only as long as they are useful: published events
//! for `OUTBOX_RETENTION_HOURS`, applied events for `INBOX_RETENTION_HOURS`. Against a real
//! PostgreSQL database (and, for the outbox, a real Kafka-protocol broker).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use service_kit::{
    config::{ConfigSource, DatabaseSettings},
    db,
    events::{EventBusSettings, consumer::InboxPruner, outbox},
};
use shop_model::{UserId, events::UserRegistered};
use sqlx::{PgPool, migrate::Migrator};
use test_kit::{TestBroker, TestDatabase};
use tokio_util::sync::CancellationToken;

async fn kit_database() -> (TestDatabase, PgPool) {
    let database = TestDatabase::create().await;
    let pool = db::connect_and_migrate(
        &DatabaseSettings::for_tests(database.url()),
        &Migrator::DEFAULT,
    )
    .await
    .expect("kit migrations");
    (database, pool)
}

/// Event-bus settings as a service reads them from its environment.
fn bus_settings(broker: &TestBroker, pairs: &[(&str, &str)]) -> EventBusSettings {
    let mut all = vec![("KAFKA_BROKERS", broker.bootstrap_servers())];
    all.extend_from_slice(pairs);
    EventBusSettings::from_source(&ConfigSource::from_pairs(all)).expect("settings")
}

/// Records `count` applied events of `consumer`, processed `hours_ago`.
async fn applied(pool: &PgPool, consumer: &str, count: i32, hours_ago: f64) {
    sqlx::query(
        "INSERT INTO inbox (consumer, event_id, event_type, processed_at)
         SELECT $1, gen_random_uuid(), 'shop.test.v1', now() - make_interval(secs => $3)
         FROM generate_series(1, $2)",
    )
    .bind(consumer)
    .bind(count)
    .bind(hours_ago * 3600.0)
    .execute(pool)
    .await
    .expect("inbox rows");
}

async fn inbox_rows(pool: &PgPool, consumer: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer = $1")
        .bind(consumer)
        .fetch_one(pool)
        .await
        .expect("count")
}

fn inbox_settings(hours: &str) -> service_kit::events::settings::ConsumerSettings {
    EventBusSettings::from_source(&ConfigSource::from_pairs([(
        "INBOX_RETENTION_HOURS",
        hours,
    )]))
    .expect("settings")
    .consumer
}

/// One pruning pass with `INBOX_RETENTION_HOURS=hours`; how many rows it deleted.
async fn prune_inbox(pool: &PgPool, hours: &str) -> u64 {
    InboxPruner::new(pool.clone(), &inbox_settings(hours))
        .prune()
        .await
        .expect("prune")
}

#[tokio::test]
async fn the_inbox_forgets_events_past_retention_and_keeps_the_recent_ones() {
    let (_database, pool) = kit_database().await;
    applied(&pool, "order-service", 3, 24.0 * 8.0).await;
    applied(&pool, "order-service", 2, 1.0).await;
    applied(&pool, "payment-service", 1, 24.0 * 8.0).await;
    applied(&pool, "payment-service", 1, 24.0 * 6.0).await;

    let deleted = prune_inbox(&pool, "168").await;

    assert_eq!(deleted, 4);
    assert_eq!(inbox_rows(&pool, "order-service").await, 2);
    assert_eq!(inbox_rows(&pool, "payment-service").await, 1);
}

#[tokio::test]
async fn a_backlog_larger_than_one_batch_is_pruned_completely() {
    let (_database, pool) = kit_database().await;
    applied(&pool, "inventory-service", 12_345, 48.0).await;
    applied(&pool, "inventory-service", 7, 0.0).await;

    let deleted = prune_inbox(&pool, "24").await;

    assert_eq!(deleted, 12_345);
    assert_eq!(inbox_rows(&pool, "inventory-service").await, 7);
}

#[test]
fn an_inbox_retention_of_zero_is_raised_to_one_hour() {
    // Zero would forget an event as soon as it is applied, and a redelivery a second
    // later would be applied again.
    assert_eq!(
        inbox_settings("0").inbox_retention,
        Duration::from_secs(3600)
    );
}

#[tokio::test]
async fn the_relay_deletes_published_events_past_retention_but_never_unpublished_ones() {
    let (_database, pool) = kit_database().await;
    let broker = TestBroker::start();
    let event = |name: &str| UserRegistered {
        user_id: UserId::new(),
        email: format!("{name}@example.com"),
        name: name.to_owned(),
    };
    let mut tx = pool.begin().await.expect("begin");
    let old_published = outbox::enqueue(&mut tx, "/test", &event("old"))
        .await
        .expect("enqueue");
    let recent_published = outbox::enqueue(&mut tx, "/test", &event("recent"))
        .await
        .expect("enqueue");
    let old_unpublished = outbox::enqueue(&mut tx, "/test", &event("stuck"))
        .await
        .expect("enqueue");
    // As if the first two had been published 100 hours and 1 hour ago, and the third had
    // waited 100 hours for a broker.
    for (id, published, created) in [
        (old_published, Some(100.0), 100.0),
        (recent_published, Some(1.0), 1.0),
        (old_unpublished, None, 100.0),
    ] {
        sqlx::query(
            "UPDATE outbox SET
                 published_at = now() - make_interval(secs => $2),
                 created_at = now() - make_interval(secs => $3)
             WHERE event_id = $1",
        )
        .bind(id)
        .bind(published.map(|h: f64| h * 3600.0))
        .bind(created * 3600.0)
        .execute(&mut *tx)
        .await
        .expect("backdate");
    }
    tx.commit().await.expect("commit");

    let settings = bus_settings(
        &broker,
        &[
            ("OUTBOX_RETENTION_HOURS", "72"),
            ("OUTBOX_POLL_INTERVAL_MS", "100"),
        ],
    );
    let bus = service_kit::events::EventBus::connect(&settings, "retention-test")
        .await
        .expect("bus");
    let relay = outbox::OutboxRelay::new(
        pool.clone(),
        bus,
        settings.outbox.clone(),
        &prometheus::Registry::new(),
    )
    .expect("relay");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));

    // The relay publishes the waiting event, and prunes only what was published long ago.
    let remaining = test_kit::eventually(
        Duration::from_secs(20),
        "the old published event to be pruned and the waiting one published",
        || async {
            let rows: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
                "SELECT event_id, published_at IS NOT NULL FROM outbox ORDER BY seq",
            )
            .fetch_all(&pool)
            .await
            .expect("outbox rows");
            (rows.len() == 2 && rows.iter().all(|(_, published)| *published)).then_some(rows)
        },
    )
    .await;
    shutdown.cancel();
    running.await.expect("relay stopped");

    let ids: Vec<_> = remaining.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, vec![recent_published, old_unpublished]);
    let mut watcher = broker.watch(shop_model::events::topics::USERS).await;
    let message = watcher
        .next_of_type("shop.user.registered.v1", Duration::from_secs(10))
        .await;
    assert_eq!(
        message.header(service_kit::events::headers::ID),
        Some(old_unpublished.to_string().as_str())
    );
}
