//! `POST /api/v1/products/{id}/stock`: adjusting the units on hand.

use shop_model::{ProductId, api::Product};
use test_kit::tokens;

use crate::helpers::{admin_token, customer_token, spawn_app};

#[tokio::test]
async fn adding_stock_returns_the_product_with_more_available() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let response = app.adjust_stock(product.id, 15, &admin_token()).await;

    response.assert_status(200);
    assert_eq!(response.json::<Product>().available, 25);
    let stored: Product = app.get_product(product.id).await.json();
    assert_eq!(stored.available, 25);
}

#[tokio::test]
async fn removing_stock_down_to_zero_succeeds() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let response = app.adjust_stock(product.id, -10, &admin_token()).await;

    response.assert_status(200);
    assert_eq!(response.json::<Product>().available, 0);
}

#[tokio::test]
async fn removing_more_stock_than_is_on_hand_returns_409_and_changes_nothing() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let response = app.adjust_stock(product.id, -11, &admin_token()).await;

    response.assert_status(409);
    let problem = response.problem();
    assert_eq!(problem.problem_type, "/problems/conflict");
    // Said as what it is: nothing is reserved, the stock would go below zero.
    let detail = problem.detail.unwrap_or_default();
    assert!(
        detail.contains("below zero") && !detail.contains("reserved"),
        "{detail}"
    );
    let stored: Product = app.get_product(product.id).await.json();
    assert_eq!(stored.available, 10);
}

#[tokio::test]
async fn removing_stock_that_is_reserved_for_orders_returns_409() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;
    app.reserve(product.id, 4).await;

    let too_much = app.adjust_stock(product.id, -7, &admin_token()).await;
    let unreserved = app.adjust_stock(product.id, -6, &admin_token()).await;

    too_much.assert_status(409);
    assert!(
        too_much
            .problem()
            .detail
            .is_some_and(|d| d.contains("reserved"))
    );
    unreserved.assert_status(200);
    let adjusted: Product = unreserved.json();
    assert_eq!((adjusted.available, adjusted.reserved), (0, 4));
}

#[tokio::test]
async fn adding_stock_beyond_the_maximum_returns_409() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", i64::from(i32::MAX) - 1).await;

    let response = app.adjust_stock(product.id, 2, &admin_token()).await;

    response.assert_status(409);
}

#[tokio::test]
async fn a_zero_or_out_of_range_delta_returns_422() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    for delta in [0, i64::from(i32::MAX) + 1, i64::from(i32::MIN) - 1] {
        let response = app.adjust_stock(product.id, delta, &admin_token()).await;
        response.assert_status(422);
        assert!(
            response
                .problem()
                .errors
                .is_some_and(|e| e.contains_key("delta")),
            "delta={delta}"
        );
    }
}

#[tokio::test]
async fn adjusting_the_stock_of_an_unknown_product_returns_404() {
    let app = spawn_app().await;

    for delta in [5, -5] {
        app.adjust_stock(ProductId::new(), delta, &admin_token())
            .await
            .assert_status(404);
    }
}

#[tokio::test]
async fn adjusting_stock_with_malformed_json_returns_400() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let response = app
        .api
        .post(&format!("/api/v1/products/{}/stock", product.id))
        .bearer(&admin_token())
        .raw("application/json", r#"{"delta": "#)
        .send()
        .await;

    response.assert_status(400);
}

#[tokio::test]
async fn adjusting_stock_without_a_json_content_type_returns_415() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let response = app
        .api
        .post(&format!("/api/v1/products/{}/stock", product.id))
        .bearer(&admin_token())
        .raw("text/plain", r#"{"delta": 1}"#)
        .send()
        .await;

    response.assert_status(415);
}

#[tokio::test]
async fn adjusting_stock_without_a_valid_token_returns_401() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let missing = app
        .api
        .post(&format!("/api/v1/products/{}/stock", product.id))
        .json(&serde_json::json!({ "delta": 1 }))
        .send()
        .await;
    missing.assert_status(401);

    for token in [
        tokens::GARBAGE.to_owned(),
        tokens::expired(),
        tokens::wrong_audience(),
        tokens::untrusted_signature(),
    ] {
        app.adjust_stock(product.id, 1, &token)
            .await
            .assert_status(401);
    }
}

#[tokio::test]
async fn adjusting_stock_as_a_customer_returns_403_and_changes_nothing() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 10).await;

    let response = app.adjust_stock(product.id, -5, &customer_token()).await;

    response.assert_status(403);
    let stored: Product = app.get_product(product.id).await.json();
    assert_eq!(stored.available, 10);
}

#[tokio::test]
async fn concurrent_removals_never_take_the_stock_below_zero() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 5).await;
    let token = admin_token();

    // Each removal alone is allowed; both together would leave -1.
    let (first, second) = tokio::join!(
        app.adjust_stock(product.id, -3, &token),
        app.adjust_stock(product.id, -3, &token),
    );

    let mut statuses = [first.status.as_u16(), second.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "exactly one removal succeeds");
    let stored: Product = app.get_product(product.id).await.json();
    assert_eq!(stored.available, 2);
}

#[tokio::test]
async fn many_concurrent_removals_are_neither_lost_nor_overdrawn() {
    let app = spawn_app().await;
    let product = app.create_product("MUG-001", 5).await;
    let token = admin_token();

    let mut removals = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let api = app.api.clone();
        let path = format!("/api/v1/products/{}/stock", product.id);
        let token = token.clone();
        removals.spawn(async move {
            api.post(&path)
                .bearer(&token)
                .json(&serde_json::json!({ "delta": -1 }))
                .send()
                .await
                .status
                .as_u16()
        });
    }
    let statuses = removals.join_all().await;

    let succeeded = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((succeeded, refused), (5, 7), "{statuses:?}");
    let stored: Product = app.get_product(product.id).await.json();
    assert_eq!(stored.available, 0);
}
