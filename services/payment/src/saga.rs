//! payment-service's steps of the order saga: open a wallet when a user registers, charge
//! the order total when its stock is reserved, refund the charge when the order is
//! cancelled, and tell order-service what happened (`PaymentSucceeded`, `PaymentFailed`,
//! `PaymentRefunded`).
//!
//! The consumer runner calls [`PaymentSaga`] inside the transaction that records the event
//! in the inbox. The money moves ([`crate::wallets`]) and the outgoing event goes to the
//! outbox in that same transaction, so a charge never commits without its
//! `PaymentSucceeded`, nor the event without the charge.
//!
//! # A cancellation can overtake the reservation it undoes
//!
//! `StockReserved` travels on shop.inventory and `OrderCancelled` on shop.orders. A broker
//! keeps order only within one partition of one topic, so payment-service can handle the
//! cancellation of an order before its reservation, or both at the same moment on two
//! replicas. If the cancellation comes first, its refund finds nothing to refund; a charge
//! made afterwards would keep the customer's money for an order that no longer exists, and
//! no later event would give it back. Two things prevent that:
//!
//! - The cancellation is recorded (`order_cancellations`), and a `StockReserved` for a
//!   cancelled order charges nothing and answers `PaymentFailed { reason: "order_cancelled" }`.
//! - Both handlers start by taking a transaction-scoped advisory lock on the order, so that
//!   for one order they run one after the other. The record alone is not enough: while the
//!   cancellation's transaction is still open, its row is invisible to a concurrent
//!   `StockReserved`, which charges; and the charge is invisible to the cancellation's
//!   refund, which finds nothing. Both commit, and the money is gone. With the lock the
//!   second handler waits until the first has committed, then sees its work: either the
//!   charge came first and the cancellation refunds it, or the cancellation came first and
//!   nothing is charged.
//!
//! The second point relies on PostgreSQL's default isolation, READ COMMITTED, where each
//! statement sees what was committed before it started. Under REPEATABLE READ the snapshot
//! would date from the runner's inbox insert, before the wait for the lock.

use service_kit::events::{
    IncomingEvent,
    consumer::{EventHandler, HandlerError},
    outbox,
};
use shop_model::{
    Cents, OrderId, UserId,
    api::PaymentKind,
    events::{
        OrderCancelled, PaymentFailed, PaymentRefunded, PaymentSucceeded, StockReserved,
        UserRegistered,
    },
};
use sqlx::PgConnection;

use crate::{
    repository,
    wallets::{self, ChargeOutcome, RefundOutcome},
};

/// The `source` of the events payment-service publishes.
const SOURCE: &str = "/payment-service";

/// The event handler of payment-service's consumer.
#[derive(Debug, Clone)]
pub struct PaymentSaga {
    initial_credit: Cents,
}

impl PaymentSaga {
    /// `initial_credit` is the balance new wallets start with
    /// (`WALLET_INITIAL_CREDIT_CENTS`).
    pub fn new(initial_credit: Cents) -> Self {
        Self { initial_credit }
    }
}

impl EventHandler for PaymentSaga {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &IncomingEvent,
    ) -> Result<(), HandlerError> {
        if event.is::<UserRegistered>() {
            open_wallet(tx, &event.decode::<UserRegistered>()?, self.initial_credit).await
        } else if event.is::<StockReserved>() {
            charge_order(tx, &event.decode::<StockReserved>()?).await
        } else if event.is::<OrderCancelled>() {
            refund_order(tx, &event.decode::<OrderCancelled>()?).await
        } else {
            Err(HandlerError::Permanent(anyhow::anyhow!(
                "payment-service does not handle {}",
                event.event_type
            )))
        }
    }
}

