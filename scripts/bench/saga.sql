-- pgbench script: the database work of one order's whole saga, from POST /api/v1/orders to
-- `confirmed` (stock reserved, wallet charged, reservation sold), one order per run: the
-- script's tps is orders per second. Every service transaction is its own BEGIN…COMMIT,
-- in the order they happen. Run by scripts/bench/pgbench.sh (setup.sql first), which passes
--   -M prepared   sqlx prepares each statement once per connection and then only binds
--                 it, as pgbench's prepared mode does
--   -D products=16 -D users=64   the catalog and customers setup.sql created
--   -D idempotency=1             1: POST /orders carries an Idempotency-Key; 0: it does not
--   -D relay_batch=100           OUTBOX_BATCH_SIZE, the relay read's LIMIT
--   -D relay_metrics=0           1: each relay block also runs the relay's gauge query
--                                (outbox.rs OutboxRelay::update_metrics, after every batch)
--
-- What each block mirrors (all paths from the repository root):
--  0. inputs      no service SQL: the ids, lines and event JSON the services make in Rust,
--                 from setup.sql's bench_saga_inputs, one query before the first block.
--  1. order-service, before its transaction: services/order/src/orders.rs place → replay →
--     repository.rs find_idempotency_key (only with an Idempotency-Key); then → price →
--     inventory.rs products → inventory-service GET /api/v1/products?ids= (routes.rs
--     list_products → services/inventory/src/repository.rs find_many).
--  2. order-service placement, orders.rs place: repository.rs insert_order; saga.rs
--     publish (shared/service-kit/src/events/outbox.rs enqueue → insert: advisory lock
--     "outb" + outbox row, whose AFTER INSERT trigger does pg_notify; repository.rs
--     record_event); repository.rs claim_idempotency_key.
--  3. order-service relay: outbox.rs OutboxRelay::publish_batch (the batch read, no
--     transaction) and record (UPDATE … published_at = now() in a transaction of its own);
--     with relay_metrics=1, OutboxRelay::run's update_metrics after the batch.
--  4. inventory-service applies OrderPlaced: shared/service-kit/src/events/consumer.rs
--     Consumer::transaction (inbox row), services/inventory/src/saga.rs reserve →
--     repository.rs lock_order, has_reservations, is_cancelled, lock_stock, reserve
--     (products UPDATE + reservations INSERT), outbox.rs enqueue (StockReserved).
--  5. inventory-service relay, as 3.
--  6. payment-service applies StockReserved: consumer.rs transaction (inbox),
--     services/payment/src/saga.rs charge_order → repository.rs lock_order, is_cancelled;
--     wallets.rs charge → repository.rs find_payment, then in a savepoint (sqlx's
--     conn.begin() inside a transaction) subtract_from_balance_if_covered (wallet UPDATE +
--     wallet_ledger INSERT, one statement; the ledger's payment_id foreign key is checked
--     at COMMIT) and insert_payment_unless_exists; outbox.rs enqueue (PaymentSucceeded).
--  7. order-service applies StockReserved: consumer.rs transaction (inbox),
--     services/order/src/saga.rs apply → repository.rs find_order(for_update) (+ items_of),
--     record_event; status.rs says pending stays pending, so nothing else.
--  8. payment-service relay, as 3.
--  9. order-service applies PaymentSucceeded: as 7, then repository.rs update_status
--     (confirmed) and saga.rs publish (OrderConfirmed: enqueue + record_event).
-- 10. order-service relay, as 3.
-- 11. inventory-service applies OrderConfirmed: consumer.rs transaction (inbox),
--     inventory saga.rs sell → repository.rs sell (lock_reservations, then the
--     reservations→products UPDATE). It publishes nothing.
-- payment-service also receives OrderPlaced and OrderConfirmed (it reads shop.orders), but
-- its consumer skips event types it does not handle before touching the database.
--
-- Differences from the running system:
-- - All services share this one database, so the kit's outbox and inbox tables are shared
--   (the services have one each). Each relay block is this client's own relay: its batch
--   read sees every unpublished row (other clients' in-flight rows too), and it marks the
--   row its client wrote, whose seq the outbox INSERT returns (`RETURNING ARRAY[seq]`,
--   the only clause added to the code's SQL); the real relay marks all it published.
-- - One relay batch per outbox row, as when the relay keeps up (one NOTIFY, one batch).
--   Left out of the relay: its lease renewal (every few seconds, not per row), its 1 s
--   polling when idle, pruning (every 10 minutes); its gauge query after each batch
--   (update_metrics) only with relay_metrics=1. That query counts `published_at IS NULL`,
--   which no index serves (the partial indexes also test parked_at/retry_at), so it scans
--   the whole outbox, published rows included (kept OUTBOX_RETENTION_HOURS, 72 by
--   default); here that is the one outbox all services share, which overstates it.
-- - Block 0 is not the services' work: pgbench cannot make strings (UUIDs, JSON), so one
--   query per run makes them in the database; it costs one round trip and a few function
--   calls per order on top of the services' SQL.
-- - sqlx's pool check when it hands out a connection (a protocol-level Sync round trip)
--   cannot be sent by pgbench. No LISTEN session receives the NOTIFYs.
-- - The statements are the code's text with $n replaced by pgbench variables (arrays in
--   their text form); constant parameters (consumer names, event types, topics, statuses,
--   lock namespaces) are written as literals, and one cast is added (`-:total_cents::bigint`:
--   sqlx binds a typed parameter, pgbench an untyped one, and `-$2` is ambiguous untyped).

\set u random(1, :users)
\set pa random(1, :products)
\set pb 1 + (:pa + random(0, :products - 2)) % :products
\set qa random(1, 3)
\set qb random(1, 3)

-- 0. inputs (not service SQL)
SELECT * FROM bench_saga_inputs(:u, :pa, :qa, :pb, :qb) \gset

-- 1. order-service: orders.rs replay → repository.rs find_idempotency_key (no row)
\if :idempotency
SELECT request_hash, order_id FROM idempotency_keys WHERE user_id = :user_id AND key = :idempotency_key;
\endif
--    inventory-service: GET /api/v1/products?ids= → repository.rs find_many
SELECT id, sku, name, description, price_cents, on_hand, reserved
           FROM products WHERE id = ANY(:stock_product_ids) ORDER BY id;

-- 2. order-service: orders.rs place
BEGIN;
INSERT INTO orders (id, user_id, status, total_cents)
           VALUES (:order_id, :user_id, 'pending', :total_cents)
           RETURNING id, user_id, status, status_reason, total_cents, created_at, updated_at;
INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price_cents)
           SELECT :order_id, * FROM UNNEST(:line_numbers::smallint[], :item_product_ids::uuid[], :item_quantities::int[], :item_prices::bigint[]);
