//! The mock's answers: JSON documents, and RFC 6749 §5.2 error responses.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::server::MockBody;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// An error response: the status, the `error` code, an `error_description`.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) description: String,
    /// A failed `client_secret_basic`: 401 with `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    basic_challenge: bool,
}

impl Refusal {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }

    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(super) fn invalid_client(description: impl Into<String>) -> Self {
        Refusal::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(super) fn invalid_grant(description: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// The same refusal, answered with a `Basic` challenge.
    pub(super) fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }

    pub(super) fn into_response(self) -> Response<MockBody> {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = json_response(self.status, &body);
        if self.basic_challenge {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="mock-oauth2", charset="UTF-8""#),
            );
        }
        response
    }
}

/// A JSON document with this status; token answers are never cached (RFC 6749 §5.1).
pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A body of this content type.
pub(super) fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: &'static str,
) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
