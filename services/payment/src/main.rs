use payment_service::{API_INFO, Application, Settings, openapi};
use service_kit::{
    cli::{self, Command},
    config::ConfigSource,
    telemetry,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Command::from_args()?;
    if command == Command::OpenApi {
        return cli::print_openapi(&openapi());
    }
    let source = ConfigSource::from_env()?;
    let settings = Settings::from_source(&source)?;
    if command == Command::Healthcheck {
        return cli::healthcheck(&settings.http.addr).await;
    }
    let _telemetry = telemetry::init(API_INFO.service, &settings.telemetry)?;
    match command {
        Command::ReplayDeadLetters => cli::replay_dead_letters(&source, API_INFO.service).await,
        Command::OutboxParked(action) => cli::outbox_parked(&settings.database, &action).await,
        Command::Other(other) => cli::unknown(&other),
        Command::Serve | Command::OpenApi | Command::Healthcheck => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
    }
}
