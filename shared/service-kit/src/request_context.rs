//! The identity of a request as it crosses services: its request id (accepted from the
//! caller's `x-request-id` or generated) and the W3C `traceparent` it arrived with.
//!
//! Handlers that call another service take a [`RequestContext`] and hand it to the
//! [`crate::client::ServiceClient`], which forwards both headers, so one id ties together
//! the log lines of every service a request touched.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

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

/// A syntactically valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(String);

impl TraceParent {
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        let hex = |s: &str, len: usize| s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit());
        match parts.as_slice() {
            [version, trace_id, span_id, flags]
                if hex(version, 2)
                    && *version != "ff"
                    && hex(trace_id, 32)
                    && hex(span_id, 16)
                    && hex(flags, 2)
                    && trace_id.chars().any(|c| c != '0')
                    && span_id.chars().any(|c| c != '0') =>
            {
                Some(Self(value.trim().to_lowercase()))
            }
            _ => None,
        }
    }

    /// A new trace, for a request that arrived without one: every request then has a
    /// trace id that its log lines and the events it causes carry.
    pub fn new_root() -> Self {
        let trace_id = fastrand::u128(1..);
        let span_id = fastrand::u64(1..);
        Self(format!("00-{trace_id:032x}-{span_id:016x}-01"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits that identify the trace.
    pub fn trace_id(&self) -> &str {
        self.0.get(3..35).unwrap_or_default()
    }
}

/// What a handler passes on when it calls another service.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: RequestId,
    pub traceparent: Option<TraceParent>,
}

impl RequestContext {
    /// For work that does not start from an HTTP request (start-up tasks, consumers).
    pub fn detached() -> Self {
        Self {
            request_id: RequestId::from_header_or_new(None),
            traceparent: None,
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
            traceparent: extensions.get::<TraceParent>().cloned(),
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

    #[test]
    fn a_new_root_trace_is_valid() {
        let root = TraceParent::new_root();
        assert_eq!(TraceParent::parse(root.as_str()), Some(root.clone()));
        assert_eq!(root.trace_id().len(), 32);
    }

    #[test]
    fn traceparent_is_validated() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceParent::parse(valid).map(|t| t.0),
            Some(valid.to_owned())
        );
        for invalid in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(invalid).is_none(), "{invalid}");
        }
    }
}
