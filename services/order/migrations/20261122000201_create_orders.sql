-- Orders and their lines. Prices are copied into the lines when the order is placed, so
-- later catalog price changes never alter what a customer agreed to pay.
CREATE TABLE orders (
    id            UUID        PRIMARY KEY,
    user_id       UUID        NOT NULL,
    status        TEXT        NOT NULL
                  CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled')),
    status_reason TEXT,
    total_cents   BIGINT      NOT NULL CHECK (total_cents >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- "My orders, newest first" is the main list query.
CREATE INDEX orders_user_id_id_idx ON orders (user_id, id DESC);

CREATE TABLE order_items (
    order_id         UUID     NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          SMALLINT NOT NULL,
    product_id       UUID     NOT NULL,
    quantity         INTEGER  NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT   NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- Idempotency-Key support: a client that retries POST /orders after a timeout gets the
-- order it already placed instead of a second one. The key is scoped to the user, and the
-- hash of the request body detects a key reused for a different request.
CREATE TABLE idempotency_keys (
    user_id      UUID        NOT NULL,
    key          TEXT        NOT NULL,
    request_hash TEXT        NOT NULL,
    order_id     UUID        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
