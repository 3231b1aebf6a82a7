//! `GET /api/v1/orders/{id}/timeline`: the events order-service published or applied for an
//! order, oldest first, each with the service that emitted it and the status after it. The
//! events of inventory come from the real inventory-service where the test can wait for
//! them; payment's are published as payment-service would.

use shop_model::{
    PaymentId,
    api::{Order, OrderStatus, OrderTimeline},
    events::{
        CloudEvent, Event, OrderCancelled, OrderConfirmed, OrderPlaced, PaymentFailed,
        PaymentRefunded, PaymentSucceeded, StockRejected, StockReserved,
    },
};
use test_kit::tokens;

use crate::helpers::{
    TestApp, paid, payment_failed, spawn_app, spawn_app_without_inventory_consumer,
};

const PAYMENT: &str = "/payment-service";

/// Each entry as (event type, source, status), the part a test compares.
fn steps(timeline: &OrderTimeline) -> Vec<(&str, &str, OrderStatus)> {
    timeline
        .items
        .iter()
        .map(|e| (e.event_type.as_str(), e.source.as_str(), e.status))
        .collect()
}

fn reserved(order: &Order) -> StockReserved {
    StockReserved {
        order_id: order.id,
        user_id: order.user_id,
        total_cents: order.total_cents,
    }
}

/// Places an order with the fake inventory (no consumer answers it) and returns it.
async fn place(app: &TestApp, token: &str, product: shop_model::ProductId) -> Order {
    let response = app.place_order(token, &[(product.to_string(), 1)]).await;
    response.assert_status(202);
    response.json()
}

/// An order the real inventory-service reserved and payment-service (played by the test)
/// paid, with its timeline of four steps.
async fn confirmed_order(app: &TestApp, token: &str) -> (Order, OrderTimeline) {
    let order = app.placed_order(token).await;
    app.wait_for_timeline(token, order.id, 2).await;
    let payment = app.publish_from(PAYMENT, &paid(&order)).await;
    app.wait_until_processed(payment).await;
    let timeline = app.timeline(token, order.id).await;
    (order, timeline)
}

#[tokio::test]
async fn a_new_order_shows_only_its_placement_with_nothing_internal() {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();
    let order = place(&app, &token, product).await;

    let response = app.get_timeline(&token, order.id).await;

    response.assert_status(200);
    let body: serde_json::Value = response.json();
    assert_eq!(
        body,
        serde_json::json!({"items": [{
            "at": body["items"][0]["at"],
            "event_type": "shop.order.placed.v1",
            "source": "order-service",
            "status": "pending",
        }]}),
        "exactly these fields"
    );
    let timeline: OrderTimeline = response.json();
    assert!(timeline.items[0].at >= order.created_at);
}

#[tokio::test]
async fn another_customer_gets_404_for_the_timeline_and_an_admin_sees_it() {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, ann) = tokens::customer();
    let (_, bob) = tokens::customer();
    let (_, admin) = tokens::admin();
    let order = place(&app, &ann, product).await;

    app.get_timeline(&bob, order.id).await.assert_status(404);
    let as_admin = app.get_timeline(&admin, order.id).await;

    as_admin.assert_status(200);
    assert_eq!(
        steps(&as_admin.json()),
        [(OrderPlaced::TYPE, "order-service", OrderStatus::Pending)]
    );
}

#[tokio::test]
async fn the_timeline_of_an_unknown_or_malformed_order_id_is_404() {
    let (app, _inventory, _) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();

    let unknown = app.get_timeline(&token, uuid::Uuid::now_v7()).await;
    unknown.assert_status(404);
    assert_eq!(
        unknown.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    app.get_timeline(&token, "not-a-uuid")
        .await
        .assert_status(404);
}

#[tokio::test]
async fn the_timeline_requires_a_valid_token() {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();
    let order = place(&app, &token, product).await;
    let path = format!("/api/v1/orders/{}/timeline", order.id);

    app.api.get(&path).send().await.assert_status(401);
    for token in [tokens::GARBAGE.to_owned(), tokens::expired()] {
        app.api
            .get(&path)
            .bearer(&token)
            .send()
            .await
            .assert_status(401);
    }
}

#[tokio::test]
async fn a_confirmed_order_shows_placed_reserved_paid_and_confirmed_with_the_status_after_each() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    let (_, timeline) = confirmed_order(&app, &token).await;

    assert_eq!(
        steps(&timeline),
        [
            (OrderPlaced::TYPE, "order-service", OrderStatus::Pending),
            (
                StockReserved::TYPE,
                "inventory-service",
                OrderStatus::Pending
            ),
            (
                PaymentSucceeded::TYPE,
                "payment-service",
                OrderStatus::Confirmed
            ),
            (
                OrderConfirmed::TYPE,
                "order-service",
                OrderStatus::Confirmed
            ),
        ]
    );
    assert!(
        timeline.items.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first: {timeline:?}"
    );
}

