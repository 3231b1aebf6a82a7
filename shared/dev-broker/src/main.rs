//! `dev-broker`: a Kafka-protocol broker for running the services on a machine without
//! Docker or a Kafka installation.
//!
//! It is librdkafka's mock cluster (real protocol, in memory, gone when the process
//! ends) with the system's topics created, reachable at a fixed address: it listens on
//! `DEV_BROKER_ADDR` (default `127.0.0.1:9092`, the services' default `KAFKA_BROKERS`) and
//! forwards each connection to the mock cluster, whose metadata then points clients at
//! its own port on the same host. The bootstrap address is printed, and written to the
//! file named by `DEV_BROKER_ADDRESS_FILE` when set. Not for production: no persistence,
//! no security.

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use service_kit::{
    config::ConfigSource,
    events::DEAD_LETTER_TOPIC,
    telemetry::{self, TelemetrySettings},
};
use shop_model::events::topics;
use tokio::net::{TcpListener, TcpStream};

const PARTITIONS: i32 = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let source = ConfigSource::from_env()?;
    let _telemetry = telemetry::init("dev-broker", &TelemetrySettings::from_source(&source)?)?;
    let addr = source.string("DEV_BROKER_ADDR", "127.0.0.1:9092");

    let cluster = MockCluster::new(1).context("starting the mock Kafka cluster")?;
    for topic in topics::ALL.into_iter().chain([DEAD_LETTER_TOPIC]) {
        cluster
            .create_topic(topic, PARTITIONS, 1)
            .with_context(|| format!("creating topic {topic}"))?;
    }
    let upstream = cluster.bootstrap_servers();
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (set DEV_BROKER_ADDR)"))?;
    let bootstrap = listener.local_addr()?.to_string();
    tracing::info!(%bootstrap, %upstream, "dev broker ready");
    if let Some(path) = source.get("DEV_BROKER_ADDRESS_FILE") {
        std::fs::write(path, &bootstrap).with_context(|| format!("writing {path}"))?;
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "KAFKA_BROKERS={bootstrap}")?;
    }

    tokio::select! {
        result = forward(listener, upstream) => result?,
        result = shutdown_signal() => result?,
    }
    tracing::info!("dev broker stopped");
    drop(cluster);
    Ok(())
}

/// Forwards every connection to the mock cluster's bootstrap address.
async fn forward(listener: TcpListener, upstream: String) -> anyhow::Result<()> {
    loop {
        let (mut client, peer) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&upstream).await {
                Ok(mut server) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(error) => tracing::warn!(%peer, %error, "cannot reach the mock cluster"),
            }
        });
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}
