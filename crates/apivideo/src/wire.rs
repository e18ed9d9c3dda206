//! api.video's auth endpoints on the wire: the request both grants send, and what their
//! answers mean.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::error::{ApiVideoError, Malformed, Problem};
use tower_bearer::{RetryAfter, Token};
use tower_bearer_provider::{self as http_client, Answer, ExpiresIn, Members, RequestBody};
use tower_bearer_provider::{Secrets, shown_url};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The headers that say how long a 429 asks to wait: api.video's own, then the standard one.
const RETRY_AFTER_HEADERS: [&str; 2] = ["x-ratelimit-retry-after", "retry-after"];

/// The credential a request trades for a token pair, serialized as its JSON body
/// (`{"apiKey":…}` or `{"refreshToken":…}`).
#[derive(Serialize)]
pub(super) enum Credential<'a> {
    #[serde(rename = "apiKey")]
    ApiKey(&'a str),
    #[serde(rename = "refreshToken")]
    RefreshToken(&'a str),
}

impl Credential<'_> {
    /// A name for logs.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Credential::ApiKey(_) => "api-key",
            Credential::RefreshToken(_) => "refresh-token",
        }
    }

    /// The credential, to redact (in every form) from what the server answers.
    pub(super) fn secrets(&self) -> Secrets<'_> {
        match self {
            Credential::ApiKey(secret) | Credential::RefreshToken(secret) => {
                Secrets::from_iter([*secret])
            }
        }
    }
}

