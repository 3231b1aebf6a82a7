//! order-service's steps of the order saga: the events from inventory and payment that
//! move an order to `confirmed` or `rejected`, and the events the order publishes in turn.
//!
//! Every decision is the state machine's ([`crate::status`]); this module loads the order
//! (locked, so two events for one order are applied one after the other), asks the state
//! machine, and stores the answer together with the events it implies, in the consumer's
//! transaction. A late or repeated event leaves the order as it is.
//!
//! Each event published or applied here also goes on the order's timeline
//! (`GET /api/v1/orders/{id}/timeline`) in that same transaction, so the timeline shows
//! exactly the steps the order took: an event applied but rolled back is not on it, and a
//! step that committed always is.

use service_kit::events::{
    IncomingEvent,
    consumer::{EventHandler, HandlerError},
    outbox,
};
use shop_model::{
    OrderId,
    api::OrderStatus,
    events::{
        Event, OrderCancelled, OrderConfirmed, PaymentFailed, PaymentRefunded, PaymentSucceeded,
        StockRejected, StockReserved,
    },
};
use sqlx::PgConnection;

use crate::{
    metrics::OrderMetrics,
    repository,
    status::{self, Input, Outcome, StatusReason},
};

pub const SOURCE: &str = "/order-service";

/// Publishes `event` about `order_id` through the outbox and puts it on the order's
/// timeline with `status`, the order's status after it, in the caller's transaction.
/// Every event order-service publishes goes through here.
pub async fn publish<E: Event>(
    conn: &mut PgConnection,
    order_id: OrderId,
    event: &E,
    status: OrderStatus,
) -> Result<(), sqlx::Error> {
    let event_id = outbox::enqueue(conn, SOURCE, event).await?;
    repository::record_event(
        conn,
        order_id,
        event_id,
        E::TYPE,
        service_name(SOURCE),
        status,
    )
    .await
}

/// The service named by a CloudEvents `source`: its last segment, so `/inventory-service`
/// (how the shop's services name themselves) and `https://shop.example/inventory-service`
/// both read `inventory-service`. The timeline shows this name, not the URI.
pub fn service_name(source: &str) -> &str {
    source
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or(source)
}

/// The consumer of the saga's events; it counts the orders it settles.
pub struct OrderSaga {
    pub metrics: OrderMetrics,
}

impl EventHandler for OrderSaga {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        let (order_id, input) = if event.is::<StockReserved>() {
            (
                event.decode::<StockReserved>()?.order_id,
                Input::StockReserved,
            )
        } else if event.is::<StockRejected>() {
            let e = event.decode::<StockRejected>()?;
            let reason = StatusReason::from_stock_rejection(&e.reason);
            (e.order_id, Input::StockRejected { reason })
        } else if event.is::<PaymentSucceeded>() {
            (
                event.decode::<PaymentSucceeded>()?.order_id,
                Input::PaymentSucceeded,
            )
        } else if event.is::<PaymentFailed>() {
            let e = event.decode::<PaymentFailed>()?;
            let reason = StatusReason::from_payment_failure(&e.reason);
            (e.order_id, Input::PaymentFailed { reason })
        } else if event.is::<PaymentRefunded>() {
            let e = event.decode::<PaymentRefunded>()?;
            tracing::info!(order_id = %e.order_id, amount_cents = e.amount_cents, "refund recorded");
            (e.order_id, Input::PaymentRefunded)
        } else {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "order-service does not handle {}",
                event.event_type
            )));
        };
        apply(tx, event, order_id, input, &self.metrics).await
    }
}

async fn apply(
    tx: &mut PgConnection,
    event: &IncomingEvent,
    order_id: OrderId,
    input: Input,
    metrics: &OrderMetrics,
) -> Result<(), HandlerError> {
    let order = repository::find_order(tx, order_id, true)
        .await
        .map_err(HandlerError::Transient)?
        .ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no order {order_id}")))?;
    let outcome = status::apply(order.status, input)
        .map_err(|e| HandlerError::Permanent(anyhow::Error::new(e)))?;
    let status_after = match outcome {
        Outcome::Transition { to, .. } => to,
        Outcome::Unchanged => order.status,
    };
    // Also an event that changes nothing (a reservation, a refund, a late answer for a
    // settled order) is a step: someone watching the saga sees it arrive and the order hold
    // its status. A duplicate never gets here; the inbox absorbed it.
    repository::record_event(
        tx,
        order_id,
        event.id,
        &event.event_type,
        service_name(&event.source),
        status_after,
    )
    .await?;
    let Outcome::Transition { to, reason } = outcome else {
        tracing::info!(%order_id, status = %order.status, ?input, "event does not change the order");
        return Ok(());
    };
    repository::update_status(tx, order_id, to, reason)
        .await
        .map_err(HandlerError::Transient)?;
    metrics.reached(to, reason, order.created_at);
    match (to, input) {
        (OrderStatus::Confirmed, _) => {
            let confirmed = OrderConfirmed {
                order_id,
                user_id: order.user_id,
            };
            publish(tx, order_id, &confirmed, to).await?;
        }
        // Stock was reserved for this order: tell inventory to release it.
        (OrderStatus::Rejected, Input::PaymentFailed { reason }) => {
            let cancelled = OrderCancelled {
                order_id,
                user_id: order.user_id,
                reason: reason.as_str().to_owned(),
            };
            publish(tx, order_id, &cancelled, to).await?;
        }
        _ => {}
    }
    tracing::info!(%order_id, from = %order.status, %to, reason = reason.map(StatusReason::as_str), "order status changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_name_is_the_last_segment_of_the_source() {
        assert_eq!(service_name(SOURCE), "order-service");
        assert_eq!(service_name("/inventory-service"), "inventory-service");
        assert_eq!(
            service_name("https://shop.example/payment-service/"),
            "payment-service"
        );
        assert_eq!(service_name("urn:shop:payment-service"), "payment-service");
        assert_eq!(service_name("payment-service"), "payment-service");
    }
}
