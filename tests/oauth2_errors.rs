//! What the OAuth 2.0 provider makes of a token endpoint that refuses or fails, against the
//! mock authorization server over loopback, and what the cache then does: a permanent
//! refusal waits the longest backoff at once, a transient failure the shortest, a
//! `Retry-After` its own time; nothing hammers the server.

mod common;

use std::time::Duration;

use common::oauth2::{first, http, to};
use http::StatusCode;
use tower_bearer::{RetryAfter, TokenCache, TokenError, TokenErrorKind};
use tower_bearer_mock::oauth2::{Fault, MockAuthServer};
use tower_bearer_oauth2::{ErrorCode, MalformedAnswer, NoAnswer, OAuth2, OAuth2Error};

const LONGEST: Duration = Duration::from_secs(600);

/// The provider's error under a cache error.
fn provider_error(error: &TokenError) -> &OAuth2Error {
    let mut next: Option<&(dyn std::error::Error + 'static)> =
        error.refresher_error().map(|e| e as _);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<OAuth2Error>() {
            return found;
        }
        next = error.source();
    }
    panic!("no OAuth2Error in {error:?}");
}

/// The cache's wait after the first refresh failed, as the second request is told it.
async fn backoff_after_failure(cache: &TokenCache) -> (OAuth2ErrorSummary, Duration) {
    let failed = cache.token().await.unwrap_err();
    assert_eq!(failed.kind(), TokenErrorKind::Refresher, "{failed:?}");
    let summary = OAuth2ErrorSummary::of(provider_error(&failed));
    let waiting = cache.token().await.unwrap_err();
    match waiting.kind() {
        TokenErrorKind::BackingOff { retry_in } => (summary, retry_in),
        other => panic!("not backing off: {other:?}"),
    }
}

#[derive(Debug)]
struct OAuth2ErrorSummary {
    debug: String,
    permanent: bool,
}

impl OAuth2ErrorSummary {
    fn of(error: &OAuth2Error) -> Self {
        OAuth2ErrorSummary {
            debug: format!("{error:?}"),
            permanent: error.is_permanent(),
        }
    }
}

fn cache_for(provider: OAuth2<common::oauth2::Http>) -> TokenCache {
    TokenCache::builder(provider)
        .backoff(Duration::from_secs(1), LONGEST)
        .build()
}

/// A wrong client secret will be wrong again in a second: the cache waits its longest
/// backoff (jittered between half and all of it) rather than asking every second.
#[tokio::test]
async fn a_permanent_refusal_waits_the_longest_backoff_at_once() {
    let server = MockAuthServer::start().await.unwrap();
    let provider = to(&server)
        .client_secret("not-the-secret")
        .build(http())
        .unwrap();
    let (error, retry_in) = backoff_after_failure(&cache_for(provider)).await;
    assert!(error.permanent, "{error:?}");
    assert!(error.debug.contains("InvalidClient"), "{error:?}");
    assert!(
        retry_in >= LONGEST / 2 - Duration::from_secs(1),
        "{retry_in:?}"
    );
    assert_eq!(server.counters().token_requests, 1);
}

#[tokio::test]
async fn every_permanent_code_is_permanent() {
    for code in [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
    ] {
        let server = MockAuthServer::start().await.unwrap();
        server.fail_next_token_requests(
            1,
            Fault::Error {
                status: StatusCode::BAD_REQUEST,
                code,
            },
        );
        let provider = to(&server).build(http()).unwrap();
        let (error, retry_in) = backoff_after_failure(&cache_for(provider)).await;
        assert!(error.permanent, "{code}: {error:?}");
        assert!(retry_in >= LONGEST / 2 - Duration::from_secs(1), "{code}");
    }
}

/// A server error or a temporarily unavailable server may be back in a second: the cache's
/// shortest backoff, and the token endpoint asked again after it.
#[tokio::test]
async fn a_transient_failure_waits_the_shortest_backoff() {
    for fault in [
        Fault::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::Status(StatusCode::BAD_GATEWAY),
        Fault::Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "temporarily_unavailable",
        },
        Fault::Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "server_error",
        },
        Fault::Malformed,
    ] {
        let server = MockAuthServer::start().await.unwrap();
        server.fail_next_token_requests(1, fault.clone());
        let provider = to(&server).build(http()).unwrap();
        let (error, retry_in) = backoff_after_failure(&cache_for(provider)).await;
        assert!(!error.permanent, "{fault:?}: {error:?}");
        assert!(
            retry_in <= Duration::from_secs(1),
            "{fault:?}: {retry_in:?}"
        );
    }
}

/// 429 and 503 say when to come back; the cache waits that long, at most 10 minutes.
#[tokio::test]
async fn retry_after_is_the_caches_wait_capped() {
    for (asked, expected) in [
        (Duration::from_secs(30), Duration::from_secs(30)),
        (Duration::from_secs(3 * 3600), LONGEST),
    ] {
        let server = MockAuthServer::start().await.unwrap();
        server.fail_next_token_requests(1, Fault::RateLimited { retry_after: asked });
        let provider = to(&server).build(http()).unwrap();
        let error = first(&provider).await.unwrap_err();
        let OAuth2Error::Refused {
            response,
            retry_after: Some(hint),
            ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(hint.delay(), Some(expected));
        assert!(!error.is_permanent());

        server.fail_next_token_requests(1, Fault::RateLimited { retry_after: asked });
        let (_, retry_in) = backoff_after_failure(&cache_for(provider)).await;
        assert!(retry_in <= expected && retry_in > expected - Duration::from_secs(2));
    }
}

/// The hint travels in the provider error's source chain, where the cache finds it through
/// any wrapper.
#[tokio::test]
async fn the_hint_is_in_the_source_chain() {
    let server = MockAuthServer::start().await.unwrap();
    server.fail_next_token_requests(
        1,
        Fault::Error {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
        },
    );
    let error = first(&to(&server).build(http()).unwrap())
        .await
        .unwrap_err();
    let hint = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<RetryAfter>())
        .expect("a RetryAfter");
    assert_eq!(hint.delay(), None);
    assert_eq!(
        error.error_response().unwrap().code(),
        &ErrorCode::InvalidClient
    );
}

/// A token endpoint that never answers: the provider's timeout covers the call, and the
/// error names the endpoint.
#[tokio::test]
async fn a_silent_token_endpoint_times_out() {
    let server = MockAuthServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Hang);
    let provider = to(&server)
        .timeout(Duration::from_millis(200))
        .build(http())
        .unwrap();
    let error = first(&provider).await.unwrap_err();
    assert!(
        matches!(
            &error,
            OAuth2Error::NoAnswer(NoAnswer::Timeout { after, url })
                if *after == Duration::from_millis(200) && *url == server.token_endpoint()
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_broken_json_answer_is_malformed_and_quotes_nothing() {
    let server = MockAuthServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Malformed);
    let error = first(&to(&server).build(http()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(
        &error,
        OAuth2Error::Malformed {
            error: MalformedAnswer::NotJson(_),
            url,
        } if *url == server.token_endpoint()
    ));
    let printed = common::describe(&error);
    assert!(!printed.contains("mat_broken"), "{printed}");
}

/// A slow answer is only slow: the token comes when it comes.
#[tokio::test]
async fn a_slow_answer_is_waited_for() {
    let server = MockAuthServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Delay(Duration::from_millis(100)));
    first(&to(&server).build(http()).unwrap()).await.unwrap();
    assert_eq!(server.counters().delays_injected, 1);
}
