//! Hostile input: what the api.video provider and the cache make of answers no well-behaved
//! auth server gives, served by a real hyper server on 127.0.0.1. Each row is a typed error
//! (or a documented tolerant reading), no panic, and nothing cached: the next request asks
//! the server again. The README's "Reliability" section has the same table (run with
//! `--nocapture` to print it).
//!
//! The parsers alone, fed arbitrary bytes, are property-tested beside them
//! (`src/apivideo/wire_properties.rs`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::answering_server::{Answer, AnsweringServer as Server};
use common::hostile::{Expect, Row, ok_json, provider_error};
use http::StatusCode;
use http::header::RETRY_AFTER;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_bearer::{RefreshReason, Token, TokenCache, TokenErrorKind};
use tower_bearer_apivideo::{ApiVideo, ApiVideoError};

const KEY: &str = "hostile-test-KEY-8f3a9c";

/// A token response with these raw JSON values (`None`: the field is left out).
fn token_json(
    token_type: Option<&str>,
    expires_in: Option<&str>,
    access_token: Option<&str>,
    refresh_token: Option<&str>,
) -> Answer {
    let fields: Vec<String> = [
        ("token_type", token_type),
        ("expires_in", expires_in),
        ("access_token", access_token),
        ("refresh_token", refresh_token),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(format!(r#""{name}":{}"#, value?)))
    .collect();
    ok_json(format!("{{{}}}", fields.join(",")))
}

/// The usual answer with one field replaced by `value`.
fn with(field: &str, value: &str) -> Answer {
    let mut fields = [
        Some(r#""Bearer""#),
        Some("3600"),
        Some(r#""a.b.c""#),
        Some(r#""def50200ab""#),
    ];
    let index = ["token_type", "expires_in", "access_token", "refresh_token"]
        .iter()
        .position(|f| *f == field)
        .unwrap();
    fields[index] = (value != "<missing>").then_some(value);
    token_json(fields[0], fields[1], fields[2], fields[3])
}

fn problem(status: StatusCode, body: impl Into<String>) -> Answer {
    Answer::full(status, "application/problem+json", body.into())
}

/// A 429 with this `X-RateLimit-Retry-After` (and `Retry-After`).
fn rate_limited(wait: &'static str) -> Answer {
    Answer::full(
        StatusCode::TOO_MANY_REQUESTS,
        "application/problem+json",
        r#"{"type":"https://docs.api.video/reference/too-many-requests","title":"Too many requests.","status":429}"#,
    )
    .header("x-ratelimit-retry-after", wait)
    .header(RETRY_AFTER.as_str(), wait)
}

fn rows() -> Vec<Row> {
    let row = |name, answer, expect| Row {
        name,
        answer,
        expect,
    };
    use Expect::{Error, Token as Tolerated};
    let big_token = format!(r#""{}""#, "A".repeat(100 * 1024));
    let near_limit = format!(r#""{}""#, "A".repeat(60 * 1024));
    let ten_mb = Bytes::from(vec![b' '; 10 * 1024 * 1024]);
    let long_title = format!(r#"{{"title":"{}","status":500}}"#, "t".repeat(10_000));
    vec![
        // access_token
        row(
            "access_token with a newline",
            with("access_token", r#""abc\ndef""#),
            Error("Malformed { error: AccessToken(Character { at: 3 }),"),
        ),
        row(
            "access_token with a NUL",
            with("access_token", r#""abc\u0000""#),
            Error("Malformed { error: AccessToken(Character { at: 3 }),"),
        ),
        row(
            "access_token with a space",
            with("access_token", r#""abc def""#),
            Error("Malformed { error: AccessToken(Character { at: 3 }),"),
        ),
        row(
            "access_token non-ASCII",
            with("access_token", r#""jeton-é""#),
            Error("Malformed { error: AccessToken(Character { at: 6 }),"),
        ),
        row(
            "access_token empty",
            with("access_token", r#""""#),
            Error("Malformed { error: AccessToken(Empty),"),
        ),
        row(
            "access_token 100 KB",
            with("access_token", &big_token),
            Error("NoAnswer(TooLarge { limit: 65536, url: "),
        ),
        row(
            "access_token 60 KB (under the 64 KiB read limit)",
            with("access_token", &near_limit),
            Tolerated("cached as sent", |t| {
                t.expose_access_token().len() == 60 * 1024
            }),
        ),
        row(
            "access_token a number",
            with("access_token", "12345"),
            Error("Malformed { error: NotAString(\"access_token\"),"),
        ),
        row(
            "access_token missing",
            with("access_token", "<missing>"),
            Error("Malformed { error: Missing(\"access_token\"),"),
        ),
        // expires_in
        row(
            "expires_in 0",
            with("expires_in", "0"),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in -1",
            with("expires_in", "-1"),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in 1e20",
            with("expires_in", "1e20"),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in 3600.5",
            with("expires_in", "3600.5"),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in \"3600\" (a string)",
            with("expires_in", r#""3600""#),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in null",
            with("expires_in", "null"),
            Error("Malformed { error: Missing(\"expires_in\"),"),
        ),
        row(
            "expires_in missing",
            with("expires_in", "<missing>"),
            Error("Malformed { error: Missing(\"expires_in\"),"),
        ),
        row(
            "expires_in 2^64-1",
            with("expires_in", "18446744073709551615"),
            Tolerated("cut to a day", |t| {
                lifetime(t) <= Duration::from_secs(86_400)
                    && lifetime(t) > Duration::from_secs(86_000)
            }),
        ),
        row(
            "expires_in 1",
            with("expires_in", "1"),
            Tolerated("a one-second token", |t| {
                lifetime(t) <= Duration::from_secs(1)
            }),
        ),
        // token_type
        row(
            "token_type \"mac\"",
            with("token_type", r#""mac""#),
            Error("Malformed { error: TokenType,"),
        ),
        row(
            "token_type missing",
            with("token_type", "<missing>"),
            Error("Malformed { error: Missing(\"token_type\"),"),
        ),
        row(
            "token_type \"bearer\" (lower case)",
            with("token_type", r#""bearer""#),
            Tolerated("any case of bearer", |t| t.expose_access_token() == "a.b.c"),
        ),
        // refresh_token
        row(
            "no refresh_token",
            with("refresh_token", "<missing>"),
            Tolerated(
                "no refresh token: the next refresh logs in with the key",
                |t| t.expose_refresh_token().is_none(),
            ),
        ),
        row(
            "refresh_token \"\"",
            with("refresh_token", r#""""#),
            Tolerated("no refresh token", |t| t.expose_refresh_token().is_none()),
        ),
        row(
            "refresh_token a number",
            with("refresh_token", "7"),
            Error("Malformed { error: NotAString(\"refresh_token\"),"),
        ),
        // the body
        row(
            "10 MB body",
            Answer::full(StatusCode::OK, "application/json", ten_mb.clone()),
            Error("NoAnswer(TooLarge { limit: 65536, url: "),
        ),
        row(
            "non-JSON",
            ok_json("token=abc&expires=3600"),
            Error("Malformed { error: NotJson("),
        ),
        row(
            "JSON, not an object",
            ok_json("[1,2,3]"),
            Error("Malformed { error: NotAnObject,"),
        ),
        row(
            "HTML page with status 200",
            Answer::full(
                StatusCode::OK,
                "text/html",
                Bytes::from_static(b"<!doctype html><title>Wi-Fi login</title>"),
            ),
            Error("Malformed { error: NotJson("),
        ),
        row(
            "body that stops half way",
            Answer::Truncated(r#"{"token_type":"Bearer","expires_"#),
            Error("NoAnswer(Body { source: "),
        ),
        row(
            "accepts, never answers",
            Answer::Silent,
            Error("NoAnswer(Timeout { after: "),
        ),
        // problem+json
        row(
            "400 problem+json",
            problem(
                StatusCode::BAD_REQUEST,
                r#"{"type":"https://docs.api.video/reference/authentication-invalid-user-credentials","title":"The user credentials were incorrect.","name":"","status":400}"#,
            ),
            Error(
                "Rejected { retry_after: RetryAfter { permanent: true, source: \"api.video refused the credential\" }, problem: Problem { status: 400, type_uri: Some(\"https://docs.api.video/reference/authentication-invalid-user-credentials\"), title: Some(\"The user credentials were incorrect.\") }, url: ",
            ),
        ),
        row(
            "401 problem+json echoing the key",
            problem(
                StatusCode::UNAUTHORIZED,
                format!(r#"{{"title":"The API key {KEY} is invalid.","status":401}}"#),
            ),
            Error(
                "Rejected { retry_after: RetryAfter { permanent: true, source: \"api.video refused the credential\" }, problem: Problem { status: 401, type_uri: None, title: Some(\"The API key [REDACTED] is invalid.\") }, url: ",
            ),
        ),
        row(
            "500 problem+json, title with control characters",
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"title":"line\r\nINFO forged log line\u001b[31m","status":500}"#,
            ),
            Error(
                "Status { problem: Problem { status: 500, type_uri: None, title: Some(\"lineINFO forged log line[31m\") }, url: ",
            ),
        ),
        row(
            "500 problem+json, 10 000-character title",
            problem(StatusCode::INTERNAL_SERVER_ERROR, long_title),
            Error(
                "Status { problem: Problem { status: 500, type_uri: None, title: Some(\"tttttttttt",
            ),
        ),
        row(
            "500 problem+json, title not a string",
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"title":{"nested":true},"type":7}"#,
            ),
            Error("Status { problem: Problem { status: 500, type_uri: None, title: None }, url: "),
        ),
        row(
            "502 HTML page",
            Answer::full(
                StatusCode::BAD_GATEWAY,
                "text/html",
                Bytes::from_static(b"<html><body>Bad gateway</body></html>"),
            ),
            Error("Status { problem: Problem { status: 502, type_uri: None, title: None }, url: "),
        ),
        row(
            "503 with a 10 MB body",
            Answer::full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", ten_mb),
            Error("Status { problem: Problem { status: 503, type_uri: None, title: None }, url: "),
        ),
        row(
            "429, X-RateLimit-Retry-After 7",
            rate_limited("7"),
            Error("RateLimited { retry_after: Some(RetryAfter { delay: 7s"),
        ),
        row(
            "429, X-RateLimit-Retry-After 10^15",
            rate_limited("1000000000000000"),
            Error("RateLimited { retry_after: Some(RetryAfter { delay: 600s"),
        ),
        row(
            "429, X-RateLimit-Retry-After -5",
            rate_limited("-5"),
            Error("RateLimited { retry_after: None"),
        ),
    ]
}

fn lifetime(token: &Token) -> Duration {
    token
        .expiry()
        .expect("an expiry")
        .saturating_duration_since(tokio::time::Instant::now())
}

/// Runs one row: a server, a provider, a cache, two requests for a token.
async fn run(row: Row) -> String {
    let Row {
        name,
        answer,
        expect,
    } = row;
    let silent = matches!(answer, Answer::Silent);
    let server = Server::start(answer).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let timeout = if silent {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(20)
    };
    let api = ApiVideo::with_base_uri(server.uri(), KEY, client)
        .unwrap()
        .timeout(timeout);
    // No backoff: the second request asks at once, unless the server named a wait.
    let cache = TokenCache::builder(api)
        .backoff(Duration::ZERO, Duration::ZERO)
        .build();

    let first = cache.token().await;
    let stats = cache.stats();
    assert_eq!(stats.waiting, 0, "{name}");
    assert!(!stats.refreshing, "{name}");
    let outcome = match (expect, first) {
        (Expect::Error(expected), Err(error)) => {
            // Not `Abandoned`: the refresh task did not panic.
            assert_eq!(error.kind(), TokenErrorKind::Refresher, "{name}: {error:?}");
            assert_eq!(error.reason(), RefreshReason::Initial);
            let found = format!("{:?}", provider_error::<ApiVideoError>(&error));
            assert!(found.starts_with(expected), "{name}: {found}");
            let printed = format!("{error} {error:?} {found}");
            assert!(!printed.contains(KEY), "{name}: {printed}");
            assert_eq!(stats.generation, 0, "{name}: nothing cached");
            assert_eq!(stats.total().failed, 1, "{name}");

            let second = cache.token().await.unwrap_err();
            let asked_again = matches!(second.kind(), TokenErrorKind::Refresher);
            if expected.starts_with("RateLimited { retry_after: Some") {
                // The server's wait is the cache's: the second request fails fast.
                assert!(
                    matches!(second.kind(), TokenErrorKind::BackingOff { .. }),
                    "{name}"
                );
                assert_eq!(server.requests(), 1, "{name}");
            } else {
                assert!(asked_again, "{name}: {second:?}");
                assert_eq!(server.requests(), 2, "{name}: the next request asked again");
            }
            assert_eq!(cache.stats().generation, 0, "{name}: still nothing cached");
            format!("`{expected}`")
        }
        (Expect::Token(reading, check), Ok(token)) => {
            assert!(check(&token), "{name}: {token:?}");
            assert_eq!(stats.generation, 1, "{name}: cached");
            assert_eq!(server.requests(), 1, "{name}");
            format!("tolerated: {reading}")
        }
        (Expect::Error(expected), Ok(token)) => {
            panic!("{name}: expected {expected}, got {token:?}")
        }
        (Expect::Token(reading, _), Err(error)) => {
            panic!("{name}: expected {reading}, got {error:?}")
        }
    };
    format!("| {name} | {outcome} |")
}

#[tokio::test]
async fn hostile_auth_answers() {
    let rows = rows();
    assert!(rows.len() >= 35, "{} rows", rows.len());
    let header = "| the auth server answers | the provider and cache give |";
    common::hostile::run_table(rows, header, run).await;
}
