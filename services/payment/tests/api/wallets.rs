use payment_service::ledger::{LedgerEntry, LedgerKind};
use shop_model::{
    OrderId, Role, UserId,
    api::{Page, Wallet},
};
use test_kit::{ApiClient, TestResponse, tokens};

use crate::helpers::{TestApp, balance, charge, ledger_rows, open_wallet, refund, spawn_app};

/// `POST /api/v1/wallets/{user}/credit` by `admin`, with an `Idempotency-Key` if given.
async fn credit(
    api: &ApiClient,
    admin: &str,
    user: UserId,
    amount_cents: i64,
    key: Option<&str>,
) -> TestResponse {
    let mut call = api
        .post(&format!("/api/v1/wallets/{user}/credit"))
        .bearer(admin)
        .json(&serde_json::json!({ "amount_cents": amount_cents }));
    if let Some(key) = key {
        call = call.header("Idempotency-Key", key);
    }
    call.send().await
}

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

#[tokio::test]
async fn a_credit_retried_with_its_idempotency_key_credits_once_with_the_same_answer() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    let first = credit(&app.api, &admin, user, 2_500, Some("credit-attempt-1")).await;
    let second = credit(&app.api, &admin, user, 2_500, Some("credit-attempt-1")).await;

    first.assert_status(200);
    second.assert_status(200);
    assert_eq!(first.text(), second.text());
    assert_eq!(second.json::<Wallet>().balance_cents, 3_500);
    assert!(first.header("idempotent-replayed").is_none());
    assert_eq!(
        second.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(balance(&app.pool, user).await, 3_500);
}

#[tokio::test]
async fn the_same_idempotency_key_with_another_amount_is_422_and_moves_nothing() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();
    credit(&app.api, &admin, user, 2_500, Some("k-1"))
        .await
        .assert_status(200);

    let conflicting = credit(&app.api, &admin, user, 2_600, Some("k-1")).await;

    conflicting.assert_status(422);
    assert_eq!(
        conflicting.problem().problem_type,
        "/problems/unprocessable"
    );
    assert_eq!(balance(&app.pool, user).await, 3_500);
}

#[tokio::test]
async fn the_same_idempotency_key_for_another_wallet_is_422() {
    let app = spawn_app().await;
    let (user, other) = (UserId::new(), UserId::new());
    open_wallet(&app.pool, user, 1_000).await;
    open_wallet(&app.pool, other, 1_000).await;
    let (_, admin) = tokens::admin();
    credit(&app.api, &admin, user, 2_500, Some("k-1"))
        .await
        .assert_status(200);

    let conflicting = credit(&app.api, &admin, other, 2_500, Some("k-1")).await;

    conflicting.assert_status(422);
    assert_eq!(balance(&app.pool, other).await, 1_000);
}

#[tokio::test]
async fn concurrent_credits_with_one_idempotency_key_credit_once() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (api, admin) = (app.api.clone(), admin.clone());
        requests.spawn(async move { credit(&api, &admin, user, 2_500, Some("burst")).await });
    }
    let responses = requests.join_all().await;

    for response in &responses {
        response.assert_status(200);
        assert_eq!(response.json::<Wallet>().balance_cents, 3_500);
    }
    let replays = responses
        .iter()
        .filter(|r| r.header("idempotent-replayed").is_some())
        .count();
    assert_eq!(replays, 7);
    assert_eq!(balance(&app.pool, user).await, 3_500);
    assert_eq!(ledger_rows(&app.pool, user).await.len(), 2);
}

#[tokio::test]
async fn credits_without_an_idempotency_key_are_each_made() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    for _ in 0..2 {
        credit(&app.api, &admin, user, 2_500, None)
            .await
            .assert_status(200);
    }

    assert_eq!(balance(&app.pool, user).await, 6_000);
}

#[tokio::test]
async fn an_empty_or_oversize_idempotency_key_is_400_and_moves_nothing() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let (_, admin) = tokens::admin();

    for key in ["  ".to_owned(), "k".repeat(256)] {
        let response = credit(&app.api, &admin, user, 2_500, Some(&key)).await;

        response.assert_status(400);
        assert_eq!(response.problem().problem_type, "/problems/bad-request");
    }
    assert_eq!(balance(&app.pool, user).await, 1_000);
}

