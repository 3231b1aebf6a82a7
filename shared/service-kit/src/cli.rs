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
    /// `outbox-parked list | retry <seq|all> | discard <seq>`: the outbox rows the broker
    /// refused for good (see `docs/patterns/outbox.md`).
    OutboxParked(ParkedAction),
    /// Any other word: a service-specific command (e.g. inventory's `seed-demo`).
    Other(String),
}

/// What `outbox-parked` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkedAction {
    List,
    /// `None`: every parked row.
    Retry(Option<i64>),
    Discard(i64),
}

impl ParkedAction {
    fn parse(args: &mut impl Iterator<Item = String>) -> anyhow::Result<Self> {
        const USAGE: &str = "usage: outbox-parked list | retry <seq|all> | discard <seq>";
        let seq = |arg: Option<String>| -> anyhow::Result<i64> {
            arg.as_deref().and_then(|a| a.parse().ok()).ok_or_else(|| {
                anyhow::anyhow!("expected a row's seq (see `outbox-parked list`); {USAGE}")
            })
        };
        match args.next().as_deref() {
            Some("list") => Ok(Self::List),
            Some("retry") => match args.next() {
                Some(all) if all == "all" => Ok(Self::Retry(None)),
                other => Ok(Self::Retry(Some(seq(other)?))),
            },
            Some("discard") => Ok(Self::Discard(seq(args.next())?)),
            _ => anyhow::bail!("{USAGE}"),
        }
    }
}

impl Command {
    pub fn from_args() -> anyhow::Result<Self> {
        let mut args = std::env::args().skip(1);
        let command = match args.next().as_deref() {
            None | Some("serve") => Self::Serve,
            Some("openapi") => Self::OpenApi,
            Some("replay-dead-letters") => Self::ReplayDeadLetters,
            Some("healthcheck") => Self::Healthcheck,
            Some("outbox-parked") => Self::OutboxParked(ParkedAction::parse(&mut args)?),
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
        "unknown command `{command}`; expected `serve`, `openapi`, `healthcheck`, \
         `replay-dead-letters` or `outbox-parked`"
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
    let report = crate::events::dead_letters::replay(&bus).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "replayed {} dead letters", report.replayed())?;
    for (topic, count) in &report.per_topic {
        writeln!(out, "  {count} to {topic}")?;
    }
    if report.replayed_before > 0 {
        writeln!(
            out,
            "  {} of them had been replayed before and failed again",
            report.replayed_before
        )?;
    }
    if report.dropped > 0 {
        writeln!(
            out,
            "  {} dropped: they did not name their topic",
            report.dropped
        )?;
    }
    Ok(())
}

/// `outbox-parked`: lists, retries or discards the outbox rows the broker refused for good.
pub async fn outbox_parked(
    database: &crate::config::DatabaseSettings,
    action: &ParkedAction,
) -> anyhow::Result<()> {
    use std::io::Write;

    use crate::events::outbox;
    let pool = crate::db::connect(database).await?;
    let mut out = std::io::stdout().lock();
    match action {
        ParkedAction::List => {
            let parked = outbox::list_parked(&pool).await?;
            for event in &parked {
                writeln!(out, "{}", serde_json::to_string(event)?)?;
            }
            writeln!(out, "{} parked", parked.len())?;
        }
        ParkedAction::Retry(seq) => {
            let count = outbox::retry_parked(&pool, *seq).await?;
            writeln!(out, "{count} put back in line for publishing")?;
        }
        ParkedAction::Discard(seq) => match outbox::discard_parked(&pool, *seq).await? {
            Some(event) => writeln!(out, "discarded {}", serde_json::to_string(&event)?)?,
            None => anyhow::bail!("no parked row with seq {seq}"),
        },
    }
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
