//! Graceful shutdown of a real service process: on SIGTERM the listener closes, requests
//! already in flight are answered, background work stops, and the process exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e_tests::{Mode, Service, Stack};
use tokio::{sync::mpsc, time::Instant};

/// How a registration of the burst ended.
enum Ended {
    Answered(u16),
    /// The connection was refused: the listener had closed, nothing was accepted.
    Refused,
    /// Anything else: the request was accepted, then cut before its answer.
    Cut(String),
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered(status) => write!(f, "answered {status}"),
            Self::Refused => write!(f, "refused"),
            Self::Cut(error) => write!(f, "cut: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_cleanly() {
    const BURST: usize = 16;
    let mut stack = Stack::start(Mode::Kafka, "graceful_shutdown").await;
    let url = format!("{}/api/v1/users", stack.api(Service::User).base_url());
    // One connection per request, never reused: a request on a pooled connection that the
    // server closes while idle would fail without ever having been in flight.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    // Registrations hash a password (tens of milliseconds each, a few at a time), so a
    // burst of them keeps the service busy for a while: once the first is answered, the
    // others have been accepted and are waiting for their turn. That is when the signal
    // goes.
    let (ended, mut endings) = mpsc::unbounded_channel();
    for i in 0..BURST {
        let (http, url, ended) = (http.clone(), url.clone(), ended.clone());
        tokio::spawn(async move {
            let result = http
                .post(&url)
                .json(&serde_json::json!({
                    "email": format!("shutdown-{i}@example.com"),
                    "password": "password123",
                    "name": "In flight"
                }))
                .send()
                .await;
            let how = match result {
                Ok(response) => Ended::Answered(response.status().as_u16()),
                Err(e) if e.is_connect() => Ended::Refused,
                Err(e) => Ended::Cut(format!("{e:?}")),
            };
            let _ = ended.send((Instant::now(), how));
        });
    }
    drop(ended);
    let first = tokio::time::timeout(Duration::from_secs(30), endings.recv())
        .await
        .expect("a first registration answered within 30 s")
        .expect("an ending");
    let signalled = Instant::now();
    let stopped = stack.terminate(Service::User);

    let (status, log) = &stopped[0];
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(
        log.contains("outbox relay stopped"),
        "background tasks were stopped: {log}"
    );
    let mut all = vec![first];
    while let Some(ending) = endings.recv().await {
        all.push(ending);
    }
    assert_eq!(all.len(), BURST);
    // A request either completed, or was never accepted; none is cut off half-way or
    // answered with a 5xx.
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, how)| !matches!(how, Ended::Answered(201) | Ended::Refused))
        .collect();
    assert!(wrong.is_empty(), "requests not answered 201: {wrong:?}");
    let answered_after_signal = all
        .iter()
        .filter(|(at, how)| *at > signalled && matches!(how, Ended::Answered(201)))
        .count();
    assert!(
        answered_after_signal > 0,
        "requests in flight at the signal were answered: {all:?}"
    );
}
