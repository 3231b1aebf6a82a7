//! inventory-service's steps of the order saga: `OrderPlaced` reserves, `OrderConfirmed`
//! sells, `OrderCancelled` releases or returns. Each test hands events to the saga's handler
//! as the consumer would (in a transaction of its own, committed), then reads the stock
//! over the API and the answers the handler left in the outbox.

use std::{sync::Arc, time::Duration};

use inventory_service::InventorySaga;
use secrecy::ExposeSecret;
use service_kit::{
    config::ConfigSource,
    events::{
        EventBus, EventBusSettings, IncomingEvent, Message,
        consumer::{EventHandler, HandlerError},
    },
};
use shop_model::{
    ProductId,
    events::{
        CloudEvent, OrderCancelled, OrderConfirmed, OrderPlaced, StockRejected, StockReleased,
        StockReserved,
    },
};
use sqlx::{Connection, PgConnection};
use tokio::sync::Barrier;

use crate::helpers::{TestApp, handle_on, order_placed, spawn_app};

fn confirmed(placed: &OrderPlaced) -> OrderConfirmed {
    OrderConfirmed {
        order_id: placed.order_id,
        user_id: placed.user_id,
    }
}

fn cancelled(placed: &OrderPlaced) -> OrderCancelled {
    OrderCancelled {
        order_id: placed.order_id,
        user_id: placed.user_id,
        reason: "cancelled_by_customer".to_owned(),
    }
}

/// Creates a product with `stock` units on hand and returns its id.
async fn product(app: &TestApp, sku: &str, stock: i64) -> ProductId {
    app.create_product(sku, stock).await.id
}

/// A product with 10 units on hand, 3 of them reserved by the returned order.
async fn reserved_order(app: &TestApp) -> (ProductId, OrderPlaced) {
    let mug = product(app, "MUG-001", 10).await;
    let placed = order_placed(&[(mug, 3)]);
    app.handle(&placed).await.expect("reserved");
    (mug, placed)
}

#[tokio::test]
async fn an_order_placed_reserves_every_line_and_announces_stock_reserved() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;
    let pen = product(&app, "PEN-001", 5).await;
    let placed = order_placed(&[(mug, 3), (pen, 5)]);

    app.handle(&placed).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (7, 3));
    assert_eq!(app.stock_of(pen).await, (0, 5));
    assert_eq!(
        app.outbox::<StockReserved>().await,
        [StockReserved {
            order_id: placed.order_id,
            user_id: placed.user_id,
            total_cents: 800,
        }]
    );
    assert!(app.outbox::<StockRejected>().await.is_empty());
}

#[tokio::test]
async fn an_order_with_one_short_line_reserves_nothing_and_names_the_short_product() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;
    let print = product(&app, "PRINT-001", 2).await;
    let placed = order_placed(&[(mug, 3), (print, 3)]);

    app.handle(&placed).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    assert_eq!(app.stock_of(print).await, (2, 0));
    assert_eq!(
        app.outbox::<StockRejected>().await,
        [StockRejected {
            order_id: placed.order_id,
            user_id: placed.user_id,
            reason: "out_of_stock".to_owned(),
            product_ids: vec![print],
        }]
    );
    assert!(app.outbox::<StockReserved>().await.is_empty());
}

#[tokio::test]
async fn units_reserved_by_another_order_are_not_available() {
    let app = spawn_app().await;
    let print = product(&app, "PRINT-001", 2).await;
    app.handle(&order_placed(&[(print, 2)]))
        .await
        .expect("first");

    let second = order_placed(&[(print, 1)]);
    app.handle(&second).await.expect("second");

    assert_eq!(app.stock_of(print).await, (0, 2));
    let rejected = app.outbox::<StockRejected>().await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].order_id, second.order_id);
}

#[tokio::test]
async fn an_order_for_an_unknown_product_is_rejected_as_unknown_product() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;
    let unknown = ProductId::new();
    let placed = order_placed(&[(mug, 1), (unknown, 1)]);

    app.handle(&placed).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    let rejected = app.outbox::<StockRejected>().await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason, "unknown_product");
    assert_eq!(rejected[0].product_ids, [unknown]);
}

#[tokio::test]
async fn an_order_placed_with_an_invalid_line_is_refused_for_good_and_changes_nothing() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;

    let result = app.handle(&order_placed(&[(mug, 0)])).await;

    assert!(
        matches!(result, Err(HandlerError::Permanent(_))),
        "{result:?}"
    );
    assert_eq!(app.stock_of(mug).await, (10, 0));
}

