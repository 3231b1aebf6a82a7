-- pgbench script: the placement transaction of POST /api/v1/orders in order-service, one
-- new order per run. Run by scripts/bench/pgbench.sh (setup.sql first), which passes
--   -M prepared   sqlx prepares each statement once per connection and then only binds
--                 it, as pgbench's prepared mode does
--   -D products=16 -D users=64   the catalog and customers setup.sql created
--   -D idempotency=1             1: the request carries an Idempotency-Key (the claim
--                                row below is written); 0: it does not
--
-- What each block mirrors:
--   inputs  no service SQL: the values order-service makes in Rust (ids, prices copied
--           from the catalog, the OrderPlaced JSON), made by setup.sql's
--           bench_placement_inputs in one query before the transaction, since pgbench
--           cannot make strings itself: one round trip per run more than the service.
--   BEGIN…COMMIT  services/order/src/orders.rs place (pool.begin … tx.commit):
--     1. repository.rs insert_order: the orders row (RETURNING …) and the two
--        order_items rows (one INSERT … SELECT FROM UNNEST);
--     2. saga.rs publish → shared/service-kit/src/events/outbox.rs enqueue → insert: the
--        per-aggregate advisory lock pg_advisory_xact_lock(0x6f757462 "outb",
--        hashtext(partition key = order id)) and the outbox row (its AFTER INSERT
--        trigger outbox_notify does pg_notify('outbox', ''), delivered at commit);
--     3. saga.rs publish → repository.rs record_event: the order_timeline row
--        (OrderPlaced, order-service, pending);
--     4. with an Idempotency-Key: repository.rs claim_idempotency_key, the
--        idempotency_keys row (INSERT … ON CONFLICT DO NOTHING).
--
-- Not reproduced: the reads POST /orders makes outside this transaction (the replay
-- lookup of the Idempotency-Key in order-service, the price lookup in inventory-service's
-- database; saga.sql has both), and sqlx's pool check when it hands out a connection
-- (a protocol-level Sync round trip, which pgbench cannot send). The statements are the
-- code's text with $n replaced by pgbench variables (arrays in their text form);
-- constant parameters (topic, event type, status, lock namespace) are written as literals.

\set u random(1, :users)
\set pa random(1, :products)
\set pb 1 + (:pa + random(0, :products - 2)) % :products
\set qa random(1, 3)
\set qb random(1, 3)

-- inputs (not service SQL; one round trip before the transaction)
SELECT * FROM bench_placement_inputs(:u, :pa, :qa, :pb, :qb) \gset

BEGIN;
-- repository.rs insert_order
INSERT INTO orders (id, user_id, status, total_cents)
           VALUES (:order_id, :user_id, 'pending', :total_cents)
           RETURNING id, user_id, status, status_reason, total_cents, created_at, updated_at;
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents)
           SELECT :order_id, * FROM UNNEST(:line_numbers::smallint[], :item_product_ids::uuid[], :item_quantities::int[], :item_prices::bigint[]);
-- saga.rs publish → outbox.rs enqueue/insert (OrderPlaced, topic shop.orders)
SELECT pg_advisory_xact_lock(1869968482, hashtext(:order_id));
INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES (:ev_placed, 'shop.orders', :order_id, 'shop.order.placed.v1', :placed_headers, :placed_payload);
-- saga.rs publish → repository.rs record_event
INSERT INTO order_timeline (order_id, event_id, event_type, source, status)
           VALUES (:order_id, :ev_placed, 'shop.order.placed.v1', 'order-service', 'pending')
           ON CONFLICT (event_id) DO NOTHING;
\if :idempotency
-- repository.rs claim_idempotency_key
INSERT INTO idempotency_keys (user_id, key, request_hash, order_id)
           VALUES (:user_id, :idempotency_key, :request_hash, :order_id)
           ON CONFLICT (user_id, key) DO NOTHING;
\endif
COMMIT;
