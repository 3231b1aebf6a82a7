//! The operations that move money: open a wallet, credit it, charge an order, refund it.
//!
//! Each takes a connection, not a pool, so that it becomes part of the caller's
//! transaction: an event consumer records the effect, the inbox row of the event it handles
//! and the outbox row of the event it publishes in one commit, so that either all of them
//! happen or none does. Given a connection outside a transaction, each is atomic on its own.
//!
//! Events arrive at least once and several replicas consume at the same time, so every
//! operation is safe to repeat and to race with itself. The database guarantees it, not this
//! process: a conditional UPDATE never takes more than the balance (and a CHECK refuses a
//! negative one), and the unique (order_id, kind) constraint admits one charge and one
//! refund per order. Repeats are not errors; they answer with what was done the first time.
//!
//! Every change of a balance also writes its row of the wallet ledger ([`crate::ledger`]),
//! in the same statement as the change (see [`crate::repository`]): a balance is always
//! the sum of its ledger rows.

use shop_model::{
    Cents, OrderId, PaymentId, UserId,
    api::{Payment, PaymentKind, Wallet},
};
use sqlx::{Connection, PgConnection};

use crate::{
    error::PaymentError,
    repository::{self, Charge, Credit, NewPayment},
};

/// Opens the wallet of a new user with `initial_credit`. Returns `true` if it was opened,
/// `false` if the user already had one, which is left unchanged (a redelivered
/// `UserRegistered` must not credit the starting amount twice).
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn open_wallet(
    conn: &mut PgConnection,
    user_id: UserId,
    initial_credit: Cents,
) -> Result<bool, PaymentError> {
    let opened = repository::insert_wallet(conn, user_id, initial_credit).await?;
    if opened {
        tracing::info!(balance_cents = initial_credit.get(), "wallet opened");
    }
    Ok(opened)
}

/// An admin's credit of a wallet (`POST /api/v1/wallets/{user_id}/credit`).
#[derive(Debug, Clone, Copy)]
pub struct AdminCredit<'a> {
    /// The wallet's owner.
    pub user_id: UserId,
    pub amount: Cents,
    /// The admin who asks for it.
    pub admin_id: UserId,
    /// The request's `Idempotency-Key`, if it had one.
    pub idempotency_key: Option<&'a str>,
}

/// What [`credit`] did.
#[derive(Debug, Clone)]
pub struct Credited {
    /// The wallet with the balance the credit left.
    pub wallet: Wallet,
    /// `true` when the admin's key had already credited this: nothing changed now, and
    /// `wallet` is what the first request answered.
    pub replayed: bool,
}

/// Adds an admin's amount to a wallet and returns it with the new balance.
///
/// With an idempotency key, like `POST /orders`: the same admin, key and request (wallet
/// and amount) credit once, and every repeat answers what the first one did; the key used
/// for another request is refused. The ledger row of the credit stores the key, so the
/// check and the credit are one fact: a concurrent request with the same key waits at
/// the key's unique index until the first commits, then finds it taken, rolls back its own
/// credit and answers the first one.
///
/// # Errors
/// [`PaymentError::AmountNotPositive`] for a zero amount, [`PaymentError::WalletNotFound`]
/// when the user has no wallet, [`PaymentError::IdempotencyKeyReused`] for a key used for
/// another request, and [`PaymentError::BalanceOverflow`] when the balance would pass
/// `i64::MAX` cents.
#[tracing::instrument(skip_all, fields(user_id = %request.user_id, amount_cents = request.amount.get()))]
pub async fn credit(
    conn: &mut PgConnection,
    request: &AdminCredit<'_>,
) -> Result<Credited, PaymentError> {
    require_positive(request.amount)?;
    if let Some(done) = replay(conn, request).await? {
        return Ok(done);
    }
    // A transaction (a savepoint in the caller's), so that a lost race for the key can be
    // rolled back and answered with the winner's credit.
    let mut savepoint = conn.begin().await?;
    let credit = Credit::Admin {
        credited_by: request.admin_id,
        idempotency_key: request.idempotency_key,
    };
    let credited =
        repository::add_to_balance(&mut savepoint, request.user_id, request.amount, credit).await;
    match credited {
        Ok(Some(wallet)) => {
            savepoint.commit().await?;
            tracing::info!(balance_cents = wallet.balance_cents, "wallet credited");
            Ok(Credited {
                wallet,
                replayed: false,
            })
        }
        Ok(None) => Err(PaymentError::WalletNotFound),
        Err(e)
            if service_kit::db::is_unique_violation(
                &e,
                Some(repository::IDEMPOTENCY_KEY_INDEX),
            ) =>
        {
            savepoint.rollback().await?;
            replay(conn, request)
                .await?
                .ok_or(PaymentError::Database(sqlx::Error::RowNotFound))
        }
        Err(e) => Err(balance_error(e)),
    }
}

