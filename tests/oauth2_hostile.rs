//! Hostile input: what the OAuth 2.0 provider and the cache make of answers no well-behaved
//! token endpoint gives, served by a real hyper server on 127.0.0.1. Each row is a typed error
//! (or a documented tolerant reading), no panic, no secret in what is printed, and nothing
//! cached: the next request asks the server again, unless the answer said to wait. Run with
//! `--nocapture` to print the table.
//!
//! The parsers alone, fed arbitrary bytes, are property-tested beside them
//! (`src/oauth2/answer_properties.rs`).

mod common;

use std::error::Error;
use std::time::Duration;

use common::answering_server::{Answer, AnsweringServer};
use common::hostile::{Expect, Row, ok_json, provider_error};
use http::StatusCode;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use tower_bearer::{RefreshReason, Token, TokenCache, TokenErrorKind};
use tower_bearer_oauth2::{OAuth2, OAuth2Error};

const SECRET: &str = "hostile-SECRET-9f3a7c";

/// What a row must give.
fn error_json(status: StatusCode, body: impl Into<String>) -> Answer {
    Answer::full(status, "application/json", body.into())
}

/// The usual token answer with one member replaced by `value` (`<missing>`: left out).
fn with(member: &str, value: &str) -> Answer {
    let members = [
        ("token_type", r#""Bearer""#),
        ("expires_in", "3600"),
        ("access_token", r#""a.b.c""#),
        ("refresh_token", r#""rt-1""#),
    ];
    let fields: Vec<String> = members
        .iter()
        .map(|(name, usual)| (name, if *name == member { value } else { usual }))
        .filter(|(_, value)| *value != "<missing>")
        .map(|(name, value)| format!(r#""{name}":{value}"#))
        .collect();
    assert!(members.iter().any(|(name, _)| *name == member), "{member}");
    ok_json(format!("{{{}}}", fields.join(",")))
}

fn lifetime(token: &Token) -> Option<Duration> {
    token
        .expiry()
        .map(|at| at.saturating_duration_since(tokio::time::Instant::now()))
}

fn rows() -> Vec<Row> {
    let row = |name, answer, expect| Row {
        name,
        answer,
        expect,
    };
    use Expect::{Error, Token as Tolerated};
    let big_token = format!(r#""{}""#, "A".repeat(100 * 1024));
    let ten_mb = vec![b' '; 10 * 1024 * 1024];
    let echo = format!(
        r#"{{"error":"invalid_client","error_description":"secret {SECRET} is wrong","error_uri":"https://as.example/e?secret={SECRET}"}}"#
    );
    let long = format!(
        r#"{{"error":"invalid_request","error_description":"{}"}}"#,
        "d".repeat(10_000)
    );
    vec![
        // access_token
        row(
            "access_token with a newline",
            with("access_token", r#""abc\ndef""#),
            Error("Malformed { error: AccessToken(Character { at: 3 }),"),
        ),
        row(
            "access_token with a space",
            with("access_token", r#""abc def""#),
            Error("Malformed { error: AccessToken(Character { at: 3 }),"),
        ),
        row(
            "access_token empty",
            with("access_token", r#""""#),
            Error("Malformed { error: AccessToken(Empty),"),
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
        row(
            "access_token 100 KB",
            with("access_token", &big_token),
            Error("NoAnswer(TooLarge { limit: 65536, url: "),
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
            "expires_in 3600.5",
            with("expires_in", "3600.5"),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in 1e20",
            with("expires_in", "1e20"),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in \"abc\"",
            with("expires_in", r#""abc""#),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in \"\"",
            with("expires_in", r#""""#),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in a 20-digit string",
            with("expires_in", r#""99999999999999999999""#),
            Error("Malformed { error: ExpiresIn,"),
        ),
        row(
            "expires_in \"3600\" (a string, as Entra ID v1 sends)",
            with("expires_in", r#""3600""#),
            Tolerated("read as digits", |t| {
                lifetime(t).is_some_and(|l| l > Duration::from_secs(3590))
            }),
        ),
        row(
            "expires_in missing",
            with("expires_in", "<missing>"),
            Tolerated("no expiry: used until refused", |t| t.expiry().is_none()),
        ),
        row(
            "expires_in null",
            with("expires_in", "null"),
            Tolerated("no expiry: used until refused", |t| t.expiry().is_none()),
        ),
        row(
            "expires_in 2^64-1",
            with("expires_in", "18446744073709551615"),
            Tolerated("cut to a day", |t| {
                lifetime(t).is_some_and(|l| {
                    l <= Duration::from_secs(86_400) && l > Duration::from_secs(86_000)
                })
            }),
        ),
        // token_type
        row(
            "token_type \"mac\"",
            with("token_type", r#""mac""#),
            Error("Malformed { error: TokenType,"),
        ),
        row(
            "token_type \"DPoP\"",
            with("token_type", r#""DPoP""#),
            Error("Malformed { error: DpopTokenType,"),
        ),
        row(
            "token_type missing",
            with("token_type", "<missing>"),
            Error("Malformed { error: Missing(\"token_type\"),"),
        ),
        row(
            "token_type \"bEaReR\"",
            with("token_type", r#""bEaReR""#),
            Tolerated("any case of bearer", |t| t.expose_access_token() == "a.b.c"),
        ),
        // refresh_token
        row(
            "refresh_token a number",
            with("refresh_token", "7"),
            Error("Malformed { error: NotAString(\"refresh_token\"),"),
        ),
        row(
            "refresh_token \"\"",
            with("refresh_token", r#""""#),
            Tolerated("no refresh token", |t| t.expose_refresh_token().is_none()),
        ),
        // the body
        row(
            "10 MB body",
            Answer::full(StatusCode::OK, "application/json", ten_mb.clone()),
            Error("NoAnswer(TooLarge { limit: 65536, url: "),
        ),
        row(
            "form-encoded body (GitHub's old default)",
            ok_json("access_token=abc&token_type=bearer"),
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
                "<!doctype html><title>Sign in to the Wi-Fi</title>",
            ),
            Error("Malformed { error: NotJson("),
        ),
        row(
            "an error document with status 200",
            ok_json(r#"{"error":"invalid_grant"}"#),
            Error("Malformed { error: Missing(\"token_type\"),"),
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
        // error responses
        row(
            "400 invalid_client echoing the secret",
            error_json(StatusCode::BAD_REQUEST, echo),
            Error(
                "Refused { response: ErrorResponse { status: 400, code: InvalidClient, description: Some(\"secret [REDACTED] is wrong\"), uri: Some(\"https://as.example/e?secret=[REDACTED]\") }, retry_after: Some(RetryAfter { permanent: true",
            ),
        ),
        row(
            "401 invalid_client with a Basic challenge",
            error_json(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#)
                .header(WWW_AUTHENTICATE.as_str(), "Basic realm=\"x\""),
            Error("Refused { response: ErrorResponse { status: 401, code: InvalidClient"),
        ),
        row(
            "400 description with control characters",
            error_json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"invalid_scope","error_description":"line\r\nINFO forged log line\u001b[31m"}"#,
            ),
            Error(
                "Refused { response: ErrorResponse { status: 400, code: InvalidScope, description: Some(\"lineINFO forged log line[31m\")",
            ),
        ),
        row(
            "400 10 000-character description",
            error_json(StatusCode::BAD_REQUEST, long),
            Error(
                "Refused { response: ErrorResponse { status: 400, code: InvalidRequest, description: Some(\"dddddddddd",
            ),
        ),
        row(
            "400 unknown error code",
            error_json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"interaction_required"}"#,
            ),
            Error(
                "Refused { response: ErrorResponse { status: 400, code: Other(\"interaction_required\"), description: None, uri: None }, retry_after: None",
            ),
        ),
        row(
            "400 error not a string",
            error_json(StatusCode::BAD_REQUEST, r#"{"error":7}"#),
            Error(
                "Status { status: 400, retry_after: None, answer: ServerAnswer { status: 400, error: None }, url: ",
            ),
        ),
        row(
            "400 HTML page",
            Answer::full(
                StatusCode::BAD_REQUEST,
                "text/html",
                "<html>Bad request</html>",
            ),
            Error(
                "Status { status: 400, retry_after: None, answer: ServerAnswer { status: 400, error: None }, url: ",
            ),
        ),
        row(
            "502 HTML page",
            Answer::full(
                StatusCode::BAD_GATEWAY,
                "text/html",
                "<html>Bad gateway</html>",
            ),
            Error(
                "Status { status: 502, retry_after: None, answer: ServerAnswer { status: 502, error: None }, url: ",
            ),
        ),
        row(
            "503 with a 10 MB body",
            Answer::full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", ten_mb),
            Error(
                "Status { status: 503, retry_after: None, answer: ServerAnswer { status: 503, error: None }, url: ",
            ),
        ),
        row(
            "503 temporarily_unavailable, Retry-After 7",
            error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily_unavailable"}"#,
            )
            .header(RETRY_AFTER.as_str(), "7"),
            Error(
                "Refused { response: ErrorResponse { status: 503, code: TemporarilyUnavailable, description: None, uri: None }, retry_after: Some(RetryAfter { delay: 7s",
            ),
        ),
        row(
            "429, Retry-After 10^15",
            Answer::full(StatusCode::TOO_MANY_REQUESTS, "text/plain", "slow down")
                .header(RETRY_AFTER.as_str(), "1000000000000000"),
            Error("Status { status: 429, retry_after: Some(RetryAfter { delay: 600s"),
        ),
        row(
            "429, Retry-After -5",
            Answer::full(StatusCode::TOO_MANY_REQUESTS, "text/plain", "slow down")
                .header(RETRY_AFTER.as_str(), "-5"),
            Error(
                "Status { status: 429, retry_after: None, answer: ServerAnswer { status: 429, error: None }, url: ",
            ),
        ),
        row(
            "503, Retry-After an HTTP date",
            Answer::full(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "down")
                .header(RETRY_AFTER.as_str(), "Wed, 21 Oct 2015 07:28:00 GMT"),
            Error(
                "Status { status: 503, retry_after: None, answer: ServerAnswer { status: 503, error: None }, url: ",
            ),
        ),
    ]
}

/// Runs one row: a server, a provider, a cache, two requests for a token.
async fn run(row: Row) -> String {
    let Row {
        name,
        answer,
        expect,
    } = row;
    let silent = matches!(answer, Answer::Silent);
    let server = AnsweringServer::start(answer).await;
    let provider = OAuth2::builder()
        .token_endpoint(server.uri())
        .client_id("hostile-client")
        .client_secret(SECRET)
        .timeout(if silent {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(20)
        })
        .build(common::oauth2::http())
        .unwrap();
    // No backoff: the second request asks at once, unless the answer said to wait.
    let cache = TokenCache::builder(provider)
        .backoff(Duration::ZERO, Duration::ZERO)
        .build();

    let first = cache.token().await;
    let outcome = match (expect, first) {
        (Expect::Error(expected), Err(error)) => {
            assert_eq!(error.kind(), TokenErrorKind::Refresher, "{name}: {error:?}");
            assert_eq!(error.reason(), RefreshReason::Initial);
            let provider = provider_error::<OAuth2Error>(&error);
            let found = format!("{provider:?}");
            assert!(found.starts_with(expected), "{name}: {found}");
            let printed = common::describe(&error);
            assert!(!printed.contains(SECRET), "{name}: {printed}");
            // With no backoff, only a server's own wait holds the cache back (a permanent
            // refusal's longest backoff is zero here: tests/oauth2_errors.rs shows it).
            let waits = found.contains("RetryAfter { delay: ");

            let second = cache.token().await.unwrap_err();
            if waits {
                // The server's wait is the cache's: the second request fails fast.
                assert!(
                    matches!(second.kind(), TokenErrorKind::BackingOff { .. }),
                    "{name}: {second:?}"
                );
                assert_eq!(server.requests(), 1, "{name}");
            } else {
                assert_eq!(
                    second.kind(),
                    TokenErrorKind::Refresher,
                    "{name}: {second:?}"
                );
                assert_eq!(server.requests(), 2, "{name}: nothing cached, asked again");
            }
            let mut summary = format!("{provider}");
            if let Some(source) = provider.source() {
                summary.push_str(&format!(": {source}"));
            }
            // The same table whatever port the server had.
            summary.replace(&server.uri(), "http://127.0.0.1:PORT/")
        }
        (Expect::Token(reading, check), Ok(token)) => {
            assert!(check(&token), "{name}: {token:?}");
            format!("token ({reading})")
        }
        (Expect::Error(expected), Ok(token)) => {
            panic!("{name}: expected {expected}, got a token {token:?}")
        }
        (Expect::Token(reading, _), Err(error)) => {
            panic!("{name}: expected a token ({reading}), got {error:?}")
        }
    };
    format!("| {name} | {outcome} |")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_token_endpoint_answers() {
    common::hostile::run_table(rows(), "| answer | outcome |", run).await;
}
