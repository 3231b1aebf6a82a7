//! The few commands a service binary understands besides serving.

/// What the binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// No argument: run the service.
    Serve,
    /// `openapi`: print the OpenAPI document and exit (`make openapi`).
    OpenApi,
    /// `replay-dead-letters`: republish the dead letters to their topics and exit.
    ReplayDeadLetters,
    /// `healthcheck`: exit 0 if this service, running on `HTTP_ADDR`, is ready. For
    /// container healthchecks in images that have no shell or curl.
    Healthcheck,
    /// Any other word: a service-specific command (e.g. inventory's `seed-demo`).
    Other(String),
}

impl Command {
    pub fn from_args() -> anyhow::Result<Self> {
        let mut args = std::env::args().skip(1);
        let command = match args.next().as_deref() {
            None | Some("serve") => Self::Serve,
            Some("openapi") => Self::OpenApi,
            Some("replay-dead-letters") => Self::ReplayDeadLetters,
            Some("healthcheck") => Self::Healthcheck,
            Some(other) => Self::Other(other.to_owned()),
        };
        if let Some(extra) = args.next() {
            anyhow::bail!("unexpected argument `{extra}`");
        }
        Ok(command)
    }
}

/// The answer to a command the binary does not know.
pub fn unknown(command: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "unknown command `{command}`; expected `serve`, `openapi` or `replay-dead-letters`"
    )
}

/// Prints the document as pretty JSON, the form committed under `docs/openapi/`.
pub fn print_openapi(document: &utoipa::openapi::OpenApi) -> anyhow::Result<()> {
    use std::io::Write;
    let json = document.to_pretty_json()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")?;
    Ok(())
}

/// Republishes every dead letter to its original topic (see `docs/patterns/dead-letters.md`)
/// and reports how many.
pub async fn replay_dead_letters(
    source: &crate::config::ConfigSource,
    client_id: &str,
) -> anyhow::Result<()> {
    use std::io::Write;
    let settings = crate::events::EventBusSettings::from_source(source)?;
    let bus = crate::events::EventBus::connect(&settings, client_id).await?;
    let replayed =
        crate::events::dead_letters::replay(&bus, std::time::Duration::from_secs(5)).await?;
    writeln!(std::io::stdout().lock(), "replayed {replayed} dead letters")?;
    Ok(())
}

/// Asks the service listening on `addr` (its `HTTP_ADDR`) for `/health/ready`; an error
/// unless it answers 200 within 3 seconds.
pub async fn healthcheck(addr: &str) -> anyhow::Result<()> {
    let port = addr
        .rsplit_once(':')
        .map(|(_, port)| port)
        .ok_or_else(|| anyhow::anyhow!("HTTP_ADDR has no port: {addr}"))?;
    let status = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await?
        .status();
    anyhow::ensure!(status.is_success(), "not ready: {status}");
    Ok(())
}
