use shop_model::api::{Order, Page};
use test_kit::tokens;

use crate::helpers::{order_body, spawn_app};

#[tokio::test]
async fn the_same_key_and_body_return_the_same_order() {
    let app = spawn_app().await;
    let product = app.create_product(300, 10).await;
    let (_, token) = tokens::customer();
    let body = order_body(&[(product.id.to_string(), 2)]);
    let send = || {
        app.api
            .post("/api/v1/orders")
            .bearer(&token)
            .header("Idempotency-Key", "order-attempt-1")
            .json(&body)
            .send()
    };

    let first = send().await;
    let second = send().await;

    first.assert_status(202);
    second.assert_status(202);
    assert_eq!(first.json::<Order>().id, second.json::<Order>().id);
    assert!(first.header("idempotent-replayed").is_none());
    assert_eq!(
        second.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    let list: Page<Order> = app.list_orders(&token, "").await.json();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_rejected_with_422() {
    let app = spawn_app().await;
    let product = app.create_product(300, 10).await;
    let (_, token) = tokens::customer();
    let post = |quantity| {
        app.api
            .post("/api/v1/orders")
            .bearer(&token)
            .header("Idempotency-Key", "k-1")
            .json(&order_body(&[(product.id.to_string(), quantity)]))
            .send()
    };

    post(1).await.assert_status(202);
    let conflicting = post(2).await;

    conflicting.assert_status(422);
    assert_eq!(
        conflicting.problem().problem_type,
        "/problems/unprocessable"
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let app = spawn_app().await;
    let product = app.create_product(300, 10).await;
    let (_, token) = tokens::customer();
    let body = order_body(&[(product.id.to_string(), 1)]);

    let responses = futures_util::future::join_all((0..8).map(|_| {
        app.api
            .post("/api/v1/orders")
            .bearer(&token)
            .header("Idempotency-Key", "burst")
            .json(&body)
            .send()
    }))
    .await;

    let ids: std::collections::HashSet<_> = responses
        .iter()
        .map(|r| {
            r.assert_status(202);
            r.json::<Order>().id
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let list: Page<Order> = app.list_orders(&token, "").await.json();
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_user() {
    let app = spawn_app().await;
    let product = app.create_product(300, 10).await;
    let body = order_body(&[(product.id.to_string(), 1)]);
    let (_, ann) = tokens::customer();
    let (_, bob) = tokens::customer();

    let mut ids = Vec::new();
    for token in [&ann, &bob] {
        let response = app
            .api
            .post("/api/v1/orders")
            .bearer(token)
            .header("Idempotency-Key", "same")
            .json(&body)
            .send()
            .await;
        response.assert_status(202);
        ids.push(response.json::<Order>().id);
    }

    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn an_oversize_key_is_rejected_with_400() {
    let app = spawn_app().await;
    let product = app.create_product(300, 10).await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .header("Idempotency-Key", &"k".repeat(256))
        .json(&order_body(&[(product.id.to_string(), 1)]))
        .send()
        .await;

    response.assert_status(400);
}

#[tokio::test]
async fn without_a_token_a_malformed_key_is_401_not_400() {
    let app = spawn_app().await;
    let product = app.create_product(300, 10).await;

    let response = app
        .api
        .post("/api/v1/orders")
        .header("Idempotency-Key", "  ")
        .json(&order_body(&[(product.id.to_string(), 1)]))
        .send()
        .await;

    response.assert_status(401);
}
