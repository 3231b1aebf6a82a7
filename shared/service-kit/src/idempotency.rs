//! The `Idempotency-Key` request header, parsed once for every service that takes one
//! (`POST /orders`, admin wallet credits): 1 to 255 visible ASCII characters, surrounding
//! spaces ignored. A header that is present but malformed is refused with 400, never
//! silently treated as absent, or a client would believe its retries safe when they are not.
//!
//! Take it as `Result<IdempotencyKey, ApiError>` and apply `?` in the handler's body. Actix
//! polls a handler's extractors together, and this one is ready at once, so taken bare its
//! 400 would answer before the (asynchronous) token check: a caller with no token would
//! learn about the header instead of getting the 401 that every protected route owes it.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload};

use crate::error::ApiError;

pub const HEADER: &str = "Idempotency-Key";

/// The request's `Idempotency-Key`, if it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(request).map(Self))
    }
}

fn parse(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(HEADER) else {
        return Ok(None);
    };
    let invalid = |reason: &str| ApiError::BadRequest(format!("invalid {HEADER} header: {reason}"));
    let value = value
        .to_str()
        .map_err(|_| invalid("must be visible ASCII"))?
        .trim();
    if value.is_empty() || value.len() > 255 {
        return Err(invalid("must be 1 to 255 characters"));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn key(value: Option<&str>) -> Result<Option<String>, String> {
        let mut request = TestRequest::default();
        if let Some(value) = value {
            request = request.insert_header((HEADER, value));
        }
        parse(&request.to_http_request()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_key_is_taken_trimmed_and_its_absence_is_none() {
        assert_eq!(key(None), Ok(None));
        assert_eq!(key(Some("  abc-123 ")), Ok(Some("abc-123".to_owned())));
        assert_eq!(key(Some(&"k".repeat(255))), Ok(Some("k".repeat(255))));
    }

    #[test]
    fn an_empty_or_oversize_key_is_refused() {
        assert!(key(Some("   ")).is_err());
        assert!(key(Some(&"k".repeat(256))).is_err());
    }
}
