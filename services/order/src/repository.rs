//! SQL of order-service. Functions take a connection; the caller owns the transaction.

use std::collections::HashMap;

use anyhow::Context;
use shop_model::{
    OrderId, ProductId, UserId,
    api::{Order, OrderItem, OrderStatus, OrderTimelineEntry},
};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{domain::PricedLine, status::StatusReason};

struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    status: String,
    status_reason: Option<String>,
    total_cents: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

struct ItemRow {
    order_id: Uuid,
    product_id: Uuid,
    quantity: i32,
    unit_price_cents: i64,
}

fn assemble(row: OrderRow, items: Vec<OrderItem>) -> anyhow::Result<Order> {
    Ok(Order {
        id: OrderId::from_uuid(row.id),
        user_id: UserId::from_uuid(row.user_id),
        status: row
            .status
            .parse::<OrderStatus>()
            .context("unknown status in the orders table")?,
        items,
        total_cents: row.total_cents,
        status_reason: row.status_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Stores a new pending order and its lines.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn insert_order(
    conn: &mut PgConnection,
    id: OrderId,
    user_id: UserId,
    lines: &[PricedLine],
    total_cents: i64,
) -> anyhow::Result<Order> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"INSERT INTO orders (id, user_id, status, total_cents)
           VALUES ($1, $2, 'pending', $3)
           RETURNING id, user_id, status, status_reason, total_cents, created_at, updated_at"#,
        id.as_uuid(),
        user_id.as_uuid(),
        total_cents,
    )
    .fetch_one(&mut *conn)
    .await?;
    let line_numbers: Vec<i16> = (1..).take(lines.len()).collect();
    let product_ids: Vec<Uuid> = lines.iter().map(|l| l.product_id.as_uuid()).collect();
    let quantities: Vec<i32> = lines.iter().map(|l| l.quantity.get()).collect();
    let prices: Vec<i64> = lines.iter().map(|l| l.unit_price.get()).collect();
    sqlx::query!(
        r#"INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents)
           SELECT $1, * FROM UNNEST($2::smallint[], $3::uuid[], $4::int[], $5::bigint[])"#,
        id.as_uuid(),
        &line_numbers,
        &product_ids,
        &quantities,
        &prices,
    )
    .execute(&mut *conn)
    .await?;
    let items = lines
        .iter()
        .map(|l| OrderItem {
            product_id: l.product_id,
            quantity: l.quantity.get(),
            unit_price_cents: l.unit_price.get(),
        })
        .collect();
    assemble(row, items)
}

/// Loads one order. With `for_update`, the row stays locked until the transaction ends,
/// so two concurrent status changes cannot both read the old status.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn find_order(
    conn: &mut PgConnection,
    id: OrderId,
    for_update: bool,
) -> anyhow::Result<Option<Order>> {
    let row = if for_update {
        sqlx::query_as!(
            OrderRow,
            r#"SELECT id, user_id, status, status_reason, total_cents, created_at, updated_at
               FROM orders WHERE id = $1 FOR UPDATE"#,
            id.as_uuid(),
        )
        .fetch_optional(&mut *conn)
        .await?
    } else {
        sqlx::query_as!(
            OrderRow,
            r#"SELECT id, user_id, status, status_reason, total_cents, created_at, updated_at
               FROM orders WHERE id = $1"#,
            id.as_uuid(),
        )
        .fetch_optional(&mut *conn)
        .await?
    };
    let Some(row) = row else {
        return Ok(None);
    };
    let mut items = items_of(conn, &[row.id]).await?;
    let items = items.remove(&row.id).unwrap_or_default();
    assemble(row, items).map(Some)
}

/// A page of orders, newest first: the user's own, or everybody's when `user_id` is `None`.
#[tracing::instrument(skip_all)]
pub async fn list_orders(
    conn: &mut PgConnection,
    user_id: Option<UserId>,
    before: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<Order>> {
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT id, user_id, status, status_reason, total_cents, created_at, updated_at
           FROM orders
           WHERE ($1::uuid IS NULL OR user_id = $1)
             AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC
           LIMIT $3"#,
        user_id.map(|u| u.as_uuid()),
        before,
        limit,
    )
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut items = items_of(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let lines = items.remove(&row.id).unwrap_or_default();
            assemble(row, lines)
        })
        .collect()
}

