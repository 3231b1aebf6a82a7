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

use shop_model::{
    Cents, OrderId, UserId,
    api::{Payment, PaymentKind, Wallet},
};
use sqlx::{Connection, PgConnection};

use crate::{
    error::PaymentError,
    repository::{self, NewPayment},
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

/// Adds `amount` to a wallet and returns it with the new balance; `None` when the user has
/// no wallet.
///
/// # Errors
/// [`PaymentError::AmountNotPositive`] for a zero amount, and
/// [`PaymentError::BalanceOverflow`] when the balance would pass `i64::MAX` cents.
#[tracing::instrument(skip_all, fields(user_id = %user_id, amount_cents = amount.get()))]
pub async fn credit(
    conn: &mut PgConnection,
    user_id: UserId,
    amount: Cents,
) -> Result<Option<Wallet>, PaymentError> {
    require_positive(amount)?;
    let wallet = add_to_balance(conn, user_id, amount).await?;
    if let Some(wallet) = &wallet {
        tracing::info!(balance_cents = wallet.balance_cents, "wallet credited");
    }
    Ok(wallet)
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
    if repository::subtract_from_balance_if_covered(&mut savepoint, user_id, amount)
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
    add_to_balance(&mut savepoint, charged.user_id, amount)
        .await?
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

async fn add_to_balance(
    conn: &mut PgConnection,
    user_id: UserId,
    amount: Cents,
) -> Result<Option<Wallet>, PaymentError> {
    repository::add_to_balance(conn, user_id, amount)
        .await
        .map_err(|e| {
            if is_numeric_overflow(&e) {
                PaymentError::BalanceOverflow
            } else {
                PaymentError::Database(e)
            }
        })
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
