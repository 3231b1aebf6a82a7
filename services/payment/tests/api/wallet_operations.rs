//! The operations that move money, called as the event consumers call them, against a real
//! database: a wallet never goes below zero, an order is charged at most once and refunded
//! at most once, whatever the redeliveries and races; every change of a balance is a row of
//! the append-only ledger, and a balance is always its ledger sum.

use std::pin::Pin;

use payment_service::{
    MIGRATOR, PaymentError,
    wallets::{self, AdminCredit, ChargeOutcome, Credited, RefundOutcome},
};
use secrecy::ExposeSecret;
use shop_model::{OrderId, UserId, api::PaymentKind};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

use crate::helpers::{
    LedgerRow, admin_credit, balance, cents, charge, ledger, ledger_rows, open_wallet,
    payment_count, refund, unbalanced_wallets,
};

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
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 1);
}

#[tokio::test]
async fn opening_a_wallet_writes_its_opening_credit_to_the_ledger() {
    let ledger = ledger().await;
    let user = UserId::new();

    open_wallet(&ledger.pool, user, 100_000).await;

    assert_eq!(
        ledger_rows(&ledger.pool, user).await,
        [LedgerRow {
            kind: "opening_credit".to_owned(),
            amount_cents: 100_000,
            balance_after_cents: 100_000,
            order_id: None,
            payment_id: None,
            credited_by: None,
            idempotency_key: None,
        }]
    );
}

#[tokio::test]
async fn a_wallet_opened_empty_still_has_its_opening_row() {
    let ledger = ledger().await;
    let user = UserId::new();

    open_wallet(&ledger.pool, user, 0).await;

    let rows = ledger_rows(&ledger.pool, user).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].amount_cents),
        ("opening_credit", 0)
    );
}

#[tokio::test]
async fn crediting_adds_to_the_balance() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let credited = wallets::credit(&mut conn, &admin_credit(user, 250))
        .await
        .unwrap();

    assert_eq!(credited.wallet.balance_cents, 1_250);
    assert!(!credited.replayed);
}

#[tokio::test]
async fn an_admin_credit_is_a_ledger_row_naming_the_admin_and_its_key() {
    let ledger = ledger().await;
    let (user, admin) = (UserId::new(), UserId::new());
    open_wallet(&ledger.pool, user, 1_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let request = AdminCredit {
        admin_id: admin,
        idempotency_key: Some("credit-1"),
        ..admin_credit(user, 250)
    };
    wallets::credit(&mut conn, &request).await.unwrap();

    let rows = ledger_rows(&ledger.pool, user).await;
    assert_eq!(
        rows[1..],
        [LedgerRow {
            kind: "admin_credit".to_owned(),
            amount_cents: 250,
            balance_after_cents: 1_250,
            order_id: None,
            payment_id: None,
            credited_by: Some(admin.as_uuid()),
            idempotency_key: Some("credit-1".to_owned()),
        }]
    );
}

#[tokio::test]
async fn crediting_a_user_without_a_wallet_finds_nothing() {
    let ledger = ledger().await;
    let user = UserId::new();
    let mut conn = ledger.pool.acquire().await.unwrap();

    let result = wallets::credit(&mut conn, &admin_credit(user, 250)).await;

    assert!(
        matches!(result, Err(PaymentError::WalletNotFound)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_credit_beyond_the_largest_balance_is_refused() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, i64::MAX - 10).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let result = wallets::credit(&mut conn, &admin_credit(user, 11)).await;

    assert!(
        matches!(result, Err(PaymentError::BalanceOverflow)),
        "{result:?}"
    );
    assert_eq!(balance(&ledger.pool, user).await, i64::MAX - 10);
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 1);
}

#[tokio::test]
async fn a_credit_retried_with_its_key_credits_once_and_answers_the_first_balance() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let request = AdminCredit {
        idempotency_key: Some("retry-me"),
        ..admin_credit(user, 250)
    };
    let mut conn = ledger.pool.acquire().await.unwrap();
    let first = wallets::credit(&mut conn, &request).await.unwrap();
    // Money moves in between: the replay still answers what the credit left.
    charge(&ledger.pool, OrderId::new(), user, 100).await;

    let again = wallets::credit(&mut conn, &request).await.unwrap();

    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.wallet.balance_cents, 1_250);
    assert_eq!(balance(&ledger.pool, user).await, 1_150);
    let credits = ledger_rows(&ledger.pool, user)
        .await
        .into_iter()
        .filter(|row| row.kind == "admin_credit")
        .count();
    assert_eq!(credits, 1);
}

