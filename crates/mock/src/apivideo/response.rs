//! The two kinds of answer the mock gives: JSON documents and RFC 9457 problems.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::server::MockBody;
use serde::{Serialize, Serializer};

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// A problem in api.video's shape: `type`, `title`, `status`, optional `name` and `detail`.
#[derive(Serialize)]
pub(super) struct ProblemJson {
    #[serde(rename = "type")]
    type_uri: &'static str,
    title: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    #[serde(serialize_with = "status_number")]
    status: StatusCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl ProblemJson {
    pub(super) fn new(status: StatusCode, type_uri: &'static str, title: &'static str) -> Self {
        Self {
            type_uri,
            title,
            name: None,
            status,
            detail: None,
        }
    }

    /// A problem for a status api.video documents no body for: the reason phrase as title.
    pub(super) fn generic(status: StatusCode) -> Self {
        Self::new(
            status,
            "about:blank",
            status.canonical_reason().unwrap_or("Error"),
        )
    }

    /// The parameter or attribute at fault (api.video sends `""` when there is none).
    pub(super) fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    pub(super) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(super) fn payload_invalid() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "https://docs.api.video/reference/invalid-payload",
            "The payload is invalid.",
        )
    }

    pub(super) fn attribute_required(name: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "https://docs.api.video/reference/attribute-required",
            "This attribute is required.",
        )
        .name(name)
    }

    pub(super) fn attribute_invalid() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "https://docs.api.video/reference/invalid-attribute",
            "An attribute is invalid.",
        )
    }

    pub(super) fn into_response(self) -> Response<MockBody> {
        with_body(self.status, PROBLEM_JSON, to_vec(&self))
    }
}

/// A JSON document with this status.
pub(super) fn json(status: StatusCode, value: &impl Serialize) -> Response<MockBody> {
    with_body(status, JSON, to_vec(value))
}

/// A body that claims to be JSON and is not, for injected faults.
pub(super) fn broken_json() -> Response<MockBody> {
    with_body(
        StatusCode::OK,
        JSON,
        br#"{"token_type":"Bearer","expires_in":36"#.to_vec(),
    )
}

fn with_body(status: StatusCode, content_type: HeaderValue, body: Vec<u8>) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

fn status_number<S: Serializer>(status: &StatusCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    // Only the mock's own plain structs are serialized here: they have no map with
    // non-string keys and no failing `Serialize` impl, so this cannot fail.
    serde_json::to_vec(value).expect("the mock's response types always serialize")
}
