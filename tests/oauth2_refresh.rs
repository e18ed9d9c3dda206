//! The OAuth 2.0 provider under the cache, against the mock authorization server over
//! loopback: concurrent demand at expiry meets one refresh with one refresh token (a server
//! with reuse detection never sees it twice), and a revocation costs one retry.
//!
//! Tokens here live a second, on the server's real clock: the tests wait for expiry rather
//! than pause the clock, which would jump while a request waits on a socket.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::oauth2::to;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, ReplayBody, Scope, TokenCache};
use tower_bearer_mock::oauth2::MockAuthServer;

const TTL: Duration = Duration::from_secs(1);
const CALLS: usize = 1_000;

/// openclaw#87421 and the axios-auth-refresh complaint: many requests finding the token
/// expired at once must use the refresh token once, or a server with reuse detection revokes
/// the family and every later refresh fails. Two lifetimes, 1,000 requests at each expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_at_expiry_use_the_refresh_token_once() {
    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .token_ttl(TTL)
        .start()
        .await
        .unwrap();
    let provider = to(&server).build(common::oauth2::http()).unwrap();
    let cache = TokenCache::new(provider);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone(), Scope::any()))
        .service(service_fn(
            move |request: Request<ReplayBody<Full<Bytes>>>| {
                let header = request.headers()[AUTHORIZATION]
                    .to_str()
                    .unwrap()
                    .to_owned();
                recorded.lock().unwrap().push(header);
                async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
            },
        ));

    let token = cache.token().await.unwrap();
    for lifetime in 1..=2 {
        tokio::time::sleep_until(token_expiry(&cache).await).await;
        seen.lock().unwrap().clear();
        let calls: Vec<_> = (0..CALLS)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move {
                    api.oneshot(Request::new(Full::default()))
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), StatusCode::OK);
        }
        let headers: HashSet<String> = seen.lock().unwrap().drain(..).collect();
        assert_eq!(
            headers.len(),
            1,
            "lifetime {lifetime}: every request, one new token"
        );
        assert!(!headers.contains(token.authorization().to_str().unwrap()));

        let counters = server.counters();
        assert_eq!(
            counters.refresh_token_grants, lifetime,
            "one refresh per expiry"
        );
        assert_eq!(counters.client_credentials_grants, 1);
        assert_eq!(counters.refresh_token_reuses, 0, "the family lives");
        assert_eq!(counters.invalid_grant, 0);
    }

    // The newest token works against the API: nothing was revoked.
    let live = cache.token().await.unwrap();
    let response = http()
        .request(
            Request::get(server.uri_for("/api/check"))
                .header(AUTHORIZATION, live.authorization())
                .body(ReplayBody::new(Full::default()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// When the cache's current token expires.
async fn token_expiry(cache: &TokenCache) -> tokio::time::Instant {
    cache
        .token()
        .await
        .unwrap()
        .expiry()
        .expect("the mock says expires_in")
}

fn http() -> Client<HttpConnector, ReplayBody<Full<Bytes>>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The server revokes every token mid-run: the next request meets a 401, the cache replaces
/// the token (the refresh token, revoked too, is refused, and the provider falls back to
/// client credentials in the same call), and the request is sent again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_mid_run_is_recovered_by_one_retry() {
    let server = MockAuthServer::builder()
        .refresh_tokens(true)
        .start()
        .await
        .unwrap();
    let client = http();
    let provider = to(&server).build(client.clone()).unwrap();
    let cache = TokenCache::builder(provider)
        .min_token_age(Duration::ZERO)
        .build();
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(
            cache,
            Scope::origin(server.uri()).unwrap(),
        ))
        .service(client);
    let call = |path: &'static str| {
        let api = api.clone();
        let uri = server.uri_for(path);
        async move {
            let request = Request::post(uri).body(Full::from("{\"n\":1}")).unwrap();
            api.oneshot(request).await.unwrap().status()
        }
    };

    assert_eq!(call("/api/before").await, StatusCode::OK);
    server.revoke_all();
    assert_eq!(call("/api/after").await, StatusCode::OK);
    assert_eq!(call("/api/later").await, StatusCode::OK);

    let counters = server.counters();
    assert_eq!(counters.resource_requests, 4, "one retry");
    assert_eq!(counters.resource_unauthorized, 1);
    assert_eq!(counters.invalid_grant, 1, "the revoked refresh token");
    assert_eq!(counters.client_credentials_grants, 2);
    assert_eq!(counters.refresh_token_reuses, 0);
}