/// `UserRegistered`: opens the wallet with the starting credit, once.
#[tracing::instrument(skip_all, fields(user_id = %registered.user_id))]
async fn open_wallet(
    tx: &mut PgConnection,
    registered: &UserRegistered,
    initial_credit: Cents,
) -> Result<(), HandlerError> {
    if !wallets::open_wallet(tx, registered.user_id, initial_credit).await? {
        tracing::info!("the user has a wallet already; left unchanged");
    }
    Ok(())
}

/// `StockReserved`: charges the order total, unless the order was cancelled first.
#[tracing::instrument(skip_all, fields(order_id = %reserved.order_id, user_id = %reserved.user_id))]
async fn charge_order(tx: &mut PgConnection, reserved: &StockReserved) -> Result<(), HandlerError> {
    let (order_id, user_id) = (reserved.order_id, reserved.user_id);
    let amount = Cents::positive(reserved.total_cents).map_err(|e| {
        HandlerError::Permanent(anyhow::anyhow!(
            "cannot charge total_cents {}: {e}",
            reserved.total_cents
        ))
    })?;
    repository::lock_order(tx, order_id).await?;
    if repository::is_cancelled(tx, order_id).await? {
        // A reservation repeated after the order was charged and then cancelled: it was
        // answered with `PaymentSucceeded` the first time, and a `PaymentFailed` now would
        // claim that nothing was ever taken.
        if repository::find_payment(tx, order_id, PaymentKind::Charge)
            .await?
            .is_some()
        {
            tracing::info!("order charged before its cancellation; nothing to do");
            return Ok(());
        }
        tracing::info!("order cancelled before its stock was reserved; not charging");
        return payment_failed(tx, order_id, user_id, "order_cancelled").await;
    }
    match wallets::charge(tx, order_id, user_id, amount).await? {
        ChargeOutcome::Charged(payment) => {
            let succeeded = PaymentSucceeded {
                order_id,
                user_id,
                payment_id: payment.id,
                amount_cents: payment.amount_cents,
            };
            outbox::enqueue(tx, SOURCE, &succeeded).await?;
            Ok(())
        }
        ChargeOutcome::AlreadyCharged(payment) => {
            // Its `PaymentSucceeded` was written with the charge, in the same commit.
            tracing::info!(payment_id = %payment.id, "order charged before; nothing to do");
            Ok(())
        }
        ChargeOutcome::InsufficientFunds { .. } => {
            payment_failed(tx, order_id, user_id, "insufficient_funds").await
        }
        ChargeOutcome::NoWallet => payment_failed(tx, order_id, user_id, "no_wallet").await,
    }
}

async fn payment_failed(
    tx: &mut PgConnection,
    order_id: OrderId,
    user_id: UserId,
    reason: &str,
) -> Result<(), HandlerError> {
    let failed = PaymentFailed {
        order_id,
        user_id,
        reason: reason.to_owned(),
    };
    outbox::enqueue(tx, SOURCE, &failed).await?;
    Ok(())
}

/// `OrderCancelled`: records the cancellation, then refunds a captured payment, once.
#[tracing::instrument(skip_all, fields(order_id = %cancelled.order_id))]
async fn refund_order(
    tx: &mut PgConnection,
    cancelled: &OrderCancelled,
) -> Result<(), HandlerError> {
    let order_id = cancelled.order_id;
    repository::lock_order(tx, order_id).await?;
    repository::insert_cancellation(tx, order_id).await?;
    match wallets::refund(tx, order_id).await? {
        RefundOutcome::Refunded(refund) => {
            let refunded = PaymentRefunded {
                order_id,
                user_id: refund.user_id,
                payment_id: refund.id,
                amount_cents: refund.amount_cents,
            };
            outbox::enqueue(tx, SOURCE, &refunded).await?;
        }
        RefundOutcome::AlreadyRefunded(refund) => {
            tracing::info!(payment_id = %refund.id, "order refunded before; nothing to do");
        }
        RefundOutcome::NothingToRefund => {
            tracing::info!("order never charged; a later StockReserved will not charge it");
        }
    }
    Ok(())
}
