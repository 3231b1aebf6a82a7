//! inventory-service's steps of the order saga: hold the stock of a placed order, sell it
//! when the order is confirmed, give it back when the order is cancelled.
//!
//! - **All or nothing.** An order is reserved completely or not at all (`StockRejected`
//!   names the products at fault), so a rejected order never holds units that another
//!   customer could have bought, and nothing needs undoing after a rejection.
//! - **Never oversold.** The products of an order are locked in id order before their
//!   stock is checked, so concurrent orders for the same product queue on its row instead
//!   of both taking the last unit, and cannot deadlock on each other. The check
//!   constraints on `products` are the last line of defence.
//! - **Exactly once.** The consumer's inbox drops redelivered events. Behind it, the
//!   `reservations` table remembers what was done for each order, and every step moves only
//!   the lines still in the state it starts from: a second `OrderPlaced` finds the order
//!   reserved, a second `OrderConfirmed` finds nothing left to sell, a second
//!   `OrderCancelled` nothing left to give back. `cancelled_orders` remembers every
//!   cancellation, so an `OrderPlaced` handled after its order's `OrderCancelled` reserves
//!   nothing (next section).
//!
//! Each step runs in the consumer's transaction, and the events it publishes go to the
//! outbox in that same transaction: the stock changes and its announcement commit together.
//!
//! # A cancellation can overtake the placement it undoes
//!
//! `OrderPlaced` and `OrderCancelled` share a topic and a partition key, so one Kafka
//! consumer sees them in order; but two replicas reading one RabbitMQ queue can take one
//! each and handle them at the same moment or the wrong way round, and a dead-lettered
//! `OrderPlaced` can be replayed after the cancellation. A cancellation handled first
//! finds nothing to give back; units reserved afterwards would be held for an order that no
//! longer exists, and no later event would release them. Two things prevent that:
//!
//! - `OrderCancelled` records the cancellation (`cancelled_orders`) whether or not it
//!   gave anything back, and an `OrderPlaced` for a recorded cancellation reserves nothing
//!   and answers `StockRejected { reason: "order_cancelled", product_ids: [] }` (empty: no
//!   product is at fault). order-service leaves a cancelled order as it is on that answer.
//!   If the order already has reservation lines, the `OrderPlaced` is a repeat of one that
//!   was handled before the cancellation, and it does nothing, as any repeat.
//! - Both handlers begin by taking a transaction-scoped lock on the order, before any
//!   product lock, so that for one order they run one after the other. Recording alone
//!   would not do: while either transaction is uncommitted, the other cannot see its work.
//!   A cancellation running beside a placement would find no reservation to release, the
//!   placement would find no cancellation to respect, and both would commit, leaving the
//!   units held. With the lock the later one waits for the earlier one's commit and then
//!   sees what it did: the reservation, which it gives back, or the cancellation, which
//!   stops it reserving.
//!
//! Seeing the other's work after the wait relies on PostgreSQL's default isolation, READ
//! COMMITTED, where each statement reads what was committed before it started; under
//! REPEATABLE READ the transaction's snapshot would predate the wait. `OrderConfirmed` does
//! not take the order lock: it only ever follows a committed reservation, and its race
//! with a cancellation is settled by the row locks on the reservation lines.

use service_kit::events::{
    IncomingEvent,
    consumer::{EventHandler, HandlerError},
    outbox,
};
use shop_model::events::{
    OrderCancelled, OrderConfirmed, OrderPlaced, StockRejected, StockReleased, StockReserved,
};
use sqlx::PgConnection;

use crate::{
    domain::{OrderDemand, Rejection, RejectionReason},
    repository,
};

/// The `source` of the events this service publishes.
pub const SOURCE: &str = "/inventory-service";

/// The handler of inventory-service's consumer (`OrderPlaced`, `OrderConfirmed`,
/// `OrderCancelled`).
pub struct InventorySaga;

impl EventHandler for InventorySaga {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if event.is::<OrderPlaced>() {
            reserve(tx, &event.decode()?).await
        } else if event.is::<OrderConfirmed>() {
            sell(tx, &event.decode()?).await
        } else if event.is::<OrderCancelled>() {
            give_back(tx, &event.decode()?).await
        } else {
            Err(HandlerError::Permanent(anyhow::anyhow!(
                "inventory-service does not handle {}",
                event.event_type
            )))
        }
    }
}

