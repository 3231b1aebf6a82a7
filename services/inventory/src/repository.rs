//! SQL of inventory-service. Functions take a connection; the caller owns the transaction.

use service_kit::pagination::PageRequest;
use shop_model::{OrderId, ProductId, api::Product};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{OrderDemand, ProductDraft, StockDelta, StockLevel};

struct ProductRow {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price_cents: i64,
    on_hand: i32,
    reserved: i32,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: ProductId::from_uuid(row.id),
            sku: row.sku,
            name: row.name,
            description: row.description,
            price_cents: row.price_cents,
            // The `products_reserved_check` constraint keeps this between 0 and `on_hand`.
            available: row.on_hand - row.reserved,
            reserved: row.reserved,
        }
    }
}

/// Inserts a new product. A duplicate SKU surfaces as a unique violation of
/// `products_sku_key`.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn insert(
    conn: &mut PgConnection,
    id: ProductId,
    draft: &ProductDraft,
) -> Result<Product, sqlx::Error> {
    let row = sqlx::query_as!(
        ProductRow,
        r#"INSERT INTO products (id, sku, name, description, price_cents, on_hand)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, sku, name, description, price_cents, on_hand, reserved"#,
        id.as_uuid(),
        draft.sku.as_str(),
        draft.name.as_str(),
        draft.description.as_str(),
        draft.price.get(),
        draft.stock.get(),
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// Inserts a product unless one with its SKU exists; tells whether it was inserted.
#[tracing::instrument(skip_all, fields(sku = %draft.sku))]
pub async fn insert_unless_sku_exists(
    conn: &mut PgConnection,
    id: ProductId,
    draft: &ProductDraft,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        r#"INSERT INTO products (id, sku, name, description, price_cents, on_hand)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (sku) DO NOTHING"#,
        id.as_uuid(),
        draft.sku.as_str(),
        draft.name.as_str(),
        draft.description.as_str(),
        draft.price.get(),
        draft.stock.get(),
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn find_by_id(
    conn: &mut PgConnection,
    id: ProductId,
) -> Result<Option<Product>, sqlx::Error> {
    let row = sqlx::query_as!(
        ProductRow,
        r#"SELECT id, sku, name, description, price_cents, on_hand, reserved
           FROM products WHERE id = $1"#,
        id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Product::from))
}

/// The products among `ids` that exist, by id.
#[tracing::instrument(skip_all, fields(count = ids.len()))]
pub async fn find_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Product>, sqlx::Error> {
    let rows = sqlx::query_as!(
        ProductRow,
        r#"SELECT id, sku, name, description, price_cents, on_hand, reserved
           FROM products WHERE id = ANY($1) ORDER BY id"#,
        ids,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Product::from).collect())
}

/// One page of the catalog in id order (ids are UUID v7, so that is creation order),
/// plus one row to tell whether another page follows.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, page: PageRequest) -> Result<Vec<Product>, sqlx::Error> {
    let rows = sqlx::query_as!(
        ProductRow,
        r#"SELECT id, sku, name, description, price_cents, on_hand, reserved
           FROM products
           WHERE $1::uuid IS NULL OR id > $1
           ORDER BY id
           LIMIT $2"#,
        page.after,
        page.fetch_limit(),
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Product::from).collect())
}

/// Adds `delta` to the units on hand, unless the result would fall below the reserved
/// units or overflow the column. Returns `None` when nothing was changed: the product does
/// not exist, or the change was refused.
///
/// The check and the change are one statement, so concurrent adjustments cannot both pass
/// the check and then together overdraw the stock: PostgreSQL locks the row, and the second
/// statement re-evaluates its `WHERE` against the first one's result. The guard adds in
/// `bigint`, so it cannot overflow itself; 2147483647 is the largest `integer`.
#[tracing::instrument(skip_all, fields(product_id = %id, delta = delta.get()))]
pub async fn adjust_stock(
    conn: &mut PgConnection,
    id: ProductId,
    delta: StockDelta,
) -> Result<Option<Product>, sqlx::Error> {
    let row = sqlx::query_as!(
        ProductRow,
        r#"UPDATE products
           SET on_hand = on_hand + $2::integer, updated_at = now()
           WHERE id = $1 AND on_hand::bigint + $2::integer BETWEEN reserved AND 2147483647
           RETURNING id, sku, name, description, price_cents, on_hand, reserved"#,
        id.as_uuid(),
        delta.get(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Product::from))
}

// Reservations: the SQL of the order saga (`crate::saga`).
//
// Each function below that changes stock first locks the product rows it is about to
// change, in product id order, until the transaction ends. As every such transaction takes
// its locks in the same order, no two can each hold a row the other is waiting for (a
// deadlock), however many orders are reserved, sold and released at once; and a
// transaction that had to wait reads the stock as the one before it left it. The saga's
// per-order lock ([`lock_order`]) is taken before any of them, one per transaction, so it
// adds no cycle either.

/// The advisory-lock namespace of [`lock_order`]: "invo". The two-key form keeps it apart
/// from the one-key lock of the migrator, and the namespace from the kit's outbox locks
/// ("outb", `service_kit::events::outbox::enqueue`).
const ORDER_LOCK_SPACE: i32 = 0x696e_766f;

