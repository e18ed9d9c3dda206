//! `MetadataServer` against the mock metadata server over loopback: what goes on the wire,
//! each failure as the metadata server produces it, the retries within a call, and a
//! `TokenCache` over GCP's token cache.
//!
//! Retries wait on tokio's paused clock: a test asserts how many requests the mock saw, and
//! the paused time a call took, never wall time. The mock answers at once (or after a delay on
//! the same clock), so the clock only jumps over the provider's own waits.

use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_bearer::{RefreshReason, RetryAfter, ServerAnswer, Token, TokenCache, TokenRequest};
use tower_bearer_mock::gcp::{CLOUD_PLATFORM, Fault, MockMetadataServer};
use tower_bearer_platform::gcp::{MetadataError, MetadataServer, MetadataServerBuilder, NoAnswer};

const OTHER: &str = "reports@demo.iam.gserviceaccount.com";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn builder(server: &MockMetadataServer) -> MetadataServerBuilder {
    MetadataServer::builder().host(server.host())
}

async fn token(provider: &MetadataServer<HttpClient>) -> Result<Token, MetadataError> {
    provider
        .clone()
        .oneshot(TokenRequest::new(RefreshReason::Initial, None))
        .await
}

fn status(fault: u16) -> Fault {
    Fault::Status(StatusCode::from_u16(fault).unwrap())
}

#[tokio::test]
async fn the_request_names_the_account_and_scopes_and_carries_the_flavor_header() {
    let server = MockMetadataServer::builder()
        .account("main@demo.iam.gserviceaccount.com", [CLOUD_PLATFORM])
        .account(OTHER, ["https://www.googleapis.com/auth/bigquery"])
        .start()
        .await
        .unwrap();

    let default = builder(&server).build(client()).unwrap();
    let first = token(&default).await.unwrap();
    assert_eq!(
        Some(first.expose_access_token()),
        server.last_token("default").as_deref()
    );

    let scopes = ["https://www.googleapis.com/auth/bigquery", "openid"];
    let other = builder(&server)
        .account(OTHER)
        .scopes(scopes)
        .build(client())
        .unwrap();
    let second = token(&other).await.unwrap();
    assert_eq!(
        Some(second.expose_access_token()),
        server.last_token(OTHER).as_deref()
    );
    assert_ne!(first.expose_access_token(), second.expose_access_token());

    let seen = server.token_requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].account.as_str(), &seen[0].scopes),
        ("default", &None)
    );
    assert_eq!(seen[1].account, OTHER);
    assert_eq!(seen[1].scopes, Some(scopes.map(str::to_owned).to_vec()));
    assert!(seen.iter().all(|seen| seen.status == StatusCode::OK));
    // Without the header the server would have answered 403.
    assert_eq!(server.counters().missing_flavor, 0);
    assert_eq!(server.tokens_for(OTHER), 1);
    assert_eq!(server.tokens_for("default"), 1);
}

/// The mock refuses what the metadata server refuses: a request without the header.
#[tokio::test]
async fn the_mock_refuses_a_request_without_the_flavor_header() {
    let server = MockMetadataServer::start().await.unwrap();
    let path = "/computeMetadata/v1/instance/service-accounts/default/token";
    let bare = Request::get(server.uri_for(path))
        .body(Full::default())
        .unwrap();
    let response = client().request(bare).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["metadata-flavor"], "Google");
    assert_eq!(server.counters().missing_flavor, 1);
    assert_eq!(server.counters().tokens_issued, 0);
}

#[tokio::test]
async fn an_unknown_account_is_permanent_and_asked_once() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server)
        .account("nobody@demo.iam.gserviceaccount.com")
        .build(client())
        .unwrap();
    let error = token(&provider).await.unwrap_err();
    assert!(
        matches!(&error, MetadataError::UnknownAccount { account, .. }
            if account == "nobody@demo.iam.gserviceaccount.com"),
        "{error:?}"
    );
    let hint = RetryAfter::find(&error).expect("a permanent hint");
    assert_eq!(hint.delay(), None);
    assert_eq!(
        ServerAnswer::find(&error).map(ServerAnswer::status),
        Some(StatusCode::NOT_FOUND)
    );
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(server.counters().unknown_accounts, 1);
}

