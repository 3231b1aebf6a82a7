//! The order saga end to end, in Kafka mode and in RabbitMQ mode. Every scenario asserts
//! its invariants; none sleeps for a fixed time (they wait on conditions with deadlines).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use e2e_tests::{INITIAL_CREDIT, Mode, SAGA_DEADLINE, Service, Stack};
use service_kit::events::{DEAD_LETTER_TOPIC, Message, Subscription, headers};
use shop_model::{
    api::{OrderStatus, PaymentKind},
    events::{Event, OrderPlaced, StockReserved},
};

e2e_tests::both_brokers!(
    a_paid_order_is_confirmed_and_its_stock_sold,
    an_order_for_more_than_the_stock_is_rejected_and_nothing_moves,
    an_order_above_the_balance_is_rejected_and_its_reservation_released,
    a_cancelled_confirmed_order_is_refunded_once_and_its_stock_returned,
    concurrent_orders_for_scarce_stock_never_oversell_and_conserve_money,
    an_event_delivered_twice_has_one_effect,
    a_poison_message_is_dead_lettered_and_later_orders_still_complete,
    a_service_killed_mid_saga_completes_its_orders_after_restart,
    orders_placed_while_the_broker_is_down_complete_when_it_returns,
    two_replicas_of_order_service_publish_each_event_once,
);

async fn a_paid_order_is_confirmed_and_its_stock_sold(mode: Mode) {
    let stack = Stack::start(mode, "happy_path").await;
    let customer = stack.customer().await;
    let mug = stack.create_product(1_500, 10).await;

    let order = stack.place_order(&customer, &[(&mug, 3)]).await;
    let order = stack.settled(&customer, &order).await;

    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.status_reason, None);
    assert_eq!(stack.balance(&customer).await, INITIAL_CREDIT - 4_500);
    // The sale is inventory's reaction to OrderConfirmed: it follows the confirmation.
    test_kit::eventually(
        SAGA_DEADLINE,
        "3 of 10 sold, nothing left reserved",
        || async {
            let mug = stack.product(&mug).await;
            (mug.available == 7 && mug.reserved == 0).then_some(())
        },
    )
    .await;
    let payments = stack.payments(&order).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(
        (payments[0].kind, payments[0].amount_cents),
        (PaymentKind::Charge, 4_500)
    );
}

async fn an_order_for_more_than_the_stock_is_rejected_and_nothing_moves(mode: Mode) {
    let stack = Stack::start(mode, "out_of_stock").await;
    let customer = stack.customer().await;
    let plenty = stack.create_product(100, 50).await;
    let scarce = stack.create_product(100, 2).await;

    let order = stack
        .place_order(&customer, &[(&plenty, 1), (&scarce, 3)])
        .await;
    let order = stack.settled(&customer, &order).await;

    assert_eq!(order.status, OrderStatus::Rejected);
    assert_eq!(order.status_reason.as_deref(), Some("out_of_stock"));
    assert_eq!(stack.balance(&customer).await, INITIAL_CREDIT);
    for (product, stock) in [(&plenty, 50), (&scarce, 2)] {
        let product = stack.product(product).await;
        assert_eq!(
            (product.available, product.reserved),
            (stock, 0),
            "all or nothing"
        );
    }
    assert!(stack.payments(&order).await.is_empty());
}

