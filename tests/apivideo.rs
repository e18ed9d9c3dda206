//! The api.video provider against the embedded mock server, over loopback HTTP: real
//! sockets and real time, so token lifetimes here are long and the cache's minimum token age
//! is set to zero where a test needs a 401 to replace a fresh token.

mod common;

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::describe;
use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{
    BearerAuthLayer, RefreshReason, Refresher, ReplayBody, Scope, Token, TokenCache, TokenError,
    TokenErrorKind, TokenRequest,
};
use tower_bearer_apivideo::{ApiVideo, ApiVideoError, Malformed, NoAnswer};
use tower_bearer_mock::apivideo::{Failure, MockServer};

const KEY: &str = "key-for-tests-0123456789";

type Http = Client<HttpConnector, ReplayBody<Full<Bytes>>>;
type Provider = ApiVideo<Http, ReplayBody<Full<Bytes>>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn mock() -> MockServer {
    MockServer::builder().api_key(KEY).start().await.unwrap()
}

fn provider(server: &MockServer, client: Http) -> Provider {
    ApiVideo::with_base_uri(server.uri(), KEY, client)
        .unwrap()
        .timeout(Duration::from_secs(5))
}

/// One call to the provider, as the cache makes it.
async fn fetch(
    api: &mut Provider,
    reason: RefreshReason,
    previous: Option<&Token>,
) -> Result<Token, ApiVideoError> {
    api.ready()
        .await?
        .call(TokenRequest::new(reason, previous.cloned()))
        .await
}

/// A cache that replaces a token on any 401, however young, and backs off briefly.
fn cache(refresher: impl Refresher) -> TokenCache {
    TokenCache::builder(refresher)
        .min_token_age(Duration::ZERO)
        .backoff(Duration::from_millis(50), Duration::from_millis(50))
        .build()
}

fn list(server: &MockServer) -> Request<Full<Bytes>> {
    Request::get(server.uri_for("/videos"))
        .body(Full::default())
        .unwrap()
}

