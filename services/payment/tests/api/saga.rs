//! payment-service's steps of the order saga: events handed to the consumer's handler in a
//! transaction on the application's database, as the consumer does, then the results read
//! back as a client sees them (wallets over the REST API) and as order-service will
//! (the events in the outbox).

use service_kit::{
    events::{
        IncomingEvent, Message,
        consumer::{EventHandler, HandlerError},
    },
    telemetry,
};
use shop_model::{
    OrderId, UserId,
    api::{Page, Payment, PaymentKind, Wallet},
    events::{
        CloudEvent, Event, OrderCancelled, PaymentFailed, PaymentRefunded, PaymentSucceeded,
        StockReserved, UserRegistered,
    },
};
use test_kit::tokens;

use crate::helpers::{
    INITIAL_CREDIT, TestApp, ledger_rows, payment_count, spawn_app, unbalanced_wallets,
};

#[tokio::test]
async fn user_registered_opens_a_wallet_with_the_configured_credit() {
    let app = spawn_app().await;
    let user = UserId::new();

    handle(&app, &registered(user)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert!(outbox(&app, user).await.is_empty());
}

#[tokio::test]
async fn a_repeated_user_registered_leaves_the_wallet_as_it_is() {
    let app = spawn_app().await;
    let user = UserId::new();
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(OrderId::new(), user, 1_000))
        .await
        .unwrap();

    handle(&app, &registered(user)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT - 1_000));
}

#[tokio::test]
async fn stock_reserved_charges_the_order_total_and_publishes_payment_succeeded() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();

    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT - 4_000));
    let charge = the_only_payment(&app, order).await;
    assert_eq!(
        (charge.kind, charge.user_id, charge.amount_cents),
        (PaymentKind::Charge, user, 4_000)
    );
    let succeeded: PaymentSucceeded = the_only_event(&app, order).await;
    assert_eq!(
        succeeded,
        PaymentSucceeded {
            order_id: order,
            user_id: user,
            payment_id: charge.id,
            amount_cents: 4_000,
        }
    );
}

#[tokio::test]
async fn stock_reserved_beyond_the_balance_publishes_payment_failed_and_takes_nothing() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();

    handle(&app, &reserved(order, user, INITIAL_CREDIT + 1))
        .await
        .unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert_eq!(payment_count(&app.pool, order).await, 0);
    let failed: PaymentFailed = the_only_event(&app, order).await;
    assert_eq!(failed.reason, "insufficient_funds");
    assert_eq!((failed.order_id, failed.user_id), (order, user));
}

#[tokio::test]
async fn stock_reserved_for_a_user_without_a_wallet_publishes_payment_failed() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());

    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    assert_eq!(balance(&app, user).await, None);
    let failed: PaymentFailed = the_only_event(&app, order).await;
    assert_eq!(failed.reason, "no_wallet");
}

/// `UserRegistered` (shop.users) and `StockReserved` (shop.inventory) travel on different
/// topics, so an order's reservation can be handled before its customer's wallet exists.
/// The outcome is defined and loses nothing: the charge is declined as `no_wallet` (the
/// order is rejected, its stock released), nothing is taken, and the wallet then opens
/// with its whole starting credit.
#[tokio::test]
async fn stock_reserved_before_the_wallet_opens_is_declined_and_the_wallet_opens_with_full_credit()
{
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    handle(&app, &registered(user)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert_eq!(payment_count(&app.pool, order).await, 0);
    let failed: PaymentFailed = the_only_event(&app, order).await;
    assert_eq!(
        failed,
        PaymentFailed {
            order_id: order,
            user_id: user,
            reason: "no_wallet".to_owned(),
        }
    );
}

#[tokio::test]
async fn a_repeated_stock_reserved_charges_once_and_publishes_once() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT - 4_000));
    assert_eq!(payment_count(&app.pool, order).await, 1);
    let _: PaymentSucceeded = the_only_event(&app, order).await;
}

#[tokio::test]
async fn the_published_event_continues_the_trace_of_the_delivery_that_caused_it() {
    use tracing::Instrument;
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();
    let (trace_id, delivery_span_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let delivery = tracing::info_span!("delivery");
    telemetry::continue_trace(
        &delivery,
        &[(
            "traceparent".to_owned(),
            format!("00-{trace_id}-{delivery_span_id}-01"),
        )]
        .into(),
    );
    let event = StockReserved {
        order_id: order,
        user_id: user,
        total_cents: 4_000,
    };

    handle(&app, &incoming(&event))
        .instrument(delivery)
        .await
        .unwrap();

    let traceparents: Vec<String> =
        sqlx::query_scalar("SELECT headers->>'traceparent' FROM outbox WHERE partition_key = $1")
            .bind(order.to_string())
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let [traceparent] = traceparents.as_slice() else {
        panic!("one event with a traceparent: {traceparents:?}");
    };
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], trace_id, "the same trace: {traceparent}");
    assert_ne!(
        parts[2], delivery_span_id,
        "the event's own span: {traceparent}"
    );
}