#[tokio::test]
async fn a_malformed_idempotency_key_does_not_answer_before_the_caller_is_checked() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 1_000).await;
    let customer = tokens::for_user(user, Role::Customer);
    let send = |token: Option<&str>| {
        let mut call = app
            .api
            .post(&format!("/api/v1/wallets/{user}/credit"))
            .header("Idempotency-Key", "  ")
            .json(&serde_json::json!({ "amount_cents": 100 }));
        if let Some(token) = token {
            call = call.bearer(token);
        }
        call.send()
    };

    send(None).await.assert_status(401);
    send(Some(&customer)).await.assert_status(403);
    assert_eq!(balance(&app.pool, user).await, 1_000);
}

/// `GET /api/v1/wallets/{user}/ledger` by `admin`.
async fn ledger(app: &TestApp, admin: &str, user: UserId, query: &str) -> TestResponse {
    app.api
        .get(&format!("/api/v1/wallets/{user}/ledger{query}"))
        .bearer(admin)
        .send()
        .await
}

#[tokio::test]
async fn an_admin_reads_every_change_of_a_wallet_oldest_first_and_they_add_up_to_its_balance() {
    let app = spawn_app().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&app.pool, user, 10_000).await;
    let (admin_id, admin) = tokens::admin();
    credit(&app.api, &admin, user, 500, Some("top-up"))
        .await
        .assert_status(200);
    let charged = charge(&app.pool, order, user, 4_000).await;
    let refunded = refund(&app.pool, order).await;

    let response = ledger(&app, &admin, user, "").await;

    response.assert_status(200);
    let page: Page<LedgerEntry> = response.json();
    let summary: Vec<_> = page
        .items
        .iter()
        .map(|e| (e.kind, e.amount_cents, e.balance_after_cents))
        .collect();
    assert_eq!(
        summary,
        [
            (LedgerKind::OpeningCredit, 10_000, 10_000),
            (LedgerKind::AdminCredit, 500, 10_500),
            (LedgerKind::Charge, -4_000, 6_500),
            (LedgerKind::Refund, 4_000, 10_500),
        ]
    );
    assert_eq!(page.items[1].credited_by, Some(admin_id));
    assert_eq!(page.items[1].idempotency_key.as_deref(), Some("top-up"));
    assert_eq!(page.items[2].payment_id, Some(charged.id));
    assert_eq!(page.items[3].payment_id, Some(refunded.id));
    assert!(page.items[2..].iter().all(|e| e.order_id == Some(order)));
    let sum: i64 = page.items.iter().map(|e| e.amount_cents).sum();
    assert_eq!(sum, balance(&app.pool, user).await);
    assert!(page.next_cursor.is_none());
}

#[tokio::test]
async fn pages_of_a_ledger_walk_every_entry_once() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 10_000).await;
    let (_, admin) = tokens::admin();
    for _ in 0..4 {
        credit(&app.api, &admin, user, 100, None)
            .await
            .assert_status(200);
    }

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page: Page<LedgerEntry> = ledger(&app, &admin, user, &query).await.json();
        seen.extend(page.items.iter().map(|e| e.id));
        match page.next_cursor {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }

    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen);
}

#[tokio::test]
async fn the_ledger_of_an_unknown_wallet_is_404() {
    let app = spawn_app().await;
    let (_, admin) = tokens::admin();

    let response = ledger(&app, &admin, UserId::new(), "").await;

    response.assert_status(404);
}

#[tokio::test]
async fn a_customer_cannot_read_a_ledger_even_their_own() {
    let app = spawn_app().await;
    let (user, token) = tokens::customer();
    open_wallet(&app.pool, user, 100).await;

    let response = ledger(&app, &token, user, "").await;

    response.assert_status(403);
}

#[tokio::test]
async fn a_ledger_page_with_an_invalid_limit_is_422() {
    let app = spawn_app().await;
    let user = UserId::new();
    open_wallet(&app.pool, user, 100).await;
    let (_, admin) = tokens::admin();

    let response = ledger(&app, &admin, user, "?limit=0").await;

    response.assert_status(422);
}
