use shop_model::{Role, api::User};
use test_kit::tokens;

use crate::helpers::spawn_app;

#[tokio::test]
async fn registering_returns_201_with_the_new_customer() {
    let app = spawn_app().await;

    let response = app
        .register("  Ann@Example.COM ", "password123", " Ann ")
        .await;

    response.assert_status(201);
    let user: User = response.json();
    assert_eq!(user.email, "ann@example.com");
    assert_eq!(user.name, "Ann");
    assert_eq!(user.role, Role::Customer);
    assert_eq!(
        response.header("location"),
        Some(format!("/api/v1/users/{}", user.id))
    );
    assert!(
        !response.text().contains("argon2"),
        "the hash must never be returned"
    );
}

#[tokio::test]
async fn registering_a_taken_email_returns_409_whatever_its_case() {
    let app = spawn_app().await;
    app.register("bob@example.com", "password123", "Bob")
        .await
        .assert_status(201);

    let response = app
        .register("BOB@example.com", "other-password", "Bobby")
        .await;

    response.assert_status(409);
    assert_eq!(response.problem().problem_type, "/problems/conflict");
}

#[tokio::test]
async fn registering_with_invalid_fields_returns_422_naming_each_field() {
    let app = spawn_app().await;

    let response = app.register("not-an-email", "short", "").await;

    response.assert_status(422);
    let errors = response.problem().errors.expect("field errors");
    assert!(errors["email"][0].contains("e-mail"));
    assert!(errors["password"][0].contains("8 characters"));
    assert!(errors.contains_key("name"));
}

#[tokio::test]
async fn registering_with_malformed_json_returns_400() {
    let app = spawn_app().await;

    let response = app
        .api
        .post("/api/v1/users")
        .raw("application/json", r#"{"email": "a@b.co", "password": "#)
        .send()
        .await;

    response.assert_status(400);
    assert_eq!(response.problem().problem_type, "/problems/bad-request");
}

#[tokio::test]
async fn registering_with_a_body_of_the_wrong_shape_returns_422() {
    let app = spawn_app().await;

    for body in [
        r#"{"email": "a@b.co"}"#,
        r#"{"email": 5, "password": "x", "name": "y"}"#,
        "[]",
    ] {
        let response = app
            .api
            .post("/api/v1/users")
            .raw("application/json", body)
            .send()
            .await;
        response.assert_status(422);
    }
}

#[tokio::test]
async fn registering_without_a_json_content_type_returns_415() {
    let app = spawn_app().await;

    let response = app
        .api
        .post("/api/v1/users")
        .raw(
            "text/plain",
            r#"{"email":"a@b.co","password":"password123","name":"A"}"#,
        )
        .send()
        .await;

    response.assert_status(415);
}

#[tokio::test]
async fn registering_with_an_oversize_body_returns_413() {
    let app = spawn_app().await;
    let name = "x".repeat(100 * 1024);

    let response = app
        .api
        .post("/api/v1/users")
        .json(&serde_json::json!({"email": "a@b.co", "password": "password123", "name": name}))
        .send()
        .await;

    response.assert_status(413);
}

#[tokio::test]
async fn me_returns_the_caller() {
    let app = spawn_app().await;
    let (user, token) = app.customer().await;

    let response = app.api.get("/api/v1/users/me").bearer(&token).send().await;

    response.assert_status(200);
    assert_eq!(response.json::<User>().id, user.id);
}

#[tokio::test]
async fn me_rejects_missing_and_invalid_tokens_with_401() {
    let app = spawn_app().await;

    let missing = app.api.get("/api/v1/users/me").send().await;
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
        let response = app.api.get("/api/v1/users/me").bearer(&token).send().await;
        response.assert_status(401);
    }
    let basic = app
        .api
        .get("/api/v1/users/me")
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await;
    basic.assert_status(401);
}

#[tokio::test]
async fn me_for_an_account_that_does_not_exist_returns_404() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    app.api
        .get("/api/v1/users/me")
        .bearer(&token)
        .send()
        .await
        .assert_status(404);
}

#[tokio::test]
async fn a_customer_reads_their_own_account_by_id_but_not_another() {
    let app = spawn_app().await;
    let (ann, ann_token) = app.customer().await;
    let (bob, _) = app.customer().await;

    let own = app
        .api
        .get(&format!("/api/v1/users/{}", ann.id))
        .bearer(&ann_token)
        .send()
        .await;
    own.assert_status(200);
    assert_eq!(own.json::<User>().email, ann.email);

    let other = app
        .api
        .get(&format!("/api/v1/users/{}", bob.id))
        .bearer(&ann_token)
        .send()
        .await;
    other.assert_status(403);
}

#[tokio::test]
async fn an_admin_reads_any_account_and_gets_404_for_unknown_ids() {
    let app = spawn_app().await;
    let (bob, _) = app.customer().await;
    let admin = app.admin_token().await;

    let found = app
        .api
        .get(&format!("/api/v1/users/{}", bob.id))
        .bearer(&admin)
        .send()
        .await;
    found.assert_status(200);
    assert_eq!(found.json::<User>().id, bob.id);

    let unknown = app
        .api
        .get(&format!("/api/v1/users/{}", uuid::Uuid::now_v7()))
        .bearer(&admin)
        .send()
        .await;
    unknown.assert_status(404);

    let malformed = app
        .api
        .get("/api/v1/users/not-a-uuid")
        .bearer(&admin)
        .send()
        .await;
    malformed.assert_status(404);
}
