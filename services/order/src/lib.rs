//! order-service: orders, their status state machine, and the REST call to
//! inventory-service that prices them.

mod domain;
mod error;
mod inventory;
mod metrics;
mod orders;
mod repository;
mod routes;
mod saga;
mod settings;
mod startup;
pub mod status;

pub use settings::Settings;
pub use startup::{API_INFO, Application, openapi};
