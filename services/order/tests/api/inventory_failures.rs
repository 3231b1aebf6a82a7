//! order-service's reaction to inventory-service being slow or down: it answers 503 with
//! `Retry-After`, stores nothing, retries only the idempotent price lookup, and stops
//! calling a failing inventory for a while once its circuit opens.

use std::time::Duration;

use shop_model::api::{Order, Page};
use test_kit::tokens;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{order_body, spawn_app_with_fake_inventory};

fn body() -> serde_json::Value {
    order_body(&[(uuid::Uuid::now_v7().to_string(), 1)])
}

#[tokio::test]
async fn a_slow_inventory_times_out_into_503_and_nothing_is_stored() {
    let inventory = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .expect(2)
        .mount(&inventory)
        .await;
    let app = spawn_app_with_fake_inventory(
        &inventory.uri(),
        &[
            ("INVENTORY_TIMEOUT_MS", "200"),
            ("INVENTORY_MAX_ATTEMPTS", "2"),
        ],
    )
    .await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .json(&body())
        .send()
        .await;

    response.assert_status(503);
    assert!(response.header("retry-after").is_some());
    let list: Page<Order> = app.list_orders(&token, "").await.json();
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn the_price_lookup_is_retried_before_giving_up() {
    let inventory = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&inventory)
        .await;
    let app =
        spawn_app_with_fake_inventory(&inventory.uri(), &[("INVENTORY_MAX_ATTEMPTS", "3")]).await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .json(&body())
        .send()
        .await;

    response.assert_status(503);
}

#[tokio::test]
async fn a_transient_failure_is_absorbed_by_the_retry() {
    let inventory = MockServer::start().await;
    let product_id = uuid::Uuid::now_v7();
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&inventory)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"id": product_id, "sku": "A", "name": "A", "description": "",
                       "price_cents": 700, "available": 5, "reserved": 0}],
            "next_cursor": null
        })))
        .mount(&inventory)
        .await;
    let app = spawn_app_with_fake_inventory(&inventory.uri(), &[]).await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .json(&order_body(&[(product_id.to_string(), 2)]))
        .send()
        .await;

    response.assert_status(202);
    assert_eq!(response.json::<Order>().total_cents, 1400);
}

#[tokio::test]
async fn once_the_circuit_opens_inventory_is_not_called() {
    let inventory = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/products"))
        .respond_with(ResponseTemplate::new(500))
        .expect(2)
        .mount(&inventory)
        .await;
    let app = spawn_app_with_fake_inventory(
        &inventory.uri(),
        &[
            ("INVENTORY_MAX_ATTEMPTS", "1"),
            ("INVENTORY_BREAKER_THRESHOLD", "2"),
            ("INVENTORY_BREAKER_OPEN_SECS", "60"),
        ],
    )
    .await;
    let (_, token) = tokens::customer();

    for _ in 0..5 {
        let response = app
            .api
            .post("/api/v1/orders")
            .bearer(&token)
            .json(&body())
            .send()
            .await;
        response.assert_status(503);
    }
    // `expect(2)`: the three requests after the circuit opened never reached inventory.
}

#[tokio::test]
async fn an_unreachable_inventory_answers_503() {
    let app =
        spawn_app_with_fake_inventory("http://127.0.0.1:9", &[("INVENTORY_MAX_ATTEMPTS", "2")])
            .await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .json(&body())
        .send()
        .await;

    response.assert_status(503);
}