SELECT pg_advisory_xact_lock(1869968482, hashtext(:order_id));
INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES (:ev_placed, 'shop.orders', :order_id, 'shop.order.placed.v1', :placed_headers, :placed_payload)
           RETURNING ARRAY[seq] AS seqs \gset placed_
INSERT INTO order_timeline (order_id, event_id, event_type, source, status)
           VALUES (:order_id, :ev_placed, 'shop.order.placed.v1', 'order-service', 'pending')
           ON CONFLICT (event_id) DO NOTHING;
\if :idempotency
INSERT INTO idempotency_keys (user_id, key, request_hash, order_id)
           VALUES (:user_id, :idempotency_key, :request_hash, :order_id)
           ON CONFLICT (user_id, key) DO NOTHING;
\endif
COMMIT;

-- 3. order-service relay: publish_batch, then record
SELECT seq, topic, partition_key, headers, payload, attempts FROM outbox o
               WHERE published_at IS NULL AND parked_at IS NULL
                 AND (retry_at IS NULL OR retry_at <= now())
                 AND NOT EXISTS (
                     SELECT 1 FROM outbox held
                     WHERE held.published_at IS NULL
                       AND (held.parked_at IS NOT NULL OR held.retry_at > now())
                       AND held.partition_key = o.partition_key AND held.seq < o.seq)
               ORDER BY seq LIMIT :relay_batch;
BEGIN;
UPDATE outbox SET published_at = now(), attempts = attempts + 1,
                   retry_at = NULL, last_error = NULL
               WHERE seq = ANY(:placed_seqs);
COMMIT;
\if :relay_metrics
SELECT count(*) AS "pending!",
                      count(*) FILTER (WHERE parked_at IS NOT NULL) AS "parked!",
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS "oldest!"
               FROM outbox WHERE published_at IS NULL;
\endif

-- 4. inventory-service applies OrderPlaced: consumer.rs transaction, saga.rs reserve
BEGIN;
INSERT INTO inbox (consumer, event_id, event_type) VALUES ('inventory-service', :ev_placed, 'shop.order.placed.v1')
               ON CONFLICT (consumer, event_id) DO NOTHING;
SELECT pg_advisory_xact_lock(1768846959, hashtext(:order_id::uuid::text));
SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = :order_id) AS "exists!";
SELECT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = :order_id) AS "cancelled!";
SELECT id, on_hand, reserved FROM products
           WHERE id = ANY(:stock_product_ids)
           ORDER BY id
           FOR UPDATE;
