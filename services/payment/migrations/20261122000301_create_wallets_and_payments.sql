-- One wallet per user, opened when the user registers. The balance is an integer count of
-- cents. The CHECK is the last line of defence for "a wallet never goes below zero": even a
-- bug in a conditional UPDATE, or a hand-written fix in psql, cannot overdraw a wallet.
CREATE TABLE wallets (
    user_id       UUID        PRIMARY KEY,
    balance_cents BIGINT      NOT NULL
        CONSTRAINT wallets_balance_non_negative CHECK (balance_cents >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every movement of money for an order: the charge when its stock is reserved, the refund
-- when a paid order is cancelled. Rows are never updated or deleted, so the table is the
-- audit trail of each wallet, and a payment always belongs to an existing wallet.
--
-- The unique (order_id, kind) constraint allows at most one charge and one refund per
-- order. Events arrive at least once, so the same charge or refund can be asked for twice,
-- even by two consumers at the same moment. The second insert of a pair waits for the
-- first transaction and then finds the row taken: that is what makes "charge at most once,
-- refund exactly once" hold under redelivery and across replicas.
--
-- The constraint's index leads with order_id, so it is also the index for every lookup by
-- order (`GET /payments?order_id=`, the charge of an order); a separate index on
-- (order_id) would only slow down inserts.
CREATE TABLE payments (
    id           UUID        PRIMARY KEY,
    order_id     UUID        NOT NULL,
    user_id      UUID        NOT NULL REFERENCES wallets (user_id),
    kind         TEXT        NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount_cents BIGINT      NOT NULL CHECK (amount_cents > 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT payments_order_kind_key UNIQUE (order_id, kind)
);
