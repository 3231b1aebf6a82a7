//! The identity of a request as it crosses services: its request id, accepted from the
//! caller's `x-request-id` or generated.
//!
//! Handlers that call another service take a [`RequestContext`] and hand it to the
//! [`crate::client::ServiceClient`], which forwards it, so one id ties together the log
//! lines of every service a request touched. The trace context needs no passing: it is
//! the current span's, and the client injects it ([`crate::telemetry`]).

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Accepts a caller's id if it is short and made of safe characters (it ends up in
    /// logs and headers); otherwise a new one is generated.
    pub fn from_header_or_new(header: Option<&str>) -> Self {
        match header {
            Some(value)
                if !value.is_empty()
                    && value.len() <= 128
                    && value.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
                    }) =>
            {
                Self(value.to_owned())
            }
            _ => Self(uuid::Uuid::now_v7().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a handler passes on when it calls another service.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: RequestId,
}

impl RequestContext {
    /// For work that does not start from an HTTP request (start-up tasks, consumers).
    pub fn detached() -> Self {
        Self {
            request_id: RequestId::from_header_or_new(None),
        }
    }
}

impl FromRequest for RequestContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let extensions = req.extensions();
        ready(Ok(Self {
            request_id: extensions
                .get::<RequestId>()
                .cloned()
                .unwrap_or_else(|| RequestId::from_header_or_new(None)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safe_incoming_request_id_is_kept() {
        assert_eq!(
            RequestId::from_header_or_new(Some("abc-123")).as_str(),
            "abc-123"
        );
    }

    #[test]
    fn an_unsafe_or_missing_request_id_is_replaced() {
        for header in [None, Some(""), Some("has space"), Some("line\nbreak")] {
            let id = RequestId::from_header_or_new(header);
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok(), "{header:?}");
        }
        let long = "a".repeat(129);
        assert_ne!(RequestId::from_header_or_new(Some(&long)).as_str(), long);
    }
}