/// Waits for, then holds until the end of the caller's transaction, the lock that
/// serialises the saga's handling of one order (see [`crate::saga`]). The second key is a
/// hash of the order id: two orders that hash alike merely wait for each other.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn lock_order(conn: &mut PgConnection, order_id: OrderId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
        ORDER_LOCK_SPACE,
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
        r#"INSERT INTO cancelled_orders (order_id)
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
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1) AS "cancelled!""#,
        order_id.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// Locks the rows of the products `ids` in id order, and reads their stock. Ids without a
/// product are missing from the answer.
#[tracing::instrument(skip_all, fields(count = ids.len()))]
pub async fn lock_stock(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<StockLevel>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, on_hand, reserved FROM products
           WHERE id = ANY($1)
           ORDER BY id
           FOR UPDATE"#,
        ids,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| StockLevel {
            product_id: ProductId::from_uuid(row.id),
            on_hand: row.on_hand,
            reserved: row.reserved,
        })
        .collect())
}

/// Whether stock was ever reserved for the order (whatever became of it since).
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn has_reservations(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1) AS "exists!""#,
        order_id.as_uuid(),
    )
    .fetch_one(conn)
    .await
}

/// Holds the demanded units of each product for the order and records one `reserved` line
/// per product. The caller has locked the products ([`lock_stock`]) and checked that the
/// units are available; the `products_reserved_check` constraint refuses the update
/// otherwise.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn reserve(
    conn: &mut PgConnection,
    order_id: OrderId,
    demand: &OrderDemand,
) -> Result<(), sqlx::Error> {
    let (product_ids, quantities) = (demand.product_ids(), demand.quantities());
    sqlx::query!(
        r#"UPDATE products
           SET reserved = reserved + line.quantity, updated_at = now()
           FROM UNNEST($1::uuid[], $2::integer[]) AS line (product_id, quantity)
           WHERE products.id = line.product_id"#,
        &product_ids,
        &quantities,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO reservations (order_id, product_id, quantity, state)
           SELECT $1, line.product_id, line.quantity, 'reserved'
           FROM UNNEST($2::uuid[], $3::integer[]) AS line (product_id, quantity)"#,
        order_id.as_uuid(),
        &product_ids,
        &quantities,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the reservation lines of an order and the rows of their products, in product id
/// order, so that the statement that follows changes rows this transaction already holds.
async fn lock_reservations(conn: &mut PgConnection, order_id: OrderId) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT reservations.product_id
           FROM reservations JOIN products ON products.id = reservations.product_id
           WHERE reservations.order_id = $1
           ORDER BY reservations.product_id
           FOR UPDATE"#,
        order_id.as_uuid(),
    )
    .fetch_all(conn)
    .await?;
    Ok(())
}

/// Turns the order's `reserved` lines into `sold` ones: their units leave the warehouse
/// (`on_hand`) and stop being held (`reserved`). Returns how many lines were sold; none
/// when the order has no reserved stock (never reserved, or already sold or released).
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn sell(conn: &mut PgConnection, order_id: OrderId) -> Result<u64, sqlx::Error> {
    lock_reservations(conn, order_id).await?;
    let sold = sqlx::query!(
        r#"WITH sold AS (
               UPDATE reservations SET state = 'sold', updated_at = now()
               WHERE order_id = $1 AND state = 'reserved'
               RETURNING product_id, quantity
           )
           UPDATE products
           SET on_hand = on_hand - sold.quantity,
               reserved = reserved - sold.quantity,
               updated_at = now()
           FROM sold
           WHERE products.id = sold.product_id"#,
        order_id.as_uuid(),
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(sold)
}

/// What cancelling an order gave back, in lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenBack {
    /// Reserved lines whose hold was dropped (`released`).
    pub released: usize,
    /// Sold lines whose units went back on hand (`returned`).
    pub returned: usize,
}

impl GivenBack {
    pub const fn is_nothing(self) -> bool {
        self.released == 0 && self.returned == 0
    }
}

/// Gives back the stock of a cancelled order: `reserved` lines become `released` (the hold
/// is dropped), `sold` lines become `returned` (the units are back on hand). Lines already
/// released or returned are left alone, so a second cancellation gives back nothing.
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn give_back(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<GivenBack, sqlx::Error> {
    lock_reservations(conn, order_id).await?;
    let states = sqlx::query_scalar!(
        r#"WITH given_back AS (
               UPDATE reservations
               SET state = CASE state WHEN 'reserved' THEN 'released' ELSE 'returned' END,
                   updated_at = now()
               WHERE order_id = $1 AND state IN ('reserved', 'sold')
               RETURNING product_id, quantity, state
           )
           UPDATE products
           SET reserved = reserved - CASE given_back.state WHEN 'released' THEN given_back.quantity ELSE 0 END,
               on_hand = on_hand + CASE given_back.state WHEN 'returned' THEN given_back.quantity ELSE 0 END,
               updated_at = now()
           FROM given_back
           WHERE products.id = given_back.product_id
           RETURNING given_back.state AS "state!""#,
        order_id.as_uuid(),
    )
    .fetch_all(conn)
    .await?;
    let released = states.iter().filter(|state| *state == "released").count();
    Ok(GivenBack {
        released,
        returned: states.len() - released,
    })
}
