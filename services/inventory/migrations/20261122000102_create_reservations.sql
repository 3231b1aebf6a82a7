-- Reservations: the order saga's memory of what this service did for each order.
--
-- `OrderPlaced` holds units of each product of an order; later `OrderConfirmed` sells them
-- and `OrderCancelled` gives them back. Those later events name only the order, so without
-- this table the service could not tell which products and how many units to sell or to
-- give back, nor whether it already did. Each line moves forward only: reserved → sold →
-- returned, or reserved → released; and each step changes only the lines still in the
-- state it starts from, so a repeated or late event never moves the same units twice.
--
-- `order_id` belongs to order-service's database (one database per service), so it is not
-- a foreign key; it is the aggregate every event of the saga is keyed by.
CREATE TABLE reservations (
    order_id   UUID        NOT NULL,
    product_id UUID        NOT NULL REFERENCES products (id),
    quantity   INTEGER     NOT NULL CONSTRAINT reservations_quantity_check CHECK (quantity > 0),
    state      TEXT        NOT NULL CONSTRAINT reservations_state_check
                           CHECK (state IN ('reserved', 'sold', 'released', 'returned')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, product_id)
);
