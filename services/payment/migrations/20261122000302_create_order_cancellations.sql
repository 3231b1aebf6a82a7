-- The orders payment-service has heard were cancelled (`OrderCancelled`).
--
-- `StockReserved` (topic shop.inventory) and `OrderCancelled` (topic shop.orders) travel on
-- different topics, so a cancellation can be handled before the reservation it undoes. The
-- refund then finds nothing to refund; this row is how the late `StockReserved` learns
-- that it must not charge. Rows are only ever inserted: once cancelled, an order stays
-- cancelled.
CREATE TABLE order_cancellations (
    order_id     UUID        PRIMARY KEY,
    cancelled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
