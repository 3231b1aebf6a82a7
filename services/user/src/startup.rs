//! Wires the service together on the shared runtime: database, signing keys, the admin
//! account, event bus (outbox relay), HTTP server.

use actix_web::web;
use service_kit::{
    auth::Authenticator,
    http::{self, ApiInfo},
    runtime::{RunningService, ServiceRuntime},
};

use crate::{Settings, admin, keys, limits::Limits, passwords::Passwords, routes};

pub const API_INFO: ApiInfo = ApiInfo {
    service: "user-service",
    title: "user-service",
    description: "Accounts, login and the public keys that verify access tokens.",
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
        let issuer = web::Data::new(keys::issuer(&settings.tokens)?);
        let runtime = ServiceRuntime::start(
            &API_INFO,
            &settings.http,
            &settings.database,
            &MIGRATOR,
            &settings.events,
        )
        .await?;
        let passwords = web::Data::new(Passwords::new(&settings.passwords));
        let limits = web::Data::new(Limits::new(&settings.limits));
        if let Some(account) = &settings.admin {
            admin::ensure_admin(runtime.pool(), &passwords, account).await?;
        }
        // user-service verifies tokens with its own keys: no HTTP round trip to itself.
        let authenticator = Authenticator::with_key_set(
            issuer.jwks(),
            &settings.tokens.issuer,
            &settings.tokens.audience,
        )?;
        runtime
            .serve(
                &settings.http,
                routes::configure,
                authenticator,
                move |cfg| {
                    cfg.app_data(issuer.clone())
                        .app_data(passwords.clone())
                        .app_data(limits.clone());
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
