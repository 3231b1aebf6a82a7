//! inventory-service: the product catalog, the stock of each product, and the stock
//! reservations of the order saga.

mod demo;
mod domain;
mod error;
mod repository;
mod routes;
mod saga;
mod settings;
mod startup;

pub use demo::seed_demo_catalog;
pub use saga::InventorySaga;
pub use settings::Settings;
pub use startup::{API_INFO, Application, MIGRATOR, openapi};
