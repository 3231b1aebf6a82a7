//! What payment-service gets from the shared kit, checked where it depends on this
//! service: its readiness checks and its API document. (The rest is checked once, in
//! user-service's tests.)

use crate::helpers::spawn_app;

#[tokio::test]
async fn readiness_answers_200_when_the_database_and_the_broker_are_up() {
    let app = spawn_app().await;

    let ready = app.api.get("/health/ready").send().await;

    ready.assert_status(200);
    let report: serde_json::Value = ready.json();
    assert_eq!(report["checks"]["database"], "up");
    assert_eq!(report["checks"]["broker"], "up");
}

#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_one() {
    let app = spawn_app().await;

    let served: serde_json::Value = app.api.get("/api-docs/openapi.json").send().await.json();

    test_kit::openapi::assert_matches_committed(
        &served,
        include_str!("../../../../docs/openapi/payment-service.json"),
    );
}
