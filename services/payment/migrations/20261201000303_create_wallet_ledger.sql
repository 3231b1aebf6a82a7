-- The wallet ledger: one row per change of a balance, written by the same statement that
-- changes it (see `services/payment/src/repository.rs`), so a balance is always the sum of
-- its wallet's rows, and every cent on a wallet can be traced to what put it there.
--
--   opening_credit  the starting credit when `UserRegistered` opened the wallet (>= 0)
--   admin_credit    `POST /api/v1/wallets/{user_id}/credit` by the admin `credited_by` (> 0)
--   charge          an order's charge, the payment `payment_id` (< 0)
--   refund          an order's refund, the payment `payment_id` (> 0)
--
-- `balance_after_cents` is the balance the change left. The wallet's row lock orders the
-- changes of one wallet, so it is exact; it is also what a replayed admin credit answers.
--
-- `idempotency_key` is the `Idempotency-Key` of an admin credit, scoped to the admin who
-- sent it like `POST /orders` scopes it to the customer. The row itself is the stored
-- request (its `user_id` and `amount_cents`) and the stored response (`user_id`,
-- `balance_after_cents`): a retry with the same key and the same request gets that
-- answer again, the same key with another request is refused.
CREATE TABLE wallet_ledger (
    id                  UUID        PRIMARY KEY,
    user_id             UUID        NOT NULL REFERENCES wallets (user_id),
    kind                TEXT        NOT NULL,
    amount_cents        BIGINT      NOT NULL,
    balance_after_cents BIGINT      NOT NULL CHECK (balance_after_cents >= 0),
    -- Deferred to the commit: a charge debits the wallet (and writes this row) before it
    -- records its payment, so that the debit can be undone when a concurrent charge of
    -- the same order wins the payments' unique (order_id, kind).
    payment_id          UUID        REFERENCES payments (id) DEFERRABLE INITIALLY DEFERRED,
    order_id            UUID,
    credited_by         UUID,
    idempotency_key     TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT wallet_ledger_kind_shape CHECK (
        CASE kind
            WHEN 'opening_credit' THEN amount_cents >= 0
                AND payment_id IS NULL AND order_id IS NULL
                AND credited_by IS NULL AND idempotency_key IS NULL
            WHEN 'admin_credit' THEN amount_cents > 0
                AND payment_id IS NULL AND order_id IS NULL
                AND credited_by IS NOT NULL
            WHEN 'charge' THEN amount_cents < 0
                AND payment_id IS NOT NULL AND order_id IS NOT NULL
                AND credited_by IS NULL AND idempotency_key IS NULL
            WHEN 'refund' THEN amount_cents > 0
                AND payment_id IS NOT NULL AND order_id IS NOT NULL
                AND credited_by IS NULL AND idempotency_key IS NULL
            ELSE FALSE
        END
    ),
    -- A payment moves money once.
    CONSTRAINT wallet_ledger_payment_key UNIQUE (payment_id)
);

-- A wallet is opened once.
CREATE UNIQUE INDEX wallet_ledger_one_opening ON wallet_ledger (user_id)
    WHERE kind = 'opening_credit';

-- An admin's key credits once; the lookup of a retried request.
CREATE UNIQUE INDEX wallet_ledger_idempotency_key ON wallet_ledger (credited_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A wallet's rows in order (ids are UUID v7): the sum of a wallet, `GET .../ledger`.
CREATE INDEX wallet_ledger_user_id ON wallet_ledger (user_id, id);

-- Append-only in the database itself: no UPDATE, DELETE or TRUNCATE, whoever asks (a bug,
-- a hand-written fix in psql). A wrong entry is corrected by a new one, never by editing
-- history. (Dropping the triggers needs the table's owner; run the service as a role
-- that does not own its tables to make that impossible too.)
CREATE FUNCTION wallet_ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet_ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'correct a balance with a new entry (an admin credit)';
END
$$;

CREATE TRIGGER wallet_ledger_append_only
    BEFORE UPDATE OR DELETE ON wallet_ledger
    FOR EACH ROW EXECUTE FUNCTION wallet_ledger_refuse_change();

CREATE TRIGGER wallet_ledger_no_truncate
    BEFORE TRUNCATE ON wallet_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_ledger_refuse_change();

-- Wallets opened before the ledger existed: one opening row each, equal to the balance at
-- migration time, so that balance = ledger sum holds from here on. Their earlier history
-- (starting credit, admin credits, charges and refunds) is not itemised: the charges and
-- refunds remain in `payments`, the admin credits were never recorded anywhere.
--
-- The ids are UUID v7 like the application's (PostgreSQL 15 has no uuidv7()): the
-- migration time in milliseconds in the first 48 bits, version 7, the rest random from a
-- v4 (whose variant bits are already right), so these rows sort before every later one.
INSERT INTO wallet_ledger (id, user_id, kind, amount_cents, balance_after_cents, created_at)
SELECT encode(
           set_byte(v7, 6, (get_byte(v7, 6) & 15) | 112),
           'hex'
       )::uuid,
       user_id, 'opening_credit', balance_cents, balance_cents, now()
FROM (
    SELECT user_id, balance_cents,
           overlay(uuid_send(gen_random_uuid())
                   PLACING substring(int8send((extract(epoch FROM now()) * 1000)::bigint) FROM 3)
                   FROM 1 FOR 6) AS v7
    FROM wallets
) AS existing;
