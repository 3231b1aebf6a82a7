//! The order status state machine: the only place that decides how an order's status
//! may change. Handlers and (later) event consumers ask it what an input does to the
//! current status and store the answer; nothing else writes a status.
//!
//! ```text
//! pending ──StockReserved──▶ pending (waiting for payment)
//! pending ──PaymentSucceeded──▶ confirmed
//! pending ──StockRejected──▶ rejected (out_of_stock | unknown_product)
//! pending ──PaymentFailed──▶ rejected (insufficient_funds | payment_declined)
//! pending | confirmed ──Cancel──▶ cancelled (cancelled_by_customer | cancelled_by_admin)
//! any ──PaymentRefunded──▶ unchanged (the compensation of a cancellation already made)
//! ```
//! Events that arrive late or twice, or for an order already in a final state, change
//! nothing: that is what makes redelivery harmless. A customer asking to cancel an order
//! that can no longer be cancelled is told so (an error), because a person is waiting for
//! the answer.

use shop_model::api::OrderStatus;

/// Why an order is in its status, in words a customer understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    OutOfStock,
    UnknownProduct,
    InsufficientFunds,
    PaymentDeclined,
    CancelledByCustomer,
    CancelledByAdmin,
}

impl StatusReason {
    /// The reason named by a `StockRejected` or `PaymentFailed` event. Unknown reasons
    /// (from a newer publisher) read as the generic one of their kind.
    pub fn from_stock_rejection(reason: &str) -> Self {
        match reason {
            "unknown_product" => Self::UnknownProduct,
            _ => Self::OutOfStock,
        }
    }

    pub fn from_payment_failure(reason: &str) -> Self {
        match reason {
            "insufficient_funds" => Self::InsufficientFunds,
            _ => Self::PaymentDeclined,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::UnknownProduct => "unknown_product",
            Self::InsufficientFunds => "insufficient_funds",
            Self::PaymentDeclined => "payment_declined",
            Self::CancelledByCustomer => "cancelled_by_customer",
            Self::CancelledByAdmin => "cancelled_by_admin",
        }
    }
}

/// Something that happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    StockReserved,
    StockRejected {
        reason: StatusReason,
    },
    PaymentSucceeded,
    PaymentFailed {
        reason: StatusReason,
    },
    /// payment-service gave the money back: it only does so for an order that was
    /// cancelled or rejected, so the status already says so.
    PaymentRefunded,
    /// A customer (the owner) or an admin asks to cancel.
    Cancel {
        by_admin: bool,
    },
}

/// What an input does to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status changes.
    Transition {
        to: OrderStatus,
        reason: Option<StatusReason>,
    },
    /// Nothing changes (a duplicate, a late event, or an event that only moves the saga
    /// along without changing the visible status).
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {0} cannot be cancelled")]
pub struct CannotCancel(pub OrderStatus);

/// Applies `input` to an order in status `current`.
pub fn apply(current: OrderStatus, input: Input) -> Result<Outcome, CannotCancel> {
    use OrderStatus::{Cancelled, Confirmed, Pending, Rejected};
    let to = |status, reason| Outcome::Transition {
        to: status,
        reason: Some(reason),
    };
    Ok(match (current, input) {
        (Pending, Input::StockReserved) => Outcome::Unchanged,
        (Pending, Input::PaymentSucceeded) => Outcome::Transition {
            to: Confirmed,
            reason: None,
        },
        (Pending, Input::StockRejected { reason } | Input::PaymentFailed { reason }) => {
            to(Rejected, reason)
        }
        (Pending | Confirmed, Input::Cancel { by_admin }) => to(
            Cancelled,
            if by_admin {
                StatusReason::CancelledByAdmin
            } else {
                StatusReason::CancelledByCustomer
            },
        ),
        (Rejected | Cancelled, Input::Cancel { .. }) => return Err(CannotCancel(current)),
        (_, Input::PaymentRefunded) => Outcome::Unchanged,
        // Late or duplicate events for an order that has moved on.
        (Confirmed | Rejected | Cancelled, _) => Outcome::Unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::{Cancelled, Confirmed, Pending, Rejected};

    const ALL: [OrderStatus; 4] = [Pending, Confirmed, Rejected, Cancelled];
    const EVENTS: [Input; 5] = [
        Input::StockReserved,
        Input::StockRejected {
            reason: StatusReason::OutOfStock,
        },
        Input::PaymentSucceeded,
        Input::PaymentFailed {
            reason: StatusReason::InsufficientFunds,
        },
        Input::PaymentRefunded,
    ];

    #[test]
    fn a_paid_pending_order_is_confirmed() {
        assert_eq!(
            apply(Pending, Input::PaymentSucceeded),
            Ok(Outcome::Transition {
                to: Confirmed,
                reason: None
            })
        );
    }

    #[test]
    fn reserving_stock_leaves_the_order_pending() {
        assert_eq!(apply(Pending, Input::StockReserved), Ok(Outcome::Unchanged));
    }

    #[test]
    fn rejections_carry_their_reason() {
        assert_eq!(
            apply(
                Pending,
                Input::StockRejected {
                    reason: StatusReason::OutOfStock
                }
            ),
            Ok(Outcome::Transition {
                to: Rejected,
                reason: Some(StatusReason::OutOfStock)
            })
        );
        assert_eq!(
            apply(
                Pending,
                Input::PaymentFailed {
                    reason: StatusReason::InsufficientFunds
                }
            ),
            Ok(Outcome::Transition {
                to: Rejected,
                reason: Some(StatusReason::InsufficientFunds)
            })
        );
    }

    #[test]
    fn a_refund_never_changes_the_status() {
        for status in ALL {
            assert_eq!(
                apply(status, Input::PaymentRefunded),
                Ok(Outcome::Unchanged),
                "{status:?}"
            );
        }
    }

    #[test]
    fn pending_and_confirmed_orders_can_be_cancelled_saying_by_whom() {
        for status in [Pending, Confirmed] {
            assert_eq!(
                apply(status, Input::Cancel { by_admin: false }),
                Ok(Outcome::Transition {
                    to: Cancelled,
                    reason: Some(StatusReason::CancelledByCustomer)
                })
            );
            assert_eq!(
                apply(status, Input::Cancel { by_admin: true }),
                Ok(Outcome::Transition {
                    to: Cancelled,
                    reason: Some(StatusReason::CancelledByAdmin)
                })
            );
        }
    }

    #[test]
    fn final_orders_cannot_be_cancelled() {
        for status in [Rejected, Cancelled] {
            assert_eq!(
                apply(status, Input::Cancel { by_admin: true }),
                Err(CannotCancel(status))
            );
        }
    }

    #[test]
    fn events_never_move_an_order_out_of_a_settled_status() {
        for status in [Confirmed, Rejected, Cancelled] {
            for event in EVENTS {
                assert_eq!(
                    apply(status, event),
                    Ok(Outcome::Unchanged),
                    "{status:?} + {event:?}"
                );
            }
        }
    }

    #[test]
    fn no_input_ever_leads_back_to_pending() {
        let inputs = EVENTS.into_iter().chain([
            Input::Cancel { by_admin: false },
            Input::Cancel { by_admin: true },
        ]);
        for input in inputs {
            for status in ALL {
                if let Ok(Outcome::Transition { to, .. }) = apply(status, input) {
                    assert_ne!(to, Pending);
                }
            }
        }
    }
}