/// 429, 500 and 503 from a server under load are retried within the call, as google-auth
/// retries them; the fifth attempt is the last.
#[tokio::test(start_paused = true)]
async fn statuses_under_load_are_retried_up_to_five_attempts() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server).build(client()).unwrap();
    server.fail_next_tokens(2, status(503));
    server.fail_next_tokens(1, status(429));
    server.fail_next_tokens(1, status(500));
    let started = Instant::now();
    let token = token(&provider).await.unwrap();
    assert_eq!(
        Some(token.expose_access_token()),
        server.last_token("default").as_deref()
    );
    assert_eq!(server.counters().token_requests, 5);
    // Waits of 1, 2, 4 and 8 s, each within 10 %.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(13_500) && waited <= Duration::from_millis(16_500),
        "{waited:?}"
    );

    server.fail_next_tokens(5, status(503));
    let error = self::token(&provider).await.unwrap_err();
    assert!(
        matches!(&error, MetadataError::Status { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE),
        "{error:?}"
    );
    assert_eq!(server.counters().token_requests, 10);
    assert_eq!(
        ServerAnswer::find(&error).map(ServerAnswer::status),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_not_retried() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server).build(client()).unwrap();
    for code in [502, 403, 400] {
        server.fail_next_tokens(1, status(code));
        let before = server.counters().token_requests;
        let error = token(&provider).await.unwrap_err();
        assert!(
            matches!(&error, MetadataError::Status { status, message: Some(_), .. } if status.as_u16() == code),
            "{error:?}"
        );
        assert_eq!(server.counters().token_requests, before + 1, "{code}");
    }
}

/// A wait that would end past the call's timeout is not waited: the call ends with the
/// server's answer, not a timeout.
#[tokio::test(start_paused = true)]
async fn the_timeout_cuts_the_retries_short_with_the_last_answer() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server)
        .timeout(Duration::from_secs(5))
        .build(client())
        .unwrap();
    server.fail_next_tokens(5, status(500));
    let error = token(&provider).await.unwrap_err();
    assert!(
        matches!(&error, MetadataError::Status { status, .. } if *status == StatusCode::INTERNAL_SERVER_ERROR),
        "{error:?}"
    );
    // At 0 s, about 1 s and about 3 s; the next wait, about 4 s, would end past 5 s.
    assert_eq!(server.counters().token_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn a_connection_closed_without_an_answer_is_retried() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server).build(client()).unwrap();
    server.fail_next_tokens(1, Fault::CloseConnection);
    token(&provider).await.unwrap();
    assert_eq!(server.counters().token_requests, 2);
    assert_eq!(server.counters().tokens_issued, 1);
}

/// A GKE metadata server provisioning a pod's identity answers its first request slowly: the
/// attempt times out after 3 s, and the next one is answered.
#[tokio::test(start_paused = true)]
async fn a_slow_first_answer_times_out_and_is_retried() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server).build(client()).unwrap();
    server.fail_next_tokens(1, Fault::Delay(Duration::from_secs(10)));
    token(&provider).await.unwrap();
    assert_eq!(server.counters().token_requests, 2);

    // Every attempt slow: five attempt timeouts, and the last is the error.
    server.fail_next_tokens(5, Fault::Delay(Duration::from_secs(10)));
    let provider = builder(&server)
        .timeout(Duration::from_secs(60))
        .build(client())
        .unwrap();
    let error = token(&provider).await.unwrap_err();
    assert!(
        matches!(&error, MetadataError::NoAnswer(NoAnswer::Timeout { after, .. }) if *after == Duration::from_secs(3)),
        "{error:?}"
    );
    assert_eq!(server.counters().token_requests, 7);
}

