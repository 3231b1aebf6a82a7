use shop_model::{
    OrderId, Role, UserId,
    api::{Page, Payment, PaymentKind},
};
use test_kit::tokens;

use crate::helpers::{TestApp, charge, open_wallet, refund, spawn_app};

/// An order of `user` that was charged and then refunded.
async fn refunded_order(app: &TestApp, user: UserId) -> (OrderId, Payment, Payment) {
    let order = OrderId::new();
    open_wallet(&app.pool, user, 10_000).await;
    let charged = charge(&app.pool, order, user, 2_500).await;
    let refunded = refund(&app.pool, order).await;
    (order, charged, refunded)
}

async fn list(app: &TestApp, token: &str, query: &str) -> Page<Payment> {
    let response = app
        .api
        .get(&format!("/api/v1/payments?{query}"))
        .bearer(token)
        .send()
        .await;
    response.assert_status(200);
    response.json()
}

#[tokio::test]
async fn the_owner_sees_the_charge_and_the_refund_of_an_order_oldest_first() {
    let app = spawn_app().await;
    let (user, token) = tokens::customer();
    let (order, charged, refunded) = refunded_order(&app, user).await;

    let page = list(&app, &token, &format!("order_id={order}")).await;

    let listed: Vec<_> = page
        .items
        .iter()
        .map(|p| (p.id, p.kind, p.amount_cents))
        .collect();
    assert_eq!(
        listed,
        [
            (charged.id, PaymentKind::Charge, 2_500),
            (refunded.id, PaymentKind::Refund, 2_500),
        ]
    );
    assert!(
        page.items
            .iter()
            .all(|p| p.order_id == order && p.user_id == user)
    );
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn another_customer_sees_no_payments_of_an_order() {
    let app = spawn_app().await;
    let (order, _, _) = refunded_order(&app, UserId::new()).await;
    let (_, stranger) = tokens::customer();

    let page = list(&app, &stranger, &format!("order_id={order}")).await;

    assert!(page.items.is_empty(), "{:?}", page.items);
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn an_admin_sees_every_payment_of_an_order() {
    let app = spawn_app().await;
    let (order, charged, refunded) = refunded_order(&app, UserId::new()).await;
    let (_, admin) = tokens::admin();

    let page = list(&app, &admin, &format!("order_id={order}")).await;

    let ids: Vec<_> = page.items.iter().map(|p| p.id).collect();
    assert_eq!(ids, [charged.id, refunded.id]);
}

#[tokio::test]
async fn pages_of_one_walk_every_payment_once() {
    let app = spawn_app().await;
    let user = UserId::new();
    let (order, charged, refunded) = refunded_order(&app, user).await;
    let token = tokens::for_user(user, Role::Customer);

    let mut seen = Vec::new();
    let mut query = format!("order_id={order}&limit=1");
    loop {
        let page = list(&app, &token, &query).await;
        assert!(page.items.len() <= 1);
        seen.extend(page.items.iter().map(|p| p.id));
        match page.next_cursor {
            Some(cursor) => query = format!("order_id={order}&limit=1&cursor={cursor}"),
            None => break,
        }
        assert!(seen.len() <= 2, "the cursor does not advance: {seen:?}");
    }

    assert_eq!(seen, [charged.id, refunded.id]);
}

#[tokio::test]
async fn an_invalid_cursor_is_422() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    let response = app
        .api
        .get(&format!(
            "/api/v1/payments?order_id={}&cursor=bm9wZQ",
            OrderId::new()
        ))
        .bearer(&token)
        .send()
        .await;

    response.assert_status(422);
    assert!(
        response
            .problem()
            .errors
            .expect("field errors")
            .contains_key("cursor")
    );
}

#[tokio::test]
async fn a_limit_out_of_range_is_422() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    for limit in [0, 101] {
        let response = app
            .api
            .get(&format!(
                "/api/v1/payments?order_id={}&limit={limit}",
                OrderId::new()
            ))
            .bearer(&token)
            .send()
            .await;

        response.assert_status(422);
        assert!(
            response
                .problem()
                .errors
                .expect("field errors")
                .contains_key("limit")
        );
    }
}

#[tokio::test]
async fn listing_without_an_order_id_is_422_naming_the_field() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    for path in ["/api/v1/payments", "/api/v1/payments?limit=5"] {
        let response = app.api.get(path).bearer(&token).send().await;

        response.assert_status(422);
        assert!(
            response
                .problem()
                .errors
                .expect("field errors")
                .contains_key("order_id")
        );
    }
}

#[tokio::test]
async fn listing_with_an_order_id_that_is_not_a_uuid_is_422_naming_the_field() {
    let app = spawn_app().await;
    let (_, token) = tokens::customer();

    for order_id in ["42", "not-a-uuid", ""] {
        let response = app
            .api
            .get(&format!("/api/v1/payments?order_id={order_id}"))
            .bearer(&token)
            .send()
            .await;

        response.assert_status(422);
        assert!(
            response
                .problem()
                .errors
                .expect("field errors")
                .contains_key("order_id")
        );
    }
}
