//! `dev-otlp`: a trace receiver for running the services on a machine without Docker or a
//! collector (`make run` starts it). It listens for OTLP/HTTP on `DEV_OTLP_ADDR` (default
//! `127.0.0.1:4318`, the standard port) and, when `DEV_OTLP_GRPC_ADDR` is set (e.g.
//! `127.0.0.1:4317`), for OTLP/gRPC too; keeps the recent spans in memory and shows a trace
//! at `GET /traces/{trace_id}`. It prints the variable to give the services
//! (`OTEL_EXPORTER_OTLP_ENDPOINT=…`, for `http/protobuf`) and writes the endpoint to
//! `DEV_OTLP_ADDRESS_FILE` when set; nothing else, unless something fails.

use std::io::Write;

use anyhow::Context;
use dev_otlp::DevOtlp;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("DEV_OTLP_ADDR").unwrap_or_else(|_| "127.0.0.1:4318".to_owned());
    let receiver =
        match std::env::var("DEV_OTLP_GRPC_ADDR") {
            Ok(grpc) if !grpc.trim().is_empty() => DevOtlp::start_with_grpc(&addr, grpc.trim())
                .await
                .context("set DEV_OTLP_ADDR and DEV_OTLP_GRPC_ADDR to free addresses")?,
            _ => DevOtlp::start(&addr).with_context(|| format!("{addr} (set DEV_OTLP_ADDR)"))?,
        };
    let endpoint = match addr.rsplit_once(':') {
        Some((host, _)) if host != "0.0.0.0" => format!("http://{host}:{}", receiver.port()),
        _ => receiver.endpoint(),
    };
    if let Ok(path) = std::env::var("DEV_OTLP_ADDRESS_FILE") {
        std::fs::write(&path, &endpoint).with_context(|| format!("writing {path}"))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}")?;
    if let Some(grpc) = receiver.grpc_endpoint() {
        writeln!(stdout, "# with OTEL_EXPORTER_OTLP_PROTOCOL=grpc: {grpc}")?;
    }
    drop(stdout);
    wait_for_signal().await?;
    receiver.stop().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
    }
    Ok(())
}
