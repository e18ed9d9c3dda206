//! The reqwest middleware against the embedded mock api.video over loopback: real sockets and
//! real time, the provider itself sending through reqwest. Caches here believe any 401
//! (minimum token age zero), so that a revocation right after a login replaces the token.

mod reqwest_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryTransientMiddleware};
use reqwest_support::*;
use reqwest_tracing::TracingMiddleware;
use tokio::sync::{Barrier, watch};
use tower::{ServiceBuilder, ServiceExt};
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer::{BearerAuthLayer, RefreshReason, ReplayBody, Scope};
use tower_bearer_mock::apivideo::MockServer;

/// The client under test: the middleware, then `below` to see what it sent.
fn client(auth: BearerAuthMiddleware, below: &Below) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(auth)
        .with(below.clone())
        .build()
}

/// A middleware on `server` that believes any 401.
fn auth(server: &MockServer) -> BearerAuthMiddleware {
    let api = apivideo(server);
    let scope = api.scope();
    BearerAuthMiddleware::from_cache(believing(api), scope)
}

fn videos(server: &MockServer) -> String {
    server.uri_for("/videos")
}

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_post_sent_again_byte_identical() {
    let server = mock().await;
    let below = Below::default();
    let auth = auth(&server);
    let cache = auth.cache().clone();
    let client = client(auth, &below);

    let list = client.get(videos(&server)).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    server.revoke_all();
    let created = client
        .post(videos(&server))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"title":"sent twice","public":false}"#)
        .send()
        .await
        .unwrap();

    assert_eq!(created.status(), StatusCode::CREATED);
    let counters = server.counters();
    assert_eq!(counters.unauthorized_revoked, 1);
    // The revocation ended the refresh token too: the provider logged in again.
    assert_eq!(counters.api_key_logins, 2);
    assert_eq!(counters.videos_created, 1);
    let bodies = server.received_bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    let sent = below.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[0].0, sent[1].0,
        "the POST first went with the token of the GET"
    );
    assert_ne!(sent[1].0, sent[2].0, "and again with a new one");
    assert!(
        sent.iter()
            .all(|(auth, sensitive)| auth.is_some() && *sensitive)
    );
    let stats = cache.stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_refusals_cost_one_refresh() {
    const N: usize = 100;
    let server = mock().await;
    let below = Below::default();
    let auth = auth(&server);
    let cache = auth.cache().clone();
    let client = client(auth, &below);
    let all = |client: &ClientWithMiddleware| {
        let calls: Vec<_> = (0..N)
            .map(|_| tokio::spawn(client.get(videos(&server)).send()))
            .collect();
        async move {
            for call in calls {
                assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
            }
        }
    };

    // A hundred first requests wait for one login.
    all(&client).await;
    assert_eq!(server.counters().api_key_logins, 1);

    // A hundred requests all sent with the token the server has just revoked; all but the
    // first read their refusal once the first has a new token and has sent its retry:
    // refusals of a token the cache has replaced already must not replace the new one.
    server.revoke_all();
    below.hold(N);
    below.stagger_answers(N);
    all(&client).await;

    let counters = server.counters();
    assert_eq!(counters.unauthorized_revoked, N as u64);
    assert_eq!(counters.api_key_logins + counters.refreshes, 2);
    let stats = cache.stats();
    assert_eq!(stats.refreshes(RefreshReason::Rejected).started, 1);
    assert_eq!((stats.unauthorized, stats.retried), (N as u64, N as u64));
    assert_eq!(counters.expired_token_requests, 0);
}

