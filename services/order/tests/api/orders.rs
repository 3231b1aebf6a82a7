use shop_model::api::{Order, OrderStatus, Page};
use test_kit::tokens;

use crate::helpers::{order_body, spawn_app};

#[tokio::test]
async fn placing_an_order_stores_it_pending_with_the_catalog_prices() {
    let app = spawn_app().await;
    let mug = app.create_product(1250, 10).await;
    let pen = app.create_product(199, 100).await;
    let (user, token) = tokens::customer();

    let response = app
        .place_order(&token, &[(mug.id.to_string(), 2), (pen.id.to_string(), 3)])
        .await;

    response.assert_status(202);
    let order: Order = response.json();
    assert_eq!(order.status, OrderStatus::Pending);
    assert_eq!(order.user_id, user);
    assert_eq!(order.items[0].unit_price_cents, 1250);
    assert_eq!(order.items[1].unit_price_cents, 199);
    assert_eq!(order.total_cents, 2 * 1250 + 3 * 199);
    assert_eq!(
        response.header("location"),
        Some(format!("/api/v1/orders/{}", order.id))
    );

    let fetched = app.get_order(&token, order.id).await;
    fetched.assert_status(200);
    let fetched: Order = fetched.json();
    assert_eq!(fetched.status, OrderStatus::Pending);
    assert_eq!(fetched.total_cents, order.total_cents);
    assert_eq!(fetched.items.len(), 2);
}

#[tokio::test]
async fn placing_an_order_for_an_unknown_product_is_rejected_and_nothing_is_stored() {
    let app = spawn_app().await;
    let mug = app.create_product(1250, 10).await;
    let (_, token) = tokens::customer();
    let unknown = uuid::Uuid::now_v7().to_string();

    let response = app
        .place_order(&token, &[(mug.id.to_string(), 1), (unknown, 1)])
        .await;

    response.assert_status(422);
    let errors = response.problem().errors.expect("field errors");
    assert!(errors.contains_key("items[1].product_id"), "{errors:?}");
    let list: Page<Order> = app.list_orders(&token, "").await.json();
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn placing_an_order_with_a_zero_or_negative_quantity_is_rejected() {
    let app = spawn_app().await;
    let mug = app.create_product(1250, 10).await;
    let (_, token) = tokens::customer();

    for quantity in [0, -2] {
        let response = app
            .place_order(&token, &[(mug.id.to_string(), quantity)])
            .await;
        response.assert_status(422);
        assert!(
            response
                .problem()
                .errors
                .expect("fields")
                .contains_key("items[0].quantity")
        );
    }
}

#[tokio::test]
async fn placing_an_empty_order_is_rejected() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    app.place_order(&token, &[]).await.assert_status(422);
}

#[tokio::test]
async fn placing_an_order_with_an_unreadable_body_is_rejected() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    let malformed = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .raw("application/json", "{\"items\": [")
        .send()
        .await;
    malformed.assert_status(400);
    let wrong_type = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .raw("text/plain", "{}")
        .send()
        .await;
    wrong_type.assert_status(415);
    let wrong_shape = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .raw("application/json", r#"{"items": "many"}"#)
        .send()
        .await;
    wrong_shape.assert_status(422);
    let wrong_field_type = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .raw(
            "application/json",
            format!(
                r#"{{"items": [{{"product_id": "{}", "quantity": "two"}}]}}"#,
                uuid::Uuid::new_v4()
            ),
        )
        .send()
        .await;
    wrong_field_type.assert_status(422);
    // In the schema's terms, not Rust's: "an integer", never "i64".
    let detail = wrong_field_type.problem().detail.unwrap_or_default();
    assert!(detail.contains("expected an integer"), "{detail}");
    assert!(
        !detail.contains("i64") && !detail.contains("struct"),
        "{detail}"
    );
    let huge = "x".repeat(70 * 1024);
    let oversize = app
        .api
        .post("/api/v1/orders")
        .bearer(&token)
        .json(&serde_json::json!({"items": [{"product_id": huge, "quantity": 1}]}))
        .send()
        .await;
    oversize.assert_status(413);
}

#[tokio::test]
async fn orders_require_a_valid_token() {
    let app = spawn_app().await;
    let body = order_body(&[(uuid::Uuid::now_v7().to_string(), 1)]);

    app.api
        .post("/api/v1/orders")
        .json(&body)
        .send()
        .await
        .assert_status(401);
    app.api
        .get("/api/v1/orders")
        .send()
        .await
        .assert_status(401);
    for token in [
        tokens::GARBAGE.to_owned(),
        tokens::expired(),
        tokens::wrong_audience(),
        tokens::untrusted_signature(),
    ] {
        app.api
            .post("/api/v1/orders")
            .bearer(&token)
            .json(&body)
            .send()
            .await
            .assert_status(401);
        app.api
            .get("/api/v1/orders")
            .bearer(&token)
            .send()
            .await
            .assert_status(401);
    }
}

