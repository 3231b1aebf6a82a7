//! The saga's outcome, as Prometheus sees it: how many orders reach each final status and
//! why, and how long they took from placement.
//!
//! Observed where the status changes, inside the transaction that stores it: a transaction
//! that fails after that point is retried and may count its order twice, which is rare
//! (the statements after the change are two inserts) and errs on the side of showing work.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use shop_model::api::OrderStatus;
use time::OffsetDateTime;

use crate::status::StatusReason;

#[derive(Clone)]
pub struct OrderMetrics {
    terminal: IntCounterVec,
    saga_duration: HistogramVec,
}

impl OrderMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let terminal = IntCounterVec::new(
            Opts::new(
                "shop_orders_terminal_total",
                "Orders that reached a final status (confirmed, rejected, cancelled), by reason",
            ),
            &["status", "reason"],
        )?;
        let saga_duration = HistogramVec::new(
            HistogramOpts::new(
                "shop_order_saga_duration_seconds",
                "Time from an order's placement to its final status",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["status"],
        )?;
        registry.register(Box::new(terminal.clone()))?;
        registry.register(Box::new(saga_duration.clone()))?;
        Ok(Self {
            terminal,
            saga_duration,
        })
    }

    /// An order placed at `placed_at` now has `status`. Statuses that are not final
    /// (`pending`) are not counted.
    pub fn reached(
        &self,
        status: OrderStatus,
        reason: Option<StatusReason>,
        placed_at: OffsetDateTime,
    ) {
        if status == OrderStatus::Pending {
            return;
        }
        let reason = reason.map_or("none", StatusReason::as_str);
        self.terminal
            .with_label_values(&[status.as_str(), reason])
            .inc();
        let elapsed = (OffsetDateTime::now_utc() - placed_at).as_seconds_f64();
        self.saga_duration
            .with_label_values(&[status.as_str()])
            .observe(elapsed.max(0.0));
    }
}
