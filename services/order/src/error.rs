//! The failures of order-service, and their one mapping to HTTP.

use service_kit::{ApiError, FieldErrors, client::ClientError};

use crate::status::CannotCancel;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("invalid order")]
    Invalid(FieldErrors),
    #[error("order not found")]
    NotFound,
    #[error(transparent)]
    CannotCancel(#[from] CannotCancel),
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Inventory(#[from] ClientError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<FieldErrors> for OrderError {
    fn from(errors: FieldErrors) -> Self {
        Self::Invalid(errors)
    }
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Invalid(errors) => Self::Validation(errors),
            OrderError::NotFound => Self::NotFound(error.to_string()),
            OrderError::CannotCancel(e) => Self::Conflict(e.to_string()),
            OrderError::IdempotencyKeyReused => Self::Unprocessable(error.to_string()),
            OrderError::Inventory(e) => e.into(),
            OrderError::Database(e) => e.into(),
            OrderError::Unexpected(e) => e.into(),
        }
    }
}
