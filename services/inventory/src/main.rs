use inventory_service::{API_INFO, Application, MIGRATOR, Settings, openapi, seed_demo_catalog};
use service_kit::{
    cli::{self, Command},
    config::ConfigSource,
    db, telemetry,
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
        Command::Serve | Command::OpenApi | Command::Healthcheck => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Command::ReplayDeadLetters => cli::replay_dead_letters(&source, API_INFO.service).await,
        Command::OutboxParked(action) => cli::outbox_parked(&settings.database, &action).await,
        // Demo data only when asked for, never as a side effect of starting the service.
        Command::Other(command) if command == "seed-demo" => {
            let pool = db::connect_and_migrate(&settings.database, &MIGRATOR).await?;
            let added = seed_demo_catalog(&pool).await?;
            tracing::info!(added, "demo catalog loaded");
            Ok(())
        }
        Command::Other(other) => anyhow::bail!(
            "unknown command `{other}`; expected `serve`, `openapi`, `replay-dead-letters` or \
             `seed-demo`"
        ),
    }
}
