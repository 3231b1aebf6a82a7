//! TLS to every dependency, against real TLS listeners started here (test-kit's `tls`):
//! a PostgreSQL cluster with `ssl=on`, a RabbitMQ node with a TLS listener, and a TLS
//! terminator in front of the in-process Kafka broker. Certificates are made per test by a
//! CA of its own; "the wrong CA" is another such CA, which nothing here trusts.
//!
//! Each test starts its server once and walks the cases in turn (nextest runs every test
//! in a process of its own, so a server shared by several tests would start for each).

#![allow(clippy::expect_used, clippy::panic)]

use std::time::Duration;

use secrecy::SecretString;
use service_kit::{
    config::{ConfigSource, DatabaseSettings},
    db,
    events::{EventBus, EventBusSettings, Message, Subscription, headers},
};
use shop_model::events::{CONSUMERS, Event, OrderPlaced};
use test_kit::{
    TestBroker,
    tls::{TestPki, TlsPostgres, TlsRabbitMq, TlsTerminator},
};

const WAIT: Duration = Duration::from_secs(15);

fn bus_settings(pairs: &[(&str, &str)]) -> EventBusSettings {
    EventBusSettings::from_source(&ConfigSource::from_pairs(pairs.iter().copied()))
        .expect("valid event bus settings")
}

