//! The failures of user-service, and their one mapping to HTTP.

use service_kit::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    #[error("user not found")]
    NotFound,
    #[error("you may only read your own account")]
    NotYourAccount,
    /// Every password-hashing slot stayed busy for the queue timeout.
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
    /// A login or sign-up limit (`limits.rs`) was reached.
    #[error("too many attempts; retry after {retry_after:?}")]
    TooManyAttempts { retry_after: std::time::Duration },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::EmailTaken => Self::Conflict(error.to_string()),
            UserError::InvalidCredentials => Self::Unauthorized(error.to_string()),
            UserError::NotFound => Self::NotFound(error.to_string()),
            UserError::NotYourAccount => Self::Forbidden(error.to_string()),
            UserError::Busy => Self::Unavailable {
                detail: error.to_string(),
                retry_after: std::time::Duration::from_secs(1),
            },
            UserError::TooManyAttempts { retry_after } => Self::TooManyRequests { retry_after },
            UserError::Database(e) => e.into(),
            UserError::Unexpected(e) => e.into(),
        }
    }
}
