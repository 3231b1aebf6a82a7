//! inventory-service configuration. Every value has a default that works for a local run.

use service_kit::{
    config::{AuthSettings, ConfigError, ConfigSource, DatabaseSettings, HttpSettings},
    events::EventBusSettings,
    telemetry::TelemetrySettings,
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// `HTTP_ADDR` (default `0.0.0.0:8084`) and the other `HTTP_*` values.
    pub http: HttpSettings,
    /// `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/inventory`).
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    /// `USER_SERVICE_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`: whose tokens to trust.
    pub auth: AuthSettings,
    /// `EVENT_BUS`, `KAFKA_BROKERS`, `AMQP_URL`, ...: where the saga's events travel.
    pub events: EventBusSettings,
}

impl Settings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpSettings::from_source(source, "0.0.0.0:8084")?,
            database: DatabaseSettings::from_source(
                source,
                "postgres://postgres@127.0.0.1:5432/inventory",
            )?,
            telemetry: TelemetrySettings::from_source(source)?,
            auth: AuthSettings::from_source(source)?,
            events: EventBusSettings::from_source(source)?,
        })
    }
}