async fn items_of(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, Vec<OrderItem>>> {
    let rows = sqlx::query_as!(
        ItemRow,
        r#"SELECT order_id, product_id, quantity, unit_price_cents
           FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, line_no"#,
        order_ids,
    )
    .fetch_all(conn)
    .await?;
    let mut items: HashMap<Uuid, Vec<OrderItem>> = HashMap::new();
    for row in rows {
        items.entry(row.order_id).or_default().push(OrderItem {
            product_id: ProductId::from_uuid(row.product_id),
            quantity: row.quantity,
            unit_price_cents: row.unit_price_cents,
        });
    }
    Ok(items)
}

/// Stores a status decided by the state machine.
#[tracing::instrument(skip_all, fields(order_id = %id, status = %status))]
pub async fn update_status(
    conn: &mut PgConnection,
    id: OrderId,
    status: OrderStatus,
    reason: Option<StatusReason>,
) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE orders SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
        id.as_uuid(),
        status.as_str(),
        reason.map(StatusReason::as_str),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The owner of an order, if it exists: enough to decide who may read its timeline.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn find_order_owner(
    conn: &mut PgConnection,
    id: OrderId,
) -> anyhow::Result<Option<UserId>> {
    let owner = sqlx::query_scalar!("SELECT user_id FROM orders WHERE id = $1", id.as_uuid())
        .fetch_optional(conn)
        .await?;
    Ok(owner.map(UserId::from_uuid))
}

/// Puts an event on the order's timeline, with the order's status after it. Recording an
/// event id a second time does nothing: an event redelivered after its inbox record was
/// pruned is applied again (and changes nothing), but it is still one step.
#[tracing::instrument(skip_all, fields(order_id = %order_id, event_type))]
pub async fn record_event(
    conn: &mut PgConnection,
    order_id: OrderId,
    event_id: Uuid,
    event_type: &str,
    source: &str,
    status: OrderStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO order_timeline (order_id, event_id, event_type, source, status)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (event_id) DO NOTHING"#,
        order_id.as_uuid(),
        event_id,
        event_type,
        source,
        status.as_str(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An order has a handful of events; the bound only keeps one answer small whatever
/// reaches the broker.
const MAX_TIMELINE_ENTRIES: i64 = 100;

/// The timeline of an order, oldest first.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn timeline(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> anyhow::Result<Vec<OrderTimelineEntry>> {
    let rows = sqlx::query!(
        r#"SELECT at, event_type, source, status FROM order_timeline
           WHERE order_id = $1 ORDER BY seq LIMIT $2"#,
        order_id.as_uuid(),
        MAX_TIMELINE_ENTRIES,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(OrderTimelineEntry {
                at: row.at,
                event_type: row.event_type,
                source: row.source,
                status: row
                    .status
                    .parse()
                    .context("unknown status in the order_timeline table")?,
            })
        })
        .collect()
}

/// What an `Idempotency-Key` was first used for.
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub order_id: OrderId,
}

/// Records `key` for `order_id`. Returns `false` when the key already exists: a concurrent
/// request with the same key waits here for the first one's transaction, then sees its row.
#[tracing::instrument(skip_all)]
pub async fn claim_idempotency_key(
    conn: &mut PgConnection,
    user_id: UserId,
    key: &str,
    request_hash: &str,
    order_id: OrderId,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query!(
        r#"INSERT INTO idempotency_keys (user_id, key, request_hash, order_id)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id, key) DO NOTHING"#,
        user_id.as_uuid(),
        key,
        request_hash,
        order_id.as_uuid(),
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[tracing::instrument(skip_all)]
pub async fn find_idempotency_key(
    conn: &mut PgConnection,
    user_id: UserId,
    key: &str,
) -> anyhow::Result<Option<IdempotencyRecord>> {
    let row = sqlx::query!(
        "SELECT request_hash, order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        user_id.as_uuid(),
        key,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| IdempotencyRecord {
        request_hash: r.request_hash,
        order_id: OrderId::from_uuid(r.order_id),
    }))
}
