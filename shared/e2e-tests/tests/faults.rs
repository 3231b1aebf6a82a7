//! Fault scenarios, in Kafka mode and in RabbitMQ mode: PostgreSQL away for long enough
//! to exhaust every retry, two replicas of every consuming service racing over a burst
//! with cancels, and every service killed mid-load. Each ends with the consistency oracle
//! (`Stack::assert_consistent`), which reads every database and counts the dead letters:
//! whatever happened on the way, nothing may be lost, stuck, or paid twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e_tests::{Customer, Load, LoadPlan, Mode, SAGA_DEADLINE, Service, Stack};
use futures_util::StreamExt;
use shop_model::api::{Order, Product};
use test_kit::ApiClient;
use tokio::time::Instant;

e2e_tests::both_brokers!(
    accepted_orders_complete_after_postgres_is_unreachable_for_45_seconds,
    two_replicas_of_every_consuming_service_stay_consistent_under_a_burst_with_cancels,
    each_service_killed_with_sigkill_mid_load_loses_nothing,
);

async fn customers(stack: &Stack, count: usize) -> Vec<Customer> {
    let mut customers = Vec::new();
    for _ in 0..count {
        customers.push(stack.customer().await);
    }
    customers
}

async fn accepted_orders_complete_after_postgres_is_unreachable_for_45_seconds(mode: Mode) {
    const OUTAGE: Duration = Duration::from_secs(45);
    let stack = Stack::start(mode, "postgres_outage").await;
    let customers = customers(&stack, 3).await;
    let mut products = Vec::new();
    for price in [300, 500, 700] {
        products.push(stack.create_product(price, 2_000).await.id);
    }
    let load = Load::start(
        vec![stack.api(Service::Order).base_url().to_owned()],
        &customers,
        &products,
        LoadPlan {
            orders_per_second: 4,
            max_orders: 400,
            max_duration: Duration::from_secs(80),
            client_timeout: Duration::from_secs(2),
        },
    );

    tokio::time::sleep_until(load.started + Duration::from_secs(5)).await;
    let cut = Instant::now();
    stack.set_database_up(false).await;
    tokio::time::sleep(OUTAGE).await;
    stack.set_database_up(true).await;
    let restored = Instant::now();
    // The outage, as a client sees it, lasts until orders are accepted again (the pools
    // reconnect, order-service's circuit breaker to inventory closes).
    let recovered = load.accepted_after(restored, 1, SAGA_DEADLINE).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await;

    let refused = report.assert_refused_only_during(&[(cut, recovered)]);
    assert!(
        report.accepted_between(report.started, cut) > 0,
        "orders were accepted before the outage"
    );
    assert!(refused > 0, "the outage refused orders");
    let settled = stack.assert_consistent(&report.accepted()).await;
    assert!(
        settled.orders() >= report.accepted().len(),
        "{settled:?}, {} accepted",
        report.accepted().len()
    );
    assert!(settled.confirmed > 0, "{settled:?}");
    stack.assert_no_internal_errors();
}

async fn two_replicas_of_every_consuming_service_stay_consistent_under_a_burst_with_cancels(
    mode: Mode,
) {
    const ORDERS: usize = 150;
    let mut stack = Stack::start(mode, "replicas_burst").await;
    let order_apis = [
        stack.api(Service::Order),
        stack.add_replica(Service::Order).await,
    ];
    stack.add_replica(Service::Payment).await;
    stack.add_replica(Service::Inventory).await;
    let customers = customers(&stack, 5).await;
    // Scarce: far fewer units than the burst asks for, so some orders are rejected.
    let scarce = stack.create_product(2_500, 25).await;
    let plenty = stack.create_product(1_000, 1_000).await;

    let answers: Vec<(Order, bool)> = futures_util::stream::iter(0..ORDERS)
        .map(|i| {
            let customer = &customers[i % customers.len()];
            let (placing, cancelling) = (&order_apis[i % 2], &order_apis[(i + 1) % 2]);
            let lines: Vec<(&Product, i64)> = match i % 3 {
                0 => vec![(&scarce, 1), (&plenty, 1)],
                1 => vec![(&scarce, 2)],
                _ => vec![(&plenty, 3)],
            };
            let stack = &stack;
            async move {
                let order = stack.place_order_via(placing, customer, &lines).await;
                // About half are cancelled at once, through the other replica, while
                // their saga runs.
                let cancelled = i % 2 == 0 && cancel(cancelling, customer, &order).await;
                (order, cancelled)
            }
        })
        .buffer_unordered(30)
        .collect()
        .await;

    let accepted: Vec<_> = answers.iter().map(|(order, _)| order.id).collect();
    let settled = stack.assert_consistent(&accepted).await;
    assert_eq!(settled.orders(), ORDERS, "{settled:?}");
    let cancelled_by_request = answers.iter().filter(|(_, cancelled)| *cancelled).count();
    assert_eq!(
        settled.cancelled, cancelled_by_request,
        "the orders whose cancel was answered 200 are the cancelled ones: {settled:?}"
    );
    assert!(
        settled.rejected > 0,
        "scarce stock rejects some: {settled:?}"
    );
    assert!(settled.confirmed > 0, "{settled:?}");
    stack.assert_no_internal_errors();
}

/// Cancels `order`: true if it was cancelled (200), false if it had already been rejected
/// (409); any other answer fails the test.
async fn cancel(api: &ApiClient, customer: &Customer, order: &Order) -> bool {
    let response = api
        .post(&format!("/api/v1/orders/{}/cancel", order.id))
        .bearer(&customer.token)
        .send()
        .await;
    match response.status.as_u16() {
        200 => true,
        409 => false,
        status => panic!("cancel answered {status}: {}", response.text()),
    }
}

async fn each_service_killed_with_sigkill_mid_load_loses_nothing(mode: Mode) {
    let mut stack = Stack::start(mode, "sigkill_under_load").await;
    let customers = customers(&stack, 3).await;
    let mut products = Vec::new();
    for price in [400, 600] {
        products.push(stack.create_product(price, 2_000).await.id);
    }
    let load = Load::start(
        vec![stack.api(Service::Order).base_url().to_owned()],
        &customers,
        &products,
        LoadPlan {
            orders_per_second: 5,
            max_orders: 400,
            max_duration: Duration::from_secs(75),
            client_timeout: Duration::from_secs(2),
        },
    );
    let mut outages = Vec::new();
    let mut since = load.started;
    for service in [
        Service::Payment,
        Service::Inventory,
        Service::Order,
        Service::User,
    ] {
        // Some orders in flight through every service when it dies.
        load.accepted_after(since, 10, SAGA_DEADLINE).await;
        let down = Instant::now();
        stack.kill(service);
        stack.restart(service).await;
        // Down until an order placed after the restart is accepted (order-service's
        // breaker to inventory may stay open for a while after inventory returns).
        let restarted = Instant::now();
        let up = load.accepted_after(restarted, 1, SAGA_DEADLINE).await;
        outages.push((down, up));
        since = restarted;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;

    report.assert_refused_only_during(&outages);
    let settled = stack.assert_consistent(&report.accepted()).await;
    assert!(
        settled.orders() >= report.accepted().len(),
        "{settled:?}, {} accepted",
        report.accepted().len()
    );
    assert!(settled.confirmed > 0, "{settled:?}");
    stack.assert_no_internal_errors();
}