/// What the admin's key credited before, if the request has a key that was used.
async fn replay(
    conn: &mut PgConnection,
    request: &AdminCredit<'_>,
) -> Result<Option<Credited>, PaymentError> {
    let Some(key) = request.idempotency_key else {
        return Ok(None);
    };
    let Some(first) = repository::find_admin_credit(conn, request.admin_id, key).await? else {
        return Ok(None);
    };
    // The ledger row is the stored request: the wallet and the amount are all a credit asks.
    if first.user_id != request.user_id || first.amount_cents != request.amount.get() {
        return Err(PaymentError::IdempotencyKeyReused);
    }
    tracing::info!("idempotent replay");
    Ok(Some(Credited {
        wallet: Wallet {
            user_id: first.user_id,
            balance_cents: first.balance_after_cents,
        },
        replayed: true,
    }))
}

/// What [`charge`] did.
#[derive(Debug, Clone)]
pub enum ChargeOutcome {
    /// The amount was taken from the wallet and recorded as this payment.
    Charged(Payment),
    /// The balance does not cover the amount. Nothing changed.
    InsufficientFunds { balance_cents: i64 },
    /// The order had been charged before, by this payment. Nothing changed.
    AlreadyCharged(Payment),
    /// The user has no wallet. Nothing changed.
    NoWallet,
}

/// Takes `amount` from the wallet of `user_id` for `order_id`, at most once per order and
/// never more than the balance.
///
/// # Errors
/// [`PaymentError::AmountNotPositive`] for a zero amount; database failures.
#[tracing::instrument(skip_all, fields(order_id = %order_id, user_id = %user_id, amount_cents = amount.get()))]
pub async fn charge(
    conn: &mut PgConnection,
    order_id: OrderId,
    user_id: UserId,
    amount: Cents,
) -> Result<ChargeOutcome, PaymentError> {
    require_positive(amount)?;
    // A redelivered event: answer without touching the wallet.
    if let Some(existing) = repository::find_payment(conn, order_id, PaymentKind::Charge).await? {
        return Ok(ChargeOutcome::AlreadyCharged(existing));
    }
    // A savepoint inside the caller's transaction (a transaction when there is none): the
    // debit below must be undone if a concurrent charge of this order records its payment
    // first, without undoing what the caller did before.
    let mut savepoint = conn.begin().await?;
    let charge = Charge {
        order_id,
        payment_id: PaymentId::new(),
    };
    if repository::subtract_from_balance_if_covered(&mut savepoint, user_id, amount, charge)
        .await?
        .is_none()
    {
        savepoint.rollback().await?;
        return Ok(match repository::find_wallet(conn, user_id).await? {
            Some(wallet) => {
                tracing::info!(balance_cents = wallet.balance_cents, "insufficient funds");
                ChargeOutcome::InsufficientFunds {
                    balance_cents: wallet.balance_cents,
                }
            }
            None => {
                tracing::warn!("no wallet to charge");
                ChargeOutcome::NoWallet
            }
        });
    }
    let payment = NewPayment {
        id: charge.payment_id,
        order_id,
        user_id,
        kind: PaymentKind::Charge,
        amount,
    };
    match repository::insert_payment_unless_exists(&mut savepoint, &payment).await? {
        Some(payment) => {
            savepoint.commit().await?;
            tracing::info!(payment_id = %payment.id, "order charged");
            Ok(ChargeOutcome::Charged(payment))
        }
        None => {
            // Another consumer charged this order since the check above, and committed.
            savepoint.rollback().await?;
            let existing = existing_payment(conn, order_id, PaymentKind::Charge).await?;
            Ok(ChargeOutcome::AlreadyCharged(existing))
        }
    }
}

