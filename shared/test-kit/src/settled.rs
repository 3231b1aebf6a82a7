//! What every service's test application checks when a test ends: it left its event
//! plumbing clean. Every outbox row was published (none parked), and no message was
//! dead-lettered unless the test said it expected that. A test that passes while its
//! service quietly dead-letters the events it caused, or leaves them unpublished, proves
//! less than its name says.
//!
//! The check runs when the test application is dropped at the end of a passing test. It
//! waits a little for the relay (events written at the very end of a test are still
//! leaving), so the application runs on a runtime of its own ([`background_app`]): the
//! test's runtime is blocked while a value is dropped.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

/// Starts an application on a multi-threaded runtime of its own thread; returns its port.
/// `build` makes it (a service's `Application::build(settings)`), `port` reads its port and
/// `run` runs it until the process ends:
///
/// ```ignore
/// let app = test_kit::background_app(
///     move || Application::build(settings),
///     Application::port,
///     Application::run_until_stopped,
/// )
/// .await;
/// let port = app.port();
/// ```
pub async fn background_app<A, B, BF, P, R, RF>(build: B, port: P, run: R) -> BackgroundApp
where
    B: FnOnce() -> BF + Send + 'static,
    BF: Future<Output = anyhow::Result<A>>,
    P: FnOnce(&A) -> u16 + Send + 'static,
    R: FnOnce(A) -> RF + Send + 'static,
    RF: Future<Output = anyhow::Result<()>>,
{
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("the application's runtime: {e}"));
        runtime.block_on(async move {
            let app = build()
                .await
                .unwrap_or_else(|e| panic!("the application starts: {e:#}"));
            let _ = port_tx.send(port(&app));
            tokio::select! {
                result = run(app) => if let Err(error) = result {
                    tracing::warn!(error = format!("{error:#}"), "the application stopped");
                },
                _ = stop_rx => {}
            }
        });
        // Every task of the application (its consumer, relay and broker clients) is
        // dropped here, before the test's broker and database go and before the process
        // exits: a broker client still running at exit can abort the process.
        runtime.shutdown_timeout(Duration::from_secs(5));
        let _ = done_tx.send(());
    });
    let port = port_rx
        .await
        .unwrap_or_else(|_| panic!("the application did not start (see its panic above)"));
    BackgroundApp {
        port,
        stop: Some(stop_tx),
        done: done_rx,
    }
}

/// An application started by [`background_app`]; dropping it stops the application and
/// waits (a few seconds at most) until its tasks are gone. Keep it in the test application
/// after its [`SettledCheck`] and before its broker and database.
pub struct BackgroundApp {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl BackgroundApp {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for BackgroundApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let _ = self.done.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// The end-of-test check of one application. Keep it as the first field of the test
/// application, so that it runs before the database and the broker are dropped.
pub struct SettledCheck {
    database_url: SecretString,
    metrics_url: String,
    expected_dead_letters: Arc<AtomicU64>,
    skipped: std::sync::atomic::AtomicBool,
}

impl SettledCheck {
    /// For the application on `port` whose database is `database_url`.
    pub fn new(database_url: SecretString, port: u16) -> Self {
        Self {
            database_url,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            expected_dead_letters: Arc::new(AtomicU64::new(0)),
            skipped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// For a test that takes the database or the broker away for good: nothing can
    /// settle, and that is what the test is about.
    pub fn skip(&self) {
        self.skipped.store(true, Ordering::SeqCst);
    }

    /// The test makes the application dead-letter `count` messages on purpose.
    pub fn expect_dead_letters(&self, count: u64) {
        self.expected_dead_letters.store(count, Ordering::SeqCst);
    }

    async fn check(&self) -> Result<(), String> {
        let pool = sqlx::PgPool::connect(self.database_url.expose_secret())
            .await
            .map_err(|e| format!("connecting to the test database: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (unpublished, parked): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER (WHERE parked_at IS NOT NULL) \
                 FROM outbox WHERE published_at IS NULL",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| format!("reading the outbox: {e}"))?;
            if parked > 0 {
                return Err(format!("{parked} outbox rows were parked"));
            }
            if unpublished == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("{unpublished} outbox rows were never published"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let metrics = reqwest::get(&self.metrics_url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("reading {}: {e}", self.metrics_url))?
            .text()
            .await
            .map_err(|e| format!("reading {}: {e}", self.metrics_url))?;
        let dead_lettered = sum_of(&metrics, "shop_events_dead_lettered_total");
        let expected = self.expected_dead_letters.load(Ordering::SeqCst);
        if dead_lettered != expected as f64 {
            return Err(format!(
                "{dead_lettered} messages were dead-lettered; the test expected {expected}"
            ));
        }
        Ok(())
    }
}

/// The sum of every sample of `name` in a Prometheus text exposition.
fn sum_of(exposition: &str, name: &str) -> f64 {
    sum_matching(exposition, name, &[])
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn sum_matching(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (found, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| found.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The sum of the samples of metric `name` with `labels` on the `/metrics` of the service
/// at `base_url`.
pub async fn metric(base_url: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("reading /metrics: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading /metrics: {e}"));
    sum_matching(&text, name, labels)
}

impl Drop for SettledCheck {
    fn drop(&mut self) {
        if std::thread::panicking() || self.skipped.load(Ordering::SeqCst) {
            // A failed test's own message is the one that matters.
            return;
        }
        // Dropped inside the test's runtime, which cannot run this: a thread of its own.
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?
                        .block_on(self.check())
                })
                .join()
                .unwrap_or_else(|_| Err("the check panicked".to_owned()))
        });
        if let Err(problem) = outcome {
            panic!("the test left its service unsettled: {problem}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_one_metric_are_summed_and_others_ignored() {
        let text = "# HELP shop_events_dead_lettered_total x\n\
                    shop_events_dead_lettered_total{consumer=\"a\",event_type=\"t\"} 2\n\
                    shop_events_dead_lettered_total{consumer=\"b\",event_type=\"t\"} 1\n\
                    shop_events_dead_lettered_total_other 7\n";
        assert_eq!(sum_of(text, "shop_events_dead_lettered_total"), 3.0);
        assert_eq!(sum_of("", "shop_events_dead_lettered_total"), 0.0);
        assert_eq!(
            sum_matching(
                text,
                "shop_events_dead_lettered_total",
                &[("consumer", "b")]
            ),
            1.0
        );
    }
}
