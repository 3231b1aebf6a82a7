//! Placing and cancelling orders: the use cases behind the REST handlers, each one
//! database transaction.

use service_kit::{auth::Identity, request_context::RequestContext};
use shop_model::{
    Cents, OrderId, UserId,
    api::{Order, OrderStatus, PlaceOrder},
    events::{OrderCancelled, OrderLine, OrderPlaced},
};
use sqlx::PgPool;

use crate::{
    domain::{OrderRequest, PricedLine, total},
    error::OrderError,
    inventory::InventoryClient,
    metrics::OrderMetrics,
    repository, saga,
    status::{self, Input, Outcome},
};

pub struct Placed {
    pub order: Order,
    /// `false` when an `Idempotency-Key` replay returned an existing order.
    pub created: bool,
}

/// Validates the request, prices it from the catalog and stores it as `pending`, with its
/// `OrderPlaced` event in the same transaction (the transactional outbox, and the first
/// step of the order's timeline): the saga starts if and only if the order exists.
///
/// With an idempotency key the order insert and the key insert share one transaction:
/// a concurrent request with the same key blocks on the key's primary key until the first
/// commits, then finds the key taken, rolls back its own order, and answers with the
/// first one. Nothing is stored when inventory-service cannot be reached.
pub async fn place(
    pool: &PgPool,
    inventory: &InventoryClient,
    context: &RequestContext,
    user_id: UserId,
    idempotency_key: Option<&str>,
    body: PlaceOrder,
) -> Result<Placed, OrderError> {
    let request = OrderRequest::try_from(body)?;
    let fingerprint = request.fingerprint();
    if let Some(key) = idempotency_key
        && let Some(placed) = replay(pool, user_id, key, &fingerprint).await?
    {
        return Ok(placed);
    }

    let lines = price(inventory, context, &request).await?;
    let total = total(&lines)
        .filter(|total| *total > Cents::ZERO)
        .ok_or_else(|| {
            // A free order has nothing to pay, and the saga always charges; a total that
            // does not fit in the amount type is a mistake.
            let mut errors = service_kit::FieldErrors::new();
            errors.add(
                "items",
                "the order total must be above zero and below the maximum amount",
            );
            OrderError::Invalid(errors)
        })?;

    let mut tx = pool.begin().await?;
    let order =
        repository::insert_order(&mut tx, OrderId::new(), user_id, &lines, total.get()).await?;
    let placed = OrderPlaced {
        order_id: order.id,
        user_id,
        items: order
            .items
            .iter()
            .map(|item| OrderLine {
                product_id: item.product_id,
                quantity: item.quantity,
                unit_price_cents: item.unit_price_cents,
            })
            .collect(),
        total_cents: order.total_cents,
    };
    saga::publish(&mut tx, order.id, &placed, OrderStatus::Pending).await?;
    if let Some(key) = idempotency_key {
        let claimed =
            repository::claim_idempotency_key(&mut tx, user_id, key, &fingerprint, order.id)
                .await?;
        if !claimed {
            tx.rollback().await?;
            return replay(pool, user_id, key, &fingerprint)
                .await?
                .ok_or_else(|| anyhow::anyhow!("idempotency key vanished").into());
        }
    }
    tx.commit().await?;
    tracing::info!(order_id = %order.id, total_cents = order.total_cents, "order placed");
    Ok(Placed {
        order,
        created: true,
    })
}

/// The order already placed with this key, if any.
async fn replay(
    pool: &PgPool,
    user_id: UserId,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Placed>, OrderError> {
    let mut conn = pool.acquire().await?;
    let Some(record) = repository::find_idempotency_key(&mut conn, user_id, key).await? else {
        return Ok(None);
    };
    if record.request_hash != fingerprint {
        return Err(OrderError::IdempotencyKeyReused);
    }
    let order = repository::find_order(&mut conn, record.order_id, false)
        .await?
        .ok_or(OrderError::NotFound)?;
    tracing::info!(order_id = %order.id, "idempotent replay");
    Ok(Some(Placed {
        order,
        created: false,
    }))
}

/// Current catalog prices for every line; unknown products are a validation error naming
/// the line.
async fn price(
    inventory: &InventoryClient,
    context: &RequestContext,
    request: &OrderRequest,
) -> Result<Vec<PricedLine>, OrderError> {
    let ids: Vec<_> = request.lines().iter().map(|l| l.product_id).collect();
    let products = inventory.products(&ids, context).await?;
    let mut errors = service_kit::FieldErrors::new();
    let mut lines = Vec::with_capacity(ids.len());
    for (index, line) in request.lines().iter().enumerate() {
        match products.get(&line.product_id) {
            None => errors.add(format!("items[{index}].product_id"), "no such product"),
            Some(product) => match Cents::new(product.price_cents) {
                Ok(unit_price) => lines.push(PricedLine {
                    product_id: line.product_id,
                    quantity: line.quantity,
                    unit_price,
                }),
                Err(_) => {
                    return Err(anyhow::anyhow!(
                        "inventory-service returned a negative price for {}",
                        line.product_id
                    )
                    .into());
                }
            },
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(OrderError::Invalid(errors))
    }
}

/// Cancels an order on behalf of its owner or an admin. `OrderCancelled` is written with
/// the status change; inventory releases the stock and payment refunds what was charged.
pub async fn cancel(
    pool: &PgPool,
    metrics: &OrderMetrics,
    identity: Identity,
    id: OrderId,
) -> Result<Order, OrderError> {
    let mut tx = pool.begin().await?;
    let order = repository::find_order(&mut tx, id, true)
        .await?
        .filter(|order| identity.can_access(order.user_id))
        .ok_or(OrderError::NotFound)?;
    let by_admin = identity.is_admin() && identity.user_id != order.user_id;
    let outcome = status::apply(order.status, Input::Cancel { by_admin })?;
    let Outcome::Transition { to, reason } = outcome else {
        return Ok(order);
    };
    repository::update_status(&mut tx, id, to, reason).await?;
    let cancelled = OrderCancelled {
        order_id: id,
        user_id: order.user_id,
        reason: reason.map(|r| r.as_str()).unwrap_or("cancelled").to_owned(),
    };
    saga::publish(&mut tx, id, &cancelled, to).await?;
    let order = repository::find_order(&mut tx, id, false)
        .await?
        .ok_or(OrderError::NotFound)?;
    tx.commit().await?;
    metrics.reached(to, reason, order.created_at);
    tracing::info!(order_id = %id, "order cancelled");
    Ok(order)
}
