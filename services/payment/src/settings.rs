//! payment-service configuration. Every value has a default that works for a local run.

use service_kit::{
    config::{AuthSettings, ConfigError, ConfigSource, DatabaseSettings, HttpSettings},
    events::EventBusSettings,
    telemetry::TelemetrySettings,
};
use shop_model::Cents;

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    /// `WALLET_INITIAL_CREDIT_CENTS` (default 100000, i.e. 1000.00 USD): the balance a new
    /// wallet starts with, so that a demo customer can place orders right away. 0 opens
    /// wallets empty.
    pub wallet_initial_credit: Cents,
    /// `EVENT_BUS`, `KAFKA_BROKERS`, `AMQP_URL`, ...
    pub events: EventBusSettings,
}

const WALLET_INITIAL_CREDIT_CENTS: &str = "WALLET_INITIAL_CREDIT_CENTS";

impl Settings {
    pub fn from_source(source: &ConfigSource) -> Result<Self, ConfigError> {
        let initial_credit = source.parse(WALLET_INITIAL_CREDIT_CENTS, 100_000_i64)?;
        Ok(Self {
            http: HttpSettings::from_source(source, "0.0.0.0:8083")?,
            database: DatabaseSettings::from_source(
                source,
                "postgres://postgres@127.0.0.1:5432/payments",
            )?,
            telemetry: TelemetrySettings::from_source(source)?,
            auth: AuthSettings::from_source(source)?,
            wallet_initial_credit: Cents::new(initial_credit).map_err(|e| {
                ConfigError::Invalid {
                    key: WALLET_INITIAL_CREDIT_CENTS.to_owned(),
                    reason: e.to_string(),
                }
            })?,
            events: EventBusSettings::from_source(source)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_source(&ConfigSource::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_give_a_local_service_on_port_8083() {
        let settings = settings(&[]).expect("valid");

        assert_eq!(settings.http.addr, "0.0.0.0:8083");
        assert_eq!(settings.wallet_initial_credit.get(), 100_000);
        assert_eq!(settings.events.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            settings.auth.jwks_url.as_str(),
            "http://127.0.0.1:8081/.well-known/jwks.json"
        );
    }

    #[test]
    fn the_initial_credit_is_read_from_the_environment() {
        let settings = settings(&[(WALLET_INITIAL_CREDIT_CENTS, "2500")]).expect("valid");

        assert_eq!(settings.wallet_initial_credit.get(), 2500);
    }

    #[test]
    fn an_invalid_initial_credit_is_an_error_naming_the_variable() {
        for raw in ["-1", "ten dollars", "1.5"] {
            let error = settings(&[(WALLET_INITIAL_CREDIT_CENTS, raw)]).expect_err(raw);

            assert!(
                error.to_string().contains(WALLET_INITIAL_CREDIT_CENTS),
                "{error}"
            );
        }
    }
}
