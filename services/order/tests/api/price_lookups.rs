//! The price lookup is made on the customer's behalf: it carries their token, so the real
//! inventory-service rate-limits it as that customer, not every customer's lookups from
//! this order-service together as one anonymous client (which above about 100 orders a
//! second got 429, opened the circuit and failed every new order with 503).

use std::time::Instant;

use futures_util::future::join_all;
use shop_model::api::Product;
use test_kit::{TestResponse, tokens};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::helpers::{
    TestApp, spawn_app, spawn_app_with_fake_inventory, spawn_app_with_inventory_settings,
};

/// `customers` customers at once, each placing `orders` one-unit orders of `product`
/// one after the other; every answer.
async fn place_concurrently(
    app: &TestApp,
    product: &Product,
    customers: usize,
    orders: usize,
) -> Vec<TestResponse> {
    let line = [(product.id.to_string(), 1)];
    let customers = (0..customers).map(|_| tokens::customer().1);
    let answers = join_all(customers.map(|token| {
        let line = &line;
        async move {
            let mut answers = Vec::with_capacity(orders);
            for _ in 0..orders {
                answers.push(app.place_order(&token, line).await);
            }
            answers
        }
    }))
    .await;
    answers.into_iter().flatten().collect()
}

/// order-service, and an inventory-service that lets each client make 3 requests at once
/// and then 1 a second; a product in stock.
async fn tightly_limited_inventory() -> (TestApp, Product) {
    let app = spawn_app_with_inventory_settings(&[
        ("RATE_LIMIT_PER_SECOND", "1"),
        ("RATE_LIMIT_BURST", "3"),
    ])
    .await;
    let product = app.create_product(100, 1_000).await;
    (app, product)
}

fn statuses(answers: &[TestResponse]) -> Vec<u16> {
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// The "done when" line. On a small machine the orders arrive slower than the
/// old anonymous limit (burst 200, then 100 a second) would have refused, so the next
/// test is the one that tells identified lookups from anonymous ones.
#[tokio::test]
async fn three_hundred_orders_from_thirty_customers_under_the_default_limits_are_all_accepted() {
    let app = spawn_app().await;
    let product = app.create_product(100, 1_000).await;

    let start = Instant::now();
    let answers = place_concurrently(&app, &product, 30, 10).await;
    let took = start.elapsed();

    assert_eq!(answers.len(), 300);
    assert_eq!(
        statuses(&answers),
        [202],
        "300 orders in {took:?}: none may be limited or fail"
    );
}

#[tokio::test]
async fn price_lookups_count_against_each_customer_not_against_order_service() {
    // A limit far below what the customers' lookups add up to, but above what each one
    // needs: keyed on order-service's address, most of these orders would fail.
    let (app, product) = tightly_limited_inventory().await;

    let answers = place_concurrently(&app, &product, 20, 3).await;

    assert_eq!(answers.len(), 60);
    assert_eq!(statuses(&answers), [202]);
}

#[tokio::test]
async fn a_customer_over_their_inventory_limit_gets_429_and_the_others_still_order() {
    let (app, product) = tightly_limited_inventory().await;
    let inventory = app.inventory.as_ref().expect("inventory");
    let (_, noisy) = tokens::customer();
    for _ in 0..3 {
        inventory
            .get(&format!("/api/v1/products/{}", product.id))
            .bearer(&noisy)
            .send()
            .await
            .assert_status(200);
    }
    let line = [(product.id.to_string(), 1)];

    // More refusals than the circuit breaker's threshold (5): they are this customer's
    // limit, not inventory failing, so the circuit must stay closed for everyone else.
    let mut refused = Vec::new();
    for _ in 0..6 {
        refused.push(app.place_order(&noisy, &line).await);
    }
    let (_, other) = tokens::customer();
    let accepted = app.place_order(&other, &line).await;

    for answer in &refused {
        answer.assert_status(429);
        assert!(answer.header("retry-after").is_some());
    }
    accepted.assert_status(202);
}

#[tokio::test]
async fn the_price_lookup_carries_the_customers_token() {
    let inventory = MockServer::start().await;
    let (_, token) = tokens::customer();
    let product_id = shop_model::ProductId::new();
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"id": product_id, "sku": "MUG-001", "name": "Mug", "description": "",
                       "price_cents": 500, "available": 10, "reserved": 0}],
            "next_cursor": null
        })))
        .expect(1)
        .mount(&inventory)
        .await;
    let app = spawn_app_with_fake_inventory(&inventory.uri(), &[]).await;

    let response = app
        .place_order(&token, &[(product_id.to_string(), 1)])
        .await;

    response.assert_status(202);
}
