//! The consistency oracle: what must hold once the system has gone quiet, whatever faults
//! a scenario injected on the way. It reads the services' databases directly (not their
//! APIs, which may hide a row), so it also judges the orders whose HTTP answer the test
//! never saw, and it counts the dead letters on the broker itself.
//!
//! A scenario that checks only the orders it knows about can pass while an order whose
//! answer was lost in an outage stays `pending` forever, or while an event sits
//! dead-lettered; the oracle is what makes a fault scenario able to fail for those.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::Duration,
};

use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};
use service_kit::events::DEAD_LETTER_TOPIC;
use shop_model::OrderId;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Broker, INITIAL_CREDIT, SAGA_DEADLINE, Service, Stack};

/// What the system settled to, once every invariant held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Consistency {
    pub confirmed: usize,
    pub rejected: usize,
    pub cancelled: usize,
}

impl Consistency {
    pub fn orders(&self) -> usize {
        self.confirmed + self.rejected + self.cancelled
    }
}

/// One look at every database and at the broker.
struct Check {
    summary: Consistency,
    /// One line per broken invariant, with its numbers.
    broken: Vec<String>,
    dead_letters: Option<u64>,
}

impl Stack {
    /// Waits until the system is consistent, then returns what it settled to; fails the
    /// test, naming every broken invariant and its numbers, if it is not within
    /// [`SAGA_DEADLINE`], or as soon as a dead letter exists (one never goes away).
    ///
    /// The invariants, read from the services' databases:
    /// - every order is terminal (confirmed, rejected or cancelled), and every order of
    ///   `accepted` (the 202 answers the test saw) exists;
    /// - no product has stock reserved, no reservation is still held;
    /// - stock is conserved per product: initial stock = available + units of confirmed
    ///   orders (for every product, which must have been made by [`Stack::create_product`]);
    /// - money is conserved per customer: balance + charges − refunds = the initial
    ///   credit, and charges − refunds = the totals of the customer's confirmed orders;
    /// - every balance is its wallet's ledger sum, every wallet has one opening row, and
    ///   every payment is one ledger row of its wallet, for its amount;
    /// - every service's outbox is drained;
    /// - the broker holds no dead letter.
    pub async fn assert_consistent(&self, accepted: &[OrderId]) -> Consistency {
        let started = tokio::time::Instant::now();
        let deadline = started + SAGA_DEADLINE;
        let mut connections = Vec::new();
        for service in Service::ALL {
            connections.push((service, self.db(service).await));
        }
        loop {
            let check = self.check(&mut connections, accepted).await;
            if check.broken.is_empty() {
                return check.summary;
            }
            let dead_lettered = check.dead_letters.is_some_and(|n| n > 0);
            if dead_lettered || tokio::time::Instant::now() >= deadline {
                let mut message = format!(
                    "the system is not consistent after {:.1} s{}; {} invariant(s) broken:",
                    started.elapsed().as_secs_f64(),
                    if dead_lettered {
                        " (stopped waiting: a dead letter never goes away)"
                    } else {
                        ""
                    },
                    check.broken.len()
                );
                for line in &check.broken {
                    let _ = write!(message, "\n  - {line}");
                }
                let _ = write!(
                    message,
                    "\n  (orders: {} confirmed, {} rejected, {} cancelled, besides any pending)",
                    check.summary.confirmed, check.summary.rejected, check.summary.cancelled
                );
                panic!("{message}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn check(
        &self,
        connections: &mut [(Service, PgConnection)],
        accepted: &[OrderId],
    ) -> Check {
        let mut broken = Vec::new();
        let mut summary = Consistency::default();
        let mut outboxes = Vec::new();
        for (service, db) in connections.iter_mut() {
            let unpublished: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&mut *db)
                    .await
                    .expect("reading the outbox");
            if unpublished > 0 {
                outboxes.push(format!("{}: {unpublished}", service.binary()));
            }
        }
        if !outboxes.is_empty() {
            broken.push(format!(
                "outbox not drained, unpublished rows: {}",
                outboxes.join(", ")
            ));
        }
        let db = |service: Service| {
            connections
                .iter()
                .position(|(s, _)| *s == service)
                .expect("a connection per service")
        };
        let (orders_db, inventory_db, payments_db) = (
            db(Service::Order),
            db(Service::Inventory),
            db(Service::Payment),
        );

        // Orders.
        let orders: Vec<(Uuid, Uuid, String, i64)> =
            sqlx::query_as("SELECT id, user_id, status, total_cents FROM orders ORDER BY id")
                .fetch_all(&mut connections[orders_db].1)
                .await
                .expect("reading the orders");
        let mut pending = Vec::new();
        let mut confirmed_totals: BTreeMap<Uuid, i64> = BTreeMap::new();
        for (id, user, status, total) in &orders {
            match status.as_str() {
                "confirmed" => {
                    summary.confirmed += 1;
                    *confirmed_totals.entry(*user).or_default() += total;
                }
                "rejected" => summary.rejected += 1,
                "cancelled" => summary.cancelled += 1,
                _ => pending.push(format!("{id} ({status})")),
            }
        }
        if !pending.is_empty() {
            broken.push(format!(
                "orders not terminal: {} of {} (e.g. {})",
                pending.len(),
                orders.len(),
                sample(&pending)
            ));
        }
        let stored: BTreeSet<Uuid> = orders.iter().map(|(id, ..)| *id).collect();
        let lost: Vec<String> = accepted
            .iter()
            .filter(|id| !stored.contains(&id.as_uuid()))
            .map(ToString::to_string)
            .collect();
        if !lost.is_empty() {
            broken.push(format!(
                "accepted orders missing from order-service's database: {} of {} (e.g. {})",
                lost.len(),
                accepted.len(),
                sample(&lost)
            ));
        }

        // Stock.
        let sold: BTreeMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
            "SELECT i.product_id, SUM(i.quantity)::BIGINT FROM order_items i \
             JOIN orders o ON o.id = i.order_id WHERE o.status = 'confirmed' \
             GROUP BY i.product_id",
        )
        .fetch_all(&mut connections[orders_db].1)
        .await
        .expect("reading the confirmed order lines")
        .into_iter()
        .collect();
        let products: Vec<(Uuid, i32, i32)> =
            sqlx::query_as("SELECT id, on_hand, reserved FROM products ORDER BY id")
                .fetch_all(&mut connections[inventory_db].1)
                .await
                .expect("reading the products");
        let held: i64 =
            sqlx::query_scalar("SELECT count(*) FROM reservations WHERE state = 'reserved'")
                .fetch_one(&mut connections[inventory_db].1)
                .await
                .expect("reading the reservations");
        let initial: BTreeMap<Uuid, i64> = self
            .products
            .lock()
            .expect("the products")
            .iter()
            .map(|(id, stock)| (id.as_uuid(), *stock))
            .collect();
        let reserved: Vec<String> = products
            .iter()
            .filter(|(_, _, reserved)| *reserved != 0)
            .map(|(id, _, reserved)| format!("{id}: {reserved}"))
            .collect();
        if !reserved.is_empty() || held > 0 {
            broken.push(format!(
                "stock still reserved: {} product(s) ({}), {held} reservation(s) held",
                reserved.len(),
                sample(&reserved)
            ));
        }
        for (id, on_hand, reserved) in &products {
            let available = i64::from(*on_hand - *reserved);
            let sold = sold.get(id).copied().unwrap_or(0);
            match initial.get(id) {
                Some(initial) if *initial == available + sold => {}
                Some(initial) => broken.push(format!(
                    "stock not conserved for product {id}: initial {initial} ≠ available \
                     {available} + {sold} units in confirmed orders (= {}), {reserved} reserved",
                    available + sold
                )),
                None => broken.push(format!(
                    "product {id} was not made by Stack::create_product: its initial stock is \
                     unknown"
                )),
            }
        }
        for id in initial.keys() {
            if !products.iter().any(|(p, ..)| p == id) {
                broken.push(format!("product {id} is missing from inventory's database"));
            }
        }

        // Money.
        let wallets: BTreeMap<Uuid, i64> =
            sqlx::query_as::<_, (Uuid, i64)>("SELECT user_id, balance_cents FROM wallets")
                .fetch_all(&mut connections[payments_db].1)
                .await
                .expect("reading the wallets")
                .into_iter()
                .collect();
        let mut moved: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
        let payments: Vec<(Uuid, String, i64)> = sqlx::query_as(
            "SELECT user_id, kind, SUM(amount_cents)::BIGINT FROM payments GROUP BY user_id, kind",
        )
        .fetch_all(&mut connections[payments_db].1)
        .await
        .expect("reading the payments");
        for (user, kind, sum) in payments {
            let entry = moved.entry(user).or_default();
            match kind.as_str() {
                "charge" => entry.0 += sum,
                _ => entry.1 += sum,
            }
        }
        for (user, balance) in &wallets {
            let (charges, refunds) = moved.get(user).copied().unwrap_or_default();
            if balance + charges - refunds != INITIAL_CREDIT {
                broken.push(format!(
                    "money not conserved for customer {user}: balance {balance} + charges \
                     {charges} − refunds {refunds} = {} ≠ initial credit {INITIAL_CREDIT}",
                    balance + charges - refunds
                ));
            }
            let owed = confirmed_totals.get(user).copied().unwrap_or(0);
            if charges - refunds != owed {
                broken.push(format!(
                    "customer {user} paid for other than its confirmed orders: charges \
                     {charges} − refunds {refunds} = {} ≠ {owed}, the totals of its confirmed \
                     orders",
                    charges - refunds
                ));
            }
        }
        for user in confirmed_totals.keys() {
            if !wallets.contains_key(user) {
                broken.push(format!(
                    "customer {user} has confirmed orders but no wallet"
                ));
            }
        }

        // The wallet ledger: each statement reads one snapshot, so a balance and its rows
        // are compared as of one moment even while the saga still moves money.
        let unbalanced: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
            "SELECT w.user_id, w.balance_cents, COALESCE(SUM(l.amount_cents), 0)::BIGINT, \
                    COUNT(l.id) FILTER (WHERE l.kind = 'opening_credit') \
             FROM wallets w LEFT JOIN wallet_ledger l ON l.user_id = w.user_id \
             GROUP BY w.user_id, w.balance_cents \
             HAVING w.balance_cents <> COALESCE(SUM(l.amount_cents), 0) \
                 OR COUNT(l.id) FILTER (WHERE l.kind = 'opening_credit') <> 1",
        )
        .fetch_all(&mut connections[payments_db].1)
        .await
        .expect("reading the wallets and their ledger");
        for (user, balance, sum, openings) in &unbalanced {
            broken.push(format!(
                "wallet of {user} does not match its ledger: balance {balance}, ledger sum \
                 {sum}, {openings} opening row(s)"
            ));
        }
        let unrecorded: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(
            "SELECT p.id, p.kind, p.amount_cents, COUNT(l.id) FROM payments p \
             LEFT JOIN wallet_ledger l ON l.payment_id = p.id AND l.user_id = p.user_id \
                  AND l.kind = p.kind \
                  AND l.amount_cents = CASE p.kind WHEN 'charge' THEN -p.amount_cents \
                                                   ELSE p.amount_cents END \
             GROUP BY p.id, p.kind, p.amount_cents HAVING COUNT(l.id) <> 1",
        )
        .fetch_all(&mut connections[payments_db].1)
        .await
        .expect("reading the payments and their ledger rows");
        if !unrecorded.is_empty() {
            let examples: Vec<String> = unrecorded
                .iter()
                .map(|(id, kind, amount, rows)| format!("{kind} {id} of {amount}: {rows} row(s)"))
                .collect();
            broken.push(format!(
                "payments without exactly one matching ledger row: {} (e.g. {})",
                unrecorded.len(),
                sample(&examples)
            ));
        }

        // Dead letters.
        let dead_letters = match self.dead_letters().await {
            Ok(0) => Some(0),
            Ok(count) => {
                broken.push(format!(
                    "dead letters exist: {count} on {DEAD_LETTER_TOPIC}"
                ));
                Some(count)
            }
            Err(error) => {
                broken.push(format!("cannot count the dead letters: {error}"));
                None
            }
        };
        Check {
            summary,
            broken,
            dead_letters,
        }
    }

