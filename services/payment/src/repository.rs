//! SQL of payment-service. Functions take a connection; the caller owns the transaction.

use service_kit::pagination::PageRequest;
use shop_model::{
    Cents, OrderId, PaymentId, UserId,
    api::{Payment, PaymentKind, Wallet},
};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// Opens a wallet unless the user has one. Returns whether it was opened.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn insert_wallet(
    conn: &mut PgConnection,
    user_id: UserId,
    balance: Cents,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        r#"INSERT INTO wallets (user_id, balance_cents)
           VALUES ($1, $2)
           ON CONFLICT (user_id) DO NOTHING"#,
        user_id.as_uuid(),
        balance.get(),
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

/// Adds `amount` to the balance. `None` when the user has no wallet. A sum beyond
/// `i64::MAX` fails with SQLSTATE 22003 (`numeric_value_out_of_range`).
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn add_to_balance(
    conn: &mut PgConnection,
    user_id: UserId,
    amount: Cents,
) -> Result<Option<Wallet>, sqlx::Error> {
    let row = sqlx::query!(
        r#"UPDATE wallets
           SET balance_cents = balance_cents + $2, updated_at = now()
           WHERE user_id = $1
           RETURNING user_id, balance_cents"#,
        user_id.as_uuid(),
        amount.get(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| wallet(row.user_id, row.balance_cents)))
}

/// Takes `amount` from the balance if the balance covers it, in one statement: the row lock
/// of the UPDATE serialises concurrent debits of one wallet, and each re-checks the
/// condition against the balance the previous one left. `None` when the wallet is missing
/// or the balance is too low; nothing changed then.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn subtract_from_balance_if_covered(
    conn: &mut PgConnection,
    user_id: UserId,
    amount: Cents,
) -> Result<Option<Wallet>, sqlx::Error> {
    let row = sqlx::query!(
        r#"UPDATE wallets
           SET balance_cents = balance_cents - $2, updated_at = now()
           WHERE user_id = $1 AND balance_cents >= $2
           RETURNING user_id, balance_cents"#,
        user_id.as_uuid(),
        amount.get(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| wallet(row.user_id, row.balance_cents)))
}

fn wallet(user_id: Uuid, balance_cents: i64) -> Wallet {
    Wallet {
        user_id: UserId::from_uuid(user_id),
        balance_cents,
    }
}

/// A payment about to be recorded.
pub struct NewPayment {
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
        PaymentId::new().as_uuid(),
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