UPDATE products
           SET reserved = reserved + line.quantity, updated_at = now()
           FROM UNNEST(:stock_product_ids::uuid[], :stock_quantities::integer[]) AS line (product_id, quantity)
           WHERE products.id = line.product_id;
INSERT INTO reservations (order_id, product_id, quantity, state)
           SELECT :order_id, line.product_id, line.quantity, 'reserved'
           FROM UNNEST(:stock_product_ids::uuid[], :stock_quantities::integer[]) AS line (product_id, quantity);
SELECT pg_advisory_xact_lock(1869968482, hashtext(:order_id));
INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES (:ev_reserved, 'shop.inventory', :order_id, 'shop.inventory.stock-reserved.v1', :reserved_headers, :reserved_payload)
           RETURNING ARRAY[seq] AS seqs \gset reserved_
COMMIT;

-- 5. inventory-service relay
SELECT seq, topic, partition_key, headers, payload, attempts FROM outbox o
               WHERE published_at IS NULL AND parked_at IS NULL
                 AND (retry_at IS NULL OR retry_at <= now())
                 AND NOT EXISTS (
                     SELECT 1 FROM outbox held
                     WHERE held.published_at IS NULL
                       AND (held.parked_at IS NOT NULL OR held.retry_at > now())
                       AND held.partition_key = o.partition_key AND held.seq < o.seq)
               ORDER BY seq LIMIT :relay_batch;
BEGIN;
UPDATE outbox SET published_at = now(), attempts = attempts + 1,
                   retry_at = NULL, last_error = NULL
               WHERE seq = ANY(:reserved_seqs);
COMMIT;
\if :relay_metrics
SELECT count(*) AS "pending!",
                      count(*) FILTER (WHERE parked_at IS NOT NULL) AS "parked!",
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS "oldest!"
               FROM outbox WHERE published_at IS NULL;
\endif

-- 6. payment-service applies StockReserved: consumer.rs transaction, saga.rs charge_order
BEGIN;
INSERT INTO inbox (consumer, event_id, event_type) VALUES ('payment-service', :ev_reserved, 'shop.inventory.stock-reserved.v1')
               ON CONFLICT (consumer, event_id) DO NOTHING;
SELECT pg_advisory_xact_lock(hashtextextended(:order_id::uuid::text, 0));
SELECT EXISTS (SELECT 1 FROM order_cancellations WHERE order_id = :order_id) AS "cancelled!";
--    wallets.rs charge
SELECT id, order_id, user_id, kind, amount_cents, created_at
           FROM payments
           WHERE order_id = :order_id AND kind = 'charge';
SAVEPOINT _sqlx_savepoint_1;
WITH debited AS (
               UPDATE wallets
               SET balance_cents = balance_cents - :total_cents, updated_at = now()
               WHERE user_id = :user_id AND balance_cents >= :total_cents
               RETURNING user_id, balance_cents
           )
           INSERT INTO wallet_ledger
               (id, user_id, kind, amount_cents, balance_after_cents, order_id, payment_id)
           SELECT :ledger_id, user_id, 'charge', -:total_cents::bigint, balance_cents, :order_id, :payment_id
           FROM debited
           RETURNING user_id, balance_after_cents;
INSERT INTO payments (id, order_id, user_id, kind, amount_cents)
           VALUES (:payment_id, :order_id, :user_id, 'charge', :total_cents)
           ON CONFLICT ON CONSTRAINT payments_order_kind_key DO NOTHING
           RETURNING id, order_id, user_id, kind, amount_cents, created_at;
RELEASE SAVEPOINT _sqlx_savepoint_1;
SELECT pg_advisory_xact_lock(1869968482, hashtext(:order_id));
INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES (:ev_paid, 'shop.payments', :order_id, 'shop.payment.succeeded.v1', :paid_headers, :paid_payload)
           RETURNING ARRAY[seq] AS seqs \gset paid_
COMMIT;

-- 7. order-service applies StockReserved: consumer.rs transaction, saga.rs apply
BEGIN;
INSERT INTO inbox (consumer, event_id, event_type) VALUES ('order-service', :ev_reserved, 'shop.inventory.stock-reserved.v1')
               ON CONFLICT (consumer, event_id) DO NOTHING;
SELECT id, user_id, status, status_reason, total_cents, created_at, updated_at
               FROM orders WHERE id = :order_id FOR UPDATE;
SELECT order_id, product_id, quantity, unit_price_cents
           FROM order_items WHERE order_id = ANY(:order_ids) ORDER BY order_id, line_no;
INSERT INTO order_timeline (order_id, event_id, event_type, source, status)
           VALUES (:order_id, :ev_reserved, 'shop.inventory.stock-reserved.v1', 'inventory-service', 'pending')
           ON CONFLICT (event_id) DO NOTHING;
COMMIT;