    /// Fails the test if any service answered 500 to anyone, according to its log: a
    /// client sees only order-service, which turns a 500 of inventory-service into a 503
    /// of its own, so an outage may hide an internal error that only the logs show.
    pub fn assert_no_internal_errors(&self) {
        let mut errors = Vec::new();
        let mut logs: Vec<_> = std::fs::read_dir(&self.log_dir)
            .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            let request_id = |line: &serde_json::Value| {
                line["spans"]
                    .as_array()
                    .and_then(|spans| spans.iter().find_map(|s| s["request_id"].as_str()))
                    .map(str::to_owned)
            };
            for line in &lines {
                if line["message"] != "request completed" || line["status"] != 500 {
                    continue;
                }
                let id = request_id(line);
                // The cause chain is on the request's "request failed" line.
                let cause = lines
                    .iter()
                    .find(|l| l["message"] == "request failed" && request_id(l) == id)
                    .and_then(|l| l["error"].as_str())
                    .unwrap_or("(no cause logged)");
                let route = line["spans"]
                    .as_array()
                    .and_then(|spans| spans.iter().find_map(|s| s["http.route"].as_str()))
                    .unwrap_or("?");
                errors.push(format!(
                    "{} at {}: 500 on {route}: {cause}",
                    log.file_stem().unwrap_or_default().to_string_lossy(),
                    line["timestamp"].as_str().unwrap_or("?"),
                ));
            }
        }
        assert!(
            errors.is_empty(),
            "services answered 500 {} time(s):\n  - {}",
            errors.len(),
            sample_lines(&errors)
        );
    }

    /// The dead letters on the broker. Kafka: the sum of the high watermarks of the
    /// dead-letter topic's partitions; RabbitMQ: the messages of the dead-letter queue of
    /// this test's virtual host.
    pub async fn dead_letters(&self) -> Result<u64, String> {
        match &self.broker {
            Broker::Kafka { brokers, .. } => {
                let brokers = brokers.clone();
                tokio::task::spawn_blocking(move || kafka_dead_letters(&brokers))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Broker::RabbitMq { vhost, .. } => {
                let url = vhost.url();
                let name = url.rsplit('/').next().unwrap_or_default().to_owned();
                tokio::task::spawn_blocking(move || rabbitmq_dead_letters(&name))
                    .await
                    .map_err(|e| e.to_string())?
            }
        }
    }
}