#[tokio::test]
async fn a_streaming_body_is_not_retried_but_the_token_is_replaced() {
    let server = mock().await;
    let below = Below::default();
    let client = client(auth(&server), &below);
    assert!(
        client
            .get(videos(&server))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    server.revoke_all();
    let stream = reqwest::Body::wrap(Full::new(Bytes::from_static(br#"{"title":"once"}"#)));
    let refused = client
        .post(videos(&server))
        .header(CONTENT_TYPE, "application/json")
        .body(stream)
        .send()
        .await
        .unwrap();

    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.received_bodies().len(), 1, "sent once");
    // The next request goes with a new token, refused by nobody.
    let list = client.get(videos(&server)).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let counters = server.counters();
    assert_eq!(counters.unauthorized, 1);
    assert_eq!(counters.api_key_logins, 2);
    assert_eq!(below.sent().len(), 3);
}

#[tokio::test]
async fn with_retry_off_a_refusal_goes_back_and_the_token_is_replaced() {
    let server = mock().await;
    let below = Below::default();
    let client = client(auth(&server).retry_unauthorized(false), &below);
    assert!(
        client
            .get(videos(&server))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    server.revoke_all();
    let refused = client.get(videos(&server)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let list = client.get(videos(&server)).send().await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert_eq!(server.counters().unauthorized, 1);
    assert_eq!(below.sent().len(), 3);
}

/// A tower client and a reqwest client of one process, one cache: one login, and when both
/// meet a revoked token at once, one refresh between them, even when one side hears its
/// refusal only after the other has replaced the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tower_client_and_a_reqwest_client_share_one_cache() {
    let server = mock().await;
    let api = apivideo(&server);
    let scope = api.scope();
    let cache = believing(api);

    // The tower side: BearerAuth over a hyper-util client, below it a gate of its own that
    // holds its next request until the reqwest side's is sent too, and tells when the
    // request after that (the retry, with a new token) goes out.
    const SENDING: usize = 0;
    const HOLD_NEXT: usize = 1;
    const HELD: usize = 2;
    let gate = Arc::new(Barrier::new(2));
    let phase = Arc::new(AtomicUsize::new(SENDING));
    let (retried, tower_retried) = watch::channel(false);
    let hyper: Client<_, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let (g, p) = (gate.clone(), phase.clone());
    let gated = tower::service_fn(move |request| {
        let (hyper, gate, phase, retried) = (hyper.clone(), g.clone(), p.clone(), retried.clone());
        async move {
            match phase.compare_exchange(HOLD_NEXT, HELD, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    gate.wait().await;
                }
                Err(HELD) => {
                    retried.send_replace(true);
                }
                Err(_) => {}
            }
            hyper.request(request).await
        }
    });
    let tower_client = ServiceBuilder::new()
        .layer(BearerAuthLayer::from_cache(cache.clone(), scope.clone()))
        .service(gated);
    let tower_get = || {
        let request = http::Request::get(server.uri_for("/videos"))
            .body(Full::default())
            .unwrap();
        let tower_client = tower_client.clone();
        async move { tower_client.oneshot(request).await.unwrap().status() }
    };

    // The reqwest side, with the same cache.
    let below = Below::default();
    let reqwest_client = client(
        BearerAuthMiddleware::from_cache(cache.clone(), scope),
        &below,
    );
    let reqwest_get = || reqwest_client.get(videos(&server)).send();

    assert_eq!(tower_get().await, StatusCode::OK);
    assert_eq!(reqwest_get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(server.counters().api_key_logins, 1, "one login for both");

    // Both sent with the revoked token before either answer is read: each side holds its
    // request at the same barrier. The reqwest side reads its refusal once the tower side has
    // replaced the token and sent its retry: a refusal of a token the cache has replaced
    // already must not replace the new one.
    server.revoke_all();
    phase.store(HOLD_NEXT, Ordering::SeqCst);
    below.hold_at(1, gate);
    below.hold_answer_until(tower_retried);
    let (tower_status, reqwest_response) = tokio::join!(tower_get(), reqwest_get());

    assert_eq!(tower_status, StatusCode::OK);
    assert_eq!(reqwest_response.unwrap().status(), StatusCode::OK);
    let counters = server.counters();
    assert_eq!(
        counters.unauthorized_revoked, 2,
        "both met the revoked token"
    );
    assert_eq!(
        counters.api_key_logins + counters.refreshes,
        2,
        "one refresh between them"
    );
    assert_eq!(cache.stats().refreshes(RefreshReason::Rejected).started, 1);
}

// ===== in a stack with reqwest-retry and reqwest-tracing =====

/// A proxy to `server` that answers 503 the first time it sees a path and query, and passes
/// every other request on: each call meets one transient failure.
async fn flaky_proxy(server: &MockServer) -> Server {
    let upstream = server.uri();
    let seen_before = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let http = reqwest::Client::new();
    Server::start_async(move |seen: Seen| {
        let first = lock(&seen_before).insert(seen.target.clone());
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            if first {
                return answer(StatusCode::SERVICE_UNAVAILABLE);
            }
            let url = format!("{upstream}{}", seen.target);
            let mut request = http.request(seen.method, url).body(seen.body);
            if let Some(auth) = seen.authorization {
                request = request.header(http::header::AUTHORIZATION, auth);
            }
            if let Some(content_type) = seen.content_type {
                request = request.header(CONTENT_TYPE, content_type);
            }
            let response = request.send().await.unwrap();
            let mut answer = http::Response::new(Full::default());
            *answer.status_mut() = response.status();
            *answer.headers_mut() = response.headers().clone();
            *answer.body_mut() = Full::new(response.bytes().await.unwrap());
            answer
        }
    })
    .await
}

fn retries(max: u32, wait: Duration) -> RetryTransientMiddleware<ExponentialBackoff> {
    let policy = ExponentialBackoff::builder()
        .retry_bounds(wait, wait)
        .jitter(Jitter::None)
        .build_with_max_retries(max);
    RetryTransientMiddleware::new_with_policy(policy)
}

/// reqwest-tracing, then reqwest-retry, then the middleware: every transient failure is
/// retried by reqwest-retry, and its attempts read the one cache; a revocation costs one
/// refresh and one retry by the middleware, whatever reqwest-retry does around it.
#[tokio::test]
async fn reqwest_retry_attempts_cost_no_refresh() {
    let server = mock().await;
    let proxy = flaky_proxy(&server).await;
    let auth = BearerAuthMiddleware::from_cache(
        believing(apivideo(&server)),
        Scope::origin(proxy.origin()).unwrap(),
    );
    let cache = auth.cache().clone();
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::default())
        .with(retries(3, Duration::from_millis(1)))
        .with(auth)
        .build();

    for call in 0..20 {
        if call == 10 {
            server.revoke_all();
        }
        let url = proxy.url(&format!("/videos?pageSize=2&call={call}"));
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "call {call}");
    }

    let answered_503 = proxy.seen().len() - server.counters().resource_requests as usize;
    assert_eq!(answered_503, 20, "reqwest-retry retried each call once");
    let counters = server.counters();
    assert_eq!(counters.unauthorized_revoked, 1);
    assert_eq!(
        (counters.api_key_logins, counters.refreshes),
        (2, 0),
        "the first login, and the one after the revocation"
    );
    let stats = cache.stats();
    assert_eq!(stats.total().started, 2);
    assert_eq!((stats.unauthorized, stats.retried), (1, 1));
}

/// Why the middleware goes after reqwest-retry: a retry that waits past the token's life
/// carries a new token from the cache. Placed before reqwest-retry instead, the retry carries
/// the token attached before the wait, which the server refuses as expired.
#[tokio::test]
async fn the_middleware_goes_after_reqwest_retry() {
    // Tokens live 1 s (the cache stops sending one 0.1 s before that); reqwest-retry waits
    // 1.2 s before its retry.
    const TTL: Duration = Duration::from_secs(1);
    const WAIT: Duration = Duration::from_millis(1200);
    for auth_last in [true, false] {
        let server = MockServer::builder()
            .api_key(KEY)
            .token_ttl(TTL)
            .start()
            .await
            .unwrap();
        let proxy = flaky_proxy(&server).await;
        let auth = BearerAuthMiddleware::new(apivideo(&server), Scope::any());
        let stack = ClientBuilder::new(reqwest::Client::new()).with(TracingMiddleware::default());
        let client = if auth_last {
            stack.with(retries(1, WAIT)).with(auth).build()
        } else {
            stack.with(auth).with(retries(1, WAIT)).build()
        };

        let response = client.get(proxy.url("/videos")).send().await.unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let counters = server.counters();
        if auth_last {
            assert_eq!(counters.expired_token_requests, 0);
            assert_eq!(counters.unauthorized, 0);
        } else {
            assert_eq!(counters.expired_token_requests, 1);
            assert_eq!(counters.unauthorized_expired, 1);
        }
    }
}
