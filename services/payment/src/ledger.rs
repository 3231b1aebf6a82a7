//! The wallet ledger as an admin reads it (`GET /api/v1/wallets/{user_id}/ledger`).
//!
//! Every change of a balance is one row of the append-only `wallet_ledger` table, written
//! by the statement that changes the balance (see [`crate::repository`]), so a balance is
//! the sum of its wallet's rows. Without it a balance is just a number: a credit sent twice
//! by a retrying client, or a charge and refund that do not add up, could not be told from
//! legitimate movements, and no balance could be reconciled.

use serde::{Deserialize, Serialize};
use shop_model::{OrderId, PaymentId, UserId};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// What changed a balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// The starting credit, when the wallet was opened (`UserRegistered`). For a wallet
    /// opened before the ledger existed: its balance when the ledger was introduced.
    OpeningCredit,
    /// An admin's `POST /api/v1/wallets/{user_id}/credit`.
    AdminCredit,
    /// The charge of an order (a negative amount).
    Charge,
    /// The refund of a cancelled order's charge.
    Refund,
}

impl LedgerKind {
    pub const ALL: [Self; 4] = [
        Self::OpeningCredit,
        Self::AdminCredit,
        Self::Charge,
        Self::Refund,
    ];

    /// The value of `wallet_ledger.kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpeningCredit => "opening_credit",
            Self::AdminCredit => "admin_credit",
            Self::Charge => "charge",
            Self::Refund => "refund",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// One change of a wallet's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub user_id: UserId,
    pub kind: LedgerKind,
    /// Signed: negative for a charge, positive (or, for an opening credit, zero) otherwise.
    #[schema(example = -4500)]
    pub amount_cents: i64,
    /// The balance this change left.
    pub balance_after_cents: i64,
    /// The order charged or refunded.
    pub order_id: Option<OrderId>,
    /// The payment (`GET /api/v1/payments`) that is this charge or refund.
    pub payment_id: Option<PaymentId>,
    /// The admin who made an admin credit.
    pub credited_by: Option<UserId>,
    /// The `Idempotency-Key` an admin credit was sent with, if any.
    pub idempotency_key: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_what_it_stores() {
        for kind in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serialised"),
                kind.as_str()
            );
        }
        assert_eq!(LedgerKind::parse("gift"), None);
    }
}
