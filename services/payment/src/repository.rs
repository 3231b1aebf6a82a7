//! SQL of payment-service. Functions take a connection; the caller owns the transaction.

use service_kit::pagination::PageRequest;
use shop_model::{
    Cents, OrderId, PaymentId, UserId,
    api::{Payment, PaymentKind, Wallet},
};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ledger::{LedgerEntry, LedgerKind};

// Every function below that changes a balance writes the wallet's ledger row in the same
// statement: the UPDATE (or INSERT) of the wallet and the INSERT of its `wallet_ledger`
// row are one atomic step, also on a connection outside a transaction, and no caller can
// change a balance without its row. The row is written while the UPDATE holds the
// wallet's row lock, so its `balance_after_cents` is exact.

/// Opens a wallet unless the user has one, with its `opening_credit` row. Returns whether
/// it was opened.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn insert_wallet(
    conn: &mut PgConnection,
    user_id: UserId,
    balance: Cents,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        r#"WITH opened AS (
               INSERT INTO wallets (user_id, balance_cents)
               VALUES ($1, $2)
               ON CONFLICT (user_id) DO NOTHING
               RETURNING user_id, balance_cents
           )
           INSERT INTO wallet_ledger (id, user_id, kind, amount_cents, balance_after_cents)
           SELECT $3, user_id, 'opening_credit', balance_cents, balance_cents
           FROM opened"#,
        user_id.as_uuid(),
        balance.get(),
        Uuid::now_v7(),
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn find_wallet(
    conn: &mut PgConnection,
    user_id: UserId,
) -> Result<Option<Wallet>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT user_id, balance_cents FROM wallets WHERE user_id = $1",
        user_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| wallet(row.user_id, row.balance_cents)))
}

/// Why money is added to a wallet: the kind and references of its ledger row.
#[derive(Debug, Clone, Copy)]
pub enum Credit<'a> {
    /// An admin's credit, with the `Idempotency-Key` it was sent with.
    Admin {
        credited_by: UserId,
        idempotency_key: Option<&'a str>,
    },
    /// The refund of an order's charge, recorded as `payment_id`.
    Refund {
        order_id: OrderId,
        payment_id: PaymentId,
    },
}

/// The charge of an order, recorded as `payment_id`: why money is taken from a wallet.
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
}

/// The unique index that admits one admin credit per admin and `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_INDEX: &str = "wallet_ledger_idempotency_key";

/// Adds `amount` to the balance and writes the ledger row of `credit`. `None` when the
/// user has no wallet. A sum beyond `i64::MAX` fails with SQLSTATE 22003
/// (`numeric_value_out_of_range`); an admin's idempotency key used before, with a unique
/// violation of [`IDEMPOTENCY_KEY_INDEX`]. Nothing changed then.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn add_to_balance(
    conn: &mut PgConnection,
    user_id: UserId,
    amount: Cents,
    credit: Credit<'_>,
) -> Result<Option<Wallet>, sqlx::Error> {
    let (kind, order_id, payment_id, credited_by, idempotency_key) = match credit {
        Credit::Admin {
            credited_by,
            idempotency_key,
        } => (
            LedgerKind::AdminCredit,
            None,
            None,
            Some(credited_by.as_uuid()),
            idempotency_key,
        ),
        Credit::Refund {
            order_id,
            payment_id,
        } => (
            LedgerKind::Refund,
            Some(order_id.as_uuid()),
            Some(payment_id.as_uuid()),
            None,
            None,
        ),
    };
    let row = sqlx::query!(
        r#"WITH credited AS (
               UPDATE wallets
               SET balance_cents = balance_cents + $2, updated_at = now()
               WHERE user_id = $1
               RETURNING user_id, balance_cents
           )
           INSERT INTO wallet_ledger
               (id, user_id, kind, amount_cents, balance_after_cents,
                order_id, payment_id, credited_by, idempotency_key)
           SELECT $3, user_id, $4, $2, balance_cents, $5, $6, $7, $8
           FROM credited
           RETURNING user_id, balance_after_cents"#,
        user_id.as_uuid(),
        amount.get(),
        Uuid::now_v7(),
        kind.as_str(),
        order_id,
        payment_id,
        credited_by,
        idempotency_key,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| wallet(row.user_id, row.balance_after_cents)))
}

