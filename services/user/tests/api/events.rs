use std::time::Duration;

use service_kit::events::{IncomingEvent, headers};
use shop_model::{
    api::User,
    events::{Event, UserRegistered, topics},
};

use crate::helpers::{ADMIN_EMAIL, spawn_app};

#[tokio::test]
async fn registering_publishes_user_registered_through_the_outbox() {
    let app = spawn_app().await;
    let mut users = app.broker.watch(topics::USERS).await;

    let response = app
        .api
        .post("/api/v1/users")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&serde_json::json!({"email": "frank@example.com", "password": "password123", "name": "Frank"}))
        .send()
        .await;
    response.assert_status(201);
    let user: User = response.json();

    // The admin account created at start-up comes first; look for Frank's event.
    let event = loop {
        let message = users
            .next_of_type(UserRegistered::TYPE, Duration::from_secs(20))
            .await;
        let event = IncomingEvent::from_message(&message).expect("a CloudEvent");
        let data: UserRegistered = event.decode().expect("UserRegistered data");
        if data.email != ADMIN_EMAIL {
            assert_eq!(
                message.key,
                user.id.to_string(),
                "partition key = aggregate id"
            );
            assert_eq!(message.header(headers::SOURCE), Some("/user-service"));
            let traceparent = message.header(headers::TRACEPARENT).map(str::to_owned);
            break (event, data, traceparent);
        }
    };
    assert_eq!(event.1.user_id, user.id);
    assert_eq!(event.1.email, "frank@example.com");
    assert_eq!(event.0.subject, user.id.to_string());
    // The event's own (PRODUCER) span, in the request's trace.
    let traceparent = event.2.expect("the event carries its trace context");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            && !traceparent.contains("00f067aa0ba902b7"),
        "the request's trace continues in the event: {traceparent}"
    );
}

#[tokio::test]
async fn a_rejected_registration_publishes_nothing() {
    let app = spawn_app().await;
    app.register("gina@example.com", "password123", "Gina")
        .await
        .assert_status(201);

    app.register("gina@example.com", "password123", "Gina again")
        .await
        .assert_status(409);

    let mut conn = app.connect().await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = $1")
        .bind(UserRegistered::TYPE)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    // The admin account and Gina: the duplicate wrote no event.
    assert_eq!(count, 2);
}