/// `POST uri` with the credential as its JSON body.
pub(super) fn request<B: RequestBody>(uri: &Uri, credential: &Credential<'_>) -> Request<B> {
    let json = serde_json::to_vec(credential).expect("a map of one string always serializes");
    let mut request = Request::new(http_client::body::<B>(Bytes::from(json)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, JSON);
    headers.insert(ACCEPT, JSON);
    headers.insert(USER_AGENT, http_client::USER_AGENT);
    request
}

/// What an answer from the auth endpoint `uri` means: a token, or why there is none.
///
/// `secrets` is the credential the request sent: a server's text that echoes it is redacted.
pub(super) fn token_from(
    answer: Answer,
    uri: &Uri,
    secrets: &Secrets<'_>,
) -> Result<Token, ApiVideoError> {
    let Answer {
        status,
        headers,
        body,
        sent_at,
    } = answer;
    let url = || shown_url(uri);
    if status.is_success() {
        let body = body?;
        return parse_token(&body, sent_at)
            .map_err(|error| ApiVideoError::Malformed { error, url: url() });
    }
    // The body only adds detail to the status: a body that cannot be read loses the detail,
    // not the status.
    let problem = match body {
        Ok(body) => parse_problem(status, &body, secrets),
        Err(_) => Problem::new(status, None, None, &Secrets::new()),
    };
    let url = url();
    Err(match status {
        // The OpenAPI document says 400, the error reference says 401: both mean the
        // credential was refused.
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => ApiVideoError::Rejected {
            retry_after: RetryAfter::permanent("api.video refused the credential")
                .answered(problem.server_answer().clone()),
            problem,
            url,
        },
        StatusCode::TOO_MANY_REQUESTS => ApiVideoError::RateLimited {
            retry_after: http_client::retry_after(&headers, &RETRY_AFTER_HEADERS).map(|delay| {
                RetryAfter::new(delay, "api.video asked to wait")
                    .answered(problem.server_answer().clone())
            }),
            problem,
            url,
        },
        _ => ApiVideoError::Status { problem, url },
    })
}

/// The `access-token` schema, read as every provider reads a token answer
/// ([`tower_bearer_provider::parse_token`]), with what is api.video's own: `expires_in` must
/// be there, as a number, and `token_type` is `bearer` in any case.
pub(super) fn parse_token(body: &[u8], sent_at: Instant) -> Result<Token, Malformed> {
    http_client::parse_bearer_token(body, sent_at, ExpiresIn::Required)
}

/// The status, with the `type` and `title` of a problem document if the body is one.
///
/// The content type is not checked: api.video documents `application/problem+json`, its
/// OpenAPI document says `application/json`, and either way only two string fields are read.
/// Any echo of `secrets` in them is redacted.
pub(super) fn parse_problem(status: StatusCode, body: &[u8], secrets: &Secrets<'_>) -> Problem {
    let Ok(members) = Members::parse(body) else {
        return Problem::new(status, None, None, secrets);
    };
    let text = |name| members.get(name).and_then(Value::as_str);
    Problem::new(status, text("type"), text("title"), secrets)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use http::header::{HeaderMap, RETRY_AFTER};
    use http_body_util::{BodyExt, Full};

    fn parse(json: &str) -> Result<Token, Malformed> {
        parse_token(json.as_bytes(), Instant::now())
    }

    #[tokio::test]
    async fn request_carries_the_grant_and_the_headers() {
        let uri: Uri = "https://ws.api.video/auth/refresh".parse().unwrap();
        let request: Request<Full<Bytes>> = request(&uri, &Credential::RefreshToken("r\"1"));
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), &uri);
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(request.headers()[ACCEPT], "application/json");
        let agent = request.headers()[USER_AGENT].to_str().unwrap();
        assert_eq!(agent, format!("tower-bearer/{}", env!("CARGO_PKG_VERSION")));
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"refreshToken": "r\"1"}));
    }

    #[test]
    fn a_good_token_with_any_case_of_bearer() {
        for token_type in ["Bearer", "bearer", "BEARER"] {
            let token = parse(&format!(
                r#"{{"token_type":"{token_type}","expires_in":3599,"access_token":"a.b.c","refresh_token":"def502"}}"#
            ))
            .unwrap();
            assert_eq!(token.authorization(), "Bearer a.b.c");
            assert!(token.expose_refresh_token().is_some());
        }
    }

    #[test]
    fn bad_fields() {
        // Each body, and the start of the error's `Debug`.
        let cases = [
            ("<html>hi</html>", "NotJson("),
            ("[1]", "NotAnObject"),
            (
                r#"{"token_type":"mac","expires_in":1,"access_token":"a"}"#,
                "TokenType",
            ),
            (
                r#"{"token_type":1,"expires_in":1,"access_token":"a"}"#,
                "NotAString(\"token_type\")",
            ),
            (
                r#"{"token_type":"Bearer","expires_in":1}"#,
                "Missing(\"access_token\")",
            ),
            (
                r#"{"token_type":"Bearer","expires_in":1,"access_token":"a\nb"}"#,
                "AccessToken(Character { at: 1 })",
            ),
            (
                r#"{"token_type":"Bearer","expires_in":1,"access_token":"a\u0000"}"#,
                "AccessToken(Character { at: 1 })",
            ),
        ];
        for (json, expected) in cases {
            let error = format!("{:?}", parse(json).unwrap_err());
            assert!(error.starts_with(expected), "{json}: {error}");
        }
    }

    #[test]
    fn problems_keep_status_type_and_a_clean_title() {
        let problem = parse_problem(
            StatusCode::BAD_REQUEST,
            br#"{"type":"https://docs.api.video/reference/x","title":"Bad\nline","status":400,"detail":"echo"}"#,
            &Secrets::new(),
        );
        assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            problem.type_uri(),
            Some("https://docs.api.video/reference/x")
        );
        assert_eq!(problem.title(), Some("Badline"));
        assert_eq!(
            problem.to_string(),
            "400 Bad Request: Badline <https://docs.api.video/reference/x>"
        );
        let html = parse_problem(StatusCode::BAD_GATEWAY, b"<html>", &Secrets::new());
        assert_eq!(
            html,
            Problem::new(StatusCode::BAD_GATEWAY, None, None, &Secrets::new())
        );
    }

    /// Bug: a server that echoed the credential in a problem's `title` (or `type`) had it
    /// printed by the error's `Display`, and logged with it.
    #[test]
    fn a_problem_echoing_the_credential_is_redacted() {
        let key = "KEY-0123456789abcdef";
        let body = format!(
            r#"{{"type":"https://x.test/{key}","title":"The API key {key} is invalid; {key}","status":401}}"#
        );
        let problem = parse_problem(
            StatusCode::UNAUTHORIZED,
            body.as_bytes(),
            &Secrets::from_iter([key]),
        );
        let text = format!("{problem} {problem:?}");
        assert!(!text.contains(key), "{text}");
        assert_eq!(
            problem.title(),
            Some("The API key [REDACTED] is invalid; [REDACTED]")
        );
        assert_eq!(problem.type_uri(), Some("https://x.test/[REDACTED]"));

        // Control characters cannot split the secret past the redaction, and a long title cut
        // at 200 characters cannot keep the front half of a long secret.
        let long = "def50200".to_owned() + &"ab".repeat(300);
        let split = format!(r"{}\u0007{}", &long[..10], &long[10..]);
        let body = format!(r#"{{"title":"{}{split}"}}"#, "x".repeat(150));
        let problem = parse_problem(
            StatusCode::BAD_REQUEST,
            body.as_bytes(),
            &Secrets::from_iter([long.as_str()]),
        );
        let title = problem.title().unwrap();
        assert!(title.ends_with("[REDACTED]"), "{title}");
        assert!(!title.contains("def50200"), "{title}");
    }

    #[test]
    fn retry_after_headers() {
        let retry_after = |headers: &HeaderMap| {
            let answer = Answer {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: headers.clone(),
                body: Ok(Bytes::new()),
                sent_at: Instant::now(),
            };
            let uri = "https://ws.api.video/auth/api-key".parse().unwrap();
            match token_from(answer, &uri, &Secrets::new()) {
                Err(ApiVideoError::RateLimited { retry_after, .. }) => {
                    retry_after.and_then(|hint| hint.delay())
                }
                other => panic!("{other:?}"),
            }
        };
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("x-ratelimit-retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("x-ratelimit-retry-after", HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&headers), Some(http_client::MAX_RETRY_AFTER));
        headers.insert(
            "x-ratelimit-retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
