//! `POST /api/v1/products`: adding a product to the catalog.

use shop_model::api::Product;
use test_kit::tokens;

use crate::helpers::{admin_token, customer_token, new_product, spawn_app};

#[tokio::test]
async fn creating_a_product_returns_201_with_its_location_and_fields() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "sku": " mug-001 ",
        "name": "  Enamel mug ",
        "description": "Survives the dishwasher.",
        "price_cents": 1250,
        "stock": 40,
    });

    let response = app.post_product(&body, &admin_token()).await;

    response.assert_status(201);
    let product: Product = response.json();
    assert_eq!(product.sku, "MUG-001");
    assert_eq!(product.name, "Enamel mug");
    assert_eq!(product.description, "Survives the dishwasher.");
    assert_eq!(product.price_cents, 1250);
    assert_eq!(product.available, 40);
    assert_eq!(product.reserved, 0);
    assert_eq!(
        response.header("location"),
        Some(format!("/api/v1/products/{}", product.id))
    );
}

#[tokio::test]
async fn creating_a_product_without_a_description_gives_it_an_empty_one() {
    let app = spawn_app().await;
    let mut body = new_product("NO-DESCRIPTION");
    body.as_object_mut().expect("object").remove("description");

    let response = app.post_product(&body, &admin_token()).await;

    response.assert_status(201);
    assert_eq!(response.json::<Product>().description, "");
}

#[tokio::test]
async fn creating_a_product_whose_sku_exists_in_another_case_returns_409() {
    let app = spawn_app().await;
    app.create_product("MUG-001", 10).await;

    let response = app
        .post_product(&new_product("mug-001"), &admin_token())
        .await;

    response.assert_status(409);
    let problem = response.problem();
    assert_eq!(problem.problem_type, "/problems/conflict");
    assert!(problem.detail.is_some_and(|d| d.contains("MUG-001")));
}

#[tokio::test]
async fn creating_a_product_with_invalid_fields_returns_422_naming_each_field() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "sku": "has space",
        "name": " ",
        "description": "d".repeat(2001),
        "price_cents": -1,
        "stock": -1,
    });

    let response = app.post_product(&body, &admin_token()).await;

    response.assert_status(422);
    let errors = response.problem().errors.expect("field errors");
    assert_eq!(
        errors.keys().map(String::as_str).collect::<Vec<_>>(),
        ["description", "name", "price_cents", "sku", "stock"]
    );
}

#[tokio::test]
async fn creating_a_product_with_values_just_out_of_range_returns_422() {
    let app = spawn_app().await;
    let cases = [
        ("name", serde_json::json!("n".repeat(201))),
        ("description", serde_json::json!("d".repeat(2001))),
        ("sku", serde_json::json!("S".repeat(65))),
        ("price_cents", serde_json::json!(-1)),
        ("stock", serde_json::json!(i64::from(i32::MAX) + 1)),
    ];

    for (field, value) in cases {
        let mut body = new_product("EDGE-001");
        body[field] = value;
        let response = app.post_product(&body, &admin_token()).await;
        response.assert_status(422);
        let errors = response.problem().errors.expect("field errors");
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            [field],
            "only {field} is invalid"
        );
    }
}

#[tokio::test]
async fn creating_a_product_with_values_at_their_limits_succeeds() {
    let app = spawn_app().await;
    let body = serde_json::json!({
        "sku": "S".repeat(64),
        "name": "n".repeat(200),
        "description": "d".repeat(2000),
        "price_cents": 0,
        "stock": i32::MAX,
    });

    let response = app.post_product(&body, &admin_token()).await;

    response.assert_status(201);
    assert_eq!(response.json::<Product>().available, i32::MAX);
}

#[tokio::test]
async fn creating_a_product_with_malformed_json_returns_400() {
    let app = spawn_app().await;

    let response = app
        .api
        .post("/api/v1/products")
        .bearer(&admin_token())
        .raw("application/json", r#"{"sku": "MUG-001", "name": "#)
        .send()
        .await;

    response.assert_status(400);
    assert_eq!(response.problem().problem_type, "/problems/bad-request");
}

#[tokio::test]
async fn creating_a_product_with_a_body_of_the_wrong_shape_returns_422() {
    let app = spawn_app().await;

    for body in [
        r#"{"sku": "MUG-001"}"#,
        r#"{"sku": "MUG-001", "name": "Mug", "price_cents": "12.50", "stock": 1}"#,
        r#"{"sku": "MUG-001", "name": "Mug", "price_cents": 1250, "stock": 1.5}"#,
        "[]",
    ] {
        let response = app
            .api
            .post("/api/v1/products")
            .bearer(&admin_token())
            .raw("application/json", body)
            .send()
            .await;
        response.assert_status(422);
    }
}

#[tokio::test]
async fn creating_a_product_without_a_json_content_type_returns_415() {
    let app = spawn_app().await;

    let response = app
        .api
        .post("/api/v1/products")
        .bearer(&admin_token())
        .raw("text/plain", new_product("MUG-001").to_string())
        .send()
        .await;

    response.assert_status(415);
}

#[tokio::test]
async fn creating_a_product_with_an_oversize_body_returns_413() {
    let app = spawn_app().await;
    let mut body = new_product("MUG-001");
    body["description"] = "x".repeat(100 * 1024).into();

    let response = app.post_product(&body, &admin_token()).await;

    response.assert_status(413);
}

#[tokio::test]
async fn creating_a_product_without_a_valid_token_returns_401() {
    let app = spawn_app().await;

    let missing = app
        .api
        .post("/api/v1/products")
        .json(&new_product("MUG-001"))
        .send()
        .await;
    missing.assert_status(401);
    assert_eq!(
        missing.header("www-authenticate").as_deref(),
        Some("Bearer")
    );

    for token in [
        tokens::GARBAGE.to_owned(),
        tokens::expired(),
        tokens::wrong_audience(),
        tokens::untrusted_signature(),
    ] {
        let response = app.post_product(&new_product("MUG-001"), &token).await;
        response.assert_status(401);
    }
}

#[tokio::test]
async fn creating_a_product_as_a_customer_returns_403() {
    let app = spawn_app().await;

    let response = app
        .post_product(&new_product("MUG-001"), &customer_token())
        .await;

    response.assert_status(403);
    let listed: serde_json::Value = app.api.get("/api/v1/products").send().await.json();
    assert_eq!(
        listed["items"],
        serde_json::json!([]),
        "nothing was created"
    );
}
