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
//!   `OrderCancelled` nothing left to give back.
//!
//! Each step runs in the consumer's transaction, and the events it publishes go to the
//! outbox in that same transaction: the stock changes and its announcement commit together.

use service_kit::{
    events::{
        IncomingEvent,
        consumer::{EventHandler, HandlerError},
        outbox,
    },
    request_context::TraceParent,
};
use shop_model::events::{
    OrderCancelled, OrderConfirmed, OrderPlaced, StockRejected, StockReleased, StockReserved,
};
use sqlx::PgConnection;

use crate::{domain::OrderDemand, repository};

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
        let trace = event.traceparent.as_ref();
        if event.is::<OrderPlaced>() {
            reserve(tx, &event.decode()?, trace).await
        } else if event.is::<OrderConfirmed>() {
            sell(tx, &event.decode()?).await
        } else if event.is::<OrderCancelled>() {
            give_back(tx, &event.decode()?, trace).await
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
async fn reserve(
    tx: &mut PgConnection,
    placed: &OrderPlaced,
    trace: Option<&TraceParent>,
) -> Result<(), HandlerError> {
    // An order without lines or with a quantity below 1 breaks the event's contract;
    // retrying cannot fix it.
    let demand = OrderDemand::parse(&placed.items).map_err(|e| {
        HandlerError::Permanent(anyhow::anyhow!(
            "OrderPlaced {} is invalid: {}",
            placed.order_id,
            e.0
        ))
    })?;
    let stock = repository::lock_stock(tx, &demand.product_ids()).await?;
    // Asked only once the products are locked: if another transaction reserved this order
    // while this one waited for the locks, it has committed by now, and this statement
    // (which sees everything committed before it started) finds its reservation.
    if repository::has_reservations(tx, placed.order_id).await? {
        tracing::info!("stock is already reserved for this order");
        return Ok(());
    }
    if let Err(rejection) = demand.check_against(&stock) {
        let rejected = StockRejected {
            order_id: placed.order_id,
            user_id: placed.user_id,
            reason: rejection.reason.as_str().to_owned(),
            product_ids: rejection.product_ids,
        };
        outbox::enqueue(tx, SOURCE, &rejected, trace).await?;
        tracing::info!(reason = %rejected.reason, product_ids = ?rejected.product_ids, "stock rejected");
        return Ok(());
    }
    repository::reserve(tx, placed.order_id, &demand).await?;
    let reserved = StockReserved {
        order_id: placed.order_id,
        user_id: placed.user_id,
        total_cents: placed.total_cents,
    };
    outbox::enqueue(tx, SOURCE, &reserved, trace).await?;
    tracing::info!(products = demand.product_ids().len(), "stock reserved");
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

/// `OrderCancelled`: reserved units are released, sold units return to the shelf.
#[tracing::instrument(skip_all, fields(order_id = %cancelled.order_id, reason = %cancelled.reason))]
async fn give_back(
    tx: &mut PgConnection,
    cancelled: &OrderCancelled,
    trace: Option<&TraceParent>,
) -> Result<(), HandlerError> {
    let given_back = repository::give_back(tx, cancelled.order_id).await?;
    if given_back.is_nothing() {
        // Nothing was held: the order was rejected for stock, or this is a late duplicate.
        tracing::info!("the order holds no stock to give back");
        return Ok(());
    }
    let released = StockReleased {
        order_id: cancelled.order_id,
    };
    outbox::enqueue(tx, SOURCE, &released, trace).await?;
    tracing::info!(
        released = given_back.released,
        returned = given_back.returned,
        "stock given back"
    );
    Ok(())
}
