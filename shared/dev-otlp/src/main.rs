//! `dev-otlp`: a trace receiver for running the services on a machine without Docker or a
//! collector (`make run` starts it). It listens on `DEV_OTLP_ADDR` (default
//! `127.0.0.1:4318`, the standard OTLP/HTTP port), keeps the recent spans in memory and
//! shows a trace at `GET /traces/{trace_id}`. It prints the variable to give the services
//! (`OTEL_EXPORTER_OTLP_ENDPOINT=…`) and writes the endpoint to `DEV_OTLP_ADDRESS_FILE`
//! when set; nothing else, unless something fails.

use std::io::Write;

use anyhow::Context;
use dev_otlp::DevOtlp;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("DEV_OTLP_ADDR").unwrap_or_else(|_| "127.0.0.1:4318".to_owned());
    let receiver = DevOtlp::start(&addr).with_context(|| format!("{addr} (set DEV_OTLP_ADDR)"))?;
    let endpoint = match addr.rsplit_once(':') {
        Some((host, _)) if host != "0.0.0.0" => format!("http://{host}:{}", receiver.port()),
        _ => receiver.endpoint(),
    };
    if let Ok(path) = std::env::var("DEV_OTLP_ADDRESS_FILE") {
        std::fs::write(&path, &endpoint).with_context(|| format!("writing {path}"))?;
    }
    writeln!(
        std::io::stdout().lock(),
        "OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"
    )?;
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