fn create(server: &MockServer, title: &str) -> Request<Full<Bytes>> {
    Request::post(server.uri_for("/videos"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::from(format!(
            r#"{{"title":"{title}","public":false}}"#
        )))
        .unwrap()
}

/// The provider's error in a `BearerAuth` or cache error, wherever it is in the chain.
fn provider_error<'a>(error: &'a (dyn Error + 'static)) -> &'a ApiVideoError {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<ApiVideoError>() {
            return found;
        }
        next = match error.downcast_ref::<TokenError>() {
            Some(token) => token.refresher_error().map(|e| e as _),
            None => error.source(),
        };
    }
    panic!("no ApiVideoError in {error:?}");
}

// ===== the grants =====

#[tokio::test]
async fn logs_in_with_the_api_key() {
    let server = mock().await;
    let mut api = provider(&server, http());

    let token = fetch(&mut api, RefreshReason::Initial, None).await.unwrap();

    let counters = server.counters();
    assert_eq!((counters.api_key_logins, counters.refreshes), (1, 0));
    assert!(token.expose_refresh_token().is_some());
    let lifetime = token.expiry().unwrap() - tokio::time::Instant::now();
    assert!(lifetime > Duration::from_secs(3590) && lifetime <= Duration::from_secs(3600));

    let headers = server.last_auth_headers().unwrap();
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_eq!(headers[ACCEPT], "application/json");
    assert_eq!(
        headers[USER_AGENT],
        concat!("tower-bearer/", env!("CARGO_PKG_VERSION"))
    );
    assert!(!headers.contains_key("av-origin-client"));

    // The token works on the API.
    let response = BearerAuthLayer::from_cache(TokenCache::new(api), Scope::any())
        .layer(http())
        .oneshot(list(&server))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn refreshes_with_the_refresh_token() {
    let server = mock().await;
    let mut api = provider(&server, http());
    let first = fetch(&mut api, RefreshReason::Initial, None).await.unwrap();

    let second = fetch(&mut api, RefreshReason::Ahead, Some(&first))
        .await
        .unwrap();

    let counters = server.counters();
    assert_eq!((counters.api_key_logins, counters.refreshes), (1, 1));
    assert_ne!(second.authorization(), first.authorization());
    let refresh = |t: &Token| t.expose_refresh_token().unwrap().to_owned();
    assert_ne!(refresh(&second), refresh(&first), "refresh tokens rotate");

    // And the rotated one is what the next refresh uses.
    let third = fetch(&mut api, RefreshReason::Expired, Some(&second))
        .await
        .unwrap();
    assert_eq!(server.counters().refreshes, 2);
    assert_eq!(server.counters().rejected_refresh_tokens, 0);
    assert_ne!(third.authorization(), second.authorization());
}

/// A second process logging in with the same key ends this one's refresh token; this one
/// logs in again in the same call, whether the server says 400 (OpenAPI) or 401 (errors
/// reference).
#[tokio::test]
async fn falls_back_to_the_api_key_when_another_process_logged_in() {
    for status in [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED] {
        let server = MockServer::builder()
            .api_key(KEY)
            .credential_rejection_status(status)
            .start()
            .await
            .unwrap();
        let mut this = provider(&server, http());
        let mut other = provider(&server, http());
        let ours = fetch(&mut this, RefreshReason::Initial, None)
            .await
            .unwrap();
        fetch(&mut other, RefreshReason::Initial, None)
            .await
            .unwrap();

        let replaced = fetch(&mut this, RefreshReason::Ahead, Some(&ours))
            .await
            .unwrap();

        let counters = server.counters();
        assert_eq!(counters.rejected_refresh_tokens, 1, "{status}");
        assert_eq!(counters.api_key_logins, 3, "{status}");
        assert_eq!(counters.refreshes, 0, "{status}");
        assert!(replaced.expose_refresh_token().is_some());
        // The new pair is good: its refresh token is the live one now.
        fetch(&mut this, RefreshReason::Ahead, Some(&replaced))
            .await
            .unwrap();
        assert_eq!(server.counters().refreshes, 1);
    }
}

/// 5xx, 429 and malformed answers to a refresh are errors, not reasons to log in: the
/// refresh token is kept, and works once the server is well again.
#[tokio::test]
async fn transient_refresh_failures_do_not_fall_back() {
    let server = mock().await;
    let mut api = provider(&server, http());
    let token = fetch(&mut api, RefreshReason::Initial, None).await.unwrap();

    for failure in [
        Failure::Status(StatusCode::SERVICE_UNAVAILABLE),
        Failure::Status(StatusCode::TOO_MANY_REQUESTS),
        Failure::Malformed,
    ] {
        server.fail_next_auth(1, failure);
        let error = fetch(&mut api, RefreshReason::Ahead, Some(&token))
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ApiVideoError::Status { .. }
                    | ApiVideoError::RateLimited { .. }
                    | ApiVideoError::Malformed {
                        error: Malformed::NotJson(_),
                        ..
                    }
            ),
            "{failure:?}: {error:?}"
        );
    }
    assert_eq!(server.counters().api_key_logins, 1);
    fetch(&mut api, RefreshReason::Ahead, Some(&token))
        .await
        .unwrap();
    assert_eq!(server.counters().refreshes, 1);
}

#[tokio::test]
async fn a_wrong_api_key_is_rejected_with_the_problem() {
    let server = mock().await;
    let mut api = ApiVideo::with_base_uri(server.uri(), "not-the-key", http()).unwrap();

    let error = fetch(&mut api, RefreshReason::Initial, None)
        .await
        .unwrap_err();

    let ApiVideoError::Rejected {
        problem,
        url,
        retry_after,
    } = &error
    else {
        panic!("{error:?}");
    };
    // Not fixed by trying again: the cache waits its longest backoff.
    assert_eq!(retry_after.delay(), None);
    let hint = tower_bearer::RetryAfter::find(&error).expect("a hint in the chain");
    assert_eq!(hint.delay(), None);
    assert_eq!(
        tower_bearer::ServerAnswer::find(&error).map(|answer| answer.status()),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(*url, server.uri_for("/auth/api-key").to_string());
    assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        problem.title(),
        Some("The user credentials were incorrect.")
    );
    assert_eq!(
        problem.type_uri(),
        Some("https://docs.api.video/reference/authentication-invalid-user-credentials")
    );
    assert!(!describe(&error).contains("not-the-key"));
}

