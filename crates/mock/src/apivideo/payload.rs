//! Reading JSON request bodies, and the problems a bad one earns.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::response::ProblemJson;

/// api.video's payloads are small; anything past this is a client bug, not a video.
const BODY_LIMIT: usize = 1024 * 1024;

/// The whole request body, or the problem to answer instead.
pub(super) async fn read_body(body: Incoming) -> Result<Bytes, ProblemJson> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(ProblemJson::generic(StatusCode::PAYLOAD_TOO_LARGE)
                .detail(format!("The body is larger than {BODY_LIMIT} bytes.")))
        }
        // The client broke off mid-body; it will not read this answer anyway.
        Err(_) => Err(ProblemJson::payload_invalid()),
    }
}

/// The body as a JSON object.
pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ProblemJson> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(ProblemJson::payload_invalid()),
    }
}

/// A string attribute that must be present: absent or `null` is "required", any other
/// type is "invalid".
pub(super) fn required_string<'a>(
    object: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, ProblemJson> {
    match object.get(name) {
        None | Some(Value::Null) => Err(ProblemJson::attribute_required(name)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(ProblemJson::attribute_invalid()
            .name(name)
            .detail(format!("The \"{name}\" attribute must be a string."))),
    }
}
