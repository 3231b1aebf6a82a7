//! Wires the service together on the shared runtime: database, event bus (outbox relay and the
//! saga consumer), the inventory client, token verification, HTTP server.

use actix_web::web;
use service_kit::client::ServiceClient;
use service_kit::{
    auth::Authenticator,
    http::{self, ApiInfo},
    runtime::{RunningService, ServiceRuntime},
};

use crate::{Settings, inventory::InventoryClient, metrics::OrderMetrics, routes, saga::OrderSaga};

pub const API_INFO: ApiInfo = ApiInfo {
    service: "order-service",
    title: "order-service",
    description: "Orders: placing (priced from the catalog), reading and cancelling.",
    version: env!("CARGO_PKG_VERSION"),
};

/// The embedded migrations, applied at start-up (and by tests that use the database
/// without the HTTP server).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The OpenAPI document of this service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    http::openapi(&API_INFO, routes::configure)
}

/// The running service: `build` it from settings, then `run_until_stopped`.
pub struct Application(RunningService);

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let mut runtime = ServiceRuntime::start(
            &API_INFO,
            &settings.http,
            &settings.database,
            &MIGRATOR,
            &settings.events,
        )
        .await?;
        let metrics = OrderMetrics::register(runtime.metrics())?;
        runtime.consume(OrderSaga {
            metrics: metrics.clone(),
        })?;
        let metrics = web::Data::new(metrics);
        let inventory = web::Data::new(InventoryClient::new(
            ServiceClient::new("inventory-service", settings.inventory.clone())?
                .with_metrics(runtime.metrics())?,
        ));
        let authenticator = Authenticator::remote(&settings.auth)?;
        runtime
            .serve(
                &settings.http,
                routes::configure,
                authenticator,
                move |cfg| {
                    cfg.app_data(inventory.clone());
                    cfg.app_data(metrics.clone());
                },
            )
            .map(Self)
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.0.run_until_stopped().await
    }
}