/// Takes `amount` from the balance if the balance covers it, and writes the ledger row of
/// `charge`, in one statement: the row lock of the UPDATE serialises concurrent debits of
/// one wallet, and each re-checks the condition against the balance the previous one
/// left. `None` when the wallet is missing or the balance is too low; nothing changed then.
///
/// The ledger row refers to `charge.payment_id`, which the caller records in the same
/// transaction (the reference is checked at commit).
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn subtract_from_balance_if_covered(
    conn: &mut PgConnection,
    user_id: UserId,
    amount: Cents,
    charge: Charge,
) -> Result<Option<Wallet>, sqlx::Error> {
    let row = sqlx::query!(
        r#"WITH debited AS (
               UPDATE wallets
               SET balance_cents = balance_cents - $2, updated_at = now()
               WHERE user_id = $1 AND balance_cents >= $2
               RETURNING user_id, balance_cents
           )
           INSERT INTO wallet_ledger
               (id, user_id, kind, amount_cents, balance_after_cents, order_id, payment_id)
           SELECT $3, user_id, 'charge', -$2, balance_cents, $4, $5
           FROM debited
           RETURNING user_id, balance_after_cents"#,
        user_id.as_uuid(),
        amount.get(),
        Uuid::now_v7(),
        charge.order_id.as_uuid(),
        charge.payment_id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| wallet(row.user_id, row.balance_after_cents)))
}

/// An admin credit, found by the admin's `Idempotency-Key`.
pub struct AdminCreditRecord {
    pub user_id: UserId,
    pub amount_cents: i64,
    pub balance_after_cents: i64,
}

/// The admin credit that `credited_by` sent with `idempotency_key`, if any.
#[tracing::instrument(skip_all, fields(credited_by = %credited_by))]
pub async fn find_admin_credit(
    conn: &mut PgConnection,
    credited_by: UserId,
    idempotency_key: &str,
) -> Result<Option<AdminCreditRecord>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT user_id, amount_cents, balance_after_cents
           FROM wallet_ledger
           WHERE credited_by = $1 AND idempotency_key = $2"#,
        credited_by.as_uuid(),
        idempotency_key,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| AdminCreditRecord {
        user_id: UserId::from_uuid(row.user_id),
        amount_cents: row.amount_cents,
        balance_after_cents: row.balance_after_cents,
    }))
}

/// One page of a wallet's ledger, oldest first. Fetches `page.fetch_limit()` rows so the
/// caller can tell whether another page follows.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn list_ledger(
    conn: &mut PgConnection,
    user_id: UserId,
    page: PageRequest,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, user_id, kind, amount_cents, balance_after_cents, order_id, payment_id,
                  credited_by, idempotency_key, created_at
           FROM wallet_ledger
           WHERE user_id = $1 AND ($2::uuid IS NULL OR id > $2)
           ORDER BY id
           LIMIT $3"#,
        user_id.as_uuid(),
        page.after,
        page.fetch_limit(),
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let kind = LedgerKind::parse(&row.kind).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown ledger kind `{}`", row.kind).into())
            })?;
            Ok(LedgerEntry {
                id: row.id,
                user_id: UserId::from_uuid(row.user_id),
                kind,
                amount_cents: row.amount_cents,
                balance_after_cents: row.balance_after_cents,
                order_id: row.order_id.map(OrderId::from_uuid),
                payment_id: row.payment_id.map(PaymentId::from_uuid),
                credited_by: row.credited_by.map(UserId::from_uuid),
                idempotency_key: row.idempotency_key,
                created_at: row.created_at,
            })
        })
        .collect()
}

fn wallet(user_id: Uuid, balance_cents: i64) -> Wallet {
    Wallet {
        user_id: UserId::from_uuid(user_id),
        balance_cents,
    }
}

/// A payment about to be recorded.
pub struct NewPayment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub kind: PaymentKind,
    pub amount: Cents,
}

struct PaymentRow {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    kind: String,
    amount_cents: i64,
    created_at: OffsetDateTime,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = sqlx::Error;