/// A refused API key is not sent again a second later, nor at every step of the backoff: the
/// cache waits its longest backoff at once, as for any credential refused for good.
#[tokio::test]
async fn a_wrong_api_key_backs_the_cache_off_to_its_longest_wait() {
    let server = mock().await;
    let api = ApiVideo::with_base_uri(server.uri(), "not-the-key", http()).unwrap();
    let cache = tower_bearer::TokenCache::builder(api)
        .backoff(Duration::from_secs(1), Duration::from_secs(600))
        .build();

    let error = cache.token().await.unwrap_err();

    assert_eq!(error.kind(), tower_bearer::TokenErrorKind::Refresher);
    let backing_off = cache.stats().backing_off.expect("backing off");
    // Drawn between half and all of the longest backoff.
    assert!(backing_off >= Duration::from_secs(300), "{backing_off:?}");
    let again = cache.token().await.unwrap_err();
    assert!(
        matches!(
            again.kind(),
            tower_bearer::TokenErrorKind::BackingOff { .. }
        ),
        "{again}"
    );
}

// ===== through the middleware =====

/// Every token revoked on the server: the POST is refused with 401, the cache replaces the
/// token (the revoked refresh token is refused too, so by the API key), and the POST is sent
/// again with the very same bytes.
#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_post_arrives_again_byte_identical() {
    let server = mock().await;
    let client = http();
    let api = provider(&server, client.clone());
    let scope = api.scope();
    let service = BearerAuthLayer::from_cache(cache(api), scope).layer(client);

    let first = service
        .clone()
        .oneshot(create(&server, "before"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    server.revoke_all();
    let second = service
        .clone()
        .oneshot(create(&server, "after the revocation"))
        .await
        .unwrap();

    assert_eq!(second.status(), StatusCode::CREATED);
    let bodies = server.received_bodies();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[1], bodies[2]);
    assert_eq!(
        bodies[2],
        r#"{"title":"after the revocation","public":false}"#
    );
    let counters = server.counters();
    assert_eq!(counters.unauthorized_revoked, 1);
    assert_eq!(counters.rejected_refresh_tokens, 1);
    assert_eq!(counters.api_key_logins, 2);
    let stats = service.cache().stats();
    assert_eq!(stats.retried, 1);
    assert_eq!(stats.refreshes(RefreshReason::Rejected).succeeded, 1);
}

/// The token goes only to the API's origin.
#[tokio::test]
async fn the_layer_is_scoped_to_the_api() {
    let server = mock().await;
    let client = http();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = Arc::clone(&seen);
        service_fn(move |request: Request<ReplayBody<Full<Bytes>>>| {
            seen.lock()
                .unwrap()
                .push(request.headers().contains_key("authorization"));
            std::future::ready(Ok::<_, BoxError>(Response::new(Full::<Bytes>::default())))
        })
    };
    let service = provider(&server, client).into_layer().layer(recorder);

    for uri in [
        server.uri_for("/videos"),
        "https://upload.example.net/signed?x=1".to_owned(),
        format!("http://localhost:{}/videos", server.addr().port()),
    ] {
        let request = Request::get(uri).body(Full::default()).unwrap();
        service.clone().oneshot(request).await.unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), [true, false, false]);
}

// ===== failures reach the cache =====

