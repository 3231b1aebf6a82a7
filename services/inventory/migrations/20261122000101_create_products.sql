-- The catalog, and the stock of each product.
--
-- Stock is kept as two counters: `on_hand`, the units in the warehouse, and `reserved`, the
-- units held for orders that are not settled yet; customers can still order
-- `on_hand - reserved`. The check constraints are the last line of defence: whatever the
-- code does and however many requests race, the database refuses any write that would make
-- stock negative or reserve more units than are on hand.
CREATE TABLE products (
    id          UUID        PRIMARY KEY,
    -- Stored upper-cased by the application, so the constraint is case-insensitive.
    sku         TEXT        NOT NULL CONSTRAINT products_sku_key UNIQUE,
    name        TEXT        NOT NULL,
    description TEXT        NOT NULL DEFAULT '',
    price_cents BIGINT      NOT NULL CONSTRAINT products_price_cents_check CHECK (price_cents >= 0),
    on_hand     INTEGER     NOT NULL CONSTRAINT products_on_hand_check CHECK (on_hand >= 0),
    reserved    INTEGER     NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT products_reserved_check CHECK (reserved >= 0 AND reserved <= on_hand)
);
