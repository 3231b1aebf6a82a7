//! The login and sign-up limits (`src/limits.rs`): per account, per client address.

use test_kit::TestResponse;

use crate::helpers::{TestApp, spawn_app_with};

/// A login sent as from `address` (the app trusts `X-Forwarded-For` in these tests).
async fn login_from(app: &TestApp, address: &str, email: &str, password: &str) -> TestResponse {
    app.api
        .post("/api/v1/auth/token")
        .header("x-forwarded-for", address)
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
}

async fn sign_up_from(app: &TestApp, address: &str, email: &str) -> TestResponse {
    app.api
        .post("/api/v1/users")
        .header("x-forwarded-for", address)
        .json(&serde_json::json!({ "email": email, "password": "password123", "name": "Sam" }))
        .send()
        .await
}

/// The seconds of `Retry-After`, checked to be within `1..=max`.
fn retry_after(response: &TestResponse, max: u64) -> u64 {
    response.assert_status(429);
    assert_eq!(response.problem().problem_type, "/problems/rate-limited");
    let seconds: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=max).contains(&seconds), "Retry-After: {seconds}");
    seconds
}

/// Ends every window now, as if its time had passed.
async fn let_the_windows_pass(app: &TestApp) {
    sqlx::query("UPDATE attempt_windows SET window_ends_at = now()")
        .execute(&mut app.connect().await)
        .await
        .expect("windows ended");
}

#[tokio::test]
async fn after_the_failures_allowed_even_the_right_password_waits_until_the_minute_is_over() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES_PER_MINUTE", "3")]).await;
    app.register("ivy@example.com", "password123", "Ivy")
        .await
        .assert_status(201);
    for _ in 0..3 {
        app.login("ivy@example.com", "wrong-password")
            .await
            .assert_status(401);
    }

    let locked = app.login("ivy@example.com", "password123").await;

    retry_after(&locked, 60);
    let_the_windows_pass(&app).await;
    app.login("ivy@example.com", "password123")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn one_accounts_failures_do_not_lock_another_account() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES_PER_MINUTE", "2")]).await;
    app.register("jay@example.com", "password123", "Jay")
        .await
        .assert_status(201);
    for _ in 0..3 {
        app.login("kim@example.com", "wrong-password").await;
    }

    app.login("jay@example.com", "password123")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_successful_login_starts_the_failure_count_afresh() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES_PER_MINUTE", "2")]).await;
    app.register("lee@example.com", "password123", "Lee")
        .await
        .assert_status(201);

    for _ in 0..3 {
        app.login("lee@example.com", "wrong-password")
            .await
            .assert_status(401);
        app.login("lee@example.com", "password123")
            .await
            .assert_status(200);
    }
}

#[tokio::test]
async fn an_unknown_email_is_limited_exactly_like_a_wrong_password() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES_PER_MINUTE", "2")]).await;
    app.register("max@example.com", "password123", "Max")
        .await
        .assert_status(201);

    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        known.push(app.login("max@example.com", "wrong-password").await);
        unknown.push(app.login("nobody@example.com", "wrong-password").await);
    }

    for (known, unknown) in known.iter().zip(&unknown) {
        assert_eq!(known.status, unknown.status);
        assert_eq!(known.body, unknown.body);
        assert_eq!(known.header("content-type"), unknown.header("content-type"));
    }
    let statuses: Vec<u16> = known.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [401, 401, 429]);
}

#[tokio::test]
async fn logins_from_one_address_are_limited_whatever_the_account_and_ipv6_counts_by_slash_64() {
    let app = spawn_app_with(&[
        ("LOGIN_MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS", "3"),
        ("RATE_LIMIT_TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    app.register("nia@example.com", "password123", "Nia")
        .await
        .assert_status(201);
    // Three hosts of one /64: one client.
    for (i, address) in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff::3"]
        .into_iter()
        .enumerate()
    {
        login_from(
            &app,
            address,
            &format!("guess{i}@example.com"),
            "password123",
        )
        .await
        .assert_status(401);
    }

    let limited = login_from(&app, "2001:db8:5:6::4", "nia@example.com", "password123").await;

    retry_after(&limited, 60);
    // Another /64, and an IPv4 client, are other clients.
    login_from(&app, "2001:db8:5:7::1", "nia@example.com", "password123")
        .await
        .assert_status(200);
    login_from(&app, "203.0.113.9", "nia@example.com", "password123")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn sign_ups_from_one_address_are_limited_per_hour() {
    let app = spawn_app_with(&[
        ("SIGNUP_MAX_PER_HOUR_PER_ADDRESS", "2"),
        ("RATE_LIMIT_TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    sign_up_from(&app, "198.51.100.7", "one@example.com")
        .await
        .assert_status(201);
    // An e-mail found taken counts too (sign-up also tells which e-mails have an
    // account); an invalid request does not.
    sign_up_from(&app, "198.51.100.7", "one@example.com")
        .await
        .assert_status(409);
    app.api
        .post("/api/v1/users")
        .header("x-forwarded-for", "198.51.100.7")
        .json(&serde_json::json!({ "email": "not-an-email", "password": "password123", "name": "Sam" }))
        .send()
        .await
        .assert_status(422);

    let limited = sign_up_from(&app, "198.51.100.7", "two@example.com").await;

    let seconds = retry_after(&limited, 3600);
    assert!(seconds > 3500, "the window is an hour: {seconds}");
    sign_up_from(&app, "198.51.100.8", "two@example.com")
        .await
        .assert_status(201);
    let_the_windows_pass(&app).await;
    sign_up_from(&app, "198.51.100.7", "three@example.com")
        .await
        .assert_status(201);
}

#[tokio::test]
async fn without_a_trusted_proxy_the_peer_address_counts_and_x_forwarded_for_is_ignored() {
    let app = spawn_app_with(&[("SIGNUP_MAX_PER_HOUR_PER_ADDRESS", "1")]).await;
    sign_up_from(&app, "198.51.100.1", "pia@example.com")
        .await
        .assert_status(201);

    // A fresh X-Forwarded-For per request buys nothing: the peer is the client.
    sign_up_from(&app, "198.51.100.2", "quinn@example.com")
        .await
        .assert_status(429);
}