    fn try_from(row: PaymentRow) -> Result<Self, Self::Error> {
        let kind = match row.kind.as_str() {
            "charge" => PaymentKind::Charge,
            "refund" => PaymentKind::Refund,
            other => {
                return Err(sqlx::Error::Decode(
                    format!("unknown payment kind `{other}`").into(),
                ));
            }
        };
        Ok(Self {
            id: PaymentId::from_uuid(row.id),
            order_id: OrderId::from_uuid(row.order_id),
            user_id: UserId::from_uuid(row.user_id),
            kind,
            amount_cents: row.amount_cents,
            created_at: row.created_at,
        })
    }
}

/// The value of `payments.kind`.
fn kind_str(kind: PaymentKind) -> &'static str {
    match kind {
        PaymentKind::Charge => "charge",
        PaymentKind::Refund => "refund",
    }
}

/// Records a payment unless the order already has one of this kind. `None` when it has:
/// the unique (order_id, kind) constraint decided, after waiting for any transaction that
/// was inserting the same pair at the same time.
#[tracing::instrument(skip_all, fields(order_id = %payment.order_id, kind = kind_str(payment.kind)))]
pub async fn insert_payment_unless_exists(
    conn: &mut PgConnection,
    payment: &NewPayment,
) -> Result<Option<Payment>, sqlx::Error> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"INSERT INTO payments (id, order_id, user_id, kind, amount_cents)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT ON CONSTRAINT payments_order_kind_key DO NOTHING
           RETURNING id, order_id, user_id, kind, amount_cents, created_at"#,
        payment.id.as_uuid(),
        payment.order_id.as_uuid(),
        payment.user_id.as_uuid(),
        kind_str(payment.kind),
        payment.amount.get(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(Payment::try_from).transpose()
}

/// The charge or the refund of an order.
#[tracing::instrument(skip_all, fields(order_id = %order_id, kind = kind_str(kind)))]
pub async fn find_payment(
    conn: &mut PgConnection,
    order_id: OrderId,
    kind: PaymentKind,
) -> Result<Option<Payment>, sqlx::Error> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, order_id, user_id, kind, amount_cents, created_at
           FROM payments
           WHERE order_id = $1 AND kind = $2"#,
        order_id.as_uuid(),
        kind_str(kind),
    )
    .fetch_optional(conn)
    .await?;
    row.map(Payment::try_from).transpose()
}

/// One page of an order's payments, oldest first, optionally only those of one user.
/// Fetches `page.fetch_limit()` rows so the caller can tell whether another page follows.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn list_payments(
    conn: &mut PgConnection,
    order_id: OrderId,
    only_user: Option<UserId>,
    page: PageRequest,
) -> Result<Vec<Payment>, sqlx::Error> {
    let rows = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id, order_id, user_id, kind, amount_cents, created_at
           FROM payments
           WHERE order_id = $1
             AND ($2::uuid IS NULL OR user_id = $2)
             AND ($3::uuid IS NULL OR id > $3)
           ORDER BY id
           LIMIT $4"#,
        order_id.as_uuid(),
        only_user.map(|id| id.as_uuid()),
        page.after,
        page.fetch_limit(),
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Payment::try_from).collect()
}

/// Waits for, then holds until the end of the caller's transaction, the lock that
/// serialises the saga's handling of one order (see [`crate::saga`]). The key is a 64-bit
/// hash of the order id: two orders that hash alike merely wait for each other.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn lock_order(conn: &mut PgConnection, order_id: OrderId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))",
        order_id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the order was cancelled; a repeat changes nothing.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn insert_cancellation(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO order_cancellations (order_id)
           VALUES ($1)
           ON CONFLICT (order_id) DO NOTHING"#,
        order_id.as_uuid(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the order was cancelled.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn is_cancelled(conn: &mut PgConnection, order_id: OrderId) -> Result<bool, sqlx::Error> {
    let cancelled = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM order_cancellations WHERE order_id = $1) AS "cancelled!""#,
        order_id.as_uuid(),
    )
    .fetch_one(conn)
    .await?;
    Ok(cancelled)
}