#[tokio::test]
async fn an_event_whose_data_does_not_decode_is_refused_for_good() {
    let app = spawn_app().await;
    let placed = order_placed(&[(ProductId::new(), 1)]);
    let mut message =
        Message::from_event(&CloudEvent::new("/test", &placed), &placed).expect("encodes");
    message.payload = br#"{"order_id": "not-a-uuid"}"#.to_vec();
    let event = IncomingEvent::from_message(&message).expect("the attributes are valid");
    let mut conn = app.connection().await;
    let mut tx = conn.begin().await.expect("a transaction");

    let result = InventorySaga.handle(&mut tx, &event).await;

    assert!(
        matches!(result, Err(HandlerError::Permanent(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_same_order_placed_twice_is_reserved_once() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;
    let placed = order_placed(&[(mug, 3)]);

    app.handle(&placed).await.expect("first");
    app.handle(&placed).await.expect("second");

    assert_eq!(app.stock_of(mug).await, (7, 3));
    assert_eq!(app.outbox::<StockReserved>().await.len(), 1);
}

#[tokio::test]
async fn confirming_an_order_sells_its_reserved_stock() {
    let app = spawn_app().await;
    let (mug, placed) = reserved_order(&app).await;

    app.handle(&confirmed(&placed)).await.expect("handled");

    // The 3 units left the warehouse: 7 on hand, none held (a release would leave 10).
    assert_eq!(app.stock_of(mug).await, (7, 0));
}

#[tokio::test]
async fn confirming_an_order_twice_sells_its_stock_once() {
    let app = spawn_app().await;
    let (mug, placed) = reserved_order(&app).await;

    app.handle(&confirmed(&placed)).await.expect("first");
    app.handle(&confirmed(&placed)).await.expect("second");

    assert_eq!(app.stock_of(mug).await, (7, 0));
}

#[tokio::test]
async fn confirming_an_order_that_holds_no_stock_changes_nothing() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;

    app.handle(&confirmed(&order_placed(&[(mug, 3)])))
        .await
        .expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
}

#[tokio::test]
async fn cancelling_a_reserved_order_releases_its_stock() {
    let app = spawn_app().await;
    let (mug, placed) = reserved_order(&app).await;

    app.handle(&cancelled(&placed)).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    assert_eq!(
        app.outbox::<StockReleased>().await,
        [StockReleased {
            order_id: placed.order_id
        }]
    );
}

#[tokio::test]
async fn cancelling_a_sold_order_returns_its_stock() {
    let app = spawn_app().await;
    let (mug, placed) = reserved_order(&app).await;
    app.handle(&confirmed(&placed)).await.expect("sold");

    app.handle(&cancelled(&placed)).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    assert_eq!(app.outbox::<StockReleased>().await.len(), 1);
}

#[tokio::test]
async fn cancelling_an_order_twice_gives_its_stock_back_once() {
    let app = spawn_app().await;
    let (mug, placed) = reserved_order(&app).await;

    app.handle(&cancelled(&placed)).await.expect("first");
    app.handle(&cancelled(&placed)).await.expect("second");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    assert_eq!(app.outbox::<StockReleased>().await.len(), 1);
}

/// Two replicas on one RabbitMQ queue may handle an order's `OrderConfirmed` and
/// `OrderCancelled` either way round: the stock must end where it ends in the normal order.
#[tokio::test]
async fn an_order_cancelled_before_its_confirmation_ends_as_if_confirmed_then_cancelled() {
    let app = spawn_app().await;
    let (normal, reversed) = (
        product(&app, "MUG-001", 10).await,
        product(&app, "MUG-002", 10).await,
    );
    let (in_order, overtaken) = (order_placed(&[(normal, 3)]), order_placed(&[(reversed, 3)]));
    app.handle(&in_order).await.expect("reserved");
    app.handle(&overtaken).await.expect("reserved");
    app.handle(&confirmed(&in_order)).await.expect("sold");
    app.handle(&cancelled(&in_order)).await.expect("returned");

    app.handle(&cancelled(&overtaken)).await.expect("released");
    app.handle(&confirmed(&overtaken)).await.expect("handled");

    assert_eq!(app.stock_of(normal).await, (10, 0));
    assert_eq!(app.stock_of(reversed).await, (10, 0));
    assert_eq!(
        app.outbox::<StockReleased>().await,
        [
            StockReleased {
                order_id: in_order.order_id
            },
            StockReleased {
                order_id: overtaken.order_id
            }
        ]
    );
}

/// The cancellation of a pending order handled before its `OrderPlaced` (two replicas on
/// one queue): nothing may stay held for an order that no longer exists.
#[tokio::test]
async fn an_order_cancelled_before_it_is_placed_reserves_nothing_and_is_rejected_as_order_cancelled()
 {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;
    let placed = order_placed(&[(mug, 3)]);
    app.handle(&cancelled(&placed)).await.expect("cancelled");

    app.handle(&placed).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    assert!(app.outbox::<StockReserved>().await.is_empty());
    assert!(app.outbox::<StockReleased>().await.is_empty());
    assert_eq!(
        app.outbox::<StockRejected>().await,
        [StockRejected {
            order_id: placed.order_id,
            user_id: placed.user_id,
            reason: "order_cancelled".to_owned(),
            product_ids: vec![],
        }]
    );
}

/// A dead-lettered `OrderPlaced` replayed after its order was reserved, cancelled and given
/// back: it was answered the first time, and must neither hold the stock again nor answer
/// differently now.
#[tokio::test]
async fn an_order_placed_replayed_after_its_cancellation_reserves_nothing_and_answers_nothing() {
    let app = spawn_app().await;
    let (mug, placed) = reserved_order(&app).await;
    app.handle(&cancelled(&placed)).await.expect("released");

    app.handle(&placed).await.expect("handled");

    assert_eq!(app.stock_of(mug).await, (10, 0));
    assert_eq!(app.outbox::<StockReserved>().await.len(), 1);
    assert_eq!(app.outbox::<StockReleased>().await.len(), 1);
    assert!(app.outbox::<StockRejected>().await.is_empty());
}

/// The race the per-order lock is for: the placement and the cancellation of one order
/// handled at the same moment, as two replicas would, each in its own transaction. Whoever
/// goes first, no unit may stay held.
#[tokio::test]
async fn a_cancellation_racing_the_placement_never_leaves_stock_held() {
    const ORDERS: usize = 20;
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", ORDERS as i64).await;
    let orders: Vec<OrderPlaced> = (0..ORDERS).map(|_| order_placed(&[(mug, 1)])).collect();

    for (i, placed) in orders.iter().enumerate() {
        let cancelled = cancelled(placed);
        // Each side gets the head start on every other order.
        let (a, b) = if i % 2 == 0 {
            tokio::join!(app.handle(placed), app.handle(&cancelled))
        } else {
            let (b, a) = tokio::join!(app.handle(&cancelled), app.handle(placed));
            (a, b)
        };
        a.expect("placed");
        b.expect("cancelled");
    }

    assert_eq!(app.stock_of(mug).await, (ORDERS as i32, 0));
    let reserved = app.outbox::<StockReserved>().await;
    let released = app.outbox::<StockReleased>().await;
    let rejected = app.outbox::<StockRejected>().await;
    for placed in &orders {
        let id = placed.order_id;
        let was_reserved = reserved.iter().any(|e| e.order_id == id);
        let was_released = released.iter().any(|e| e.order_id == id);
        let was_rejected = rejected
            .iter()
            .any(|e| e.order_id == id && e.reason == "order_cancelled");
        assert!(
            (was_reserved && was_released && !was_rejected)
                || (was_rejected && !was_reserved && !was_released),
            "order {id}: reserved {was_reserved}, released {was_released}, rejected {was_rejected}"
        );
    }
}

#[tokio::test]
async fn cancelling_an_order_rejected_for_stock_gives_nothing_back() {
    let app = spawn_app().await;
    let print = product(&app, "PRINT-001", 2).await;
    let placed = order_placed(&[(print, 3)]);
    app.handle(&placed).await.expect("rejected");

    app.handle(&cancelled(&placed)).await.expect("handled");

    assert_eq!(app.stock_of(print).await, (2, 0));
    assert!(app.outbox::<StockReleased>().await.is_empty());
}

#[tokio::test]
async fn concurrent_orders_for_the_last_units_never_oversell() {
    let app = spawn_app().await;
    let print = product(&app, "PRINT-001", 5).await;
    const ORDERS: usize = 20;
    // Every order has its own connection and starts its transaction at the same moment.
    let start = Arc::new(Barrier::new(ORDERS));
    let mut orders = tokio::task::JoinSet::new();
    for _ in 0..ORDERS {
        let mut conn = PgConnection::connect(app.database.url().expose_secret())
            .await
            .expect("a connection");
        let start = Arc::clone(&start);
        let placed = order_placed(&[(print, 1)]);
        orders.spawn(async move {
            start.wait().await;
            handle_on(&mut conn, &placed).await
        });
    }

    let results = orders.join_all().await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(app.outbox::<StockReserved>().await.len(), 5);
    assert_eq!(app.outbox::<StockRejected>().await.len(), 15);
    assert_eq!(app.stock_of(print).await, (0, 5));
}

#[tokio::test]
async fn an_order_placed_on_the_broker_is_consumed_and_its_answer_published() {
    let app = spawn_app().await;
    let mug = product(&app, "MUG-001", 10).await;
    let placed = order_placed(&[(mug, 2)]);
    let settings = EventBusSettings::from_source(&ConfigSource::from_pairs([(
        "KAFKA_BROKERS",
        app.broker.bootstrap_servers().to_owned(),
    )]))
    .expect("bus settings");
    let bus = EventBus::connect(&settings, "order-service-test")
        .await
        .expect("connected");
    let message =
        Message::from_event(&CloudEvent::new("/order-service", &placed), &placed).expect("encodes");

    bus.publish(&message).await.expect("published");

    test_kit::eventually(
        Duration::from_secs(30),
        "the stock to be reserved",
        || async { (app.stock_of(mug).await == (8, 2)).then_some(()) },
    )
    .await;
    test_kit::eventually(
        Duration::from_secs(30),
        "StockReserved to be published",
        || async { (app.published_count::<StockReserved>().await == 1).then_some(()) },
    )
    .await;
}
