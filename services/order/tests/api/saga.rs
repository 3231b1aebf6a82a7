//! order-service's consumer, driven through a real Kafka-protocol broker: events from
//! inventory and payment move orders through the state machine, duplicates and late
//! events change nothing, and a poison message is dead-lettered without stopping the
//! consumer.

use std::time::Duration;

use service_kit::events::{DEAD_LETTER_TOPIC, Message, headers};
use shop_model::{
    api::{Order, OrderStatus},
    events::{
        Event, OrderCancelled, OrderConfirmed, OrderPlaced, PaymentSucceeded, StockRejected,
        StockReserved, topics,
    },
};
use test_kit::tokens;

use crate::helpers::{
    TestApp, paid, payment_failed, spawn_app, spawn_app_without_inventory_consumer,
};

const WAIT: Duration = Duration::from_secs(30);

async fn order_status(app: &TestApp, token: &str, order: &Order) -> Order {
    let response = app.get_order(token, order.id).await;
    response.assert_status(200);
    response.json()
}

#[tokio::test]
async fn placing_an_order_publishes_order_placed() {
    let app = spawn_app().await;
    let mut orders = app.broker.watch(topics::ORDERS).await;
    let (_, token) = tokens::customer();

    let order = app.placed_order(&token).await;

    let message = orders.next_of_type(OrderPlaced::TYPE, WAIT).await;
    assert_eq!(message.key, order.id.to_string());
    let placed: OrderPlaced = serde_json::from_slice(&message.payload).expect("OrderPlaced");
    assert_eq!(placed.order_id, order.id);
    assert_eq!(placed.total_cents, order.total_cents);
    assert_eq!(placed.items.len(), 1);
    // Counted by the relay once the broker acknowledged it (which may be a moment after
    // the watcher got it).
    let published = [("event_type", OrderPlaced::TYPE)];
    let base = app.api.base_url();
    test_kit::eventually(WAIT, "OrderPlaced counted as published", || async {
        let count = test_kit::metric(base, "shop_events_published_total", &published).await;
        assert!(count <= 1.0, "published {count} times");
        (count == 1.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_successful_payment_confirms_the_order_and_publishes_order_confirmed() {
    let app = spawn_app().await;
    let mut orders = app.broker.watch(topics::ORDERS).await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;

    let reserved = app
        .publish(&StockReserved {
            order_id: order.id,
            user_id: order.user_id,
            total_cents: order.total_cents,
        })
        .await;
    app.wait_until_processed(reserved).await;
    assert_eq!(
        order_status(&app, &token, &order).await.status,
        OrderStatus::Pending
    );
    let event = app.publish(&paid(&order)).await;
    app.wait_until_processed(event).await;

    assert_eq!(
        order_status(&app, &token, &order).await.status,
        OrderStatus::Confirmed
    );
    let confirmed = orders.next_of_type(OrderConfirmed::TYPE, WAIT).await;
    assert_eq!(confirmed.key, order.id.to_string());
    let base = app.api.base_url();
    let counted = [("status", "confirmed"), ("reason", "none")];
    assert_eq!(
        test_kit::metric(base, "shop_orders_terminal_total", &counted).await,
        1.0
    );
    let timed = [("status", "confirmed")];
    assert_eq!(
        test_kit::metric(base, "shop_order_saga_duration_seconds_count", &timed).await,
        1.0
    );
}

#[tokio::test]
async fn rejected_stock_rejects_the_order_as_out_of_stock() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;

    let event = app
        .publish(&StockRejected {
            order_id: order.id,
            user_id: order.user_id,
            reason: "out_of_stock".to_owned(),
            product_ids: vec![order.items[0].product_id],
        })
        .await;
    app.wait_until_processed(event).await;

    let order = order_status(&app, &token, &order).await;
    assert_eq!(order.status, OrderStatus::Rejected);
    assert_eq!(order.status_reason.as_deref(), Some("out_of_stock"));
    assert_eq!(
        app.outbox_count(OrderCancelled::TYPE).await,
        0,
        "nothing was reserved"
    );
}

#[tokio::test]
async fn a_failed_payment_rejects_the_order_and_releases_its_stock() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;

    let event = app
        .publish(&payment_failed(&order, "insufficient_funds"))
        .await;
    app.wait_until_processed(event).await;

    let order = order_status(&app, &token, &order).await;
    assert_eq!(order.status, OrderStatus::Rejected);
    assert_eq!(order.status_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(app.outbox_count(OrderCancelled::TYPE).await, 1);
    let counted = [("status", "rejected"), ("reason", "insufficient_funds")];
    let base = app.api.base_url();
    assert_eq!(
        test_kit::metric(base, "shop_orders_terminal_total", &counted).await,
        1.0
    );
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_applied_once() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;
    let event = paid(&order);
    let envelope = shop_model::events::CloudEvent::new("/payment-service", &event);
    let message = Message::from_event(&envelope, &event).expect("encodes");
    let bus = app.broker.bus().await;

    bus.publish(&message).await.expect("first delivery");
    bus.publish(&message)
        .await
        .expect("second delivery, same event id");
    // A later event proves both copies were consumed (one partition key, in order).
    let later = app
        .publish(&payment_failed(&order, "insufficient_funds"))
        .await;
    app.wait_until_processed(later).await;

    assert_eq!(
        order_status(&app, &token, &order).await.status,
        OrderStatus::Confirmed
    );
    assert_eq!(app.outbox_count(OrderConfirmed::TYPE).await, 1);
    // The inbox recognised the copy: without it the state machine alone would hide it.
    let duplicates = test_kit::metric(
        app.api.base_url(),
        "shop_events_consumed_total",
        &[
            ("event_type", PaymentSucceeded::TYPE),
            ("outcome", "duplicate"),
        ],
    )
    .await;
    assert_eq!(
        duplicates, 1.0,
        "the second delivery counted as a duplicate"
    );
}

#[tokio::test]
async fn a_late_event_for_a_cancelled_order_changes_nothing() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;
    app.cancel(&token, &order).await;

    let event = app.publish(&paid(&order)).await;
    app.wait_until_processed(event).await;

    let order = order_status(&app, &token, &order).await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(app.outbox_count(OrderConfirmed::TYPE).await, 0);
    assert_eq!(app.outbox_count(OrderCancelled::TYPE).await, 1);
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_consumer_goes_on() {
    let app = spawn_app().await;
    let mut dead_letters = app.broker.watch(DEAD_LETTER_TOPIC).await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;
    let bus = app.broker.bus().await;
    let mut poison = Message::from_event(
        &shop_model::events::CloudEvent::new("/payment-service", &paid(&order)),
        &paid(&order),
    )
    .expect("encodes");
    poison.payload = br#"{"order_id": 42"#.to_vec();
    app.settled.expect_dead_letters(1);

    bus.publish(&poison).await.expect("published");
    let good = app.publish(&paid(&order)).await;
    app.wait_until_processed(good).await;

    assert_eq!(
        order_status(&app, &token, &order).await.status,
        OrderStatus::Confirmed
    );
    let letter = dead_letters
        .next_of_type(PaymentSucceeded::TYPE, WAIT)
        .await;
    assert_eq!(
        letter.header(headers::DEAD_LETTER_CONSUMER),
        Some("order-service")
    );
    assert_eq!(
        letter.header(headers::DEAD_LETTER_TOPIC),
        Some(topics::PAYMENTS)
    );
    assert!(
        letter
            .header(headers::DEAD_LETTER_ERROR)
            .is_some_and(|e| e.contains("does not decode"))
    );
    assert_eq!(letter.payload, poison.payload);
}

/// `StockReserved` (shop.inventory) and `PaymentSucceeded` (shop.payments) travel on
/// different topics, so the payment can be handled first: the order is confirmed as in
/// the normal order, and the reservation arriving afterwards changes nothing.
#[tokio::test]
async fn a_payment_that_overtakes_the_reservation_confirms_the_order_and_the_late_reservation_changes_nothing()
 {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();
    let response = app.place_order(&token, &[(product.to_string(), 2)]).await;
    response.assert_status(202);
    let order: Order = response.json();

    let payment = app.publish(&paid(&order)).await;
    app.wait_until_processed(payment).await;
    let paid_order = order_status(&app, &token, &order).await;
    let reservation = app
        .publish(&StockReserved {
            order_id: order.id,
            user_id: order.user_id,
            total_cents: order.total_cents,
        })
        .await;
    app.wait_until_processed(reservation).await;

    let order = order_status(&app, &token, &order).await;
    assert_eq!(paid_order.status, OrderStatus::Confirmed);
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.status_reason, None);
    assert_eq!(order.updated_at, paid_order.updated_at);
    assert_eq!(app.outbox_count(OrderConfirmed::TYPE).await, 1);
    assert_eq!(app.outbox_count(OrderCancelled::TYPE).await, 0);
}

/// payment-service answers a `StockReserved` for an order whose cancellation it handled
/// first with `PaymentFailed { reason: "order_cancelled" }`: the order must stay cancelled,
/// with the customer's reason, and not be cancelled a second time.
#[tokio::test]
async fn a_payment_failed_as_order_cancelled_leaves_a_cancelled_order_cancelled_with_its_reason() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;
    app.cancel(&token, &order).await;

    let event = app
        .publish(&payment_failed(&order, "order_cancelled"))
        .await;
    app.wait_until_processed(event).await;

    let order = order_status(&app, &token, &order).await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        order.status_reason.as_deref(),
        Some("cancelled_by_customer")
    );
    assert_eq!(app.outbox_count(OrderCancelled::TYPE).await, 1);
}

/// inventory-service answers an `OrderPlaced` handled after its order's cancellation with
/// `StockRejected { reason: "order_cancelled" }`: the order must stay cancelled, with the
/// customer's reason.
#[tokio::test]
async fn a_stock_rejected_as_order_cancelled_leaves_a_cancelled_order_cancelled_with_its_reason() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;
    app.cancel(&token, &order).await;

    let event = app
        .publish(&StockRejected {
            order_id: order.id,
            user_id: order.user_id,
            reason: "order_cancelled".to_owned(),
            product_ids: vec![],
        })
        .await;
    app.wait_until_processed(event).await;

    let order = order_status(&app, &token, &order).await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(
        order.status_reason.as_deref(),
        Some("cancelled_by_customer")
    );
    assert_eq!(app.outbox_count(OrderCancelled::TYPE).await, 1);
}
