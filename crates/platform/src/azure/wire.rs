//! The identity endpoints on the wire: the GET both kinds send, and what their answers mean.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use super::error::{ErrorAnswer, Malformed, ManagedIdentityError, NoAnswer};
use super::retry::{Failure, RetryPolicy};
use tower_bearer::{RetryAfter, Token};
use tower_bearer_provider::{self as http_client, Answer, ExpiresIn, Members, RequestBody};
use tower_bearer_provider::{Secrets, shown_url};

/// IMDS refuses a request without it (so that a server-side request forgery, which cannot set
/// headers, cannot read tokens). MSAL sends it to the App Service endpoint too: App Service
/// ignores it, Azure Automation's endpoint needs it.
const METADATA: HeaderName = HeaderName::from_static("metadata");

/// The App Service endpoint's secret header, `IDENTITY_HEADER`'s value.
pub(super) const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-identity-header");

/// How much of an endpoint's text an error keeps.
const MAX_TEXT: usize = 200;

/// The longest `expires_on` read as digits.
const MAX_DIGITS: usize = 19;

/// `base` with the query: `api-version`, `resource`, and the user-assigned identity's
/// parameter if there is one, each form-urlencoded. A query `base` has already is kept.
pub(super) fn request_uri(
    base: &Uri,
    api_version: &str,
    resource: &str,
    identity: Option<(&str, &str)>,
) -> Uri {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("api-version", api_version);
    query.append_pair("resource", resource);
    if let Some((name, value)) = identity {
        query.append_pair(name, value);
    }
    let query = query.finish();
    let path_and_query = match base.query() {
        Some(existing) => format!("{}?{existing}&{query}", base.path()),
        None => format!("{}?{query}", base.path()),
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(path_and_query).expect("a form-urlencoded query is valid"));
    Uri::from_parts(parts).expect("the parts of a valid URI with another valid query")
}

/// `GET uri`, with `Metadata: true`, and the identity header (marked sensitive) if there is
/// one.
pub(super) fn request<B: RequestBody>(
    uri: &Uri,
    identity_header: Option<&SecretString>,
) -> Request<B> {
    let mut request = Request::new(http_client::body::<B>(bytes::Bytes::new()));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(METADATA, HeaderValue::from_static("true"));
    headers.insert(USER_AGENT, http_client::USER_AGENT);
    if let Some(secret) = identity_header {
        let mut value = HeaderValue::from_str(secret.expose_secret())
            .expect("checked to be a header value when the provider was built");
        value.set_sensitive(true);
        headers.insert(IDENTITY_HEADER, value);
    }
    request
}

/// What an answer from the endpoint `uri` means: a token, or why there is none. `policy` says
/// which statuses are worth retrying; `secrets`, what the request carried (the identity
/// header), redacted from the endpoint's texts.
pub(super) fn token_from(
    answer: Answer,
    uri: &Uri,
    policy: &RetryPolicy,
    secrets: &Secrets<'_>,
) -> Result<Token, ManagedIdentityError> {
    let Answer {
        status,
        headers,
        body,
        sent_at,
    } = answer;
    let url = || shown_url(uri);
    if status.is_success() {
        let body = body?;
        return parse_token(&body, sent_at, SystemTime::now())
            .map_err(|error| ManagedIdentityError::Malformed { error, url: url() });
    }
    // The body only adds detail to the status: one that cannot be read loses the detail.
    let answer = match body {
        Ok(body) => parse_error(status, &body, secrets),
        Err(_) => ErrorAnswer::new(status, None, None),
    };
    let url = url();
    if policy.retries_status(status) {
        let retry_after = http_client::retry_after(&headers, &["retry-after"])
            .map(|delay| RetryAfter::new(delay, "the managed identity endpoint asked to wait"));
        Err(ManagedIdentityError::Unavailable {
            answer,
            retry_after,
            url,
            attempts: 1,
        })
    } else {
        Err(ManagedIdentityError::Refused {
            answer,
            hint: RetryAfter::permanent("the managed identity endpoint refused"),
            url,
        })
    }
}