#[tokio::test]
async fn a_customer_cannot_see_another_customers_order_but_an_admin_can() {
    let app = spawn_app().await;
    let (_, ann) = tokens::customer();
    let (_, bob) = tokens::customer();
    let (_, admin) = tokens::admin();
    let order = app.placed_order(&ann).await;

    app.get_order(&bob, order.id).await.assert_status(404);
    let as_admin = app.get_order(&admin, order.id).await;
    as_admin.assert_status(200);
    assert_eq!(as_admin.json::<Order>().id, order.id);
}

#[tokio::test]
async fn an_unknown_or_malformed_order_id_is_404() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    app.get_order(&token, uuid::Uuid::now_v7())
        .await
        .assert_status(404);
    app.get_order(&token, "not-a-uuid").await.assert_status(404);
}

#[tokio::test]
async fn customers_list_their_own_orders_newest_first_and_admins_list_all() {
    let app = spawn_app().await;
    let (_, ann) = tokens::customer();
    let (_, bob) = tokens::customer();
    let (_, admin) = tokens::admin();
    let first = app.placed_order(&ann).await;
    let second = app.placed_order(&ann).await;
    let bobs = app.placed_order(&bob).await;

    let anns: Page<Order> = app.list_orders(&ann, "").await.json();
    let ids: Vec<_> = anns.items.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![second.id, first.id]);

    let all: Page<Order> = app.list_orders(&admin, "").await.json();
    let all_ids: Vec<_> = all.items.iter().map(|o| o.id).collect();
    assert_eq!(all_ids, vec![bobs.id, second.id, first.id]);
}

#[tokio::test]
async fn the_order_list_is_paginated_with_an_opaque_cursor() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let mut placed = Vec::new();
    for _ in 0..3 {
        placed.push(app.placed_order(&token).await.id);
    }
    placed.reverse();

    let page1: Page<Order> = app.list_orders(&token, "?limit=2").await.json();
    let cursor = page1.next_cursor.clone().expect("a second page");
    let page2: Page<Order> = app
        .list_orders(&token, &format!("?limit=2&cursor={cursor}"))
        .await
        .json();

    let seen: Vec<_> = page1
        .items
        .iter()
        .chain(&page2.items)
        .map(|o| o.id)
        .collect();
    assert_eq!(seen, placed);
    assert!(page2.next_cursor.is_none());
    app.list_orders(&token, "?cursor=garbage")
        .await
        .assert_status(422);
    app.list_orders(&token, "?limit=0").await.assert_status(422);
    app.list_orders(&token, "?limit=101")
        .await
        .assert_status(422);
    app.list_orders(&token, "?limit=abc")
        .await
        .assert_status(400);
}

#[tokio::test]
async fn the_owner_cancels_a_pending_order_once() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();
    let order = app.placed_order(&token).await;

    let response = app
        .api
        .post(&format!("/api/v1/orders/{}/cancel", order.id))
        .bearer(&token)
        .send()
        .await;

    response.assert_status(200);
    let cancelled: Order = response.json();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        cancelled.status_reason.as_deref(),
        Some("cancelled_by_customer")
    );
    let again = app
        .api
        .post(&format!("/api/v1/orders/{}/cancel", order.id))
        .bearer(&token)
        .send()
        .await;
    again.assert_status(409);
    // Counted once, as the customer's cancellation.
    let counted = [("status", "cancelled"), ("reason", "cancelled_by_customer")];
    let base = app.api.base_url();
    assert_eq!(
        test_kit::metric(base, "shop_orders_terminal_total", &counted).await,
        1.0
    );
}

#[tokio::test]
async fn an_admin_can_cancel_any_order_and_other_customers_cannot() {
    let app = spawn_app().await;
    let (_, ann) = tokens::customer();
    let (_, bob) = tokens::customer();
    let (_, admin) = tokens::admin();
    let order = app.placed_order(&ann).await;

    let by_bob = app
        .api
        .post(&format!("/api/v1/orders/{}/cancel", order.id))
        .bearer(&bob)
        .send()
        .await;
    by_bob.assert_status(404);
    let by_admin = app
        .api
        .post(&format!("/api/v1/orders/{}/cancel", order.id))
        .bearer(&admin)
        .send()
        .await;
    by_admin.assert_status(200);
    assert_eq!(
        by_admin.json::<Order>().status_reason.as_deref(),
        Some("cancelled_by_admin")
    );
}

#[tokio::test]
async fn cancelling_an_unknown_order_is_404() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .post(&format!("/api/v1/orders/{}/cancel", uuid::Uuid::now_v7()))
        .bearer(&token)
        .send()
        .await;

    response.assert_status(404);
}
