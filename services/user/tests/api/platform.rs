//! The behaviour every service gets from the shared kit, checked once here end to end:
//! health, metrics, request ids, API documentation, unknown routes, rate limiting, and
//! what happens when the database goes away.

use secrecy::ExposeSecret;
use sqlx::{Connection, Executor};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn liveness_and_readiness_answer_200_when_the_database_is_up() {
    let app = spawn_app().await;

    app.api.get("/health/live").send().await.assert_status(200);
    let ready = app.api.get("/health/ready").send().await;

    ready.assert_status(200);
    let report: serde_json::Value = ready.json();
    assert_eq!(report["checks"]["database"], "up");
    assert_eq!(report["checks"]["broker"], "up");
}

#[tokio::test]
async fn without_its_broker_the_service_stays_ready_reports_it_and_still_serves() {
    let app = spawn_app().await;
    app.settled.skip(); // the broker stays away: the registration's event cannot leave
    let broker_up = || {
        test_kit::metric(
            app.api.base_url(),
            "shop_dependency_up",
            &[("dependency", "broker")],
        )
    };
    assert_eq!(broker_up().await, 1.0);
    app.broker.set_up(false);

    // The outbox keeps accepting work while the broker is away, so the service stays in
    // rotation: the database decides readiness, the broker is only reported.
    let ready = app.api.get("/health/ready").send().await;
    ready.assert_status(200);
    let report: serde_json::Value = ready.json();
    assert_eq!(report["status"], "up");
    assert_eq!(report["checks"]["broker"], "down");
    assert_eq!(report["checks"]["database"], "up");
    assert_eq!(broker_up().await, 0.0);

    // Requests that only need the database are still accepted; their events wait in the
    // outbox.
    app.register("hal@example.com", "password123", "Hal")
        .await
        .assert_status(201);
}

#[tokio::test]
async fn without_its_database_the_service_is_not_ready_and_answers_503() {
    let app = spawn_app().await;
    app.settled.skip(); // the database is dropped

    let url = app.database.url();
    let mut server_url = url::Url::parse(url.expose_secret()).expect("url");
    server_url.set_path("/postgres");
    let mut admin = sqlx::PgConnection::connect(server_url.as_str())
        .await
        .expect("connect");
    let drop = sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE "{}" WITH (FORCE)"#,
        app.database.name()
    ));
    admin.execute(sqlx::raw_sql(drop)).await.expect("dropped");

    let ready = app.api.get("/health/ready").send().await;
    ready.assert_status(503);
    let report: serde_json::Value = ready.json();
    assert_eq!(report["checks"]["database"], "down");

    let register = app
        .register("erin@example.com", "password123", "Erin")
        .await;
    register.assert_status(503);
    assert!(register.header("retry-after").is_some());
}

#[tokio::test]
async fn metrics_count_requests_per_route() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.api
            .get("/api/v1/users/me")
            .send()
            .await
            .assert_status(401);
    }

    let response = app.api.get("/metrics").send().await;

    response.assert_status(200);
    let text = response.text();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("shop_http_requests_total")
                && l.contains(r#"endpoint="/api/v1/users/me""#)
                && l.contains(r#"status="401""#)
        })
        .unwrap_or_else(|| panic!("no counter for /api/v1/users/me in:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(line.contains(r#"service="user-service""#), "{line}");
    assert!(text.contains("shop_http_requests_duration_seconds_bucket"));
    assert!(text.contains("process_resident_memory_bytes"));
}

#[tokio::test]
async fn a_request_id_is_returned_and_a_safe_incoming_one_is_kept() {
    let app = spawn_app().await;

    let generated = app.api.get("/health/live").send().await;
    let id = generated.header("x-request-id").expect("request id");
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let echoed = app
        .api
        .get("/health/live")
        .header("x-request-id", "trace-me-42")
        .send()
        .await;
    assert_eq!(
        echoed.header("x-request-id").as_deref(),
        Some("trace-me-42")
    );

    let error = app
        .api
        .get("/api/v1/users/me")
        .header("x-request-id", "err-1")
        .send()
        .await;
    assert_eq!(error.header("x-request-id").as_deref(), Some("err-1"));
}

#[tokio::test]
async fn unknown_routes_answer_404_problem_json() {
    let app = spawn_app().await;

    let response = app.api.get("/api/v1/nothing-here").send().await;

    response.assert_status(404);
    assert_eq!(response.problem().status, 404);
}

#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_one() {
    let app = spawn_app().await;

    let served: serde_json::Value = app.api.get("/api-docs/openapi.json").send().await.json();

    test_kit::openapi::assert_matches_committed(
        &served,
        include_str!("../../../../docs/openapi/user-service.json"),
    );
}

#[tokio::test]
async fn swagger_ui_is_served_without_a_cdn() {
    let app = spawn_app().await;

    let page = app.api.get("/swagger-ui/").send().await;
    page.assert_status(200);
    assert!(page.text().contains("swagger-ui"));
    assert!(!page.text().contains("cdn"), "assets must be compiled in");
    let bundle = app.api.get("/swagger-ui/swagger-ui-bundle.js").send().await;
    bundle.assert_status(200);
}

#[tokio::test]
async fn swagger_ui_is_found_without_the_trailing_slash() {
    let app = spawn_app().await;

    // The client follows the redirect, as a browser does.
    let page = app.api.get("/swagger-ui").send().await;

    page.assert_status(200);
    assert!(page.text().contains("swagger-ui"));
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "2")]).await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = app.api.get("/api/v1/users/me").send().await;
        if response.status == 429 {
            assert!(response.header("retry-after").is_some());
        }
        statuses.push(response.status.as_u16());
    }

    assert_eq!(&statuses[..2], &[401, 401]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    // Probes are never limited.
    app.api.get("/health/live").send().await.assert_status(200);
}

#[tokio::test]
async fn the_rate_limit_is_kept_per_user() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "1")]).await;
    let tokens = [
        test_kit::tokens::customer().1,
        test_kit::tokens::customer().1,
    ];

    // Each user has a bucket of one, although all requests come from one address: every
    // first request is served (404: these users have no account), a second one is not.
    for token in &tokens {
        app.api
            .get("/api/v1/users/me")
            .bearer(token)
            .send()
            .await
            .assert_status(404);
    }
    let again = app
        .api
        .get("/api/v1/users/me")
        .bearer(&tokens[0])
        .send()
        .await;
    again.assert_status(429);
}

#[tokio::test]
async fn metrics_show_the_database_pool_and_the_process() {
    let app = spawn_app().await;
    let base = app.api.base_url();

    // The pool has opened at least the connection the start-up used; none is held now.
    let idle = test_kit::metric(base, "shop_db_pool_connections", &[("state", "idle")]).await;
    assert!(idle >= 1.0, "idle connections: {idle}");
    let max = test_kit::metric(base, "shop_db_pool_max_connections", &[]).await;
    assert!(max >= idle, "max {max} below idle {idle}");
    let memory = test_kit::metric(base, "process_resident_memory_bytes", &[]).await;
    assert!(memory > 0.0, "resident memory: {memory}");
}