/// What the retries make of a failed attempt: `None` for a failure no retry mends.
pub(super) fn failure(error: &ManagedIdentityError) -> Option<Failure> {
    match error {
        ManagedIdentityError::NoAnswer {
            error: NoAnswer::Transport { .. },
            ..
        } => Some(Failure::Transport),
        ManagedIdentityError::Unavailable {
            answer,
            retry_after,
            ..
        } => Some(Failure::Status {
            status: answer.status(),
            retry_after: retry_after.as_ref().and_then(RetryAfter::delay),
        }),
        _ => None,
    }
}

/// A successful answer's body as a token, read as every provider reads a token answer
/// ([`tower_bearer_provider::parse_token`]), with what is the identity endpoints' own:
/// `expires_in` may be a string (IMDS always sends one), and when it is absent (the App
/// Service endpoint sends none) the lifetime is `expires_on`, a string of seconds since 1970,
/// less `now`. `token_type` must be `Bearer` in any case.
pub(super) fn parse_token(
    body: &[u8],
    sent_at: Instant,
    now: SystemTime,
) -> Result<Token, Malformed> {
    // Read twice, once here for `expires_on`: once per token lifetime, a few hundred bytes.
    let members = Members::parse(body)?;
    let default = match members.get("expires_in") {
        Some(_) => None,
        None => Some(until(members.get("expires_on"), now)?),
    };
    Ok(http_client::parse_bearer_token(
        body,
        sent_at,
        ExpiresIn::Lenient { default },
    )?)
}

/// The time from `now` until `expires_on`.
fn until(expires_on: Option<&Value>, now: SystemTime) -> Result<Duration, Malformed> {
    let seconds = match expires_on {
        None => return Err(Malformed::Missing("expires_on")),
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(digits))
            if !digits.is_empty()
                && digits.len() <= MAX_DIGITS
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            digits.parse().ok()
        }
        Some(_) => None,
    };
    let at = seconds
        .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
        .ok_or(Malformed::ExpiresOn)?;
    match at.duration_since(now) {
        // Under a second left is already expired for a cache that refreshes ahead.
        Ok(left) if left >= Duration::from_secs(1) => Ok(left),
        _ => Err(Malformed::ExpiresOn),
    }
}