#[tokio::test]
async fn order_cancelled_after_the_charge_refunds_it_and_publishes_payment_refunded() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    handle(&app, &cancelled(order, user)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    let events = outbox(&app, order).await;
    let types: Vec<_> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, [PaymentSucceeded::TYPE, PaymentRefunded::TYPE]);
    let refunded: PaymentRefunded = serde_json::from_value(events[1].1.clone()).unwrap();
    let refund = payments(&app, order).await.pop().unwrap();
    assert_eq!(refund.kind, PaymentKind::Refund);
    assert_eq!(
        refunded,
        PaymentRefunded {
            order_id: order,
            user_id: user,
            payment_id: refund.id,
            amount_cents: 4_000,
        }
    );
}

#[tokio::test]
async fn a_repeated_order_cancelled_refunds_once_and_publishes_once() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();
    handle(&app, &cancelled(order, user)).await.unwrap();

    handle(&app, &cancelled(order, user)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert_eq!(payment_count(&app.pool, order).await, 2);
    assert_eq!(
        event_types(&app, order).await,
        [PaymentSucceeded::TYPE, PaymentRefunded::TYPE]
    );
}

/// What the consumer does to a wallet is in its ledger, in the transaction that records
/// the event: the opening credit, the charge and the refund, each naming its payment.
#[tokio::test]
async fn the_saga_writes_every_change_of_a_balance_to_the_ledger() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());

    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();
    handle(&app, &cancelled(order, user)).await.unwrap();
    // Redeliveries add no rows.
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();
    handle(&app, &cancelled(order, user)).await.unwrap();

    let rows: Vec<_> = ledger_rows(&app.pool, user)
        .await
        .into_iter()
        .map(|row| (row.kind, row.amount_cents, row.payment_id))
        .collect();
    let payment_ids: Vec<_> = payments(&app, order)
        .await
        .iter()
        .map(|p| Some(p.id.as_uuid()))
        .collect();
    assert_eq!(
        rows,
        [
            ("opening_credit".to_owned(), INITIAL_CREDIT, None),
            ("charge".to_owned(), -4_000, payment_ids[0]),
            ("refund".to_owned(), 4_000, payment_ids[1]),
        ]
    );
    assert_eq!(unbalanced_wallets(&app.pool).await, []);
}

#[tokio::test]
async fn stock_reserved_after_the_order_was_cancelled_charges_nothing() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &cancelled(order, user)).await.unwrap();

    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert_eq!(payment_count(&app.pool, order).await, 0);
    let failed: PaymentFailed = the_only_event(&app, order).await;
    assert_eq!(failed.reason, "order_cancelled");
}

#[tokio::test]
async fn stock_reserved_repeated_after_a_refund_publishes_nothing_more() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();
    handle(&app, &reserved(order, user, 4_000)).await.unwrap();
    handle(&app, &cancelled(order, user)).await.unwrap();

    handle(&app, &reserved(order, user, 4_000)).await.unwrap();

    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert_eq!(
        event_types(&app, order).await,
        [PaymentSucceeded::TYPE, PaymentRefunded::TYPE]
    );
}

/// The race the advisory lock is for: the reservation and the cancellation of one order
/// handled at the same moment, as two replicas would, each in its own transaction. Whoever
/// goes first, the customer's money must end where it started.
#[tokio::test]
async fn a_cancellation_racing_the_reservation_never_loses_money() {
    const ORDERS: usize = 20;
    let app = spawn_app().await;
    let mut orders = Vec::with_capacity(ORDERS);
    for _ in 0..ORDERS {
        let user = UserId::new();
        handle(&app, &registered(user)).await.unwrap();
        orders.push((OrderId::new(), user));
    }

    for (i, &(order, user)) in orders.iter().enumerate() {
        let (reserved, cancelled) = (reserved(order, user, 4_000), cancelled(order, user));
        // Each side gets the head start on every other order.
        let (first, second) = if i % 2 == 0 {
            (&reserved, &cancelled)
        } else {
            (&cancelled, &reserved)
        };
        let (a, b) = tokio::join!(handle(&app, first), handle(&app, second));
        a.unwrap();
        b.unwrap();
    }

    for &(order, user) in &orders {
        assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT), "{order}");
        let events = event_types(&app, order).await;
        let payments = payment_count(&app.pool, order).await;
        match events
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            // Charged first, then refunded by the cancellation.
            [PaymentSucceeded::TYPE, PaymentRefunded::TYPE] => assert_eq!(payments, 2, "{order}"),
            // Cancelled first: never charged.
            [PaymentFailed::TYPE] => assert_eq!(payments, 0, "{order}"),
            other => panic!("order {order}: unexpected events {other:?}"),
        }
    }
    assert_eq!(unbalanced_wallets(&app.pool).await, []);
}

