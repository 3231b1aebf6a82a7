//! order-service's steps of the order saga: the events from inventory and payment that
//! move an order to `confirmed` or `rejected`, and the events the order publishes in turn.
//!
//! Every decision is the state machine's ([`crate::status`]); this module loads the order
//! (locked, so two events for one order are applied one after the other), asks the state
//! machine, and stores the answer together with the events it implies, in the consumer's
//! transaction. A late or repeated event leaves the order as it is.

use service_kit::events::{
    IncomingEvent,
    consumer::{EventHandler, HandlerError},
    outbox,
};
use shop_model::{
    OrderId,
    api::OrderStatus,
    events::{
        OrderCancelled, OrderConfirmed, PaymentFailed, PaymentRefunded, PaymentSucceeded,
        StockRejected, StockReserved,
    },
};
use sqlx::PgConnection;

use crate::{
    repository,
    status::{self, Input, Outcome, StatusReason},
};

pub const SOURCE: &str = "/order-service";

pub struct OrderSaga;

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
            return Ok(());
        } else {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "order-service does not handle {}",
                event.event_type
            )));
        };
        apply(tx, event, order_id, input).await
    }
}

async fn apply(
    tx: &mut PgConnection,
    event: &IncomingEvent,
    order_id: OrderId,
    input: Input,
) -> Result<(), HandlerError> {
    let order = repository::find_order(tx, order_id, true)
        .await
        .map_err(HandlerError::Transient)?
        .ok_or_else(|| HandlerError::Permanent(anyhow::anyhow!("no order {order_id}")))?;
    let outcome = status::apply(order.status, input)
        .map_err(|e| HandlerError::Permanent(anyhow::Error::new(e)))?;
    let Outcome::Transition { to, reason } = outcome else {
        tracing::info!(%order_id, status = %order.status, ?input, "event does not change the order");
        return Ok(());
    };
    repository::update_status(tx, order_id, to, reason)
        .await
        .map_err(HandlerError::Transient)?;
    let trace = event.traceparent.as_ref();
    match (to, input) {
        (OrderStatus::Confirmed, _) => {
            let confirmed = OrderConfirmed {
                order_id,
                user_id: order.user_id,
            };
            outbox::enqueue(tx, SOURCE, &confirmed, trace).await?;
        }
        // Stock was reserved for this order: tell inventory to release it.
        (OrderStatus::Rejected, Input::PaymentFailed { reason }) => {
            let cancelled = OrderCancelled {
                order_id,
                user_id: order.user_id,
                reason: reason.as_str().to_owned(),
            };
            outbox::enqueue(tx, SOURCE, &cancelled, trace).await?;
        }
        _ => {}
    }
    tracing::info!(%order_id, from = %order.status, %to, reason = reason.map(StatusReason::as_str), "order status changed");
    Ok(())
}
