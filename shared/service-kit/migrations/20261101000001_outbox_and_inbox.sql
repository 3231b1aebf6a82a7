-- The transactional outbox and the inbox, owned by the service kit and created in every
-- service's database (tracked in `_kit_migrations`, apart from the service's own
-- migrations).

-- Events waiting to be published. A service inserts the row in the same transaction as
-- the state change it describes, so the change and the event exist together or not at
-- all. `seq` is the publication order: writes to one aggregate are serialised by its row
-- lock, so for one aggregate seq order is commit order.
CREATE TABLE outbox (
    seq           BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      UUID        NOT NULL UNIQUE,
    topic         TEXT        NOT NULL,
    partition_key TEXT        NOT NULL,
    event_type    TEXT        NOT NULL,
    headers       JSONB       NOT NULL,
    payload       JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER     NOT NULL DEFAULT 0,
    last_error    TEXT
);

-- The relay reads only unpublished rows, in order.
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
-- Pruning reads only published rows, by age.
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wakes the relay as soon as a transaction with new events commits (NOTIFY is delivered
-- at commit), so events leave within milliseconds instead of at the next poll.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Events a consumer has applied. The row is written in the same transaction as the
-- event's effect; a redelivered event finds its row and changes nothing.
CREATE TABLE inbox (
    consumer     TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
