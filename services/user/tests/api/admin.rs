//! The admin account ensured at start-up from `ADMIN_EMAIL` / `ADMIN_PASSWORD`, against
//! the accounts already in the database (`src/admin.rs` has the rules).

use shop_model::{
    Role,
    api::User,
    events::{Event, UserRegistered},
};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, spawn_app};

async fn role_of(app: &TestApp, email: &str, password: &str) -> Role {
    let token = app.token(email, password).await;
    let me = app.api.get("/api/v1/users/me").bearer(&token).send().await;
    me.assert_status(200);
    me.json::<User>().role
}

/// How many accounts have `email`, and how many `UserRegistered` events name it.
async fn accounts_and_events(app: &TestApp, email: &str) -> (i64, i64) {
    let mut conn = app.connect().await;
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&mut conn)
        .await
        .expect("count accounts");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = $1 AND payload->>'email' = $2",
    )
    .bind(UserRegistered::TYPE)
    .bind(email)
    .fetch_one(&mut conn)
    .await
    .expect("count events");
    (accounts, events)
}

#[tokio::test]
async fn a_fresh_database_gets_the_admin_account_and_its_user_registered() {
    let app = spawn_app().await;

    assert_eq!(
        role_of(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await,
        Role::Admin
    );
    assert_eq!(accounts_and_events(&app, ADMIN_EMAIL).await, (1, 1));
}

#[tokio::test]
async fn a_customer_who_signed_up_with_the_admin_email_is_not_promoted_and_start_up_stops() {
    let app = spawn_app().await;
    app.register("ops@example.com", "squatter-password", "Not the operator")
        .await
        .assert_status(201);

    let error = app
        .start_error(&[
            ("ADMIN_EMAIL", "ops@example.com"),
            ("ADMIN_PASSWORD", "operator-password"),
        ])
        .await;

    assert!(error.contains("ADMIN_EMAIL"), "{error}");
    assert!(error.contains("refusing to make it an admin"), "{error}");
    assert_eq!(
        role_of(&app, "ops@example.com", "squatter-password").await,
        Role::Customer
    );
}

#[tokio::test]
async fn a_customer_whose_password_is_admin_password_is_promoted() {
    let app = spawn_app().await;
    app.register("olga@example.com", "olga-password", "Olga")
        .await
        .assert_status(201);

    let _promoted_by = app
        .start_another(&[
            ("ADMIN_EMAIL", "olga@example.com"),
            ("ADMIN_PASSWORD", "olga-password"),
        ])
        .await;

    assert_eq!(
        role_of(&app, "olga@example.com", "olga-password").await,
        Role::Admin
    );
    // Promoted, not created again: still the one account and its one event.
    assert_eq!(accounts_and_events(&app, "olga@example.com").await, (1, 1));
}

#[tokio::test]
async fn an_existing_admin_starts_again_and_keeps_its_password_whatever_admin_password_says() {
    let app = spawn_app().await;

    let _same = app.start_another(&[]).await;
    let _other_password = app
        .start_another(&[("ADMIN_PASSWORD", "a-new-admin-password")])
        .await;

    assert_eq!(
        role_of(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await,
        Role::Admin
    );
    app.login(ADMIN_EMAIL, "a-new-admin-password")
        .await
        .assert_status(401);
    assert_eq!(accounts_and_events(&app, ADMIN_EMAIL).await, (1, 1));
}

#[tokio::test]
async fn replicas_starting_at_once_create_the_admin_once() {
    let app = spawn_app().await;
    let admin = [
        ("ADMIN_EMAIL", "root@example.com"),
        ("ADMIN_PASSWORD", "root-password"),
    ];

    let (_first, _second) = tokio::join!(app.start_another(&admin), app.start_another(&admin));

    assert_eq!(
        role_of(&app, "root@example.com", "root-password").await,
        Role::Admin
    );
    assert_eq!(accounts_and_events(&app, "root@example.com").await, (1, 1));
}
