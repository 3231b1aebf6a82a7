//! user-service stopped: the other services keep accepting valid tokens, without delay,
//! from the keys they already know, and tokens naming made-up key ids cause no storm of
//! key-set fetches (counted on `/metrics`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Mode, Service, Stack};
use test_kit::tokens;

/// Key-set fetches `service` attempted so far.
async fn fetches(stack: &Stack, service: Service) -> f64 {
    let ok = stack
        .metric(service, "shop_jwks_fetches_total", &[("outcome", "ok")])
        .await;
    let failed = stack
        .metric(service, "shop_jwks_fetches_total", &[("outcome", "error")])
        .await;
    ok + failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_user_service_stopped_valid_tokens_work_at_once_and_unknown_key_ids_fetch_nothing() {
    let mut stack = Stack::start(Mode::Kafka, "user_service_outage").await;
    // Every service verifies a token once, so each holds the keys.
    let customer = stack.customer().await;
    let product = stack.create_product(100, 1_000).await;
    stack.place_order(&customer, &[(&product, 1)]).await;

    stack.kill(Service::User);
    let before = fetches(&stack, Service::Payment).await;
    assert!(before >= 1.0, "payment-service counts its key-set fetches");

    let wallet = format!(
        "{}/api/v1/wallets/me",
        stack.api(Service::Payment).base_url()
    );
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let start = Instant::now();
        let status = http
            .get(&wallet)
            .bearer_auth(&customer.token)
            .send()
            .await
            .expect("answered")
            .status();
        slowest = slowest.max(start.elapsed());
        assert_eq!(status, 200);
    }
    // A request that waited for a fetch would wait for its timeout (3 s).
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest took {slowest:?}"
    );
    let order = stack.place_order(&customer, &[(&product, 1)]).await;
    assert_eq!(order.items.len(), 1);

    let start = Instant::now();
    for _ in 0..200 {
        let status = http
            .get(&wallet)
            .bearer_auth(tokens::unknown_key_id())
            .send()
            .await
            .expect("answered")
            .status()
            .as_u16();
        assert!(status == 401 || status == 503, "answered {status}");
    }
    let took = start.elapsed();

    let fetched = fetches(&stack, Service::Payment).await - before;
    assert!(
        fetched <= 2.0,
        "{fetched} key-set fetches for 200 unknown key ids"
    );
    assert!(took < Duration::from_secs(5), "200 refusals took {took:?}");
}
