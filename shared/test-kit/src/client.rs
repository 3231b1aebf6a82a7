//! An HTTP client for black-box tests that checks the rules every response must follow.

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::{Serialize, de::DeserializeOwned};
use service_kit::Problem;

#[derive(Clone)]
pub struct ApiClient {
    base_url: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(port: u16) -> Self {
        Self::with_base_url(format!("http://127.0.0.1:{port}"))
    }

    pub fn with_base_url(base_url: String) -> Self {
        Self {
            base_url,
            http: reqwest::Client::new(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn request(&self, method: Method, path: &str) -> Call {
        Call {
            builder: self
                .http
                .request(method, format!("{}{path}", self.base_url)),
            path: path.to_owned(),
        }
    }

    pub fn get(&self, path: &str) -> Call {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call {
        self.request(Method::POST, path)
    }
}

pub struct Call {
    builder: reqwest::RequestBuilder,
    path: String,
}

impl Call {
    pub fn bearer(self, token: &str) -> Self {
        Self {
            builder: self.builder.bearer_auth(token),
            ..self
        }
    }

    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        Self {
            builder: self.builder.json(body),
            ..self
        }
    }

    /// A raw body with an explicit content type (malformed JSON, wrong types, ...).
    pub fn raw(self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        Self {
            builder: self
                .builder
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
            ..self
        }
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self {
            builder: self.builder.header(name, value),
            ..self
        }
    }

    /// Sends the request and checks that the answer is not a 500 and that any error is
    /// problem+json (health reports excepted: their 503 body is the report itself).
    pub async fn send(self) -> TestResponse {
        let response = self
            .builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("reading the body failed: {e}"))
            .to_vec();
        let response = TestResponse {
            status,
            headers,
            body,
        };
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected 500: {}",
            response.text()
        );
        let is_health = self.path.starts_with("/health/");
        if (status.is_client_error() || status.is_server_error()) && !is_health {
            assert_eq!(
                response.header("content-type").as_deref(),
                Some(service_kit::error::PROBLEM_CONTENT_TYPE),
                "error {status} is not problem+json: {}",
                response.text()
            );
        }
        response
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as `T`; fails the test if it does not decode.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body does not decode ({e}): {}", self.text()))
    }

    /// The problem document of an error response.
    pub fn problem(&self) -> Problem {
        self.json()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
}