/// A hung auth server: the provider's own timeout, or `tower::timeout` stacked on it, ends
/// the call; the next call after the backoff succeeds.
#[tokio::test]
async fn a_hung_or_slow_auth_server_times_out() {
    let server = mock().await;

    // The provider's own timeout.
    server.fail_next_auth(1, Failure::Hang);
    let mut api = provider(&server, http()).timeout(Duration::from_millis(200));
    let error = fetch(&mut api, RefreshReason::Initial, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApiVideoError::NoAnswer(NoAnswer::Timeout { after, .. }) if after == Duration::from_millis(200)),
        "{error:?}"
    );

    // tower's, through the cache and the middleware.
    server.fail_next_auth(1, Failure::Delay(Duration::from_secs(2)));
    let client = http();
    let refresher = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .service(provider(&server, client.clone()));
    let service = BearerAuthLayer::from_cache(cache(refresher), Scope::any()).layer(client);
    let error = service.clone().oneshot(list(&server)).await.unwrap_err();
    let token_error = TokenError::find(&*error).expect("a token error");
    assert_eq!(token_error.kind(), TokenErrorKind::Refresher);
    assert!(
        token_error
            .refresher_error()
            .unwrap()
            .is::<tower::timeout::error::Elapsed>()
    );

    tokio::time::sleep(Duration::from_millis(60)).await;
    let response = service.oneshot(list(&server)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The auth server answers 503 for a while: requests fail with a `TokenError` whose source
/// is the provider's error, and succeed once it is back.
#[tokio::test]
async fn auth_server_down_then_back() {
    let server = mock().await;
    server.fail_next_auth(3, Failure::Status(StatusCode::SERVICE_UNAVAILABLE));
    let client = http();
    let service =
        BearerAuthLayer::from_cache(cache(provider(&server, client.clone())), Scope::any())
            .layer(client);

    let error = service.clone().oneshot(list(&server)).await.unwrap_err();
    let token_error = TokenError::find(&*error).expect("a token error");
    assert_eq!(token_error.kind(), TokenErrorKind::Refresher);
    assert_eq!(token_error.reason(), RefreshReason::Initial);
    let ApiVideoError::Status { problem, .. } = provider_error(&*error) else {
        panic!("{error:?}");
    };
    assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Within the backoff the cache answers alone.
    let error = service.clone().oneshot(list(&server)).await.unwrap_err();
    assert!(matches!(
        TokenError::find(&*error).unwrap().kind(),
        TokenErrorKind::BackingOff { .. }
    ));
    assert_eq!(server.counters().auth_requests, 1);

    let mut failures = 0;
    let response = loop {
        tokio::time::sleep(Duration::from_millis(60)).await;
        match service.clone().oneshot(list(&server)).await {
            Ok(response) => break response,
            Err(error) => {
                assert!(TokenError::find(&*error).is_some(), "{error}");
                failures += 1;
                assert!(failures < 10, "never recovered");
            }
        }
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.counters().auth_requests, 4);
    assert_eq!(server.counters().api_key_logins, 1);
}

#[tokio::test]
async fn transport_failure_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut api: Provider = ApiVideo::with_base_uri(format!("http://{addr}"), KEY, http()).unwrap();

    let error = fetch(&mut api, RefreshReason::Initial, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApiVideoError::NoAnswer(NoAnswer::Transport { url, .. }) if *url == format!("http://{addr}/auth/api-key")),
        "{error:?}"
    );
    assert!(error.source().is_some());
}

/// A 429's `X-RateLimit-Retry-After` is the cache's wait, instead of its own (50 ms) backoff.
#[tokio::test]
async fn rate_limit_wait_is_honoured() {
    let server = mock().await;
    server.fail_next_auth(
        1,
        Failure::RateLimited {
            retry_after: Duration::from_secs(3),
        },
    );
    let cache = cache(provider(&server, http()));

    let error = cache.token().await.unwrap_err();

    let ApiVideoError::RateLimited {
        retry_after,
        problem,
        ..
    } = provider_error(&error)
    else {
        panic!("{error:?}");
    };
    assert_eq!(problem.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem.title(), Some("Too many requests."));
    assert_eq!(
        retry_after.as_ref().and_then(|hint| hint.delay()),
        Some(Duration::from_secs(3))
    );
    let backing_off = cache.stats().backing_off.expect("backing off");
    assert!(
        backing_off > Duration::from_millis(2500) && backing_off <= Duration::from_secs(3),
        "{backing_off:?}"
    );
    let again = cache.token().await.unwrap_err();
    assert!(
        matches!(again.kind(), TokenErrorKind::BackingOff { retry_in } if retry_in > Duration::from_secs(2))
    );
    assert_eq!(server.counters().auth_requests, 1);
}
