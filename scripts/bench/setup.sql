-- What placement.sql and saga.sql need, in a scratch database that has every migration
-- applied (the kit's, then user, inventory, order and payment; scripts/bench/pgbench.sh
-- applies them the way scripts/sqlx-prepare.sh does and then runs this file).
--
--   psql "$DB_URL" -v ON_ERROR_STOP=1 -v products=16 -v users=64 -f scripts/bench/setup.sql
--
-- Creates:
-- - :products products (ids bench_product_id(1..n)) with 2,000,000,000 units on hand, so
--   no reservation is ever refused;
-- - :users wallets (ids bench_user_id(1..n)) of 10^15 cents each, opened with the
--   statement payment-service uses (repository.rs insert_wallet: the wallet and its
--   `opening_credit` ledger row), so no charge is ever refused;
-- - bench_* functions that make, in one query per script run, the values a service makes
--   in Rust: UUID v7 ids (like Uuid::now_v7(), see the wallet_ledger migration), the order
--   lines and total, the request fingerprint, and the outbox rows' JSON headers and
--   payloads, sized like the real ones (CloudEvents headers plus traceparent/tracestate,
--   as outbox.rs enqueue writes them; the event as serde_json writes it).
-- Only these functions and the rows above are added; the schema is the migrations'.

\set ON_ERROR_STOP 1
\if :{?products}
\else
  \set products 16
\endif
\if :{?users}
\else
  \set users 64
\endif

