//! `load-bench`: drives a running system (the four services on their default ports, or
//! the URLs in `USER_URL`, `ORDER_URL` and `INVENTORY_URL`) and prints what it
//! measured as Markdown. `scripts/bench.sh` starts release builds and runs it; the numbers
//! and how they were taken are in `docs/performance.md`.
//!
//! Each run lasts `BENCH_SECONDS` (default 20), its clients sending requests back to back:
//! - **browse**: `GET /api/v1/products/{id}` from `BENCH_CONCURRENCY` clients (default
//!   16); public, one database read;
//! - **place orders**, paced at `BENCH_PACED_RATE` orders per second (default 20, well
//!   below capacity), then back to back from `BENCH_CONCURRENCY` clients:
//!   `POST /api/v1/orders` as 16 customers: a token check, a price lookup over REST at
//!   inventory-service, the order and its `OrderPlaced` written in one transaction;
//! - after each, once every order has settled, **the saga**: how long each order took from
//!   placement to `confirmed` (the order's `updated_at` minus its `created_at`, both from
//!   order-service's database clock), through inventory, payment and back.
//!
//! `BENCH_RUNS` picks the runs (default `browse,paced,saturated`); `BENCH_OUTPUT` names a
//! file that also gets each row as a line of JSON (`scripts/bench.sh` builds its report
//! from it).

// A command-line report: printing is its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shop_model::api::{Order, OrderStatus, Page, Product, TokenResponse};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(settings.concurrency)
        .build()?;
    let system = System::new(http, &settings);
    let admin = system
        .token(&settings.admin_email, &settings.admin_password)
        .await?;
    let product = system.create_product(&admin).await?;
    let customers = system.customers(16).await?;
    println!(
        "| run | requests | errors | throughput (req/s) | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );

    let mut report = Report::open(settings.output.as_deref())?;
    let id = product.id;
    if settings.runs("browse") {
        let browse = load(&settings, settings.concurrency, None, {
            let system = system.clone();
            move |_| {
                let system = system.clone();
                async move { system.get_product(id).await }
            }
        })
        .await;
        report.row(
            "browse",
            &format!(
                "browse: GET /products/{{id}}, {} clients",
                settings.concurrency
            ),
            &browse,
        )?;
    }

    // Paced well below capacity, the saga's own latency; then as fast as many clients can
    // place orders, what the system sustains (and the queueing once placement outruns it).
    let place = {
        let system = system.clone();
        let customers = customers.clone();
        move |client: usize| {
            let system = system.clone();
            let token = customers[client % customers.len()].clone();
            async move { system.place_order(&token, id).await }
        }
    };
    let rate = settings.paced_rate;
    for (run, name, clients, pace) in [
        ("paced", format!("{rate} orders/s, paced"), 1, Some(rate)),
        (
            "saturated",
            format!("{} clients", settings.concurrency),
            settings.concurrency,
            None,
        ),
    ] {
        if !settings.runs(run) {
            continue;
        }
        let started = Instant::now();
        let placing = load(&settings, clients, pace, place.clone()).await;
        report.row(
            &format!("{run}-place"),
            &format!("place orders: POST /orders, {name}"),
            &placing,
        )?;
        let orders = system.settled_orders(&admin, started).await?;
        report.row(
            &format!("{run}-saga"),
            &format!("saga: placed → confirmed, {name} (errors = not confirmed)"),
            &saga(&orders),
        )?;
    }
    Ok(())
}

/// Prints each row as Markdown and, with `BENCH_OUTPUT`, appends it to that file as JSON.
struct Report {
    output: Option<std::fs::File>,
}

impl Report {
    fn open(path: Option<&str>) -> anyhow::Result<Self> {
        let output = path
            .map(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {path}"))
            })
            .transpose()?;
        Ok(Self { output })
    }

    fn row(&mut self, run: &str, name: &str, measured: &Measured) -> anyhow::Result<()> {
        println!("{}", measured.row(name));
        if let Some(output) = self.output.as_mut() {
            use std::io::Write;
            writeln!(output, "{}", measured.json(run, name))?;
        }
        Ok(())
    }
}

