//! Graceful shutdown of a real service process: on SIGTERM the listener closes, requests
//! already in flight are answered, background work stops, and the process exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e_tests::{Mode, Service, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_cleanly() {
    let mut stack = Stack::start(Mode::Kafka, "graceful_shutdown").await;
    let api = stack.api(Service::User);

    // Registrations hash a password (tens of milliseconds each): start a burst, then stop
    // the service while they are being served. There is no event to wait for that says
    // "requests are in flight", so the signal follows the burst after a short pause.
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.post("/api/v1/users")
                    .json(&serde_json::json!({
                        "email": format!("shutdown-{i}@example.com"),
                        "password": "password123",
                        "name": "In flight"
                    }))
                    .send()
                    .await
                    .status
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stopped = stack.terminate(Service::User);

    let (status, log) = &stopped[0];
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(
        log.contains("outbox relay stopped"),
        "background tasks were stopped: {log}"
    );
    let mut answered = 0;
    for request in requests {
        // A request either completed before the listener closed, or was never accepted;
        // none is cut off half-way with a 5xx.
        if let Ok(status) = request.await {
            assert_eq!(status.as_u16(), 201);
            answered += 1;
        }
    }
    assert!(
        answered > 0,
        "at least the requests in flight were answered"
    );
}