#[tokio::test]
async fn a_stock_reserved_that_does_not_decode_fails_permanently() {
    let app = spawn_app().await;
    let event = StockReserved {
        order_id: OrderId::new(),
        user_id: UserId::new(),
        total_cents: 4_000,
    };
    let mut message = Message::from_event(&CloudEvent::new("/test", &event), &event).unwrap();
    message.payload = br#"{"order_id": "not-an-id"}"#.to_vec();
    let event = IncomingEvent::from_message(&message).unwrap();

    let error = handle(&app, &event).await.unwrap_err();

    assert!(matches!(error, HandlerError::Permanent(_)), "{error}");
}

#[tokio::test]
async fn a_stock_reserved_without_a_positive_total_fails_permanently_and_takes_nothing() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    handle(&app, &registered(user)).await.unwrap();

    for total in [0, -100] {
        let error = handle(&app, &reserved(order, user, total))
            .await
            .unwrap_err();

        assert!(matches!(error, HandlerError::Permanent(_)), "{error}");
    }
    assert_eq!(balance(&app, user).await, Some(INITIAL_CREDIT));
    assert!(outbox(&app, order).await.is_empty());
}

fn registered(user_id: UserId) -> IncomingEvent {
    incoming(&UserRegistered {
        user_id,
        email: format!("{user_id}@example.com"),
        name: "Ada".to_owned(),
    })
}

fn reserved(order_id: OrderId, user_id: UserId, total_cents: i64) -> IncomingEvent {
    incoming(&StockReserved {
        order_id,
        user_id,
        total_cents,
    })
}

fn cancelled(order_id: OrderId, user_id: UserId) -> IncomingEvent {
    incoming(&OrderCancelled {
        order_id,
        user_id,
        reason: "cancelled_by_customer".to_owned(),
    })
}

/// `event` as the consumer receives it from the broker: a new delivery, with its own id,
/// each time (so the inbox would not recognise a repeat; the handler must).
fn incoming<E: Event>(event: &E) -> IncomingEvent {
    let envelope = CloudEvent::new("/test", event);
    let message = Message::from_event(&envelope, event).unwrap();
    IncomingEvent::from_message(&message).unwrap()
}

/// Handles `event` in a transaction of its own and commits it, as the consumer does.
async fn handle(app: &TestApp, event: &IncomingEvent) -> Result<(), HandlerError> {
    let mut transaction = app.pool.begin().await.unwrap();
    app.saga.handle(&mut transaction, event).await?;
    transaction.commit().await.unwrap();
    Ok(())
}

/// The balance of `user`'s wallet as an admin reads it over the API; `None` without one.
async fn balance(app: &TestApp, user: UserId) -> Option<i64> {
    let (_, admin) = tokens::admin();
    let response = app
        .api
        .get(&format!("/api/v1/wallets/{user}"))
        .bearer(&admin)
        .send()
        .await;
    if response.status == 404 {
        return None;
    }
    response.assert_status(200);
    Some(response.json::<Wallet>().balance_cents)
}

/// The payments of `order` as an admin reads them over the API, oldest first.
async fn payments(app: &TestApp, order: OrderId) -> Vec<Payment> {
    let (_, admin) = tokens::admin();
    let response = app
        .api
        .get(&format!("/api/v1/payments?order_id={order}"))
        .bearer(&admin)
        .send()
        .await;
    response.assert_status(200);
    response.json::<Page<Payment>>().items
}

async fn the_only_payment(app: &TestApp, order: OrderId) -> Payment {
    let mut payments = payments(app, order).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    payments.remove(0)
}

/// The events written to the outbox about `subject` (their partition key), oldest first,
/// as `(type, data)`.
async fn outbox(
    app: &TestApp,
    subject: impl std::fmt::Display,
) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as("SELECT event_type, payload FROM outbox WHERE partition_key = $1 ORDER BY seq")
        .bind(subject.to_string())
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn event_types(app: &TestApp, order: OrderId) -> Vec<String> {
    outbox(app, order)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// The one event in the outbox about `order`, which must be an `E`.
async fn the_only_event<E: Event>(app: &TestApp, order: OrderId) -> E {
    let events = outbox(app, order).await;
    match events.as_slice() {
        [(event_type, data)] if event_type == E::TYPE => {
            serde_json::from_value(data.clone()).unwrap()
        }
        other => panic!("expected one {}, found {other:?}", E::TYPE),
    }
}
