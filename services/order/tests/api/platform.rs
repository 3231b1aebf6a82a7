use crate::helpers::spawn_app_with_fake_inventory;

#[tokio::test]
async fn the_service_is_ready_when_its_database_answers() {
    let app = spawn_app_with_fake_inventory("http://127.0.0.1:9", &[]).await;

    app.api.get("/health/ready").send().await.assert_status(200);
}

#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_one() {
    let app = spawn_app_with_fake_inventory("http://127.0.0.1:9", &[]).await;

    let served: serde_json::Value = app.api.get("/api-docs/openapi.json").send().await.json();

    test_kit::openapi::assert_matches_committed(
        &served,
        include_str!("../../../../docs/openapi/order-service.json"),
    );
}