-- 8. payment-service relay
SELECT seq, topic, partition_key, headers, payload, attempts FROM outbox o
               WHERE published_at IS NULL AND parked_at IS NULL
                 AND (retry_at IS NULL OR retry_at <= now())
                 AND NOT EXISTS (
                     SELECT 1 FROM outbox held
                     WHERE held.published_at IS NULL
                       AND (held.parked_at IS NOT NULL OR held.retry_at > now())
                       AND held.partition_key = o.partition_key AND held.seq < o.seq)
               ORDER BY seq LIMIT :relay_batch;
BEGIN;
UPDATE outbox SET published_at = now(), attempts = attempts + 1,
                   retry_at = NULL, last_error = NULL
               WHERE seq = ANY(:paid_seqs);
COMMIT;
\if :relay_metrics
SELECT count(*) AS "pending!",
                      count(*) FILTER (WHERE parked_at IS NOT NULL) AS "parked!",
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS "oldest!"
               FROM outbox WHERE published_at IS NULL;
\endif

-- 9. order-service applies PaymentSucceeded: consumer.rs transaction, saga.rs apply
BEGIN;
INSERT INTO inbox (consumer, event_id, event_type) VALUES ('order-service', :ev_paid, 'shop.payment.succeeded.v1')
               ON CONFLICT (consumer, event_id) DO NOTHING;
SELECT id, user_id, status, status_reason, total_cents, created_at, updated_at
               FROM orders WHERE id = :order_id FOR UPDATE;
SELECT order_id, product_id, quantity, unit_price_cents
           FROM order_items WHERE order_id = ANY(:order_ids) ORDER BY order_id, line_no;
INSERT INTO order_timeline (order_id, event_id, event_type, source, status)
           VALUES (:order_id, :ev_paid, 'shop.payment.succeeded.v1', 'payment-service', 'confirmed')
           ON CONFLICT (event_id) DO NOTHING;
UPDATE orders SET status = 'confirmed', status_reason = NULL, updated_at = now() WHERE id = :order_id;
--    saga.rs publish (OrderConfirmed)
SELECT pg_advisory_xact_lock(1869968482, hashtext(:order_id));
INSERT INTO outbox (event_id, topic, partition_key, event_type, headers, payload)
           VALUES (:ev_confirmed, 'shop.orders', :order_id, 'shop.order.confirmed.v1', :confirmed_headers, :confirmed_payload)
           RETURNING ARRAY[seq] AS seqs \gset confirmed_
INSERT INTO order_timeline (order_id, event_id, event_type, source, status)
           VALUES (:order_id, :ev_confirmed, 'shop.order.confirmed.v1', 'order-service', 'confirmed')
           ON CONFLICT (event_id) DO NOTHING;
COMMIT;

-- 10. order-service relay
SELECT seq, topic, partition_key, headers, payload, attempts FROM outbox o
               WHERE published_at IS NULL AND parked_at IS NULL
                 AND (retry_at IS NULL OR retry_at <= now())
                 AND NOT EXISTS (
                     SELECT 1 FROM outbox held
                     WHERE held.published_at IS NULL
                       AND (held.parked_at IS NOT NULL OR held.retry_at > now())
                       AND held.partition_key = o.partition_key AND held.seq < o.seq)
               ORDER BY seq LIMIT :relay_batch;
BEGIN;
UPDATE outbox SET published_at = now(), attempts = attempts + 1,
                   retry_at = NULL, last_error = NULL
               WHERE seq = ANY(:confirmed_seqs);
COMMIT;
\if :relay_metrics
SELECT count(*) AS "pending!",
                      count(*) FILTER (WHERE parked_at IS NOT NULL) AS "parked!",
                      COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::bigint AS "oldest!"
               FROM outbox WHERE published_at IS NULL;
\endif

-- 11. inventory-service applies OrderConfirmed: consumer.rs transaction, saga.rs sell
BEGIN;
INSERT INTO inbox (consumer, event_id, event_type) VALUES ('inventory-service', :ev_confirmed, 'shop.order.confirmed.v1')
               ON CONFLICT (consumer, event_id) DO NOTHING;
SELECT reservations.product_id
           FROM reservations JOIN products ON products.id = reservations.product_id
           WHERE reservations.order_id = :order_id
           ORDER BY reservations.product_id
           FOR UPDATE;
WITH sold AS (
               UPDATE reservations SET state = 'sold', updated_at = now()
               WHERE order_id = :order_id AND state = 'reserved'
               RETURNING product_id, quantity
           )
           UPDATE products
           SET on_hand = on_hand - sold.quantity,
               reserved = reserved - sold.quantity,
               updated_at = now()
           FROM sold
           WHERE products.id = sold.product_id;
COMMIT;