async fn an_order_above_the_balance_is_rejected_and_its_reservation_released(mode: Mode) {
    let stack = Stack::start(mode, "insufficient_funds").await;
    let customer = stack.customer().await;
    let espresso = stack.create_product(INITIAL_CREDIT + 1, 5).await;

    let order = stack.place_order(&customer, &[(&espresso, 1)]).await;
    let order = stack.settled(&customer, &order).await;

    assert_eq!(order.status, OrderStatus::Rejected);
    assert_eq!(order.status_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(stack.balance(&customer).await, INITIAL_CREDIT);
    // The reservation is released by the OrderCancelled that the rejection published.
    test_kit::eventually(SAGA_DEADLINE, "the reservation to be released", || async {
        let product = stack.product(&espresso).await;
        (product.reserved == 0 && product.available == 5).then_some(())
    })
    .await;
}

async fn a_cancelled_confirmed_order_is_refunded_once_and_its_stock_returned(mode: Mode) {
    let stack = Stack::start(mode, "cancel_confirmed").await;
    let customer = stack.customer().await;
    let lamp = stack.create_product(2_500, 4).await;
    let order = stack.place_order(&customer, &[(&lamp, 2)]).await;
    stack
        .wait_for_status(&customer, &order, OrderStatus::Confirmed)
        .await;

    let cancelled = stack.cancel(&customer, &order).await;

    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        cancelled.status_reason.as_deref(),
        Some("cancelled_by_customer")
    );
    test_kit::eventually(
        SAGA_DEADLINE,
        "the refund and the returned stock",
        || async {
            let balance = stack.balance(&customer).await;
            let lamp = stack.product(&lamp).await;
            (balance == INITIAL_CREDIT && lamp.available == 4 && lamp.reserved == 0).then_some(())
        },
    )
    .await;
    let kinds: Vec<_> = stack
        .payments(&order)
        .await
        .iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == PaymentKind::Refund).count(),
        1
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == PaymentKind::Charge).count(),
        1
    );
    // Cancelling again is refused and moves no money.
    let again = stack
        .api(Service::Order)
        .post(&format!("/api/v1/orders/{}/cancel", order.id))
        .bearer(&customer.token)
        .send()
        .await;
    again.assert_status(409);
}

async fn concurrent_orders_for_scarce_stock_never_oversell_and_conserve_money(mode: Mode) {
    let stack = Stack::start(mode, "concurrency").await;
    const STOCK: i64 = 12;
    const PRICE: i64 = 9_000;
    let scarce = stack.create_product(PRICE, STOCK).await;
    let mut customers = Vec::new();
    for _ in 0..5 {
        customers.push(stack.customer().await);
    }

    // 50 orders from 5 customers at once; each customer can afford 11 of them.
    let placed = futures_util::future::join_all((0..50).map(|i| {
        let customer = &customers[i % customers.len()];
        let stack = &stack;
        let scarce = &scarce;
        async move { (i % 5, stack.place_order(customer, &[(scarce, 1)]).await) }
    }))
    .await;
    let mut settled = Vec::new();
    for (who, order) in &placed {
        settled.push((*who, stack.settled(&customers[*who], order).await));
    }

    let confirmed = settled
        .iter()
        .filter(|(_, o)| o.status == OrderStatus::Confirmed)
        .count() as i64;
    assert!(
        settled
            .iter()
            .all(|(_, o)| matches!(o.status, OrderStatus::Confirmed | OrderStatus::Rejected))
    );
    assert!(
        confirmed <= STOCK,
        "oversold: {confirmed} confirmed for {STOCK} units"
    );
    let product = test_kit::eventually(SAGA_DEADLINE, "reservations to settle", || async {
        let product = stack.product(&scarce).await;
        (product.reserved == 0).then_some(product)
    })
    .await;
    // Stock is conserved: what is left plus what was sold is what there was.
    assert_eq!(i64::from(product.available) + confirmed, STOCK);
    // Money is conserved per customer: balance + paid − refunded = initial credit.
    for (index, customer) in customers.iter().enumerate() {
        let mut paid = 0;
        let mut refunded = 0;
        for (_, order) in settled.iter().filter(|(who, _)| *who == index) {
            for payment in stack.payments(order).await {
                match payment.kind {
                    PaymentKind::Charge => paid += payment.amount_cents,
                    PaymentKind::Refund => refunded += payment.amount_cents,
                }
            }
        }
        let balance = stack.balance(customer).await;
        assert_eq!(
            balance + paid - refunded,
            INITIAL_CREDIT,
            "customer {index}"
        );
        let confirmed_here = settled
            .iter()
            .filter(|(who, o)| *who == index && o.status == OrderStatus::Confirmed)
            .count() as i64;
        assert_eq!(
            paid - refunded,
            confirmed_here * PRICE,
            "customer {index} pays exactly for confirmed orders"
        );
    }
    // And what the databases say, the wallet ledgers included: every balance is the sum
    // of its ledger rows, every payment is one of them.
    let accepted: Vec<_> = placed.iter().map(|(_, order)| order.id).collect();
    stack.assert_consistent(&accepted).await;
}

