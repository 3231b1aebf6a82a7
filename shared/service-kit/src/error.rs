//! The one mapping from errors to HTTP responses: RFC 9457 `application/problem+json`.
//!
//! Handlers return `Result<_, ApiError>`. Each service keeps its own domain error enum and
//! converts it into an `ApiError` in one `From` impl, so the status code of every failure
//! is decided in one place per service and rendered in one place for all of them.
//! Internal errors answer an opaque 500; their cause chain goes to the log, tagged with the
//! request id, never to the client.

use std::{collections::BTreeMap, fmt, time::Duration};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{StatusCode, header},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI reference that identifies the kind of problem; stable, so clients may switch
    /// on it. Documented in `docs/errors.md`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub problem_type: String,
    #[schema(example = "Invalid request")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Per-field messages, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

/// Field-level validation messages, collected so that a client learns about every invalid
/// field in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// Keeps the value of a successful parse; records the message of a failed one.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self))
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

/// Every way a request can fail, by HTTP meaning.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be read (malformed JSON, bad query string).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that do not verify.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the request conflicts with the current state (duplicate, not enough stock, ...).
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// 422 with per-field messages.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 422 without a single field to blame (e.g. an idempotency key reused for another body).
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`.
    #[error("too many requests")]
    TooManyRequests { retry_after: Duration },
    /// 503 with `Retry-After`: a dependency is down; the client may try again.
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// 500: a bug or an unexpected failure. The client sees no detail.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable {
            detail: detail.into(),
            retry_after: Duration::from_secs(5),
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = FieldErrors::new();
        errors.add(field, message);
        Self::Validation(errors)
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("bad-request", "Malformed request"),
            Self::Unauthorized(_) => ("unauthorized", "Authentication required"),
            Self::Forbidden(_) => ("forbidden", "Not allowed"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::Conflict(_) => ("conflict", "Conflict with the current state"),
            Self::PayloadTooLarge => ("payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            Self::Validation(_) => ("validation", "Invalid request"),
            Self::Unprocessable(_) => ("unprocessable", "Request cannot be processed"),
            Self::TooManyRequests { .. } => ("rate-limited", "Too many requests"),
            Self::Unavailable { .. } => ("unavailable", "Service temporarily unavailable"),
            Self::Internal(_) => ("internal", "Internal server error"),
        }
    }

    /// The problem document a client sees.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let detail = match self {
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::UnsupportedMediaType(d)
            | Self::Unprocessable(d) => Some(d.clone()),
            Self::Unavailable { detail, .. } => Some(detail.clone()),
            Self::PayloadTooLarge => Some("The request body exceeds the size limit.".to_owned()),
            Self::Validation(_) => Some("One or more fields are invalid.".to_owned()),
            Self::TooManyRequests { .. } => {
                Some("Slow down and retry after the time in Retry-After.".to_owned())
            }
            Self::Internal(_) => None,
        };
        Problem {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail,
            errors: match self {
                Self::Validation(errors) => Some(errors.0.clone()),
                _ => None,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            // `{:#}` prints the whole context chain on one line.
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed")
            }
            Self::Unavailable { detail, .. } => tracing::warn!(%detail, "dependency unavailable"),
            other => tracing::info!(error = %other, "request rejected"),
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE));
        match self {
            Self::TooManyRequests { retry_after } | Self::Unavailable { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.as_secs().max(1)));
            }
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(self.problem())
    }
}

impl From<anyhow::Error> for ApiError {
    /// An error with context may still be "the database is down" underneath; that is a
    /// 503 the client can retry, not a 500.
    fn from(error: anyhow::Error) -> Self {
        let database_down = error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(is_unavailable);
        if database_down {
            tracing::warn!(error = format!("{error:#}"), "database unavailable");
            return Self::unavailable("The database is not reachable; try again shortly.");
        }
        Self::Internal(error)
    }
}

impl From<sqlx::Error> for ApiError {
    /// Pool exhaustion and lost connections are a dependency being down (503); anything
    /// else from the database is unexpected (500). Constraint violations that mean a 409
    /// are recognised by the service, which knows its constraints.
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            tracing::warn!(error = %error, "database unavailable");
            return Self::unavailable("The database is not reachable; try again shortly.");
        }
        Self::Internal(anyhow::Error::new(error).context("database error"))
    }
}

/// Errors that mean "the database is not there right now" rather than "this query is
/// wrong": the same faults that make a consumer pause (`events::fault`: the pool exhausted
/// or closed, the network or the protocol stream broken, the server refusing connections,
/// shutting down or read-only after a fail-over, a deadlock), and a database that does not
/// exist (`3D000`). One classifier for both, so a fault is a 503 here and a pause there.
fn is_unavailable(error: &sqlx::Error) -> bool {
    crate::events::fault::is_infrastructure(error)
        || matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

/// JSON body errors, as problem+json: 415 for a missing or wrong content type, 413 for an
/// oversize body, 400 for malformed JSON and 422 for well-formed JSON of the wrong shape.
pub fn json_error_handler(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api_error = match &error {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "Send the body as JSON with `Content-Type: application/json`.".to_owned(),
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::Unprocessable(format!(
            "The JSON body does not match the schema: {}",
            in_json_terms(&e.to_string())
        )),
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!(
            "The body is not valid JSON: {}",
            in_json_terms(&e.to_string())
        )),
        _ => ApiError::BadRequest("The request body could not be read.".to_owned()),
    };
    api_error.into()
}

