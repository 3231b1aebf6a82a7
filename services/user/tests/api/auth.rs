use jsonwebtoken::jwk::JwkSet;
use shop_model::{
    Role,
    api::{TokenResponse, User},
};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, spawn_app, spawn_app_with};

#[tokio::test]
async fn valid_credentials_get_a_bearer_token_that_authenticates() {
    let app = spawn_app().await;
    app.register("carol@example.com", "password123", "Carol")
        .await
        .assert_status(201);

    let response = app.login("Carol@example.com", "password123").await;

    response.assert_status(200);
    assert_eq!(
        response.header("cache-control").as_deref(),
        Some("no-store")
    );
    let token: TokenResponse = response.json();
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.expires_in, 900);
    let me = app
        .api
        .get("/api/v1/users/me")
        .bearer(&token.access_token)
        .send()
        .await;
    me.assert_status(200);
    assert_eq!(me.json::<User>().email, "carol@example.com");
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_the_same_401() {
    let app = spawn_app().await;
    app.register("dave@example.com", "password123", "Dave")
        .await
        .assert_status(201);

    let wrong_password = app.login("dave@example.com", "password124").await;
    let unknown_email = app.login("nobody@example.com", "password123").await;

    wrong_password.assert_status(401);
    unknown_email.assert_status(401);
    assert_eq!(wrong_password.body, unknown_email.body);
}

#[tokio::test]
async fn the_configured_admin_can_log_in_with_the_admin_role() {
    let app = spawn_app().await;

    let token = app.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let me = app.api.get("/api/v1/users/me").bearer(&token).send().await;
    me.assert_status(200);
    assert_eq!(me.json::<User>().role, Role::Admin);
}

#[tokio::test]
async fn the_jwks_publishes_the_key_that_signs_tokens() {
    let app = spawn_app().await;
    let (_, token) = app.customer().await;

    let response = app.api.get("/.well-known/jwks.json").send().await;

    response.assert_status(200);
    let jwks: JwkSet = response.json();
    let kid = jsonwebtoken::decode_header(&token)
        .expect("header")
        .kid
        .expect("kid");
    assert!(jwks.find(&kid).is_some(), "token key {kid} not published");
    assert!(
        response
            .header("cache-control")
            .is_some_and(|v| v.contains("max-age"))
    );
}

#[tokio::test]
async fn a_configured_previous_key_is_published_for_rotation() {
    let previous = include_str!("../../../../config/dev/jwt-previous-key.pub.pem");
    let app = spawn_app_with(&[("JWT_PREVIOUS_PUBLIC_KEY", previous)]).await;

    let jwks: JwkSet = app.api.get("/.well-known/jwks.json").send().await.json();

    assert_eq!(jwks.keys.len(), 2);
}