-- The generators below are cheap on purpose, as they run once per script run: the SQL
-- functions are single expressions (PostgreSQL inlines them), and the two input
-- generators are PL/pgSQL, whose statements are planned once per session. (SQL functions
-- with a FROM clause would be planned again at every call, and cost more than the
-- services' statements they feed.)

-- A UUID v7: milliseconds since the epoch in the first 48 bits, version 7, the rest
-- random (PostgreSQL 15 has no uuidv7()). Ids made this way sort by creation time, so
-- they fill the primary-key indexes at their right edge, as the services' ids do.
CREATE FUNCTION bench_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
            || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid
$$;

-- The fixed catalog and customers: ids and prices derived from a number, so that a
-- pgbench script picks them with random().
CREATE FUNCTION bench_product_id(n integer) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    SELECT ('01940000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;
CREATE FUNCTION bench_user_id(n integer) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
    SELECT ('01940000-0001-7000-8000-' || lpad(n::text, 12, '0'))::uuid
$$;
CREATE FUNCTION bench_price_cents(n integer) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT 500 + 137 * n::bigint
$$;

-- The `headers` of an outbox row: what outbox.rs enqueue stores, i.e. the message
-- headers of events/mod.rs envelope_headers (ce_id, ce_source, ce_type, ce_specversion,
-- ce_time in RFC 3339 with nanoseconds, ce_subject, content-type) plus the trace context
-- telemetry::inject adds (traceparent, and tracestate, empty). One trace per order, one
-- span per event, as the consumer continues the producer's trace.
CREATE FUNCTION bench_headers(event_id uuid, source text, event_type text, subject uuid,
                              trace_id text) RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object(
        'ce_id', event_id,
        'ce_source', source,
        'ce_specversion', '1.0',
        'ce_subject', subject,
        'ce_time', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
                   || lpad((random() * 999)::int::text, 3, '0') || 'Z',
        'ce_type', event_type,
        'content-type', 'application/json',
        'traceparent', '00-' || trace_id || '-' || substr(md5(random()::text), 1, 16) || '-01',
        'tracestate', '')::text
$$;

-- The inputs of one placement: customer `u` orders `qa` units of product `pa` and `qb`
-- of product `pb` (two different products). Array parameters are in PostgreSQL's text
-- form, as the scripts bind them; `stock_*` are the lines in product id order, as
-- inventory-service's OrderDemand gives them.
CREATE FUNCTION bench_placement_inputs(u integer, pa integer, qa integer, pb integer, qb integer,
    OUT order_id uuid, OUT user_id uuid, OUT total_cents bigint,
    OUT line_numbers text, OUT item_product_ids text, OUT item_quantities text,
    OUT item_prices text, OUT stock_product_ids text, OUT stock_quantities text,
    OUT trace_id text, OUT ev_placed uuid, OUT placed_headers text, OUT placed_payload text,
    OUT idempotency_key text, OUT request_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    a uuid := bench_product_id(pa);
    b uuid := bench_product_id(pb);
    price_a bigint := bench_price_cents(pa);
    price_b bigint := bench_price_cents(pb);
BEGIN
    order_id := bench_uuid_v7();
    user_id := bench_user_id(u);
    total_cents := price_a * qa + price_b * qb;
    line_numbers := '{1,2}';
    item_product_ids := format('{%s,%s}', a, b);
    item_quantities := format('{%s,%s}', qa, qb);
    item_prices := format('{%s,%s}', price_a, price_b);
    IF a < b THEN
        stock_product_ids := item_product_ids;
        stock_quantities := item_quantities;
    ELSE
        stock_product_ids := format('{%s,%s}', b, a);
        stock_quantities := format('{%s,%s}', qb, qa);
    END IF;
    trace_id := md5(random()::text);
    ev_placed := bench_uuid_v7();
    placed_headers := bench_headers(ev_placed, '/order-service', 'shop.order.placed.v1', order_id, trace_id);
    placed_payload := jsonb_build_object(
        'order_id', order_id, 'user_id', user_id,
        'items', jsonb_build_array(
            jsonb_build_object('product_id', a, 'quantity', qa, 'unit_price_cents', price_a),
            jsonb_build_object('product_id', b, 'quantity', qb, 'unit_price_cents', price_b)),
        'total_cents', total_cents)::text;
    -- A client's Idempotency-Key (a UUID, as clients usually send), and the request's
    -- fingerprint as order-service's domain.rs computes it (SHA-256 of each line's
    -- product id and quantity, base64 without padding).
    idempotency_key := gen_random_uuid()::text;
    request_hash := rtrim(encode(sha256(uuid_send(a) || int4send(qa) || uuid_send(b) || int4send(qb)), 'base64'), '=');
END
$$;

-- The inputs of one whole saga: the placement's, and the ids, headers and payloads of
-- the events that follow (StockReserved, PaymentSucceeded, OrderConfirmed), and the ids
-- payment-service makes for the charge (the payment and its ledger row).
CREATE FUNCTION bench_saga_inputs(u integer, pa integer, qa integer, pb integer, qb integer,
    OUT order_id uuid, OUT user_id uuid, OUT total_cents bigint,
    OUT line_numbers text, OUT item_product_ids text, OUT item_quantities text,
    OUT item_prices text, OUT stock_product_ids text, OUT stock_quantities text,
    OUT trace_id text, OUT ev_placed uuid, OUT placed_headers text, OUT placed_payload text,
    OUT idempotency_key text, OUT request_hash text,
    OUT ev_reserved uuid, OUT reserved_headers text, OUT reserved_payload text,
    OUT payment_id uuid, OUT ledger_id uuid,
    OUT ev_paid uuid, OUT paid_headers text, OUT paid_payload text,
    OUT ev_confirmed uuid, OUT confirmed_headers text, OUT confirmed_payload text,
    OUT order_ids text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT * INTO order_id, user_id, total_cents, line_numbers, item_product_ids,
                  item_quantities, item_prices, stock_product_ids, stock_quantities,
                  trace_id, ev_placed, placed_headers, placed_payload, idempotency_key,
                  request_hash
    FROM bench_placement_inputs(u, pa, qa, pb, qb);
    ev_reserved := bench_uuid_v7();
    reserved_headers := bench_headers(ev_reserved, '/inventory-service', 'shop.inventory.stock-reserved.v1', order_id, trace_id);
    reserved_payload := jsonb_build_object('order_id', order_id, 'user_id', user_id,
                                           'total_cents', total_cents)::text;
    payment_id := bench_uuid_v7();
    ledger_id := bench_uuid_v7();
    ev_paid := bench_uuid_v7();
    paid_headers := bench_headers(ev_paid, '/payment-service', 'shop.payment.succeeded.v1', order_id, trace_id);
    paid_payload := jsonb_build_object('order_id', order_id, 'user_id', user_id,
                                       'payment_id', payment_id, 'amount_cents', total_cents)::text;
    ev_confirmed := bench_uuid_v7();
    confirmed_headers := bench_headers(ev_confirmed, '/order-service', 'shop.order.confirmed.v1', order_id, trace_id);
    confirmed_payload := jsonb_build_object('order_id', order_id, 'user_id', user_id)::text;
    -- order-service's items_of binds the order ids as an array.
    order_ids := format('{%s}', order_id);
END
$$;

-- The catalog (inventory-service repository.rs insert).
INSERT INTO products (id, sku, name, description, price_cents, on_hand)
SELECT bench_product_id(n), 'BENCH-' || lpad(n::text, 4, '0'), 'Bench product ' || n,
       'A product of the pgbench scripts: always in stock.', bench_price_cents(n), 2000000000
FROM generate_series(1, :products) AS n;

-- The wallets, each with its opening_credit row (payment-service repository.rs
-- insert_wallet).
WITH opened AS (
    INSERT INTO wallets (user_id, balance_cents)
    SELECT bench_user_id(n), 1000000000000000 FROM generate_series(1, :users) AS n
    ON CONFLICT (user_id) DO NOTHING
    RETURNING user_id, balance_cents
)
INSERT INTO wallet_ledger (id, user_id, kind, amount_cents, balance_after_cents)
SELECT bench_uuid_v7(), user_id, 'opening_credit', balance_cents, balance_cents
FROM opened;

ANALYZE;
