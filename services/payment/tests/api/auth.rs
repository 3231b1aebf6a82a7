//! Every endpoint needs a valid bearer token. (Which role may call what is checked with
//! each endpoint's tests.)

use shop_model::{OrderId, UserId};
use test_kit::{TestResponse, tokens};

use crate::helpers::{TestApp, spawn_app};

/// Calls every endpoint of the API once, with `token` when given; answers each path with
/// its response.
async fn call_every_endpoint(app: &TestApp, token: Option<&str>) -> Vec<(String, TestResponse)> {
    let user = UserId::new();
    let payments = format!("/api/v1/payments?order_id={}", OrderId::new());
    let wallet = format!("/api/v1/wallets/{user}");
    let credit = format!("/api/v1/wallets/{user}/credit");
    let ledger = format!("/api/v1/wallets/{user}/ledger");
    let calls = [
        ("/api/v1/wallets/me", app.api.get("/api/v1/wallets/me")),
        (&wallet, app.api.get(&wallet)),
        (&payments, app.api.get(&payments)),
        (&ledger, app.api.get(&ledger)),
        (
            &credit,
            app.api
                .post(&credit)
                .json(&serde_json::json!({ "amount_cents": 100 })),
        ),
    ];
    let mut responses = Vec::new();
    for (path, mut call) in calls {
        if let Some(token) = token {
            call = call.bearer(token);
        }
        responses.push((path.to_owned(), call.send().await));
    }
    responses
}

#[tokio::test]
async fn every_endpoint_answers_401_without_a_token() {
    let app = spawn_app().await;

    for (path, response) in call_every_endpoint(&app, None).await {
        assert_eq!(response.status.as_u16(), 401, "{path}");
        assert_eq!(
            response.header("www-authenticate").as_deref(),
            Some("Bearer"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_endpoint_answers_401_to_an_invalid_token() {
    let app = spawn_app().await;

    for token in [
        tokens::GARBAGE.to_owned(),
        tokens::expired(),
        tokens::wrong_audience(),
        tokens::untrusted_signature(),
    ] {
        for (path, response) in call_every_endpoint(&app, Some(&token)).await {
            assert_eq!(response.status.as_u16(), 401, "{path} with {token}");
        }
    }
}

#[tokio::test]
async fn a_token_sent_without_the_bearer_scheme_is_told_how_to_send_it() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    for header in [
        token.clone(),
        format!("Token {token}"),
        "Bearer ".to_owned(),
    ] {
        let response = app
            .api
            .get("/api/v1/wallets/me")
            .header("Authorization", &header)
            .send()
            .await;

        response.assert_status(401);
        let detail = response.problem().detail.unwrap_or_default();
        assert!(detail.contains("`Bearer `"), "{header}: {detail}");
        assert!(!detail.contains("expired"), "{header}: {detail}");
    }
}