#[tokio::test]
async fn a_key_used_for_another_amount_or_wallet_is_refused_and_moves_nothing() {
    let ledger = ledger().await;
    let (user, other) = (UserId::new(), UserId::new());
    open_wallet(&ledger.pool, user, 1_000).await;
    open_wallet(&ledger.pool, other, 1_000).await;
    let first = AdminCredit {
        idempotency_key: Some("k-1"),
        ..admin_credit(user, 250)
    };
    let mut conn = ledger.pool.acquire().await.unwrap();
    wallets::credit(&mut conn, &first).await.unwrap();

    for reused in [
        AdminCredit {
            amount: cents(251),
            ..first
        },
        AdminCredit {
            user_id: other,
            ..first
        },
    ] {
        let result = wallets::credit(&mut conn, &reused).await;

        assert!(
            matches!(result, Err(PaymentError::IdempotencyKeyReused)),
            "{result:?}"
        );
    }
    assert_eq!(balance(&ledger.pool, user).await, 1_250);
    assert_eq!(balance(&ledger.pool, other).await, 1_000);
}

#[tokio::test]
async fn keys_are_scoped_to_the_admin() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    for _ in 0..2 {
        let request = AdminCredit {
            idempotency_key: Some("same"),
            ..admin_credit(user, 250)
        };
        let credited = wallets::credit(&mut conn, &request).await.unwrap();
        assert!(!credited.replayed);
    }

    assert_eq!(balance(&ledger.pool, user).await, 1_500);
}

#[tokio::test]
async fn concurrent_credits_with_one_key_credit_once() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let request = AdminCredit {
        idempotency_key: Some("burst"),
        ..admin_credit(user, 250)
    };

    let outcomes = concurrently(10, &ledger.pool, move |conn| {
        Box::pin(async move { wallets::credit(conn, &request).await })
    })
    .await;

    let made: Vec<&Credited> = outcomes.iter().filter(|c| !c.replayed).collect();
    assert_eq!(made.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|c| c.wallet.balance_cents == 1_250));
    assert_eq!(balance(&ledger.pool, user).await, 1_250);
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 2);
}

#[tokio::test]
async fn zero_amounts_are_neither_credited_nor_charged() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;
    let mut conn = ledger.pool.acquire().await.unwrap();

    let credit = wallets::credit(&mut conn, &admin_credit(user, 0)).await;
    let charge = wallets::charge(&mut conn, OrderId::new(), user, cents(0)).await;

    assert!(
        matches!(credit, Err(PaymentError::AmountNotPositive)),
        "{credit:?}"
    );
    assert!(
        matches!(charge, Err(PaymentError::AmountNotPositive)),
        "{charge:?}"
    );
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 1);
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
async fn a_charge_is_a_negative_ledger_row_referring_to_its_payment() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;

    let payment = charge(&ledger.pool, order, user, 2_500).await;

    let rows = ledger_rows(&ledger.pool, user).await;
    assert_eq!(
        rows[1..],
        [LedgerRow {
            kind: "charge".to_owned(),
            amount_cents: -2_500,
            balance_after_cents: 7_500,
            order_id: Some(order.as_uuid()),
            payment_id: Some(payment.id.as_uuid()),
            credited_by: None,
            idempotency_key: None,
        }]
    );
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
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 1);
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
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 2);
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
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 1);
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
async fn a_refund_is_a_ledger_row_referring_to_its_payment() {
    let ledger = ledger().await;
    let (user, order) = (UserId::new(), OrderId::new());
    open_wallet(&ledger.pool, user, 10_000).await;
    charge(&ledger.pool, order, user, 4_000).await;

    let payment = refund(&ledger.pool, order).await;

    let rows = ledger_rows(&ledger.pool, user).await;
    assert_eq!(
        rows[2..],
        [LedgerRow {
            kind: "refund".to_owned(),
            amount_cents: 4_000,
            balance_after_cents: 10_000,
            order_id: Some(order.as_uuid()),
            payment_id: Some(payment.id.as_uuid()),
            credited_by: None,
            idempotency_key: None,
        }]
    );
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
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 3);
}

