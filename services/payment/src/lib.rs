//! payment-service: a wallet per user, and the charges and refunds of orders.
//!
//! [`wallets`] holds the operations that move money. They take the caller's connection, so
//! that the event consumers can make each one part of the transaction that also records
//! the event handled and the event published. [`PaymentSaga`] is that consumer: this
//! service's steps of the order saga. Every change of a balance is a row of the
//! append-only wallet [`ledger`].

mod error;
pub mod ledger;
mod repository;
mod routes;
mod saga;
mod settings;
mod startup;
pub mod wallets;

pub use error::PaymentError;
pub use saga::PaymentSaga;
pub use settings::Settings;
pub use startup::{API_INFO, Application, MIGRATOR, openapi};
