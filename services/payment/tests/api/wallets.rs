use shop_model::{Role, UserId, api::Wallet};
use test_kit::tokens;

use crate::helpers::{balance, open_wallet, spawn_app};

#[tokio::test]
async fn my_wallet_shows_the_callers_balance() {
    let app = spawn_app().await;
    let (user, token) = tokens::customer();
    open_wallet(&app.pool, user, 100_000).await;

    let response = app
        .api
        .get("/api/v1/wallets/me")
        .bearer(&token)
        .send()
        .await;

    response.assert_status(200);
    let wallet: Wallet = response.json();
    assert_eq!(wallet.user_id, user);
    assert_eq!(wallet.balance_cents, 100_000);
}

#[tokio::test]
async fn my_wallet_is_404_until_the_wallet_is_opened() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .get("/api/v1/wallets/me")
        .bearer(&token)
        .send()
        .await;

    response.assert_status(404);
    assert_eq!(response.problem().problem_type, "/problems/not-found");
}

#[tokio::test]
async fn an_admin_reads_any_wallet() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 4_200).await;
    let (_, admin) = tokens::admin();

    let response = app
        .api
        .get(&format!("/api/v1/wallets/{user}"))
        .bearer(&admin)
        .send()
        .await;

    response.assert_status(200);
    let wallet: Wallet = response.json();
    assert_eq!(wallet.user_id, user);
    assert_eq!(wallet.balance_cents, 4_200);
}

#[tokio::test]
async fn reading_an_unknown_wallet_is_404() {
    let app = spawn_app().await;
    let (_, admin) = tokens::admin();

    for path in [
        format!("/api/v1/wallets/{}", UserId::new()),
        "/api/v1/wallets/not-a-uuid".to_owned(),
    ] {
        let response = app.api.get(&path).bearer(&admin).send().await;
        response.assert_status(404);
    }
}

#[tokio::test]
async fn a_customer_cannot_read_a_wallet_by_id_even_their_own() {
    let app = spawn_app().await;
    let (user, token) = tokens::customer();
    open_wallet(&app.pool, user, 100).await;

    let response = app
        .api
        .get(&format!("/api/v1/wallets/{user}"))
        .bearer(&token)
        .send()
        .await;

    response.assert_status(403);
}

#[tokio::test]
async fn crediting_adds_to_the_balance_and_answers_the_new_balance() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(&admin)
        .json(&serde_json::json!({ "amount_cents": 2_500 }))
        .send()
        .await;

    response.assert_status(200);
    let wallet: Wallet = response.json();
    assert_eq!(wallet.user_id, user);
    assert_eq!(wallet.balance_cents, 3_500);
    assert_eq!(balance(&app.pool, user).await, 3_500);
}

#[tokio::test]
async fn crediting_zero_or_a_negative_amount_is_422_naming_the_field() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    for amount in [0, -1, i64::MIN] {
        let response = app
            .api
            .post(&format!("/api/v1/wallets/{user}/credit"))
            .bearer(&admin)
            .json(&serde_json::json!({ "amount_cents": amount }))
            .send()
            .await;

        response.assert_status(422);
        let errors = response.problem().errors.expect("field errors");
        assert!(errors.contains_key("amount_cents"), "{errors:?}");
    }
    assert_eq!(balance(&app.pool, user).await, 1_000);
}

#[tokio::test]
async fn crediting_beyond_the_largest_balance_is_422() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, i64::MAX - 10).await;
    let (_, admin) = tokens::admin();

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(&admin)
        .json(&serde_json::json!({ "amount_cents": 11 }))
        .send()
        .await;

    response.assert_status(422);
    assert_eq!(balance(&app.pool, user).await, i64::MAX - 10);
}

#[tokio::test]
async fn crediting_an_unknown_wallet_is_404() {
    let app = spawn_app().await;
    let (_, admin) = tokens::admin();

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{}/credit", UserId::new()))
        .bearer(&admin)
        .json(&serde_json::json!({ "amount_cents": 100 }))
        .send()
        .await;

    response.assert_status(404);
}

#[tokio::test]
async fn crediting_with_malformed_json_is_400() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(&admin)
        .raw("application/json", r#"{"amount_cents": "#)
        .send()
        .await;

    response.assert_status(400);
    assert_eq!(response.problem().problem_type, "/problems/bad-request");
}

#[tokio::test]
async fn crediting_with_a_body_of_the_wrong_shape_is_422() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    for body in [
        r#"{"amount_cents": "ten"}"#,
        r#"{"amount_cents": 1.5}"#,
        "{}",
    ] {
        let response = app
            .api
            .post(&format!("/api/v1/wallets/{user}/credit"))
            .bearer(&admin)
            .raw("application/json", body)
            .send()
            .await;
        response.assert_status(422);
    }
}

#[tokio::test]
async fn crediting_without_a_json_content_type_is_415() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(&admin)
        .raw("text/plain", r#"{"amount_cents": 100}"#)
        .send()
        .await;

    response.assert_status(415);
}

#[tokio::test]
async fn crediting_with_an_oversize_body_is_413() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();
    let padding = "x".repeat(100 * 1024);

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(&admin)
        .json(&serde_json::json!({ "amount_cents": 100, "padding": padding }))
        .send()
        .await;

    response.assert_status(413);
    assert_eq!(balance(&app.pool, user).await, 1_000);
}

#[tokio::test]
async fn a_customer_cannot_credit_a_wallet_even_their_own() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let token = tokens::for_user(user, Role::Customer);

    let response = app
        .api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(&token)
        .json(&serde_json::json!({ "amount_cents": 100 }))
        .send()
        .await;

    response.assert_status(403);
    assert_eq!(balance(&app.pool, user).await, 1_000);
}