async fn an_event_delivered_twice_has_one_effect(mode: Mode) {
    let stack = Stack::start(mode, "duplicate_delivery").await;
    let customer = stack.customer().await;
    let book = stack.create_product(3_000, 10).await;
    let order = stack.place_order(&customer, &[(&book, 1)]).await;
    stack
        .wait_for_status(&customer, &order, OrderStatus::Confirmed)
        .await;

    // Re-publish inventory's StockReserved and order's OrderPlaced exactly as they were
    // published (same event ids), as a broker redelivery would.
    let bus = stack.bus().await;
    let mut ids = Vec::new();
    for (service, event_type) in [
        (Service::Inventory, StockReserved::TYPE),
        (Service::Order, OrderPlaced::TYPE),
    ] {
        let message = outbox_message(&stack, service, event_type, &order.id.to_string()).await;
        ids.push(uuid::Uuid::parse_str(message.header(headers::ID).unwrap()).unwrap());
        bus.publish(&message).await.expect("re-published");
    }
    // Wait until the consumers have seen the copies again: payment's and inventory's inbox
    // each hold the event once, and the copies were counted as duplicates (the inbox row
    // is not duplicated, so we wait on the broker having been drained by a later event).
    let marker = stack.place_order(&customer, &[(&book, 1)]).await;
    stack.settled(&customer, &marker).await;
    // The inbox is what recognised the copies: without it they would be applied again
    // (and the services' own state guards alone would hide that from the balance).
    for (service, event_type) in [
        (Service::Payment, StockReserved::TYPE),
        (Service::Inventory, OrderPlaced::TYPE),
    ] {
        test_kit::eventually(SAGA_DEADLINE, "the copy counted as a duplicate", || async {
            let duplicates = stack
                .metric(
                    service,
                    "shop_events_consumed_total",
                    &[("event_type", event_type), ("outcome", "duplicate")],
                )
                .await;
            (duplicates >= 1.0).then_some(())
        })
        .await;
    }

    assert_eq!(
        stack.balance(&customer).await,
        INITIAL_CREDIT - 6_000,
        "charged once per order"
    );
    let charges = stack.payments(&order).await;
    assert_eq!(charges.len(), 1);
    test_kit::eventually(SAGA_DEADLINE, "two units sold, none reserved", || async {
        let book = stack.product(&book).await;
        (book.available == 8 && book.reserved == 0).then_some(())
    })
    .await;
}

/// The message of an outbox row, as its relay published it.
async fn outbox_message(stack: &Stack, service: Service, event_type: &str, key: &str) -> Message {
    let mut db = stack.db(service).await;
    let (topic, headers, payload): (String, serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT topic, headers, payload FROM outbox WHERE event_type = $1 AND partition_key = $2",
    )
    .bind(event_type)
    .bind(key)
    .fetch_one(&mut db)
    .await
    .expect("the outbox row");
    Message {
        topic,
        key: key.to_owned(),
        headers: serde_json::from_value(headers).unwrap(),
        payload: serde_json::to_vec(&payload).unwrap(),
    }
}

async fn a_poison_message_is_dead_lettered_and_later_orders_still_complete(mode: Mode) {
    let stack = Stack::start(mode, "poison_message").await;
    let customer = stack.customer().await;
    let pen = stack.create_product(200, 10).await;
    let order = stack.place_order(&customer, &[(&pen, 1)]).await;
    stack
        .wait_for_status(&customer, &order, OrderStatus::Confirmed)
        .await;
    let bus = stack.bus().await;
    let mut poison = outbox_message(
        &stack,
        Service::Inventory,
        StockReserved::TYPE,
        &order.id.to_string(),
    )
    .await;
    poison
        .headers
        .insert(headers::ID.to_owned(), uuid::Uuid::now_v7().to_string());
    poison.payload = br#"{"order_id": "not an id"#.to_vec();

    bus.publish(&poison).await.expect("published");
    let later = stack.place_order(&customer, &[(&pen, 2)]).await;
    let later = stack.settled(&customer, &later).await;

    assert_eq!(later.status, OrderStatus::Confirmed);
    let mut dead_letters = bus
        .subscribe(&Subscription {
            consumer: DEAD_LETTER_TOPIC.to_owned(),
            topics: vec![DEAD_LETTER_TOPIC],
            event_types: Vec::new(),
        })
        .await
        .expect("dead letters");
    // Both consumers of StockReserved (order-service and payment-service) give up on it.
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(SAGA_DEADLINE, dead_letters.next())
            .await
            .expect("a dead letter")
            .expect("received");
        assert_eq!(letter.message.payload, poison.payload);
        assert!(letter.message.header(headers::DEAD_LETTER_ERROR).is_some());
        consumers.push(
            letter
                .message
                .header(headers::DEAD_LETTER_CONSUMER)
                .unwrap_or_default()
                .to_owned(),
        );
        dead_letters.ack(&letter).await.expect("ack");
    }
    consumers.sort();
    assert_eq!(consumers, ["order-service", "payment-service"]);
}