#[tokio::test]
async fn an_order_out_of_stock_shows_inventorys_rejection() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let product = app.create_product(500, 1).await;
    let response = app
        .place_order(&token, &[(product.id.to_string(), 2)])
        .await;
    response.assert_status(202);
    let order: Order = response.json();

    let timeline = app.wait_for_timeline(&token, order.id, 2).await;

    assert_eq!(
        steps(&timeline),
        [
            (OrderPlaced::TYPE, "order-service", OrderStatus::Pending),
            (
                StockRejected::TYPE,
                "inventory-service",
                OrderStatus::Rejected
            ),
        ]
    );
}

#[tokio::test]
async fn a_failed_payment_shows_the_rejection_then_the_release_order_service_asks_for() {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();
    let order = place(&app, &token, product).await;
    let reservation = app
        .publish_from("/inventory-service", &reserved(&order))
        .await;
    app.wait_until_processed(reservation).await;

    let failure = app
        .publish_from(PAYMENT, &payment_failed(&order, "insufficient_funds"))
        .await;
    app.wait_until_processed(failure).await;

    let timeline = app.timeline(&token, order.id).await;
    assert_eq!(
        steps(&timeline),
        [
            (OrderPlaced::TYPE, "order-service", OrderStatus::Pending),
            (
                StockReserved::TYPE,
                "inventory-service",
                OrderStatus::Pending
            ),
            (
                PaymentFailed::TYPE,
                "payment-service",
                OrderStatus::Rejected
            ),
            (OrderCancelled::TYPE, "order-service", OrderStatus::Rejected),
        ]
    );
}

#[tokio::test]
async fn cancelling_a_confirmed_order_shows_the_cancellation_and_then_the_refund() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let (order, _) = confirmed_order(&app, &token).await;

    app.cancel(&token, &order).await;
    let refund = app
        .publish_from(
            PAYMENT,
            &PaymentRefunded {
                order_id: order.id,
                user_id: order.user_id,
                payment_id: PaymentId::new(),
                amount_cents: order.total_cents,
            },
        )
        .await;
    app.wait_until_processed(refund).await;

    let timeline = app.timeline(&token, order.id).await;
    assert_eq!(
        steps(&timeline)[4..],
        [
            (
                OrderCancelled::TYPE,
                "order-service",
                OrderStatus::Cancelled
            ),
            (
                PaymentRefunded::TYPE,
                "payment-service",
                OrderStatus::Cancelled
            ),
        ],
        "{timeline:?}"
    );
    assert_eq!(timeline.items.len(), 6, "{timeline:?}");
}

#[tokio::test]
async fn a_late_event_for_a_cancelled_order_is_listed_with_the_status_the_order_kept() {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();
    let order = place(&app, &token, product).await;
    app.cancel(&token, &order).await;

    let late = app.publish_from(PAYMENT, &paid(&order)).await;
    app.wait_until_processed(late).await;

    let timeline = app.timeline(&token, order.id).await;
    assert_eq!(
        steps(&timeline),
        [
            (OrderPlaced::TYPE, "order-service", OrderStatus::Pending),
            (
                OrderCancelled::TYPE,
                "order-service",
                OrderStatus::Cancelled
            ),
            (
                PaymentSucceeded::TYPE,
                "payment-service",
                OrderStatus::Cancelled
            ),
        ]
    );
}

#[tokio::test]
async fn an_event_delivered_twice_is_listed_once() {
    let (app, _inventory, product) = spawn_app_without_inventory_consumer().await;
    let (_, token) = tokens::customer();
    let order = place(&app, &token, product).await;
    let event = paid(&order);
    let message =
        service_kit::events::Message::from_event(&CloudEvent::new(PAYMENT, &event), &event)
            .expect("encodes");
    let bus = app.broker.bus().await;

    bus.publish(&message).await.expect("first delivery");
    bus.publish(&message)
        .await
        .expect("second delivery, same event id");
    // A later event of the same order and topic proves both copies were consumed.
    let later = app
        .publish_from(PAYMENT, &payment_failed(&order, "insufficient_funds"))
        .await;
    app.wait_until_processed(later).await;

    let timeline = app.timeline(&token, order.id).await;
    assert_eq!(
        steps(&timeline),
        [
            (OrderPlaced::TYPE, "order-service", OrderStatus::Pending),
            (
                PaymentSucceeded::TYPE,
                "payment-service",
                OrderStatus::Confirmed
            ),
            (
                OrderConfirmed::TYPE,
                "order-service",
                OrderStatus::Confirmed
            ),
            (
                PaymentFailed::TYPE,
                "payment-service",
                OrderStatus::Confirmed
            ),
        ]
    );
}
