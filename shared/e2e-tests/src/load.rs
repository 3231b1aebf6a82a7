//! A background load for fault scenarios: orders placed at a steady rate while the test
//! breaks things, each attempt recorded with when it started, when it ended and how.
//!
//! The load never fails by itself: a fault scenario decides afterwards which answers were
//! acceptable when (a 503 while PostgreSQL is away is; a 500 never is), so the load keeps
//! going through refusals and timeouts instead of panicking in a task no one awaits.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use shop_model::{OrderId, ProductId, api::Order};
use tokio::{sync::watch, task::JoinSet, time::Instant};

use crate::Customer;

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub orders_per_second: u32,
    /// The load stops by itself after this many orders…
    pub max_orders: usize,
    /// …or after this long, whichever comes first.
    pub max_duration: Duration,
    /// A request not answered within this is abandoned (and counts as timed out).
    pub client_timeout: Duration,
}

/// How one attempt to place an order ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 202: the order was accepted.
    Accepted(OrderId),
    /// Any other answer, with its body.
    Status(u16, String),
    /// No answer within the client timeout.
    TimedOut,
    /// Refused, reset or cut before an answer.
    ConnectionError(String),
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub started: Instant,
    pub finished: Instant,
    pub outcome: Outcome,
}

impl Attempt {
    fn overlaps(&self, (from, to): (Instant, Instant)) -> bool {
        self.started <= to && self.finished >= from
    }
}

/// A running load; [`Load::stop`] ends it and returns what happened.
pub struct Load {
    pub started: Instant,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: watch::Sender<bool>,
    driver: tokio::task::JoinHandle<()>,
}

struct Target {
    http: reqwest::Client,
    order_apis: Vec<String>,
    tokens: Vec<String>,
    products: Vec<ProductId>,
}

impl Load {
    /// Starts placing orders through `order_apis` (base URLs of order-service replicas),
    /// round robin over the customers, the products and the replicas: order `i` is one or
    /// two units of one product.
    pub fn start(
        order_apis: Vec<String>,
        customers: &[Customer],
        products: &[ProductId],
        plan: LoadPlan,
    ) -> Self {
        assert!(
            !order_apis.is_empty() && !customers.is_empty() && !products.is_empty(),
            "a load needs an order API, a customer and a product"
        );
        let http = reqwest::Client::builder()
            .timeout(plan.client_timeout)
            .build()
            .expect("an HTTP client");
        let target = Arc::new(Target {
            http,
            order_apis,
            tokens: customers.iter().map(|c| c.token.clone()).collect(),
            products: products.to_vec(),
        });
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let started = Instant::now();
        let recorded = Arc::clone(&attempts);
        let driver = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval(Duration::from_secs(1) / plan.orders_per_second.max(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let end = started + plan.max_duration;
            let mut in_flight = JoinSet::new();
            for i in 0..plan.max_orders {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.wait_for(|stop| *stop) => break,
                }
                if Instant::now() >= end {
                    break;
                }
                let target = Arc::clone(&target);
                let recorded = Arc::clone(&recorded);
                in_flight.spawn(async move {
                    let attempt = target.place(i).await;
                    recorded.lock().expect("the attempts").push(attempt);
                });
                // Reap finished requests as we go.
                while in_flight.try_join_next().is_some() {}
            }
            while in_flight.join_next().await.is_some() {}
        });
        Self {
            started,
            attempts,
            stop,
            driver,
        }
    }

    /// The attempts that ended so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("the attempts").clone()
    }

    /// Waits until `count` orders placed after `since` are accepted, and returns when the
    /// first of them was placed; fails the test after `timeout`.
    pub async fn accepted_after(&self, since: Instant, count: usize, timeout: Duration) -> Instant {
        let what = format!(
            "{count} order(s) placed after {:.1} s of load to be accepted",
            since.saturating_duration_since(self.started).as_secs_f64()
        );
        test_kit::eventually(timeout, &what, || async {
            let mut accepted: Vec<Instant> = self
                .attempts()
                .iter()
                .filter(|a| a.started >= since && matches!(a.outcome, Outcome::Accepted(_)))
                .map(|a| a.started)
                .collect();
            accepted.sort();
            (accepted.len() >= count.max(1)).then(|| accepted[0])
        })
        .await
    }

    /// Stops placing orders, waits for the requests in flight, and returns every attempt.
    pub async fn stop(self) -> LoadReport {
        let _ = self.stop.send(true);
        self.driver.await.expect("the load driver");
        let mut attempts = self.attempts.lock().expect("the attempts").clone();
        attempts.sort_by_key(|a| a.started);
        LoadReport {
            started: self.started,
            attempts,
        }
    }
}