/// A pod's metadata server that is not up yet refuses connections: the provider retries until
/// it is.
#[tokio::test(start_paused = true)]
async fn a_connection_refused_is_retried_until_the_server_is_up() {
    // A port nothing listens on, until the server takes it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let provider = MetadataServer::with_host(addr.to_string(), client()).unwrap();
    // Up between the second attempt (about 1 s) and the third (about 3 s).
    let starting = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2000)).await;
        MockMetadataServer::builder()
            .addr(addr)
            .start()
            .await
            .unwrap()
    });
    let token = token(&provider).await.unwrap();
    let server = starting.await.unwrap();
    assert_eq!(
        Some(token.expose_access_token()),
        server.last_token("default").as_deref()
    );
    assert_eq!(server.counters().token_requests, 1);

    // Never up: five refusals, about 15 s of waits, and a transport error.
    drop(server);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let provider = MetadataServer::with_host(addr.to_string(), client()).unwrap();
    let started = Instant::now();
    let error = self::token(&provider).await.unwrap_err();
    assert!(
        matches!(error, MetadataError::NoAnswer(NoAnswer::Transport { .. })),
        "{error:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(13_500) && waited <= Duration::from_millis(16_500),
        "{waited:?}"
    );
}

/// No token in the provider's or its errors' `Debug` and `Display`, or in their sources.
#[tokio::test(start_paused = true)]
async fn no_token_in_debug_display_or_errors() {
    let server = MockMetadataServer::start().await.unwrap();
    let provider = builder(&server).build(client()).unwrap();
    let token = token(&provider).await.unwrap();
    let secret = token.expose_access_token().to_owned();

    let mut printed = vec![format!("{provider:?}"), format!("{token:?}")];
    let mut errors: Vec<Box<dyn Error>> = Vec::new();
    server.fail_next_tokens(5, status(503));
    errors.push(Box::new(self::token(&provider).await.unwrap_err()));
    server.fail_next_tokens(1, status(403));
    errors.push(Box::new(self::token(&provider).await.unwrap_err()));
    let unknown = builder(&server).account(OTHER).build(client()).unwrap();
    errors.push(Box::new(self::token(&unknown).await.unwrap_err()));
    let cache = TokenCache::new(unknown);
    errors.push(Box::new(cache.token().await.unwrap_err()));
    for error in &errors {
        let mut cause: Option<&dyn Error> = Some(&**error);
        while let Some(error) = cause {
            printed.push(format!("{error} {error:?}"));
            cause = error.source();
        }
    }
    for text in &printed {
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("ya29."), "{text}");
    }
    assert!(printed.len() > errors.len() * 2, "{printed:#?}");
}

/// GCP's cache hands back the token it already gave until `renew_before` before its expiry. A
/// `TokenCache` refreshing ahead of expiry over it must not loop: every call gets a token, and
/// the metadata server is asked a handful of times per token lifetime.
///
/// Scaled from GCP's hour and 5 minutes by 1/60: tokens live 60 s, handed back until 5 s
/// before expiry. The cache's defaults shrink with the lifetime (refresh ahead in the last
/// quarter, at most 5 minutes; minimum validity a tenth); a request every second for 20
/// lifetimes.
#[tokio::test(start_paused = true)]
async fn a_token_cache_over_gcps_cache_asks_a_few_times_per_lifetime() {
    const LIFETIMES: u64 = 20;
    let ttl = Duration::from_secs(60);
    let server = MockMetadataServer::builder()
        .token_ttl(ttl)
        .renew_before(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let cache = TokenCache::new(builder(&server).build(client()).unwrap());
    let end = Instant::now() + ttl * LIFETIMES as u32;
    let mut calls = 0;
    while Instant::now() < end {
        let token = cache.token().await.expect("every call gets a token");
        assert!(token.expiry().is_some_and(|at| at > Instant::now()));
        calls += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Let a refresh started by the last call finish before counting.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counters = server.counters();
    let per_lifetime = counters.token_requests as f64 / counters.tokens_issued as f64;
    println!(
        "{calls} calls, {} token requests, {} tokens issued, {} handed back again: \
         {per_lifetime:.2} requests per token lifetime",
        counters.token_requests, counters.tokens_issued, counters.tokens_reused
    );
    assert!(
        counters.tokens_issued >= LIFETIMES && counters.tokens_issued <= LIFETIMES + 2,
        "{counters:?}"
    );
    // Measured: 1.95 (41 requests for 21 tokens). A refresh ahead that starts more than
    // `renew_before` before expiry is handed the same token, now with a quarter of the window
    // left, so the cache's shrunken windows ask again within that remainder and get a new
    // one: two requests per lifetime at most in steady state. The margin covers a refresh
    // the last call started; a loop would be tens.
    assert!(per_lifetime <= 2.5, "{counters:?}");
}
