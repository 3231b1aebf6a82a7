//! The failures of payment-service, and their one mapping to HTTP (and to the event
//! consumer: retry or dead-letter).
//!
//! Business outcomes that a caller must handle (insufficient funds, an order already
//! charged, nothing to refund) are not errors: they are the variants of
//! [`crate::wallets::ChargeOutcome`] and [`crate::wallets::RefundOutcome`].

use service_kit::{ApiError, events::consumer::HandlerError};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("this user has no wallet")]
    WalletNotFound,
    #[error("the amount must be greater than zero")]
    AmountNotPositive,
    /// The new balance would not fit in a signed 64-bit count of cents. The statement
    /// failed, so the surrounding transaction must be rolled back.
    #[error("the new balance would exceed the largest balance a wallet can hold")]
    BalanceOverflow,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::WalletNotFound => Self::NotFound(error.to_string()),
            // `amount_cents` is the only amount a client sends.
            PaymentError::AmountNotPositive => {
                Self::validation("amount_cents", "must be greater than zero")
            }
            PaymentError::BalanceOverflow | PaymentError::IdempotencyKeyReused => {
                Self::Unprocessable(error.to_string())
            }
            PaymentError::Database(e) => e.into(),
        }
    }
}

/// Only the database can fail for a reason that a retry may clear (a lost connection, a
/// deadlock). The other failures are facts about the event, the same on every attempt, so
/// the consumer dead-letters it at once.
impl From<PaymentError> for HandlerError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Database(e) => Self::Transient(e.into()),
            PaymentError::WalletNotFound
            | PaymentError::AmountNotPositive
            | PaymentError::BalanceOverflow
            | PaymentError::IdempotencyKeyReused => Self::Permanent(error.into()),
        }
    }
}
