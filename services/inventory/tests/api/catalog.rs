//! The public catalog: `GET /api/v1/products` (a page, or a batch by id) and
//! `GET /api/v1/products/{id}`.

use std::collections::HashSet;

use shop_model::{
    ProductId,
    api::{Page, Product},
};

use crate::helpers::{TestApp, spawn_app};

/// Creates `count` products and returns their ids in creation order.
async fn create_products(app: &TestApp, count: usize) -> Vec<ProductId> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        ids.push(app.create_product(&format!("SKU-{n:03}"), 5).await.id);
    }
    ids
}

async fn list(app: &TestApp, query: &str) -> Page<Product> {
    let response = app
        .api
        .get(&format!("/api/v1/products{query}"))
        .send()
        .await;
    response.assert_status(200);
    response.json()
}

#[tokio::test]
async fn a_product_is_readable_by_id_without_a_token() {
    let app = spawn_app().await;
    let created = app.create_product("MUG-001", 7).await;

    let response = app.get_product(created.id).await;

    response.assert_status(200);
    let product: Product = response.json();
    assert_eq!(product.id, created.id);
    assert_eq!(product.sku, "MUG-001");
    assert_eq!(product.available, 7);
}

#[tokio::test]
async fn reading_an_unknown_product_returns_404() {
    let app = spawn_app().await;

    app.get_product(ProductId::new()).await.assert_status(404);
    app.api
        .get("/api/v1/products/not-a-uuid")
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn a_product_reports_what_is_available_apart_from_what_is_reserved() {
    let app = spawn_app().await;
    let created = app.create_product("MUG-001", 10).await;
    app.reserve(created.id, 3).await;

    let product: Product = app.get_product(created.id).await.json();

    assert_eq!(product.available, 7);
    assert_eq!(product.reserved, 3);
}

#[tokio::test]
async fn the_catalog_is_paged_in_creation_order_until_the_last_page() {
    let app = spawn_app().await;
    let created = create_products(&app, 5).await;

    let first = list(&app, "?limit=2").await;
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = list(&app, &format!("?limit=2&cursor={cursor}")).await;
    let cursor = second.next_cursor.clone().expect("a third page");
    let third = list(&app, &format!("?limit=2&cursor={cursor}")).await;

    assert_eq!(
        [&first, &second, &third].map(|page| page.items.len()),
        [2, 2, 1]
    );
    assert_eq!(third.next_cursor, None);
    let seen: Vec<ProductId> = [first, second, third]
        .into_iter()
        .flat_map(|page| page.items)
        .map(|product| product.id)
        .collect();
    assert_eq!(seen, created, "every product once, oldest first");
}

#[tokio::test]
async fn an_empty_catalog_is_one_empty_page() {
    let app = spawn_app().await;

    let page = list(&app, "").await;

    assert!(page.items.is_empty());
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn a_cursor_this_api_did_not_issue_returns_422() {
    let app = spawn_app().await;

    let response = app
        .api
        .get("/api/v1/products?cursor=not-a-cursor")
        .send()
        .await;

    response.assert_status(422);
    assert!(
        response
            .problem()
            .errors
            .is_some_and(|e| e.contains_key("cursor"))
    );
}

#[tokio::test]
async fn a_limit_outside_1_to_100_returns_422() {
    let app = spawn_app().await;

    for limit in [0, 101] {
        let response = app
            .api
            .get(&format!("/api/v1/products?limit={limit}"))
            .send()
            .await;
        response.assert_status(422);
        assert!(
            response
                .problem()
                .errors
                .is_some_and(|e| e.contains_key("limit")),
            "limit={limit}"
        );
    }
}

#[tokio::test]
async fn a_lookup_by_ids_returns_the_products_that_exist_in_one_page() {
    let app = spawn_app().await;
    let created = create_products(&app, 3).await;
    let unknown = ProductId::new();

    let response = app
        .api
        .get(&format!(
            "/api/v1/products?ids={},{unknown},{}",
            created[2], created[0]
        ))
        .send()
        .await;

    response.assert_status(200);
    let body: serde_json::Value = response.json();
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    let page: Page<Product> = response.json();
    let found: HashSet<ProductId> = page.items.iter().map(|p| p.id).collect();
    assert_eq!(found, HashSet::from([created[0], created[2]]));
}

#[tokio::test]
async fn a_lookup_by_ids_is_not_limited_to_the_default_page_size() {
    let app = spawn_app().await;
    let created = create_products(&app, 25).await;
    let ids = created.iter().map(ToString::to_string).collect::<Vec<_>>();

    let page = list(&app, &format!("?ids={}", ids.join(","))).await;

    assert_eq!(page.items.len(), 25);
}

#[tokio::test]
async fn a_lookup_by_ids_with_an_id_that_is_not_a_uuid_returns_422() {
    let app = spawn_app().await;

    let response = app
        .api
        .get(&format!("/api/v1/products?ids={},nope", ProductId::new()))
        .send()
        .await;

    response.assert_status(422);
    let errors = response.problem().errors.expect("field errors");
    assert!(errors["ids"][0].contains("`nope`"), "{errors:?}");
}

#[tokio::test]
async fn a_lookup_by_more_than_100_ids_returns_422() {
    let app = spawn_app().await;
    let ids = |n: usize| {
        (0..n)
            .map(|_| ProductId::new().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };

    let at_limit = app
        .api
        .get(&format!("/api/v1/products?ids={}", ids(100)))
        .send()
        .await;
    let over_limit = app
        .api
        .get(&format!("/api/v1/products?ids={}", ids(101)))
        .send()
        .await;

    at_limit.assert_status(200);
    over_limit.assert_status(422);
    assert!(
        over_limit
            .problem()
            .errors
            .is_some_and(|e| e.contains_key("ids"))
    );
}

#[tokio::test]
async fn a_lookup_by_ids_cannot_be_paged() {
    let app = spawn_app().await;

    let response = app
        .api
        .get(&format!(
            "/api/v1/products?ids={}&limit=10",
            ProductId::new()
        ))
        .send()
        .await;

    response.assert_status(422);
    assert!(
        response
            .problem()
            .errors
            .is_some_and(|e| e.contains_key("limit"))
    );
}