/// The full cause chain of a failed connection, which says why it failed.
fn failure<T>(result: anyhow::Result<T>) -> String {
    match result {
        Ok(_) => panic!("the connection should have been refused"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_verifies_the_server_certificate_and_host_with_verify_full() {
    let pki = TestPki::generate();
    let wrong_ca = TestPki::generate();
    let postgres = TlsPostgres::start(&pki).await;
    let connect = |url: String| async move {
        let mut settings = DatabaseSettings::for_tests(SecretString::from(url));
        settings.connect_timeout = Duration::ZERO;
        db::connect(&settings).await
    };
    let ca = format!("sslrootcert={}", pki.ca_file());

    // verify-full with the right CA: connected, and the session really is TLS.
    let pool = connect(postgres.url("127.0.0.1", &format!("sslmode=verify-full&{ca}")))
        .await
        .expect("verify-full with the server's CA connects");
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("pg_stat_ssl answers");
    assert!(tls, "the connection uses TLS");
    pool.close().await;

    // Another CA: the server's certificate does not verify.
    let message = failure(
        connect(postgres.url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={}", wrong_ca.ca_file()),
        ))
        .await,
    );
    assert!(message.contains("certificate"), "{message}");

    // The right CA, but a host the certificate does not name (the same server on
    // 127.0.0.2): verify-full refuses it, verify-ca (no host check) accepts it.
    let message =
        failure(connect(postgres.url("127.0.0.2", &format!("sslmode=verify-full&{ca}"))).await);
    assert!(message.contains("certificate"), "{message}");
    connect(postgres.url("127.0.0.2", &format!("sslmode=verify-ca&{ca}")))
        .await
        .expect("verify-ca does not check the host name")
        .close()
        .await;

    // The fixture itself: the server takes no plain connection.
    failure(connect(postgres.url("127.0.0.1", "sslmode=disable")).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rabbitmq_event_bus_publishes_and_consumes_over_amqps_with_ca_verification() {
    let pki = TestPki::generate();
    let wrong_ca = TestPki::generate();
    let rabbitmq = TlsRabbitMq::start(&pki).await;
    let url = rabbitmq.url();
    let (certificate, key) = (pki.client_certificate_file(), pki.client_key_file());
    let settings = |url: &str, ca: &str, with_client_certificate: bool| {
        let mut pairs = vec![
            ("EVENT_BUS", "rabbitmq"),
            ("AMQP_URL", url),
            ("AMQP_CA_FILE", ca),
        ];
        if with_client_certificate {
            pairs.extend([
                ("AMQP_CLIENT_CERT_FILE", certificate.as_str()),
                ("AMQP_CLIENT_KEY_FILE", key.as_str()),
            ]);
        }
        bus_settings(&pairs)
    };

    // The broker's CA and a client certificate: the bus works end to end over TLS.
    let bus = EventBus::connect(&settings(&url, &pki.ca_file(), true), "tls-test")
        .await
        .expect("connected over amqps");
    let consumer = CONSUMERS
        .iter()
        .find(|c| c.event_types.contains(&OrderPlaced::TYPE))
        .expect("a consumer of OrderPlaced");
    let subscription = Subscription {
        consumer: consumer.name.to_owned(),
        topics: vec![OrderPlaced::TOPIC],
        event_types: consumer.event_types.to_vec(),
    };
    let mut receiver = bus.subscribe(&subscription).await.expect("subscribed");
    let message = message::<OrderPlaced>();
    bus.publish(&message)
        .await
        .expect("published and confirmed");
    let delivery = tokio::time::timeout(WAIT, receiver.next())
        .await
        .expect("the message arrives")
        .expect("a delivery");
    assert_eq!(delivery.message.key, message.key);
    assert_eq!(delivery.message.payload, message.payload);
    receiver.ack(&delivery).await.expect("acknowledged");
    bus.check().await.expect("ready over amqps");

    // Another CA: the client refuses the broker's certificate.
    let message =
        failure(EventBus::connect(&settings(&url, &wrong_ca.ca_file(), true), "tls-test").await);
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // The right CA, but a host the certificate does not name (the same node on
    // 127.0.0.2): refused too.
    let renamed = rabbitmq.url_for_host("127.0.0.2");
    let message =
        failure(EventBus::connect(&settings(&renamed, &pki.ca_file(), true), "tls-test").await);
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // The broker requires a client certificate: without one, no connection. (With TLS 1.3
    // the broker judges the client's certificate after the client's side of the handshake
    // is done, so the client sees its alert or just a reset: the cause is not asserted;
    // the first case differs from this one only by the certificate.)
    failure(EventBus::connect(&settings(&url, &pki.ca_file(), false), "tls-test").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_clients_speak_tls_verify_the_broker_and_present_their_certificate() {
    let pki = TestPki::generate();
    let wrong_ca = TestPki::generate();
    let broker = TestBroker::start();
    // The in-process broker has no TLS listener: a TLS terminator in front of it, which
    // requires a client certificate signed by the CA.
    let tls = TlsTerminator::start(broker.bootstrap_servers(), pki.server_config(true)).await;
    let (certificate, key) = (pki.client_certificate_file(), pki.client_key_file());
    let settings = |ca: &str, with_client_certificate: bool| {
        let mut pairs = vec![
            ("KAFKA_BROKERS", tls.address()),
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", ca),
        ];
        if with_client_certificate {
            pairs.extend([
                ("KAFKA_SSL_CERTIFICATE_LOCATION", certificate.as_str()),
                ("KAFKA_SSL_KEY_LOCATION", key.as_str()),
            ]);
        }
        bus_settings(&pairs)
    };
    let check = |settings: EventBusSettings| async move {
        EventBus::connect(&settings, "tls-test")
            .await
            .expect("clients created")
            .check()
            .await
    };

    // The right CA and a client certificate: the broker answers over TLS.
    check(settings(&pki.ca_file(), true))
        .await
        .expect("the broker answers over TLS");
    // Another CA, or no client certificate: the handshake fails, nothing answers.
    let (wrong, anonymous) = tokio::join!(
        check(settings(&wrong_ca.ca_file(), true)),
        check(settings(&pki.ca_file(), false)),
    );
    wrong.expect_err("a broker certificate from another CA is refused");
    anonymous.expect_err("without a client certificate the broker refuses the client");
}

/// A message as the outbox relay publishes it.
fn message<E: Event>() -> Message {
    let key = uuid::Uuid::now_v7().to_string();
    let headers = [
        (headers::ID, uuid::Uuid::now_v7().to_string()),
        (headers::SOURCE, "/tls-test".to_owned()),
        (headers::TYPE, E::TYPE.to_owned()),
        (headers::SPEC_VERSION, "1.0".to_owned()),
        (headers::TIME, "2026-01-02T03:04:05Z".to_owned()),
        (headers::SUBJECT, key.clone()),
        (headers::CONTENT_TYPE, "application/json".to_owned()),
    ];
    Message {
        topic: E::TOPIC.to_owned(),
        payload: format!(r#"{{"order_id":"{key}"}}"#).into_bytes(),
        key,
        headers: headers.map(|(n, v)| (n.to_owned(), v)).into(),
    }
}