/// `OrderPlaced`: reserve every line, or none and say why.
#[tracing::instrument(skip_all, fields(order_id = %placed.order_id))]
async fn reserve(tx: &mut PgConnection, placed: &OrderPlaced) -> Result<(), HandlerError> {
    // An order without lines or with a quantity below 1 breaks the event's contract;
    // retrying cannot fix it.
    let demand = OrderDemand::parse(&placed.items).map_err(|e| {
        HandlerError::Permanent(anyhow::anyhow!(
            "OrderPlaced {} is invalid: {}",
            placed.order_id,
            e.0
        ))
    })?;
    repository::lock_order(tx, placed.order_id).await?;
    // Asked only once the order is locked: if another transaction reserved or cancelled
    // this order while this one waited for the lock, it has committed by now, and these
    // statements (each sees everything committed before it started) find its work.
    if repository::has_reservations(tx, placed.order_id).await? {
        tracing::info!("stock is already reserved for this order");
        return Ok(());
    }
    if repository::is_cancelled(tx, placed.order_id).await? {
        tracing::info!("order cancelled before it was placed; reserving nothing");
        let rejection = Rejection {
            reason: RejectionReason::OrderCancelled,
            product_ids: Vec::new(),
        };
        return stock_rejected(tx, placed, rejection).await;
    }
    let stock = repository::lock_stock(tx, &demand.product_ids()).await?;
    if let Err(rejection) = demand.check_against(&stock) {
        return stock_rejected(tx, placed, rejection).await;
    }
    repository::reserve(tx, placed.order_id, &demand).await?;
    let reserved = StockReserved {
        order_id: placed.order_id,
        user_id: placed.user_id,
        total_cents: placed.total_cents,
    };
    outbox::enqueue(tx, SOURCE, &reserved).await?;
    tracing::info!(products = demand.product_ids().len(), "stock reserved");
    Ok(())
}

async fn stock_rejected(
    tx: &mut PgConnection,
    placed: &OrderPlaced,
    rejection: Rejection,
) -> Result<(), HandlerError> {
    let rejected = StockRejected {
        order_id: placed.order_id,
        user_id: placed.user_id,
        reason: rejection.reason.as_str().to_owned(),
        product_ids: rejection.product_ids,
    };
    outbox::enqueue(tx, SOURCE, &rejected).await?;
    tracing::info!(reason = %rejected.reason, product_ids = ?rejected.product_ids, "stock rejected");
    Ok(())
}

/// `OrderConfirmed`: the order is paid; its reserved units are sold.
#[tracing::instrument(skip_all, fields(order_id = %confirmed.order_id))]
async fn sell(tx: &mut PgConnection, confirmed: &OrderConfirmed) -> Result<(), HandlerError> {
    let sold = repository::sell(tx, confirmed.order_id).await?;
    if sold == 0 {
        // order-service confirms only orders whose stock was reserved, so this is a late
        // duplicate at best; nothing to do either way.
        tracing::warn!("the order has no reserved stock to sell");
    } else {
        tracing::info!(lines = sold, "reserved stock sold");
    }
    Ok(())
}

/// `OrderCancelled`: records the cancellation; reserved units are released, sold units
/// return to the shelf.
#[tracing::instrument(skip_all, fields(order_id = %cancelled.order_id, reason = %cancelled.reason))]
async fn give_back(tx: &mut PgConnection, cancelled: &OrderCancelled) -> Result<(), HandlerError> {
    repository::lock_order(tx, cancelled.order_id).await?;
    repository::insert_cancellation(tx, cancelled.order_id).await?;
    let given_back = repository::give_back(tx, cancelled.order_id).await?;
    if given_back.is_nothing() {
        // Nothing was held: the order was rejected for stock, this is a late duplicate, or
        // its `OrderPlaced` has not been handled yet (and will now reserve nothing).
        tracing::info!("the order holds no stock to give back");
        return Ok(());
    }
    let released = StockReleased {
        order_id: cancelled.order_id,
    };
    outbox::enqueue(tx, SOURCE, &released).await?;
    tracing::info!(
        released = given_back.released,
        returned = given_back.returned,
        "stock given back"
    );
    Ok(())
}
