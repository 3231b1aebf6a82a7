//! How a verifier keeps user-service's key set, against a real HTTP server standing in for
//! user-service's `/.well-known/jwks.json`: it counts the fetches, and a test can make it
//! fail, hang or go away. What is shown: while user-service is down, tokens of known keys
//! verify with no added delay; tokens naming made-up key ids cause no fetch storm; a new
//! key is picked up and a withdrawn one dropped; keys nobody confirmed for too long are
//! dropped; the development key is refused unless allowed; the rate limiter never fetches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, test, web};
use jsonwebtoken::jwk::JwkSet;
use secrecy::SecretString;
use service_kit::{
    auth::{AuthError, Authenticator, DEV_SIGNING_KEY, TokenIssuer},
    config::{AuthSettings, JwksPolicy, RateLimitSettings},
    rate_limit::RateLimit,
};
use shop_model::{Role, UserId};
use test_kit::tokens;

/// What the stand-in user-service does with a request for the key set.
#[derive(Clone)]
enum Behaviour {
    Serve(JwkSet),
    Fail,
    /// Accepts and never answers (a user-service that hangs).
    Hang,
}

struct JwksEndpoint {
    base: url::Url,
    requests: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Behaviour>>,
    handle: ServerHandle,
}

impl JwksEndpoint {
    async fn start(keys: &[&TokenIssuer]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Mutex::new(Behaviour::Serve(key_set(keys))));
        let (count, answer) = (Arc::clone(&requests), Arc::clone(&behaviour));
        let server = HttpServer::new(move || {
            let (count, answer) = (Arc::clone(&count), Arc::clone(&answer));
            App::new().route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let behaviour = answer.lock().expect("behaviour").clone();
                    async move {
                        match behaviour {
                            Behaviour::Serve(jwks) => HttpResponse::Ok().json(jwks),
                            Behaviour::Fail => HttpResponse::InternalServerError().finish(),
                            Behaviour::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                HttpResponse::Ok().finish()
                            }
                        }
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base: url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url"),
            requests,
            behaviour,
            handle,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("behaviour") = behaviour;
    }

    /// user-service goes away: the port refuses connections from now on.
    async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn settings(&self, jwks: JwksPolicy) -> AuthSettings {
        AuthSettings {
            jwks,
            allow_dev_key: false,
            ..AuthSettings::for_tests(&self.base)
        }
    }
}

fn key_set(keys: &[&TokenIssuer]) -> JwkSet {
    JwkSet {
        keys: keys.iter().flat_map(|k| k.jwks().keys.clone()).collect(),
    }
}

/// A fresh Ed25519 key (PKCS#8 v1: the fixed 16-byte prefix and 32 random bytes), so the
/// tests never depend on the public development key unless they mean to.
fn new_key() -> TokenIssuer {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend((0..32).map(|_| fastrand::u8(..)));
    issuer(&pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

fn issuer(pem: &str) -> TokenIssuer {
    TokenIssuer::from_pem(
        &SecretString::from(pem.to_owned()),
        &[],
        service_kit::config::DEFAULT_JWT_ISSUER,
        service_kit::config::DEFAULT_JWT_AUDIENCE,
        Duration::from_secs(600),
    )
    .expect("a valid key")
}

fn token(issuer: &TokenIssuer) -> String {
    issuer
        .issue(UserId::new(), Role::Customer)
        .expect("signed")
        .token
}

/// The value of `shop_jwks_fetches_total{outcome}`.
fn fetches(registry: &prometheus::Registry, outcome: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "shop_jwks_fetches_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == "outcome" && label.value() == outcome)
        })
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

fn authenticator(
    endpoint: &JwksEndpoint,
    policy: JwksPolicy,
) -> (Authenticator, prometheus::Registry) {
    let auth = Authenticator::remote(&endpoint.settings(policy)).expect("authenticator");
    let registry = prometheus::Registry::new();
    auth.register_metrics(&registry).expect("metrics");
    (auth, registry)
}

/// A verifier of a stand-in user-service that publishes one fresh key, once it has
/// fetched it: `token` is signed by that key.
struct Verifier {
    key: TokenIssuer,
    endpoint: JwksEndpoint,
    auth: Authenticator,
    registry: prometheus::Registry,
    token: String,
}

async fn verifier(policy: JwksPolicy) -> Verifier {
    let key = new_key();
    let endpoint = JwksEndpoint::start(&[&key]).await;
    let (auth, registry) = authenticator(&endpoint, policy);
    let token = token(&key);
    auth.verify(&token)
        .await
        .expect("verifies once the keys are fetched");
    Verifier {
        key,
        endpoint,
        auth,
        registry,
        token,
    }
}

/// Refreshes every 100 ms, retries as often, fetches at most every 50 ms: a test sees
/// several refreshes a second.
fn refreshing_often() -> JwksPolicy {
    JwksPolicy {
        min_fetch_interval: Duration::from_millis(50),
        refresh_interval: Duration::from_millis(100),
        retry_interval: Duration::from_millis(100),
        ..JwksPolicy::default()
    }
}

/// `count` verifications of `token`, all of which must succeed; returns the time they took.
async fn verify_many(auth: &Authenticator, token: &str, count: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        auth.verify(token)
            .await
            .expect("a token of a known key verifies");
    }
    start.elapsed()
}

#[tokio::test]
async fn while_user_service_hangs_or_is_gone_tokens_of_known_keys_verify_without_delay() {
    let Verifier {
        endpoint,
        auth,
        registry,
        token,
        ..
    } = verifier(JwksPolicy {
        fetch_timeout: Duration::from_secs(2),
        ..refreshing_often()
    })
    .await;

    // user-service hangs: the background refresh is stuck in a fetch that takes the
    // whole timeout (2 s), and the keys, confirmed more than `refresh_interval` ago, are
    // stale. Requests are still answered from them, at once.
    endpoint.set(Behaviour::Hang);
    let before = endpoint.requests();
    test_kit::eventually(
        Duration::from_secs(10),
        "a refresh to hit the hung server",
        || async { (endpoint.requests() > before).then_some(()) },
    )
    .await;
    let took = verify_many(&auth, &token, 100).await;
    assert!(
        took < Duration::from_millis(500),
        "100 verifications took {took:?}"
    );

    // user-service is gone: refreshes fail; the known key still verifies, at once.
    endpoint.stop().await;
    let errors = fetches(&registry, "error");
    test_kit::eventually(Duration::from_secs(10), "a refresh to fail", || async {
        (fetches(&registry, "error") > errors + 1).then_some(())
    })
    .await;
    let took = verify_many(&auth, &token, 100).await;
    assert!(
        took < Duration::from_millis(500),
        "100 verifications took {took:?}"
    );
}

#[tokio::test]
async fn keys_that_no_fetch_confirmed_for_longer_than_the_limit_are_no_longer_trusted() {
    let Verifier {
        endpoint,
        auth,
        token,
        ..
    } = verifier(JwksPolicy {
        max_key_staleness: Duration::from_millis(1500),
        ..refreshing_often()
    })
    .await;
    endpoint.set(Behaviour::Fail);
    let failing_since = Instant::now();

    let result = test_kit::eventually(Duration::from_secs(10), "the key to be dropped", || async {
        auth.verify(&token).await.err()
    })
    .await;

    assert!(
        matches!(result, AuthError::KeysUnavailable { .. }),
        "{result:?}"
    );
    assert!(
        failing_since.elapsed() >= Duration::from_millis(1300),
        "dropped after {:?}, before the limit",
        failing_since.elapsed()
    );
}

#[tokio::test]
async fn two_hundred_tokens_with_random_key_ids_while_user_service_fails_cause_at_most_two_fetches()
{
    let Verifier {
        endpoint,
        auth,
        registry,
        token: known,
        ..
    } = verifier(JwksPolicy {
        min_fetch_interval: Duration::from_secs(1),
        ..JwksPolicy::default()
    })
    .await;
    endpoint.set(Behaviour::Fail);
    // Once the interval since the first fetch is over, an unknown key id makes a fetch,
    // which fails: user-service is down from here on.
    let fetched_before = endpoint.requests();
    test_kit::eventually(Duration::from_secs(10), "a failed fetch", || async {
        let _ = auth.verify(&tokens::unknown_key_id()).await;
        (endpoint.requests() > fetched_before && fetches(&registry, "error") >= 1).then_some(())
    })
    .await;
    let fetched_before = endpoint.requests();

    // One after the other, as the issue saw them queue: each would wait for its own fetch.
    let start = Instant::now();
    let mut results = Vec::new();
    for _ in 0..200 {
        results.push(auth.verify(&tokens::unknown_key_id()).await);
    }
    let took = start.elapsed();

    assert!(results.iter().all(Result::is_err));
    let fetched = endpoint.requests() - fetched_before;
    assert!(fetched <= 2, "{fetched} fetches for 200 random key ids");
    assert!(
        took < Duration::from_secs(2),
        "200 rejections took {took:?}"
    );
    assert!(fetches(&registry, "throttled") >= 190);
    // Throttled means answered at once with 503 and Retry-After, never a wait.
    for result in results {
        match result {
            Err(AuthError::KeysUnavailable { retry_after, .. }) => {
                assert!(
                    retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(10)
                )
            }
            other => panic!("expected 503 with Retry-After, got {other:?}"),
        }
    }
    // And the key already known keeps verifying, at once.
    let took = verify_many(&auth, &known, 50).await;
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[tokio::test]
async fn a_key_id_a_fetch_did_not_contain_is_rejected_without_fetching_again() {
    let Verifier { endpoint, auth, .. } = verifier(JwksPolicy {
        min_fetch_interval: Duration::ZERO,
        ..JwksPolicy::default()
    })
    .await;
    let stranger = token(&new_key());

    let first = auth.verify(&stranger).await;
    let after_first = endpoint.requests();
    let again = futures_util::future::join_all((0..50).map(|_| auth.verify(&stranger))).await;

    assert!(matches!(first, Err(AuthError::Invalid(_))), "{first:?}");
    assert!(
        again
            .iter()
            .all(|r| matches!(r, Err(AuthError::Invalid(_))))
    );
    assert_eq!(
        endpoint.requests(),
        after_first,
        "no fetch for a key id known to be absent"
    );
}

#[tokio::test]
async fn a_new_key_is_picked_up_and_a_withdrawn_key_stops_verifying() {
    let old = new_key();
    let new = new_key();
    let endpoint = JwksEndpoint::start(&[&old]).await;
    let policy = JwksPolicy {
        min_fetch_interval: Duration::from_millis(100),
        refresh_interval: Duration::from_millis(300),
        unknown_kid_ttl: Duration::from_millis(100),
        ..JwksPolicy::default()
    };
    let (auth, _) = authenticator(&endpoint, policy);
    let old_token = token(&old);
    auth.verify(&old_token).await.expect("verifies");

    // Rotation: user-service publishes the new key beside the old one and signs with it.
    endpoint.set(Behaviour::Serve(key_set(&[&new, &old])));
    let new_token = token(&new);
    test_kit::eventually(Duration::from_secs(10), "the new key to verify", || async {
        auth.verify(&new_token).await.ok()
    })
    .await;
    auth.verify(&old_token)
        .await
        .expect("the old key still verifies");

    // The old key is withdrawn: the background refresh drops it.
    endpoint.set(Behaviour::Serve(key_set(&[&new])));
    test_kit::eventually(
        Duration::from_secs(10),
        "the old key to be rejected",
        || async {
            matches!(auth.verify(&old_token).await, Err(AuthError::Invalid(_))).then_some(())
        },
    )
    .await;
    auth.verify(&new_token).await.expect("the new key verifies");
    assert!(endpoint.requests() < 40, "{} fetches", endpoint.requests());
}

#[tokio::test]
async fn a_key_set_that_publishes_the_development_key_has_it_refused_unless_allowed() {
    let dev = issuer(DEV_SIGNING_KEY);
    assert_eq!(dev.key_id(), service_kit::auth::dev_key_id());
    let real = new_key();
    let endpoint = JwksEndpoint::start(&[&dev, &real]).await;
    let (dev_token, real_token) = (token(&dev), token(&real));

    let (strict, _) = authenticator(&endpoint, JwksPolicy::default());
    let refused = strict.verify(&dev_token).await;
    assert!(matches!(refused, Err(AuthError::Invalid(_))), "{refused:?}");
    strict
        .verify(&real_token)
        .await
        .expect("the real key is used");

    let allowed = Authenticator::remote(&AuthSettings {
        allow_dev_key: true,
        ..endpoint.settings(JwksPolicy::default())
    })
    .expect("authenticator");
    allowed
        .verify(&dev_token)
        .await
        .expect("the development key is accepted with JWT_ALLOW_DEV_KEY=true");
}

#[tokio::test]
async fn the_rate_limiter_verifies_against_known_keys_only_and_never_fetches() {
    let Verifier {
        key,
        endpoint,
        auth,
        ..
    } = verifier(JwksPolicy {
        min_fetch_interval: Duration::ZERO,
        ..JwksPolicy::default()
    })
    .await;
    let auth = web::Data::new(auth);
    // From now on every fetch would fail at once, and none is throttled: a limiter that
    // fetched would show in the count.
    endpoint.set(Behaviour::Fail);
    let fetched_before = endpoint.requests();
    let limit = RateLimit::new(&RateLimitSettings {
        per_second: 1,
        burst: 1,
        trust_forwarded_for: false,
    });
    let app = test::init_service(App::new().wrap(limit).app_data(auth.clone()).route(
        "/public",
        web::get().to(|| async { HttpResponse::Ok().finish() }),
    ))
    .await;
    let call = |token: String| {
        let request = test::TestRequest::get()
            .uri("/public")
            .peer_addr("10.1.2.3:4000".parse().expect("address"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request();
        test::call_service(&app, request)
    };

    // Unverifiable tokens count against the address: one passes, the rest are limited.
    let start = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses.push(call(tokens::unknown_key_id()).await.status().as_u16());
    }
    let took = start.elapsed();
    // Tokens of a known key count against their user, even from the same address.
    let users = [
        call(token(&key)).await.status(),
        call(token(&key)).await.status(),
    ];

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1);
    assert!(statuses[1..].iter().all(|s| *s == 429));
    assert_eq!(users.map(|s| s.as_u16()), [200, 200]);
    assert_eq!(
        endpoint.requests(),
        fetched_before,
        "the rate limiter fetched"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}
