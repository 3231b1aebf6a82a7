-- The relay publishes without holding a transaction open across broker round trips, and
-- a row the broker refuses for good no longer blocks the whole outbox.

-- A row the broker refused is retried no earlier than `retry_at`; after
-- OUTBOX_MAX_ATTEMPTS refusals it is parked (`parked_at`) for an operator to retry or
-- discard (`outbox-parked`). Later rows of the same aggregate (`partition_key`) wait
-- behind a parked or waiting row, so that its events keep their order; other aggregates
-- flow on.
ALTER TABLE outbox ADD COLUMN retry_at TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN parked_at TIMESTAMPTZ;

-- The relay's query: rows ready to publish, in order.
DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_idx ON outbox (seq)
    WHERE published_at IS NULL AND parked_at IS NULL;
-- The aggregates held back by a parked or waiting row (few rows, usually none).
CREATE INDEX outbox_held_idx ON outbox (partition_key, seq)
    WHERE published_at IS NULL AND (parked_at IS NOT NULL OR retry_at IS NOT NULL);

-- One relay publishes at a time, per database: the holder of this lease. It renews the
-- lease while it works; when it dies, another replica takes over once the lease expires.
-- A lease rather than a lock held in an open transaction, so that no transaction stays
-- open while the relay waits for the broker.
CREATE TABLE outbox_relay_lease (
    name       TEXT        PRIMARY KEY,
    holder     UUID        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