impl Target {
    async fn place(&self, i: usize) -> Attempt {
        let api = &self.order_apis[i % self.order_apis.len()];
        let token = &self.tokens[i % self.tokens.len()];
        let product = self.products[i % self.products.len()];
        let body = serde_json::json!({
            "items": [{"product_id": product, "quantity": 1 + i % 2}]
        });
        let started = Instant::now();
        let outcome = match self
            .http
            .post(format!("{api}/api/v1/orders"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) if status == 202 => match serde_json::from_slice::<Order>(&body) {
                        Ok(order) => Outcome::Accepted(order.id),
                        Err(e) => Outcome::Status(status, format!("undecodable order ({e})")),
                    },
                    Ok(body) => Outcome::Status(status, String::from_utf8_lossy(&body).into()),
                    Err(e) if e.is_timeout() => Outcome::TimedOut,
                    Err(e) => Outcome::ConnectionError(format!("{e:?}")),
                }
            }
            Err(e) if e.is_timeout() => Outcome::TimedOut,
            Err(e) => Outcome::ConnectionError(format!("{e:?}")),
        };
        Attempt {
            started,
            finished: Instant::now(),
            outcome,
        }
    }
}

/// Every attempt of a finished load, oldest first.
pub struct LoadReport {
    pub started: Instant,
    pub attempts: Vec<Attempt>,
}

impl LoadReport {
    /// The orders answered 202.
    pub fn accepted(&self) -> Vec<OrderId> {
        self.attempts
            .iter()
            .filter_map(|a| match a.outcome {
                Outcome::Accepted(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// The orders answered 202 that were placed within `from..to`.
    pub fn accepted_between(&self, from: Instant, to: Instant) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.started >= from && a.started < to)
            .filter(|a| matches!(a.outcome, Outcome::Accepted(_)))
            .count()
    }

    /// Fails the test unless every attempt was accepted, except attempts that overlap one
    /// of the `outages` and were refused the way a client may be while a dependency is
    /// away: 503, a timeout, or a connection error. Anything else (a 500, a 4xx) fails
    /// whenever it happened. Returns how many were refused.
    pub fn assert_refused_only_during(&self, outages: &[(Instant, Instant)]) -> usize {
        let mut refused = 0;
        let mut wrong = Vec::new();
        for attempt in &self.attempts {
            let during_outage = outages.iter().any(|o| attempt.overlaps(*o));
            let ok = match &attempt.outcome {
                Outcome::Accepted(_) => true,
                Outcome::Status(503, _) | Outcome::TimedOut | Outcome::ConnectionError(_) => {
                    refused += 1;
                    during_outage
                }
                Outcome::Status(..) => false,
            };
            if !ok {
                wrong.push(attempt);
            }
        }
        if !wrong.is_empty() {
            let at = |i: Instant| i.duration_since(self.started).as_secs_f64();
            let mut message = format!(
                "{} of {} orders were answered wrongly (outages at {}):",
                wrong.len(),
                self.attempts.len(),
                outages
                    .iter()
                    .map(|(from, to)| format!("{:.1}–{:.1} s", at(*from), at(*to)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for attempt in wrong.iter().take(10) {
                let _ = write!(
                    message,
                    "\n  - placed at {:.1} s, ended at {:.1} s: {:?}",
                    at(attempt.started),
                    at(attempt.finished),
                    attempt.outcome
                );
            }
            panic!("{message}");
        }
        refused
    }
}