/// Charges, refunds and admin credits of a few wallets, all at once on their own
/// connections as consumer replicas and API workers would run them: whatever the
/// interleaving, every balance ends equal to the sum of its ledger rows, and every payment
/// has its one row.
#[tokio::test]
async fn concurrent_charges_refunds_and_credits_keep_every_balance_equal_to_its_ledger_sum() {
    let ledger = ledger().await;
    let users: Vec<UserId> = (0..3).map(|_| UserId::new()).collect();
    let mut charged = Vec::new();
    for user in &users {
        open_wallet(&ledger.pool, *user, 50_000).await;
        for _ in 0..4 {
            let order = OrderId::new();
            charge(&ledger.pool, order, *user, 1_000).await;
            charged.push(order);
        }
    }
    let mut tasks = JoinSet::new();
    for round in 0..8 {
        for (index, user) in users.iter().enumerate() {
            let (pool, user) = (ledger.pool.clone(), *user);
            let to_refund = charged.get(index * 4 + round % 4).copied();
            tasks.spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                match round % 3 {
                    0 => {
                        wallets::charge(&mut tx, OrderId::new(), user, cents(7_000))
                            .await
                            .unwrap();
                    }
                    1 => {
                        wallets::refund(&mut tx, to_refund.unwrap()).await.unwrap();
                    }
                    _ => {
                        wallets::credit(&mut tx, &admin_credit(user, 300))
                            .await
                            .unwrap();
                    }
                }
                tx.commit().await.unwrap();
            });
        }
    }
    tasks.join_all().await;

    assert_eq!(unbalanced_wallets(&ledger.pool).await, []);
    let payments_without_one_row: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payments p WHERE (SELECT count(*) FROM wallet_ledger l \
         WHERE l.payment_id = p.id) <> 1",
    )
    .fetch_one(&ledger.pool)
    .await
    .unwrap();
    assert_eq!(payments_without_one_row, 0);
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_ledger_rows() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;

    for statement in [
        "UPDATE wallet_ledger SET amount_cents = 1000000",
        "DELETE FROM wallet_ledger",
        "TRUNCATE wallet_ledger",
    ] {
        let error = sqlx::query(statement)
            .execute(&ledger.pool)
            .await
            .expect_err(statement);

        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    assert_eq!(ledger_rows(&ledger.pool, user).await.len(), 1);
}

#[tokio::test]
async fn the_database_refuses_a_ledger_row_of_the_wrong_sign_for_its_kind() {
    let ledger = ledger().await;
    let user = UserId::new();
    open_wallet(&ledger.pool, user, 1_000).await;

    let error = sqlx::query(
        "INSERT INTO wallet_ledger (id, user_id, kind, amount_cents, balance_after_cents, \
         credited_by) VALUES ($1, $2, 'admin_credit', -5, 995, $2)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(user.as_uuid())
    .execute(&ledger.pool)
    .await
    .expect_err("the CHECK constraint refuses it");

    assert!(
        service_kit::db::is_check_violation(&error, "wallet_ledger_kind_shape"),
        "{error}"
    );
}

/// The ledger arrived after wallets existed: its migration gives every existing wallet
/// one opening row equal to its balance, so that balance = ledger sum holds from the start.
#[tokio::test]
async fn the_ledger_migration_opens_the_ledger_of_existing_wallets_with_their_balance() {
    let database = test_kit::TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(database.url().expose_secret())
        .await
        .unwrap();
    MIGRATOR.run_to(20261122000302, &pool).await.unwrap();
    let (rich, empty) = (UserId::new(), UserId::new());
    sqlx::query("INSERT INTO wallets (user_id, balance_cents) VALUES ($1, 73250), ($2, 0)")
        .bind(rich.as_uuid())
        .bind(empty.as_uuid())
        .execute(&pool)
        .await
        .unwrap();

    MIGRATOR.run(&pool).await.unwrap();

    assert_eq!(unbalanced_wallets(&pool).await, []);
    for (user, balance) in [(rich, 73_250), (empty, 0)] {
        let rows = ledger_rows(&pool, user).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (
                rows[0].kind.as_str(),
                rows[0].amount_cents,
                rows[0].balance_after_cents
            ),
            ("opening_credit", balance, balance)
        );
    }
    // Later movements sort after the backfilled row.
    charge(&pool, OrderId::new(), rich, 250).await;
    let kinds: Vec<String> = ledger_rows(&pool, rich)
        .await
        .into_iter()
        .map(|row| row.kind)
        .collect();
    assert_eq!(kinds, ["opening_credit", "charge"]);
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