struct Settings {
    user: String,
    order: String,
    inventory: String,
    admin_email: String,
    admin_password: String,
    concurrency: usize,
    paced_rate: u32,
    duration: Duration,
    runs: Vec<String>,
    output: Option<String>,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let var =
            |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
        Ok(Self {
            user: var("USER_URL", "http://127.0.0.1:8081"),
            order: var("ORDER_URL", "http://127.0.0.1:8082"),
            inventory: var("INVENTORY_URL", "http://127.0.0.1:8084"),
            admin_email: var("ADMIN_EMAIL", "admin@example.com"),
            admin_password: var("ADMIN_PASSWORD", "admin-password"),
            concurrency: var("BENCH_CONCURRENCY", "16")
                .parse()
                .context("BENCH_CONCURRENCY")?,
            paced_rate: var("BENCH_PACED_RATE", "20")
                .parse()
                .context("BENCH_PACED_RATE")?,
            duration: Duration::from_secs(
                var("BENCH_SECONDS", "20")
                    .parse()
                    .context("BENCH_SECONDS")?,
            ),
            runs: var("BENCH_RUNS", "browse,paced,saturated")
                .split(',')
                .map(|run| run.trim().to_owned())
                .collect(),
            output: std::env::var("BENCH_OUTPUT").ok(),
        })
    }

    fn runs(&self, run: &str) -> bool {
        self.runs.iter().any(|r| r == run)
    }
}

/// The system under test, seen over HTTP.
#[derive(Clone)]
struct System {
    http: reqwest::Client,
    user: String,
    order: String,
    inventory: String,
}

impl System {
    fn new(http: reqwest::Client, settings: &Settings) -> Self {
        Self {
            http,
            user: settings.user.clone(),
            order: settings.order.clone(),
            inventory: settings.inventory.clone(),
        }
    }

    async fn token(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{}/api/v1/auth/token", self.user))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await?;
        Ok(expect(response, 200)
            .await?
            .json::<TokenResponse>()
            .await?
            .access_token)
    }

    /// A product cheap and plentiful enough that no order of the run is rejected.
    async fn create_product(&self, admin: &str) -> anyhow::Result<Product> {
        let response = self
            .http
            .post(format!("{}/api/v1/products", self.inventory))
            .bearer_auth(admin)
            .json(&serde_json::json!({
                "sku": format!("BENCH-{}", uuid::Uuid::new_v4().simple()),
                "name": "Benchmark widget",
                "description": "",
                "price_cents": 1,
                "stock": 1_000_000_000,
            }))
            .send()
            .await?;
        Ok(expect(response, 201).await?.json().await?)
    }

    /// Registers `count` customers and returns their tokens. Each wallet starts with the
    /// default credit, which pays for 100,000 one-cent orders.
    async fn customers(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let mut tokens = Vec::new();
        for _ in 0..count {
            let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
            let response = self
                .http
                .post(format!("{}/api/v1/users", self.user))
                .json(&serde_json::json!({
                    "email": email, "password": "bench-password", "name": "Bench",
                }))
                .send()
                .await?;
            expect(response, 201).await?;
            tokens.push(self.token(&email, "bench-password").await?);
        }
        Ok(tokens)
    }

    async fn get_product(&self, id: shop_model::ProductId) -> anyhow::Result<()> {
        let response = self
            .http
            .get(format!("{}/api/v1/products/{id}", self.inventory))
            .send()
            .await?;
        expect(response, 200).await.map(drop)
    }

