//! The operations that move money, called as the event consumers call them, against a real
//! database: a wallet never goes below zero, an order is charged at most once and refunded
//! at most once, whatever the redeliveries and races.

use std::pin::Pin;

use payment_service::{
    PaymentError,
    wallets::{self, ChargeOutcome, RefundOutcome},
};
use shop_model::{OrderId, UserId, api::PaymentKind};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

use crate::helpers::{balance, cents, charge, ledger, open_wallet, payment_count, refund};

#[tokio::test]
async fn opening_a_wallet_twice_keeps_the_first_one() {
    let ledger = ledger().await;
    let user = UserId::new();
    let mut conn = ledger.pool.acquire().await.unwrap();

    let first = wallets::open_wallet(&mut conn, user, cents(100_000))
        .await
        .unwrap();
    let second = wallets::open_wallet(&mut conn, user, cents(100_000))
        .await
        .unwrap();

    assert!(first);
    assert!(!second);
    assert_eq!(balance(&ledger.pool, user).await, 100_000);
}

#[tokio::test]
async fn crediting_adds_to_the_balance() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let wallet = wallets::credit(&mut conn, user, cents(250)).await.unwrap();

    assert_eq!(wallet.map(|w| w.balance_cents), Some(1_250));
}

#[tokio::test]
async fn crediting_a_user_without_a_wallet_finds_nothing() {
    let ledger = ledger().await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let wallet = wallets::credit(&mut conn, UserId::new(), cents(250))
        .await
        .unwrap();

    assert!(wallet.is_none());
}

#[tokio::test]
async fn a_credit_beyond_the_largest_balance_is_refused() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, i64::MAX - 10).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let result = wallets::credit(&mut conn, user, cents(11)).await;

    assert!(
        matches!(result, Err(PaymentError::BalanceOverflow)),
        "{result:?}"
    );
    assert_eq!(balance(&ledger.pool, user).await, i64::MAX - 10);
}

#[tokio::test]
async fn zero_amounts_are_neither_credited_nor_charged() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let credit = wallets::credit(&mut conn, user, cents(0)).await;
    let charge = wallets::charge(&mut conn, OrderId::new(), user, cents(0)).await;

    assert!(
        matches!(credit, Err(PaymentError::AmountNotPositive)),
        "{credit:?}"
    );
    assert!(
        matches!(charge, Err(PaymentError::AmountNotPositive)),
        "{charge:?}"
    );
}

#[tokio::test]
async fn a_charge_takes_the_amount_and_records_the_payment() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let outcome = wallets::charge(&mut conn, order, user, cents(2_500))
        .await
        .unwrap();

    let ChargeOutcome::Charged(payment) = outcome else {
        panic!("expected a charge, got {outcome:?}");
    };
    assert_eq!(payment.order_id, order);
    assert_eq!(payment.user_id, user);
    assert_eq!(payment.kind, PaymentKind::Charge);
    assert_eq!(payment.amount_cents, 2_500);
    assert_eq!(balance(&ledger.pool, user).await, 7_500);
}

#[tokio::test]
async fn a_charge_may_take_the_whole_balance() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 2_500).await;

    charge(&ledger.pool, OrderId::new(), user, 2_500).await;

    assert_eq!(balance(&ledger.pool, user).await, 0);
}

#[tokio::test]
async fn a_charge_beyond_the_balance_changes_nothing() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 5_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let outcome = wallets::charge(&mut conn, order, user, cents(5_001))
        .await
        .unwrap();

    assert!(
        matches!(
            outcome,
            ChargeOutcome::InsufficientFunds {
                balance_cents: 5_000
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(balance(&ledger.pool, user).await, 5_000);
    assert_eq!(payment_count(&ledger.pool, order).await, 0);
}

#[tokio::test]
async fn a_charge_without_a_wallet_changes_nothing() {
    let ledger = ledger().await;
    let order = OrderId::new();
    let mut conn = ledger.pool.acquire().await.unwrap();

    let outcome = wallets::charge(&mut conn, order, UserId::new(), cents(100))
        .await
        .unwrap();

    assert!(matches!(outcome, ChargeOutcome::NoWallet), "{outcome:?}");
    assert_eq!(payment_count(&ledger.pool, order).await, 0);
}

#[tokio::test]
async fn the_database_refuses_a_negative_balance() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 100).await;

    let error =
        sqlx::query("UPDATE wallets SET balance_cents = balance_cents - 101 WHERE user_id = $1")
            .bind(user.as_uuid())
            .execute(&ledger.pool)
            .await
            .expect_err("the CHECK constraint refuses it");

    assert!(
        service_kit::db::is_check_violation(&error, "wallets_balance_non_negative"),
        "{error}"
    );
}

#[tokio::test]
async fn concurrent_charges_never_overdraw_a_wallet() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 100_000).await;

    let outcomes = concurrently(20, &ledger.pool, move |conn| {
        Box::pin(wallets::charge(conn, OrderId::new(), user, cents(10_000)))
    })
    .await;

    let charged = outcomes
        .iter()
        .filter(|o| matches!(o, ChargeOutcome::Charged(_)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, ChargeOutcome::InsufficientFunds { .. }))
        .count();
    assert_eq!((charged, refused), (10, 10), "{outcomes:?}");
    assert_eq!(balance(&ledger.pool, user).await, 0);
}