pub fn query_error_handler(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let reason = match &error {
        QueryPayloadError::Deserialize(e) => in_json_terms(&e.to_string()),
        _ => "it cannot be read".to_owned(),
    };
    ApiError::BadRequest(format!("Invalid query string: {reason}")).into()
}

/// A path segment that does not parse (e.g. an id that is not a UUID) names no resource.
/// Which parser refused it, and why, is of no use to the client.
pub fn path_error_handler(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    tracing::debug!(%error, "path segment refused");
    ApiError::NotFound("No such resource: the path holds an id that is not valid.".to_owned())
        .into()
}

/// A deserializer's message in the terms of the API's JSON schema instead of Rust's:
/// `expected i64` reads `expected an integer`, `expected struct PlaceOrder` reads
/// `expected an object`, and so on. Field names, positions and allowed values are kept.
fn in_json_terms(message: &str) -> String {
    const TERMS: [(&str, &str); 17] = [
        ("expected i8", "expected an integer"),
        ("expected i16", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected u8", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected bool", "expected true or false"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("expected a borrowed string", "expected a string"),
        ("expected a UUID", "expected a UUID string"),
    ];
    let mut text = message.to_owned();
    // `expected struct PlaceOrder`, `expected enum Role`: the Rust type's name goes.
    for (rust, json) in [
        ("expected struct ", "expected an object"),
        ("expected enum ", "expected a string"),
    ] {
        while let Some(at) = text.find(rust) {
            let name_end = text[at + rust.len()..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(text.len(), |end| at + rust.len() + end);
            text.replace_range(at..name_end, json);
        }
    }
    for (rust, json) in TERMS {
        // Whole words only: `expected i64` but not `expected i640`.
        let mut from = 0;
        while let Some(found) = text[from..].find(rust) {
            let at = from + found;
            let end = at + rust.len();
            if text[end..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                from = end;
                continue;
            }
            text.replace_range(at..end, json);
            from = at + json.len();
        }
    }
    text
}

/// The answer for routes that do not exist.
pub async fn route_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(
        "No route matches this method and path.".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializer_messages_speak_json_not_rust() {
        let typed = serde_json::from_str::<i64>("\"x\"")
            .unwrap_err()
            .to_string();
        assert!(typed.contains("expected i64"), "{typed}");
        assert_eq!(
            in_json_terms(&typed),
            typed.replace("expected i64", "expected an integer")
        );
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct PlaceOrder {
            items: Vec<u32>,
        }
        let shaped = serde_json::from_str::<PlaceOrder>("\"x\"")
            .unwrap_err()
            .to_string();
        let public = in_json_terms(&shaped);
        assert!(!public.contains("PlaceOrder"), "{public}");
        assert!(public.contains("expected an object"), "{public}");
        let nested = serde_json::from_str::<PlaceOrder>(r#"{"items": [true]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            in_json_terms(&nested).contains("expected a non-negative integer"),
            "{nested}"
        );
        assert_eq!(in_json_terms("expected i640"), "expected i640");
        assert_eq!(
            in_json_terms("missing field `items`"),
            "missing field `items`"
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let error = ApiError::Internal(anyhow::anyhow!("password=hunter2 in connection string"));
        let problem = error.problem();
        assert_eq!(problem.status, 500);
        assert!(problem.detail.is_none());
        let body = serde_json::to_string(&problem).expect("serialisable");
        assert!(!body.contains("hunter2"));
    }

    #[test]
    fn validation_problems_list_every_field() {
        let mut errors = FieldErrors::new();
        let email: Option<i32> = errors.check("email", Err::<i32, _>("must be an e-mail"));
        assert!(email.is_none());
        errors.add("password", "too short");
        let problem = ApiError::from(errors).problem();
        assert_eq!(problem.status, 422);
        let fields = problem.errors.expect("field errors");
        assert_eq!(fields["email"], vec!["must be an e-mail"]);
        assert_eq!(fields["password"], vec!["too short"]);
    }

    #[test]
    fn retry_after_is_set_on_503_and_429() {
        for error in [
            ApiError::unavailable("down"),
            ApiError::TooManyRequests {
                retry_after: Duration::from_millis(200),
            },
        ] {
            let response = error.error_response();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            assert!(matches!(retry_after, Some(n) if n >= 1), "{error}");
            assert_eq!(
                response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .map(|v| v.as_bytes()),
                Some(PROBLEM_CONTENT_TYPE.as_bytes())
            );
        }
    }
}
