-- The orders inventory-service has heard were cancelled (`OrderCancelled`).
--
-- `OrderPlaced` and `OrderCancelled` of one order can be handled in either order: two
-- replicas consuming one RabbitMQ queue each take one of them, and a dead-lettered
-- `OrderPlaced` can be replayed long after its order was cancelled. A cancellation handled
-- first finds no stock to give back; a reservation made afterwards would hold units for an
-- order that no longer exists, and no later event would release them. This row is how the
-- late `OrderPlaced` learns that it must reserve nothing. Rows are only ever inserted: once
-- cancelled, an order stays cancelled.
--
-- `order_id` belongs to order-service's database, so it is not a foreign key.
CREATE TABLE cancelled_orders (
    order_id     UUID        PRIMARY KEY,
    cancelled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