    async fn place_order(&self, token: &str, product: shop_model::ProductId) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/api/v1/orders", self.order))
            .bearer_auth(token)
            .json(&serde_json::json!({ "items": [{ "product_id": product, "quantity": 1 }] }))
            .send()
            .await?;
        expect(response, 202).await.map(drop)
    }

    /// Every order placed since `since` (by the admin's view of all orders), once none is
    /// pending any more; fails after fifteen minutes. While the newest order is pending it
    /// only looks at that one, so that waiting adds next to no load.
    async fn settled_orders(&self, admin: &str, since: Instant) -> anyhow::Result<Vec<Order>> {
        let horizon = time::OffsetDateTime::now_utc() - since.elapsed() - Duration::from_secs(1);
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if self.newest_order_settled(admin).await? {
                let orders = self.orders_since(admin, horizon).await?;
                if orders.iter().all(|o| o.status != OrderStatus::Pending) {
                    return Ok(orders);
                }
            }
            if Instant::now() > deadline {
                bail!("orders still pending after fifteen minutes");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn newest_order_settled(&self, admin: &str) -> anyhow::Result<bool> {
        let request = self
            .http
            .get(format!("{}/api/v1/orders", self.order))
            .bearer_auth(admin)
            .query(&[("limit", "1")]);
        let page: Page<Order> = expect(request.send().await?, 200).await?.json().await?;
        Ok(page.items.iter().all(|o| o.status != OrderStatus::Pending))
    }

    /// All orders created after `horizon`, newest first, walking the admin list.
    async fn orders_since(
        &self,
        admin: &str,
        horizon: time::OffsetDateTime,
    ) -> anyhow::Result<Vec<Order>> {
        let mut orders = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut request = self
                .http
                .get(format!("{}/api/v1/orders", self.order))
                .bearer_auth(admin)
                .query(&[("limit", "100")]);
            if let Some(cursor) = &cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let page: Page<Order> = expect(request.send().await?, 200).await?.json().await?;
            let before = orders.len();
            orders.extend(page.items.into_iter().filter(|o| o.created_at >= horizon));
            let reached_older = orders.len() - before < 100;
            match page.next_cursor {
                Some(next) if !reached_older => cursor = Some(next),
                _ => return Ok(orders),
            }
        }
    }
}

async fn expect(response: reqwest::Response, status: u16) -> anyhow::Result<reqwest::Response> {
    if response.status().as_u16() == status {
        Ok(response)
    } else {
        let got = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("expected {status}, got {got}: {body}")
    }
}

/// How long each confirmed order took from placement to confirmation; the throughput is
/// confirmations per second from the first placement to the last confirmation.
fn saga(orders: &[Order]) -> Measured {
    let confirmed: Vec<&Order> = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Confirmed)
        .collect();
    let window = match (
        orders.iter().map(|o| o.created_at).min(),
        orders.iter().map(|o| o.updated_at).max(),
    ) {
        (Some(first), Some(last)) => (last - first).unsigned_abs(),
        _ => Duration::ZERO,
    };
    Measured::from_durations(
        confirmed
            .iter()
            .map(|o| (o.updated_at - o.created_at).unsigned_abs())
            .collect(),
        orders.len() - confirmed.len(),
        window,
    )
}

/// Runs `request` from `clients` clients for the configured duration: back to back, or,
/// with `pace`, each client starting one request per `1 / pace` seconds. `request` gets
/// the client's number.
async fn load<F, Fut>(
    settings: &Settings,
    clients: usize,
    pace: Option<u32>,
    request: F,
) -> Measured
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + settings.duration;
    let mut running = tokio::task::JoinSet::new();
    for client in 0..clients {
        let request = request.clone();
        running.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            let mut ticks = pace.map(|rate| {
                let mut ticks =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            while Instant::now() < deadline {
                if let Some(ticks) = ticks.as_mut() {
                    ticks.tick().await;
                }
                let sent = Instant::now();
                match request(client).await {
                    Ok(()) => latencies.push(sent.elapsed()),
                    Err(error) => errors.push(format!("{error:#}")),
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = running.join_next().await {
        if let Ok((l, e)) = joined {
            latencies.extend(l);
            errors.extend(e);
        }
    }
    if let Some(first) = errors.first() {
        eprintln!("{} failed requests; the first: {first}", errors.len());
    }
    Measured::from_durations(latencies, errors.len(), started.elapsed())
}

/// Latencies of the successful requests, the failures, and the wall time they took.
struct Measured {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Measured {
    fn from_durations(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Self {
            latencies,
            errors,
            elapsed,
        }
    }

    /// The nearest-rank percentile.
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn json(&self, run: &str, name: &str) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        serde_json::json!({
            "run": run,
            "name": name,
            "requests": self.latencies.len(),
            "errors": self.errors,
            "throughput": self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON),
            "p50_ms": ms(self.percentile(50.0)),
            "p95_ms": ms(self.percentile(95.0)),
            "p99_ms": ms(self.percentile(99.0)),
            "max_ms": ms(self.latencies.last().copied().unwrap_or_default()),
        })
    }

    fn row(&self, name: &str) -> String {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        format!(
            "| {name} | {} | {} | {:.0} | {} | {} | {} | {} |",
            self.latencies.len(),
            self.errors,
            self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON),
            ms(self.percentile(50.0)),
            ms(self.percentile(95.0)),
            ms(self.percentile(99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        )
    }
}
