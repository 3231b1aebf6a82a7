//! The failures of inventory-service, and their one mapping to HTTP.

use service_kit::ApiError;
use shop_model::Sku;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("a product with SKU {0} already exists")]
    SkuTaken(Sku),
    #[error("product not found")]
    NotFound,
    #[error("only {on_hand} units are on hand: the stock cannot fall below zero")]
    BelowZero { on_hand: i64 },
    #[error(
        "{reserved} units are reserved for orders not yet settled: the stock on hand cannot fall below that"
    )]
    BelowReserved { reserved: i32 },
    #[error("the stock on hand cannot exceed {} units", i32::MAX)]
    AboveMaximum,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::SkuTaken(_)
            | InventoryError::BelowZero { .. }
            | InventoryError::BelowReserved { .. }
            | InventoryError::AboveMaximum => Self::Conflict(error.to_string()),
            InventoryError::NotFound => Self::NotFound(error.to_string()),
            InventoryError::Database(e) => e.into(),
        }
    }
}