fn kafka_dead_letters(brokers: &str) -> Result<u64, String> {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-consistency-oracle")
        .create()
        .map_err(|e| format!("a Kafka client: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(DEAD_LETTER_TOPIC), TIMEOUT)
        .map_err(|e| format!("the metadata of {DEAD_LETTER_TOPIC}: {e}"))?;
    let mut total = 0;
    for topic in metadata.topics() {
        if topic.error().is_some() {
            // The topic does not exist (yet): nothing was ever dead-lettered.
            continue;
        }
        for partition in topic.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic.name(), partition.id(), TIMEOUT)
                .map_err(|e| format!("the watermarks of {DEAD_LETTER_TOPIC}: {e}"))?;
            total += u64::try_from(high).unwrap_or(0);
        }
    }
    Ok(total)
}

fn rabbitmq_dead_letters(vhost: &str) -> Result<u64, String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "-p",
            vhost,
            "--no-table-headers",
            "name",
            "messages",
        ])
        .output()
        .map_err(|e| format!("running rabbitmqctl: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rabbitmqctl list_queues failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut total = 0;
    for line in stdout.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some(DEAD_LETTER_TOPIC) {
            let count = fields.next().unwrap_or_default();
            total += count
                .parse::<u64>()
                .map_err(|e| format!("rabbitmqctl printed {line:?}: {e}"))?;
        }
    }
    Ok(total)
}

/// The first few of `items`, one a line, for a failure message.
fn sample_lines(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  - ");
    if items.len() > SHOWN {
        let _ = write!(text, "\n  … {} more", items.len() - SHOWN);
    }
    text
}

/// The first few of `items`, for a failure message.
fn sample(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        let _ = write!(text, ", … {} more", items.len() - SHOWN);
    }
    text
}