async fn a_service_killed_mid_saga_completes_its_orders_after_restart(mode: Mode) {
    let mut stack = Stack::start(mode, "kill_restart").await;
    let customer = stack.customer().await;
    let tea = stack.create_product(500, 100).await;

    stack.kill(Service::Payment);
    let mut orders = Vec::new();
    for _ in 0..5 {
        orders.push(stack.place_order(&customer, &[(&tea, 1)]).await);
    }
    stack.kill(Service::Inventory);
    stack.restart(Service::Inventory).await;
    stack.restart(Service::Payment).await;

    for order in &orders {
        assert_eq!(
            stack.settled(&customer, order).await.status,
            OrderStatus::Confirmed
        );
    }
    assert_eq!(stack.balance(&customer).await, INITIAL_CREDIT - 2_500);
    test_kit::eventually(SAGA_DEADLINE, "5 of 100 sold", || async {
        let tea = stack.product(&tea).await;
        (tea.available == 95 && tea.reserved == 0).then_some(())
    })
    .await;
}

async fn orders_placed_while_the_broker_is_down_complete_when_it_returns(mode: Mode) {
    let stack = Stack::start(mode, "broker_outage").await;
    let customer = stack.customer().await;
    let soap = stack.create_product(300, 20).await;

    stack.set_broker_up(false).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(stack.place_order(&customer, &[(&soap, 1)]).await);
    }
    for order in &orders {
        assert_eq!(
            stack.order(&customer, order).await.status,
            OrderStatus::Pending
        );
    }
    stack.set_broker_up(true).await;

    for order in &orders {
        assert_eq!(
            stack.settled(&customer, order).await.status,
            OrderStatus::Confirmed
        );
    }
    assert_eq!(stack.balance(&customer).await, INITIAL_CREDIT - 900);
}

async fn two_replicas_of_order_service_publish_each_event_once(mode: Mode) {
    let mut stack = Stack::start(mode, "two_replicas").await;
    let replica = stack.add_replica(Service::Order).await;
    let customer = stack.customer().await;
    let cup = stack.create_product(100, 1_000).await;

    let mut orders = Vec::new();
    for i in 0..20 {
        let order = if i % 2 == 0 {
            stack.place_order(&customer, &[(&cup, 1)]).await
        } else {
            stack
                .place_order_via(&replica, &customer, &[(&cup, 1)])
                .await
        };
        orders.push(order);
    }
    for order in &orders {
        assert_eq!(
            stack.settled(&customer, order).await.status,
            OrderStatus::Confirmed
        );
    }

    // Every outbox row of order-service was published by exactly one relay, in one attempt.
    let mut db = stack.db(Service::Order).await;
    let rows: Vec<(String, i32, bool)> =
        sqlx::query_as("SELECT partition_key, attempts, published_at IS NOT NULL FROM outbox")
            .fetch_all(&mut db)
            .await
            .expect("outbox rows");
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for (key, attempts, published) in rows {
        assert!(published, "every event published");
        assert_eq!(attempts, 1, "published once");
        *per_order.entry(key).or_default() += 1;
    }
    for order in &orders {
        // OrderPlaced and OrderConfirmed.
        assert_eq!(per_order.get(&order.id.to_string()), Some(&2));
    }
    // The money says the same: 20 charges, no more.
    assert_eq!(stack.balance(&customer).await, INITIAL_CREDIT - 2_000);
}