/// What [`refund`] did.
#[derive(Debug, Clone)]
pub enum RefundOutcome {
    /// The charged amount went back to the wallet, recorded as this payment.
    Refunded(Payment),
    /// The order had been refunded before, by this payment. Nothing changed.
    AlreadyRefunded(Payment),
    /// The order was never charged (its payment failed, or the order was cancelled before
    /// payment). Nothing changed.
    NothingToRefund,
}

/// Gives the amount charged for `order_id` back to the wallet it came from, exactly once.
///
/// # Errors
/// [`PaymentError::BalanceOverflow`] if the wallet cannot hold the refund;
/// [`PaymentError::WalletNotFound`] if the charged wallet is gone; database failures.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn refund(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<RefundOutcome, PaymentError> {
    let Some(charged) = repository::find_payment(conn, order_id, PaymentKind::Charge).await? else {
        return Ok(RefundOutcome::NothingToRefund);
    };
    // The table's CHECK keeps stored amounts positive; this cannot fail on a real row.
    let amount = Cents::positive(charged.amount_cents)
        .map_err(|e| PaymentError::Database(sqlx::Error::Decode(e.into())))?;
    // The refund row and the credit stand or fall together, also when the caller passes a
    // connection outside a transaction.
    let mut savepoint = conn.begin().await?;
    // The insert is where two refunds of one order meet: the second waits for the first
    // transaction to commit and then inserts nothing.
    let refund = NewPayment {
        id: PaymentId::new(),
        order_id,
        user_id: charged.user_id,
        kind: PaymentKind::Refund,
        amount,
    };
    let Some(refund) = repository::insert_payment_unless_exists(&mut savepoint, &refund).await?
    else {
        savepoint.rollback().await?;
        let existing = existing_payment(conn, order_id, PaymentKind::Refund).await?;
        return Ok(RefundOutcome::AlreadyRefunded(existing));
    };
    let credit = Credit::Refund {
        order_id,
        payment_id: refund.id,
    };
    repository::add_to_balance(&mut savepoint, charged.user_id, amount, credit)
        .await
        .map_err(balance_error)?
        .ok_or(PaymentError::WalletNotFound)?;
    savepoint.commit().await?;
    tracing::info!(payment_id = %refund.id, amount_cents = amount.get(), "order refunded");
    Ok(RefundOutcome::Refunded(refund))
}

fn require_positive(amount: Cents) -> Result<(), PaymentError> {
    if amount > Cents::ZERO {
        Ok(())
    } else {
        Err(PaymentError::AmountNotPositive)
    }
}

/// A failed credit: [`PaymentError::BalanceOverflow`] when the sum did not fit.
fn balance_error(error: sqlx::Error) -> PaymentError {
    if is_numeric_overflow(&error) {
        PaymentError::BalanceOverflow
    } else {
        PaymentError::Database(error)
    }
}

/// SQLSTATE 22003, `numeric_value_out_of_range`: a BIGINT result beyond `i64`.
fn is_numeric_overflow(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("22003"))
}

/// A payment that the unique constraint just reported as present.
async fn existing_payment(
    conn: &mut PgConnection,
    order_id: OrderId,
    kind: PaymentKind,
) -> Result<Payment, PaymentError> {
    repository::find_payment(conn, order_id, kind)
        .await?
        .ok_or(PaymentError::Database(sqlx::Error::RowNotFound))
}