#[tokio::test]
async fn charging_the_same_order_twice_takes_the_money_once() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    let first = charge(&ledger.pool, order, user, 4_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let again = wallets::charge(&mut conn, order, user, cents(4_000))
        .await
        .unwrap();

    let ChargeOutcome::AlreadyCharged(existing) = again else {
        panic!("expected the first charge, got {again:?}");
    };
    assert_eq!(existing.id, first.id);
    assert_eq!(balance(&ledger.pool, user).await, 6_000);
}

#[tokio::test]
async fn concurrent_charges_of_one_order_take_the_money_once() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 100_000).await;

    let outcomes = concurrently(10, &ledger.pool, move |conn| {
        Box::pin(wallets::charge(conn, order, user, cents(10_000)))
    })
    .await;

    let charged: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            ChargeOutcome::Charged(payment) => Some(payment.id),
            _ => None,
        })
        .collect();
    assert_eq!(charged.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| match o {
        ChargeOutcome::Charged(p) | ChargeOutcome::AlreadyCharged(p) => p.id == charged[0],
        _ => false,
    }));
    assert_eq!(balance(&ledger.pool, user).await, 90_000);
    assert_eq!(payment_count(&ledger.pool, order).await, 1);
}

#[tokio::test]
async fn a_charge_rolled_back_by_the_caller_leaves_no_trace() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    let mut transaction = ledger.pool.begin().await.unwrap();

    let outcome = wallets::charge(&mut transaction, order, user, cents(4_000))
        .await
        .unwrap();
    transaction.rollback().await.unwrap();

    assert!(matches!(outcome, ChargeOutcome::Charged(_)), "{outcome:?}");
    assert_eq!(balance(&ledger.pool, user).await, 10_000);
    assert_eq!(payment_count(&ledger.pool, order).await, 0);
}

#[tokio::test]
async fn a_refund_gives_back_the_charged_amount() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    charge(&ledger.pool, order, user, 4_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let outcome = wallets::refund(&mut conn, order).await.unwrap();

    let RefundOutcome::Refunded(payment) = outcome else {
        panic!("expected a refund, got {outcome:?}");
    };
    assert_eq!(payment.kind, PaymentKind::Refund);
    assert_eq!(payment.amount_cents, 4_000);
    assert_eq!(payment.user_id, user);
    assert_eq!(balance(&ledger.pool, user).await, 10_000);
}

#[tokio::test]
async fn refunding_an_uncharged_order_does_nothing() {
    let ledger = ledger().await;
    let order = OrderId::new();
    let mut conn = ledger.pool.acquire().await.unwrap();

    let outcome = wallets::refund(&mut conn, order).await.unwrap();

    assert!(
        matches!(outcome, RefundOutcome::NothingToRefund),
        "{outcome:?}"
    );
    assert_eq!(payment_count(&ledger.pool, order).await, 0);
}

#[tokio::test]
async fn refunding_twice_gives_the_money_back_once() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    charge(&ledger.pool, order, user, 4_000).await;
    let first = refund(&ledger.pool, order).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let again = wallets::refund(&mut conn, order).await.unwrap();

    let RefundOutcome::AlreadyRefunded(existing) = again else {
        panic!("expected the first refund, got {again:?}");
    };
    assert_eq!(existing.id, first.id);
    assert_eq!(balance(&ledger.pool, user).await, 10_000);
}

#[tokio::test]
async fn concurrent_refunds_of_one_order_give_the_money_back_once() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    charge(&ledger.pool, order, user, 4_000).await;

    let outcomes = concurrently(10, &ledger.pool, move |conn| {
        Box::pin(wallets::refund(conn, order))
    })
    .await;

    let refunded = outcomes
        .iter()
        .filter(|o| matches!(o, RefundOutcome::Refunded(_)))
        .count();
    let repeats = outcomes
        .iter()
        .filter(|o| matches!(o, RefundOutcome::AlreadyRefunded(_)))
        .count();
    assert_eq!((refunded, repeats), (1, 9), "{outcomes:?}");
    assert_eq!(balance(&ledger.pool, user).await, 10_000);
    assert_eq!(payment_count(&ledger.pool, order).await, 2);
}

/// Runs `operation` `times` times at once, each in its own transaction on its own
/// connection as that many consumer replicas would, and returns the committed outcomes.
async fn concurrently<T, F>(times: usize, pool: &PgPool, operation: F) -> Vec<T>
where
    T: Send + 'static,
    F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, PaymentError>>
        + Clone
        + Send
        + 'static,
{
    let mut tasks = JoinSet::new();
    for _ in 0..times {
        let pool = pool.clone();
        let operation = operation.clone();
        tasks.spawn(async move {
            let mut transaction = pool.begin().await.expect("transaction");
            let outcome = operation(&mut transaction)
                .await
                .expect("the operation succeeds");
            transaction.commit().await.expect("committed");
            outcome
        });
    }
    tasks.join_all().await
}
