//! user-service: accounts, login, and the keys that sign and verify access tokens.

mod admin;
mod domain;
mod error;
mod keys;
mod limits;
mod passwords;
mod repository;
mod routes;
mod settings;
mod startup;

pub use settings::Settings;
pub use startup::{API_INFO, Application, openapi};