/// The status, with what the body says: IMDS's `error` and `error_description`, the App
/// Service endpoint's `message` (or an `error` object's `code` and `message`). Any echo of
/// `secrets` is redacted.
pub(super) fn parse_error(
    status: http::StatusCode,
    body: &[u8],
    secrets: &Secrets<'_>,
) -> ErrorAnswer {
    let Ok(members) = Members::parse(body) else {
        return ErrorAnswer::new(status, None, None);
    };
    let clean = |text: &str| http_client::server_text(text, secrets, MAX_TEXT);
    let text = |name| members.get(name).and_then(Value::as_str).map(clean);
    let (error, message) = match members.get("error") {
        Some(Value::Object(error)) => (
            error.get("code").and_then(Value::as_str).map(clean),
            error.get("message").and_then(Value::as_str).map(clean),
        ),
        _ => (text("error"), None),
    };
    let description = text("error_description")
        .or(message)
        .or_else(|| text("message"));
    ErrorAnswer::new(status, error, description)
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use bytes::Bytes;
    use http::header::RETRY_AFTER;
    use http::{HeaderMap, StatusCode};
    use http_body_util::Full;

    use super::*;
    use crate::azure::retry::{APP_SERVICE, IMDS};

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn parse(json: &str) -> Result<Token, Malformed> {
        parse_token(json.as_bytes(), Instant::now(), UNIX_EPOCH + NOW)
    }

    #[test]
    fn the_query_is_form_urlencoded_after_any_there_is() {
        let base: Uri = "http://169.254.169.254/metadata/identity/oauth2/token"
            .parse()
            .unwrap();
        let uri = request_uri(&base, "2018-02-01", "https://vault.azure.net", None);
        assert_eq!(
            uri,
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"
        );
        let base: Uri = "http://127.0.0.1:41000/msi/token?x=1".parse().unwrap();
        let uri = request_uri(&base, "2019-08-01", "r", Some(("mi_res_id", "/sub/a b")));
        assert_eq!(
            uri,
            "http://127.0.0.1:41000/msi/token?x=1&api-version=2019-08-01&resource=r&mi_res_id=%2Fsub%2Fa+b"
        );
    }

    #[test]
    fn the_identity_header_is_sensitive() {
        let uri: Uri = "http://127.0.0.1:1/msi/token".parse().unwrap();
        let secret = SecretString::from("h3ader");
        let with: Request<Full<Bytes>> = request(&uri, Some(&secret));
        assert_eq!(with.method(), Method::GET);
        assert_eq!(with.headers()[METADATA], "true");
        let header = &with.headers()[IDENTITY_HEADER];
        assert!(header.is_sensitive());
        assert_eq!(header, "h3ader");
        let without: Request<Full<Bytes>> = request(&uri, None);
        assert!(without.headers().get(IDENTITY_HEADER).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn string_expiries_of_both_endpoints() {
        let sent_at = Instant::now();
        let read = |json: &str| {
            parse_token(json.as_bytes(), sent_at, UNIX_EPOCH + NOW)
                .unwrap()
                .expiry()
        };
        // IMDS: `expires_in` wins over `expires_on`, which a skewed clock would misread.
        let imds = format!(
            r#"{{"access_token":"a","refresh_token":"","expires_in":"3599","expires_on":"{}","not_before":"{}","resource":"https://vault.azure.net","token_type":"Bearer"}}"#,
            NOW.as_secs() + 86_400,
            NOW.as_secs()
        );
        assert_eq!(read(&imds), Some(sent_at + Duration::from_secs(3599)));
        // App Service: only `expires_on`, a string.
        let app_service = format!(
            r#"{{"access_token":"a","expires_on":"{}","resource":"https://vault.azure.net","token_type":"Bearer","client_id":"c"}}"#,
            NOW.as_secs() + 600
        );
        assert_eq!(read(&app_service), Some(sent_at + Duration::from_secs(600)));
        let number = format!(
            r#"{{"access_token":"a","expires_on":{},"token_type":"bearer"}}"#,
            NOW.as_secs() + 60
        );
        assert_eq!(read(&number), Some(sent_at + Duration::from_secs(60)));
        // IMDS's empty refresh token is none.
        assert!(parse(&imds).unwrap().expose_refresh_token().is_none());
    }

    #[test]
    fn bad_expiries_and_members() {
        let past = NOW.as_secs() - 1;
        let cases = [
            (
                r#"{"access_token":"a","token_type":"Bearer"}"#.to_owned(),
                "Missing(\"expires_on\")",
            ),
            (
                format!(r#"{{"access_token":"a","token_type":"Bearer","expires_on":"{past}"}}"#),
                "ExpiresOn",
            ),
            (
                format!(
                    r#"{{"access_token":"a","token_type":"Bearer","expires_on":"{}"}}"#,
                    NOW.as_secs()
                ),
                "ExpiresOn",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_on":"09/14/2017 00:00:00 PM +00:00"}"#.to_owned(),
                "ExpiresOn",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_on":"99999999999999999999"}"#
                    .to_owned(),
                "ExpiresOn",
            ),
            // Rust's integer parsing takes a leading `+`; a time in digits has none.
            (
                format!(
                    r#"{{"access_token":"a","token_type":"Bearer","expires_on":"+{}"}}"#,
                    NOW.as_secs() + 3600
                ),
                "ExpiresOn",
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer","expires_in":"0"}"#.to_owned(),
                "ExpiresIn",
            ),
            (
                r#"{"access_token":"a","token_type":"pop","expires_in":"60"}"#.to_owned(),
                "TokenType",
            ),
            (
                r#"{"access_token":"a b","token_type":"Bearer","expires_in":"60"}"#.to_owned(),
                "AccessToken(",
            ),
            (
                r#"{"token_type":"Bearer","expires_in":"60"}"#.to_owned(),
                "Missing(\"access_token\")",
            ),
            ("<html>".to_owned(), "NotJson("),
        ];
        for (json, expected) in cases {
            let error = format!("{:?}", parse(&json).unwrap_err());
            assert!(error.starts_with(expected), "{json}: {error}");
        }
    }

    /// A malformed answer says which member is wrong, and its cause comes next: the JSON
    /// parser's error, or what is wrong with the access token.
    #[test]
    fn a_malformed_answer_says_what_and_why() {
        for (json, said, has_cause) in [
            ("<html>", "the body is not JSON", true),
            (
                r#"{"access_token":"a b","token_type":"Bearer","expires_in":"60"}"#,
                "`access_token` is not a valid bearer token",
                true,
            ),
            (
                r#"{"access_token":"a","token_type":"Bearer"}"#,
                "`expires_on` is missing",
                false,
            ),
        ] {
            let error = parse(json).unwrap_err();
            assert_eq!(error.to_string(), said);
            assert_eq!(error.source().is_some(), has_cause, "{said}");
        }
    }

    #[test]
    fn error_bodies_of_both_endpoints() {
        let imds = parse_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            &Secrets::new(),
        );
        assert_eq!(imds.error(), Some("invalid_request"));
        assert_eq!(imds.description(), Some("Identity not found"));
        assert_eq!(
            imds.to_string(),
            "400 Bad Request: invalid_request: Identity not found"
        );
        let app_service = parse_error(
            StatusCode::BAD_REQUEST,
            br#"{"statusCode":400,"message":"No managed identity found","correlationId":"x"}"#,
            &Secrets::new(),
        );
        assert_eq!(app_service.error(), None);
        assert_eq!(app_service.description(), Some("No managed identity found"));
        let nested = parse_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"code":"Boom","message":"it broke"}}"#,
            &Secrets::new(),
        );
        assert_eq!(
            nested.to_string(),
            "500 Internal Server Error: Boom: it broke"
        );
        let html = parse_error(StatusCode::BAD_GATEWAY, b"<html>", &Secrets::new());
        assert_eq!(html.to_string(), "502 Bad Gateway");
    }

    /// An endpoint that echoes the identity header in its message does not put it in an
    /// error, in any form.
    #[test]
    fn an_echoed_identity_header_is_redacted() {
        let header = "5e3c+hdr/8f2";
        let body = format!(
            r#"{{"statusCode":401,"message":"bad header {header} ({})"}}"#,
            form_urlencoded::byte_serialize(header.as_bytes()).collect::<String>()
        );
        let answer = parse_error(
            StatusCode::UNAUTHORIZED,
            body.as_bytes(),
            &Secrets::from_iter([header]),
        );
        let text = format!("{answer} {answer:?}");
        assert!(!text.contains("5e3c"), "{text}");
        assert_eq!(
            answer.description(),
            Some("bad header [REDACTED] ([REDACTED])")
        );
    }

    fn answer(status: StatusCode, headers: HeaderMap, body: &'static str) -> Answer {
        Answer {
            status,
            headers,
            body: Ok(Bytes::from_static(body.as_bytes())),
            sent_at: Instant::now(),
        }
    }

    #[tokio::test]
    async fn statuses_are_refused_or_unavailable_by_policy() {
        let uri: Uri = "http://169.254.169.254/metadata/identity/oauth2/token?resource=x"
            .parse()
            .unwrap();
        let kind = |policy, code| {
            let status = StatusCode::from_u16(code).unwrap();
            match token_from(
                answer(status, HeaderMap::new(), "{}"),
                &uri,
                policy,
                &Secrets::new(),
            ) {
                Err(ManagedIdentityError::Refused { hint, url, .. }) => {
                    assert_eq!(hint.delay(), None);
                    assert_eq!(url, "http://169.254.169.254/metadata/identity/oauth2/token");
                    "refused"
                }
                Err(ManagedIdentityError::Unavailable { .. }) => "unavailable",
                other => panic!("{other:?}"),
            }
        };
        for code in [404, 410, 429, 500, 503] {
            assert_eq!(kind(&IMDS, code), "unavailable", "{code}");
        }
        for code in [400, 401, 403] {
            assert_eq!(kind(&IMDS, code), "refused", "{code}");
        }
        assert_eq!(kind(&APP_SERVICE, 404), "refused");
        assert_eq!(kind(&APP_SERVICE, 410), "refused");
        assert_eq!(kind(&APP_SERVICE, 503), "unavailable");

        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("12"));
        let error = token_from(
            answer(StatusCode::TOO_MANY_REQUESTS, headers, "{}"),
            &uri,
            &IMDS,
            &Secrets::new(),
        )
        .unwrap_err();
        assert_eq!(
            failure(&error),
            Some(Failure::Status {
                status: StatusCode::TOO_MANY_REQUESTS,
                retry_after: Some(Duration::from_secs(12)),
            })
        );
        let hint = error
            .source()
            .unwrap()
            .downcast_ref::<RetryAfter>()
            .unwrap();
        assert_eq!(hint.delay(), Some(Duration::from_secs(12)));
    }
}
