//! order-service configuration. Every value has a default that works for a local run.

use service_kit::{
    config::{
        AuthSettings, ClientSettings, ConfigError, ConfigSource, DatabaseSettings, HttpSettings,
    },
    events::EventBusSettings,
    telemetry::TelemetrySettings,
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    /// `INVENTORY_SERVICE_URL` (default `http://127.0.0.1:8084`) and the `INVENTORY_*`
    /// client settings (timeout, retries, circuit breaker).
    pub inventory: ClientSettings,
    /// `EVENT_BUS`, `KAFKA_BROKERS`, `AMQP_URL`, ...
    pub events: EventBusSettings,
}

impl Settings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpSettings::from_source(source, "0.0.0.0:8082")?,
            database: DatabaseSettings::from_source(
                source,
                "postgres://postgres@127.0.0.1:5432/orders",
            )?,
            telemetry: TelemetrySettings::from_source(source)?,
            auth: AuthSettings::from_source(source)?,
            inventory: ClientSettings::from_source(
                source,
                "INVENTORY_SERVICE_URL",
                "http://127.0.0.1:8084",
                "INVENTORY",
            )?,
            events: EventBusSettings::from_source(source)?,
        })
    }
}
