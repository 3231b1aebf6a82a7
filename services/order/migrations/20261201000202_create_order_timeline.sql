-- The order timeline: one row per event order-service published or applied for an order,
-- written in the same transaction as the change it goes with, so the timeline never shows
-- a step the order did not take (or miss one it took). `status` is the order's status
-- after the event. `seq` orders the rows: every writer holds the order's row lock, so for
-- one order it follows the commit order, even when two rows share a transaction.
CREATE TABLE order_timeline (
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   UUID        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    -- The CloudEvents id: one row per event, and the link to the outbox, inbox and logs.
    event_id   UUID        NOT NULL UNIQUE,
    event_type TEXT        NOT NULL,
    -- The emitting service's name (`order-service`), from the event's `source`.
    source     TEXT        NOT NULL,
    status     TEXT        NOT NULL
               CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled')),
    at         TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX order_timeline_order_id_seq_idx ON order_timeline (order_id, seq);
