//! The middleware's behaviour, under tokio's paused clock: each test is one promise the crate
//! makes, grouped by the behaviour it belongs to.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{
    BearerAuth, BearerAuthLayer, RefreshReason, Scope, TokenCache, TokenError, TokenErrorKind,
    TokenVerdict,
};

fn layer(refresher: Refresher) -> BearerAuthLayer {
    BearerAuthLayer::new(refresher, Scope::any())
}

/// As [`layer`], with every background refresh starting as its window opens, for the tests of
/// when it starts.
fn layer_without_jitter(refresher: Refresher) -> BearerAuthLayer {
    let cache = TokenCache::builder(refresher).refresh_jitter(0.0).build();
    BearerAuthLayer::from_cache(cache, Scope::any())
}

/// A cache holding `first` (one hour), obtained now.
async fn warmed(handle: &mut RefreshHandle, cache: &TokenCache) {
    let cache = cache.clone();
    let warm = tokio::spawn(async move { cache.token().await });
    answer(handle, token("first", HOUR)).await;
    within(warm).await.unwrap().unwrap();
}

/// A service whose API refuses `first`, holding `first` and old enough (10 s) for a 401 to
/// replace it.
async fn refused_first() -> (BearerAuth<Api>, RefreshHandle, Api) {
    let (refresher, mut handle) = refresher();
    let api = Api::rejecting("first");
    let service = layer(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    advance(Duration::from_secs(10)).await;
    (service, handle, api)
}

// ===== the first token =====

#[tokio::test(start_paused = true)]
async fn first_request_gets_a_token_and_carries_it() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());

    let call = tokio::spawn(service.oneshot(get("http://api.test/videos")));
    let asked = answer(&mut handle, token("first", HOUR)).await;
    let response = within(call).await.unwrap().unwrap();

    assert_eq!(asked.reason(), RefreshReason::Initial);
    assert!(asked.previous().is_none());
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.tokens(), ["Bearer first"]);
}

// ===== single flight: every request that needs a token waits for one refresh =====

#[tokio::test(start_paused = true)]
async fn a_thousand_requests_without_a_token_share_one_refresh() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());

    let calls: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(service.clone().oneshot(get("http://api.test/videos"))))
        .collect();
    until(|| service.cache().stats().waiting == 1000).await;
    answer(&mut handle, token("first", HOUR)).await;
    for call in calls {
        assert_eq!(
            within(call).await.unwrap().unwrap().status(),
            StatusCode::OK
        );
    }

    assert!(!refresh_asked(&mut handle));
    assert_eq!(service.cache().stats().total().started, 1);
    assert_eq!(api.tokens().len(), 1000);
    assert!(api.tokens().iter().all(|t| t == "Bearer first"));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_requests_with_an_expired_token_share_one_refresh() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    advance(HOUR).await;

    let calls: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(service.clone().oneshot(get("http://api.test/videos"))))
        .collect();
    until(|| service.cache().stats().waiting == 1000).await;
    let asked = answer(&mut handle, token("second", HOUR)).await;
    for call in calls {
        assert_eq!(
            within(call).await.unwrap().unwrap().status(),
            StatusCode::OK
        );
    }

    assert_eq!(asked.reason(), RefreshReason::Expired);
    assert_eq!(asked.previous().unwrap().expose_access_token(), "first");
    assert!(!refresh_asked(&mut handle));
    assert!(api.tokens().iter().all(|t| t == "Bearer second"));
    assert_eq!(
        service
            .cache()
            .stats()
            .refreshes(RefreshReason::Expired)
            .started,
        1
    );
}

// ===== the token's windows: fresh, refresh ahead, minimum validity =====

#[tokio::test(start_paused = true)]
async fn in_the_refresh_ahead_window_one_background_refresh_starts_and_nobody_waits() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer_without_jitter(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;

    // Five minutes before expiry is the default window; four is inside it.
    advance(HOUR - Duration::from_secs(4 * 60)).await;
    for _ in 0..50 {
        let response = within(service.clone().oneshot(get("http://api.test/")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The refresh has been asked for, and is still unanswered: nobody waited for it.
    let (asked, respond) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Ahead);
    assert_eq!(asked.previous().unwrap().expose_access_token(), "first");
    assert!(
        !refresh_asked(&mut handle),
        "one background refresh, not one per request"
    );
    assert_eq!(api.tokens().len(), 50);
    assert!(api.tokens().iter().all(|t| t == "Bearer first"));

    respond.send_response(token("second", HOUR));
    until(|| service.cache().stats().generation == 2).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    assert_eq!(api.tokens().last().unwrap(), "Bearer second");
}

// The hot path reads the clock only from shortly before a window, so these check that
// it does not start late by so much as a millisecond.
#[tokio::test(start_paused = true)]
async fn the_refresh_ahead_window_opens_on_time() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer_without_jitter(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    let ahead_started = || {
        service
            .cache()
            .stats()
            .refreshes(RefreshReason::Ahead)
            .started
    };

    advance(HOUR - Duration::from_secs(5 * 60) - Duration::from_millis(1)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    assert_eq!(ahead_started(), 0, "a millisecond before the window");

    advance(Duration::from_millis(1)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    assert_eq!(ahead_started(), 1, "as the window opens");
    let (asked, _respond) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Ahead);
    assert_eq!(api.tokens(), vec!["Bearer first"; 2]);
}

/// When each of `n` caches, built with `jitter` and given a one-hour token at the same
/// moment, starts its refresh ahead of expiry: seconds after the refresh-ahead window opens,
/// sorted.
async fn refresh_ahead_starts(n: usize, jitter: Option<f64>) -> Vec<u64> {
    let window = Duration::from_secs(5 * 60);
    let opens = tokio::time::Instant::now() + HOUR - window;
    let started = Arc::new(Mutex::new(Vec::new()));
    let caches: Vec<TokenCache> = (0..n)
        .map(|_| {
            let started = started.clone();
            let refresher = tower::service_fn(move |request: tower_bearer::TokenRequest| {
                // A point drawn within a step of the minimum validity is met by a request that
                // finds the token stale: its refresh starts then, as `Expired`.
                if request.reason() != RefreshReason::Initial {
                    let after = tokio::time::Instant::now().saturating_duration_since(opens);
                    started.lock().unwrap().push(after.as_secs());
                }
                async { Ok::<_, BoxError>(token("t", HOUR)) }
            });
            let builder = TokenCache::builder(refresher);
            match jitter {
                Some(jitter) => builder.refresh_jitter(jitter).build(),
                None => builder.build(),
            }
        })
        .collect();
    for cache in &caches {
        within(cache.token()).await.unwrap();
    }
    // A request to each cache every second, from just before the window to its end.
    advance(HOUR - window - Duration::from_secs(1)).await;
    for _ in 0..=window.as_secs() {
        for cache in &caches {
            within(cache.token()).await.unwrap();
        }
        // The refreshes those requests started call their refresher before the clock moves.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        advance(Duration::from_secs(1)).await;
    }
    let mut started = started.lock().unwrap().clone();
    started.sort_unstable();
    assert_eq!(started.len(), n, "each cache refreshed once");
    started
}

/// Replicas started by one deploy get their tokens together; drawn at random in the window,
/// their refreshes ahead start apart rather than together at every token's end.
#[tokio::test(start_paused = true)]
async fn refreshes_ahead_of_caches_that_got_tokens_together_spread_over_the_window() {
    let window = 5 * 60;
    let started = refresh_ahead_starts(100, None).await;
    let (first, last) = (started[0], started[started.len() - 1]);
    let spread = (last - first) as f64 / window as f64;
    assert!(
        spread >= 0.8,
        "100 caches spread over {:.0} % of the window ({first} s to {last} s)",
        spread * 100.0
    );
    // Never past the minimum validity (the last 30 s), where requests would wait.
    assert!(last <= window - 30, "the last started at {last} s");
    println!(
        "100 caches: refreshes ahead spread over {:.0} % of the window",
        spread * 100.0
    );

    let together = refresh_ahead_starts(100, Some(0.0)).await;
    assert_eq!(
        together,
        vec![0; 100],
        "without jitter, all as the window opens"
    );
}

#[tokio::test(start_paused = true)]
async fn the_minimum_validity_starts_on_time_without_a_refresh_ahead_window() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let cache = TokenCache::builder(refresher)
        .refresh_ahead(Duration::ZERO)
        .build();
    let service = BearerAuthLayer::from_cache(cache, Scope::any()).layer(api.clone());
    warmed(&mut handle, service.cache()).await;

    advance(HOUR - Duration::from_secs(30) - Duration::from_millis(1)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    assert_eq!(api.tokens(), vec!["Bearer first"]);

    advance(Duration::from_millis(1)).await;
    let mut call = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(call.poll(), "30 s of validity are left: it waits");
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Expired);
    until(|| service.cache().stats().generation == 2).await;
    assert_ready!(call.poll()).unwrap();
    assert_eq!(api.tokens(), vec!["Bearer first", "Bearer second"]);
}

#[tokio::test(start_paused = true)]
async fn within_the_minimum_validity_requests_wait_for_the_refresh() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;

    // 30 s of validity must be left by default; 20 s is not enough.
    advance(HOUR - Duration::from_secs(20)).await;
    let mut calls: Vec<_> = (0..10)
        .map(|_| tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/"))))
        .collect();
    for call in &mut calls {
        assert_pending!(call.poll());
    }
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Expired);
    until(|| service.cache().stats().generation == 2).await;
    for call in &mut calls {
        assert!(call.is_woken());
        assert_ready!(call.poll()).unwrap();
    }
    assert_eq!(api.tokens(), vec!["Bearer second"; 10]);
}

// Invariant 2: a waiter polled too late for the token it waited for.
#[tokio::test(start_paused = true)]
async fn a_waiter_polled_after_its_token_went_stale_waits_for_another() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());

    let mut call = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(call.poll());
    answer(&mut handle, token("first", Duration::from_secs(600))).await;
    until(|| service.cache().stats().generation == 1).await;
    assert!(call.is_woken());
    // The caller's task is starved until `first` has less than its minimum validity (30 s)
    // left.
    advance(Duration::from_secs(580)).await;
    assert_pending!(call.poll());
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Expired);
    until(|| service.cache().stats().generation == 2).await;
    assert_ready!(call.poll()).unwrap();
    assert_eq!(api.tokens(), ["Bearer second"]);
}

// Outside HTTP: `cache.token()` polled too late for the token it waited for.
#[tokio::test(start_paused = true)]
async fn a_token_reader_polled_after_its_token_went_stale_waits_for_another() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);

    let mut read = tokio_test::task::spawn(cache.token());
    assert_pending!(read.poll());
    answer(&mut handle, token("first", Duration::from_secs(600))).await;
    until(|| cache.stats().generation == 1).await;
    advance(Duration::from_secs(580)).await;
    assert_pending!(read.poll());
    answer(&mut handle, token("second", HOUR)).await;
    until(|| cache.stats().generation == 2).await;
    assert_eq!(
        assert_ready!(read.poll()).unwrap().expose_access_token(),
        "second"
    );
}

// ===== a refused token is replaced once, and the request sent again once =====

#[tokio::test(start_paused = true)]
async fn a_401_forces_one_refresh_and_one_retry() {
    let (service, mut handle, api) = refused_first().await;

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(&mut handle, token("second", HOUR)).await;
    let response = within(call).await.unwrap().unwrap();

    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert_eq!(asked.previous().unwrap().expose_access_token(), "first");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    let stats = service.cache().stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 1));
}

// Invariant 2: the retry's token went stale before its future was polled again.
#[tokio::test(start_paused = true)]
async fn a_retry_polled_after_its_token_went_stale_waits_for_another() {
    let (service, mut handle, api) = refused_first().await;

    let mut call = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(call.poll());
    answer(&mut handle, token("second", Duration::from_secs(600))).await;
    until(|| service.cache().stats().generation == 2).await;
    advance(Duration::from_secs(580)).await;
    assert_pending!(call.poll());
    let asked = answer(&mut handle, token("third", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Expired);
    until(|| service.cache().stats().generation == 3).await;
    assert_eq!(assert_ready!(call.poll()).unwrap().status(), StatusCode::OK);
    assert_eq!(api.tokens(), ["Bearer first", "Bearer third"]);
}

#[tokio::test(start_paused = true)]
async fn a_second_401_goes_back_to_the_caller() {
    let (refresher, mut handle) = refresher();
    let api = Api::new(|_| true);
    let service = layer(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    advance(Duration::from_secs(10)).await;

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("second", HOUR)).await;
    let response = within(call).await.unwrap().unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    assert!(!refresh_asked(&mut handle));
}

/// A refused answer's body: `frames` frames of 1 KiB, every one ready at once, counting what
/// is read of it and saying when it is dropped.
#[derive(Debug)]
struct Frames {
    left: usize,
    read: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        self.read.fetch_add(1024, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![0; 1024])))))
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// An API refusing `first` with a body of `frames` frames of 1 KiB, and answering other tokens
/// with an empty body.
#[derive(Clone)]
struct FramesApi {
    frames: usize,
    read: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl<B> Service<http::Request<B>> for FramesApi {
    type Response = Response<Frames>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Frames>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let refused = request.headers()[AUTHORIZATION] == "Bearer first";
        let mut response = Response::new(Frames {
            left: if refused { self.frames } else { 0 },
            read: self.read.clone(),
            dropped: self.dropped.clone(),
        });
        if refused {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok(response))
    }
}

/// A service whose API refuses `first` with a body of `frames` frames of 1 KiB, holding
/// `first` and old enough (10 s) for a 401 to replace it; with what is read of that body, and
/// whether it was dropped.
async fn refused_first_with_frames(
    frames: usize,
) -> (
    BearerAuth<FramesApi>,
    RefreshHandle,
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
) {
    let (refresher, mut handle) = refresher();
    let api = FramesApi {
        frames,
        read: Arc::default(),
        dropped: Arc::default(),
    };
    let (read, dropped) = (api.read.clone(), api.dropped.clone());
    let service = layer(refresher).layer(api);
    warmed(&mut handle, service.cache()).await;
    advance(Duration::from_secs(10)).await;
    (service, handle, read, dropped)
}

// The refused answer's connection can be reused only once its body is read; a body larger
// than is worth reading is dropped instead.
#[tokio::test(start_paused = true)]
async fn a_refused_answers_body_is_read_up_to_16_kib_while_the_replacement_comes() {
    let (service, mut handle, read, dropped) = refused_first_with_frames(64).await;

    let mut call = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(call.poll());
    // Read until past 16 KiB, then dropped, with the replacement still to come.
    assert_eq!(read.load(Ordering::SeqCst), 17 * 1024);
    assert!(dropped.load(Ordering::SeqCst));
    answer(&mut handle, token("second", HOUR)).await;
    until(|| service.cache().stats().generation == 2).await;
    assert_eq!(assert_ready!(call.poll()).unwrap().status(), StatusCode::OK);
    assert_eq!(read.load(Ordering::SeqCst), 17 * 1024);
}

// A refused answer's body short enough to read is read to its end while the replacement
// comes.
#[tokio::test(start_paused = true)]
async fn a_short_refused_answers_body_is_read_to_its_end_while_the_replacement_comes() {
    let (service, mut handle, read, dropped) = refused_first_with_frames(3).await;

    let mut call = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(call.poll());
    assert_eq!(read.load(Ordering::SeqCst), 3 * 1024);
    assert!(dropped.load(Ordering::SeqCst));
    answer(&mut handle, token("second", HOUR)).await;
    until(|| service.cache().stats().generation == 2).await;
    assert_eq!(assert_ready!(call.poll()).unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn with_retries_off_a_401_goes_back_and_the_next_request_gets_a_new_token() {
    let (refresher, mut handle) = refresher();
    let api = Api::rejecting("first");
    let service = layer(refresher)
        .retry_unauthorized(false)
        .layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    advance(Duration::from_secs(10)).await;

    let refused = service
        .clone()
        .oneshot(get("http://api.test/"))
        .await
        .unwrap();
    let next = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(&mut handle, token("second", HOUR)).await;

    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert_eq!(next.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    let stats = service.cache().stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 0));
}

// With retries off, each token's refusal replaces it: the request that follows gets the next.
#[tokio::test(start_paused = true)]
async fn with_retries_off_every_refused_token_is_replaced() {
    let (refresher, mut handle) = refresher();
    let api = Api::new(|_| true);
    let service = layer(refresher)
        .retry_unauthorized(false)
        .layer(api.clone());
    warmed(&mut handle, service.cache()).await;

    for (held, next, generation) in [("first", "second", 2), ("second", "third", 3)] {
        advance(Duration::from_secs(10)).await;
        let refused = within(service.clone().oneshot(get("http://api.test/")))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let asked = answer(&mut handle, token(next, HOUR)).await;
        assert_eq!(asked.reason(), RefreshReason::Rejected);
        assert_eq!(asked.previous().unwrap().expose_access_token(), held);
        until(|| service.cache().stats().generation == generation).await;
    }
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
}

// ===== what counts as a rejected token =====

/// An answer with this status and these headers.
fn answer_with(status: u16, headers: &[(&'static str, &'static str)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        response
            .headers_mut()
            .append(*name, HeaderValue::from_static(value));
    }
    response
}

/// A service whose API refuses `first` with the answer `refusal` makes, holding `first` and
/// old enough (10 s) for a refusal to replace it.
async fn refused_first_with(
    layer: impl FnOnce(Refresher) -> BearerAuthLayer,
    refusal: impl Fn() -> Response<Full<Bytes>> + Send + Sync + 'static,
) -> (BearerAuth<Api>, RefreshHandle, Api) {
    let (refresher, mut handle) = refresher();
    let api = Api::refusing("first", refusal);
    let service = layer(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    advance(Duration::from_secs(10)).await;
    (service, handle, api)
}

#[tokio::test(start_paused = true)]
async fn a_401_for_insufficient_scope_goes_back_without_a_refresh() {
    let (service, mut handle, api) = refused_first_with(layer, || {
        answer_with(
            401,
            &[(
                "www-authenticate",
                r#"Basic realm="api", Bearer realm="api", error="insufficient_scope", scope="videos:write""#,
            )],
        )
    })
    .await;

    let response = within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.tokens(), ["Bearer first"], "not sent again");
    assert!(
        !refresh_asked(&mut handle),
        "a new token of the same scope would not help"
    );
    assert_eq!(service.cache().stats().generation, 1);
}

#[tokio::test(start_paused = true)]
async fn a_403_never_replaces_the_token() {
    let (service, mut handle, api) = refused_first_with(layer, || {
        answer_with(
            403,
            &[("www-authenticate", r#"Bearer error="invalid_token""#)],
        )
    })
    .await;

    let response = within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(api.tokens(), ["Bearer first"]);
    assert!(!refresh_asked(&mut handle));
}

#[tokio::test(start_paused = true)]
async fn a_401_whose_challenge_cannot_be_read_is_a_rejected_token() {
    // The quote never closes: what it says cannot be trusted, so the token is replaced.
    let (service, mut handle, api) = refused_first_with(layer, || {
        answer_with(
            401,
            &[("www-authenticate", r#"Bearer error="insufficient_scope"#)],
        )
    })
    .await;

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(&mut handle, token("second", HOUR)).await;

    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert_eq!(
        within(call).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
}

#[tokio::test(start_paused = true)]
async fn grpc_unauthenticated_in_the_headers_is_a_rejected_token() {
    // A trailers-only gRPC answer: status 200, grpc-status 16 among the headers.
    let (service, mut handle, api) = refused_first_with(layer, || {
        answer_with(
            200,
            &[
                ("content-type", "application/grpc"),
                ("grpc-status", "16"),
                ("grpc-message", "token expired"),
            ],
        )
    })
    .await;

    let call = tokio::spawn(
        service
            .clone()
            .oneshot(post("http://api.test/pkg.Svc/Call", "msg")),
    );
    let asked = answer(&mut handle, token("second", HOUR)).await;
    let response = within(call).await.unwrap().unwrap();

    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert!(
        !response.headers().contains_key("grpc-status"),
        "the retry's answer"
    );
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    let bodies: Vec<Bytes> = api.seen().into_iter().map(|s| s.body).collect();
    assert_eq!(bodies, ["msg", "msg"], "the same message, replayed");
}

#[tokio::test(start_paused = true)]
async fn an_api_of_its_own_can_say_how_it_rejects_a_token() {
    // An API that answers 419 for an expired token, and 401 for something else.
    let (service, mut handle, api) = refused_first_with(
        |refresher| {
            layer(refresher).verdict(|status, headers| match status.as_u16() {
                419 => TokenVerdict::Rejected,
                401 => TokenVerdict::Unrelated,
                _ => TokenVerdict::of(status, headers),
            })
        },
        || answer_with(419, &[]),
    )
    .await;

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(&mut handle, token("second", HOUR)).await;

    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert_eq!(
        within(call).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    let stats = service.cache().stats();
    assert_eq!((stats.unauthorized, stats.retried), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_401_an_api_of_its_own_calls_unrelated_goes_back() {
    let (service, mut handle, api) = refused_first_with(
        |refresher| layer(refresher).verdict(|_, _| TokenVerdict::Unrelated),
        || answer_with(401, &[]),
    )
    .await;

    let response = within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.tokens(), ["Bearer first"]);
    assert!(!refresh_asked(&mut handle));
}

// ===== replaced by generation: many 401s for one token, one refresh =====

#[tokio::test(start_paused = true)]
async fn a_hundred_401s_for_one_token_cause_one_refresh() {
    let (service, mut handle, api) = refused_first().await;

    // All hundred are sent with the first token before any 401 comes back.
    api.hold();
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(service.clone().oneshot(get("http://api.test/"))))
        .collect();
    until(|| api.seen().len() == 100).await;
    api.release();
    let asked = answer(&mut handle, token("second", HOUR)).await;
    for call in calls {
        assert_eq!(
            within(call).await.unwrap().unwrap().status(),
            StatusCode::OK
        );
    }

    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert!(!refresh_asked(&mut handle));
    let tokens = api.tokens();
    assert_eq!(tokens.iter().filter(|t| *t == "Bearer first").count(), 100);
    assert_eq!(tokens.iter().filter(|t| *t == "Bearer second").count(), 100);
    let stats = service.cache().stats();
    assert_eq!(stats.refreshes(RefreshReason::Rejected).started, 1);
    assert_eq!((stats.unauthorized, stats.retried), (100, 100));
}

#[tokio::test(start_paused = true)]
async fn a_401_for_a_replaced_token_retries_with_the_current_one() {
    let (service, mut handle, api) = refused_first().await;
    let cache = service.cache().clone();

    api.hold();
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    until(|| api.seen().len() == 1).await;
    // Meanwhile the token is replaced (another user of the cache reported it).
    let first = within(cache.token()).await.unwrap();
    let reject = tokio::spawn(async move { cache.reject(&first).await });
    answer(&mut handle, token("second", HOUR)).await;
    within(reject).await.unwrap().unwrap();
    api.release();

    assert_eq!(
        within(call).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    assert!(
        !refresh_asked(&mut handle),
        "no refresh for a token already replaced"
    );
    assert_eq!(service.cache().stats().total().started, 2);
}

// ===== no 401 loops: a token younger than the minimum age is not blamed =====

#[tokio::test(start_paused = true)]
async fn a_server_refusing_everything_gets_one_forced_refresh_per_minimum_age() {
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refresher = {
        let issued = issued.clone();
        tower::service_fn(move |_| {
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move { Ok::<_, BoxError>(token(&format!("t{n}"), HOUR)) }
        })
    };
    let api = Api::new(|_| true);
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(api.clone());

    // A minute of requests, ten a second; the minimum token age is 5 s.
    for _ in 0..600 {
        let response = within(service.clone().oneshot(get("http://api.test/")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        advance(Duration::from_millis(100)).await;
    }

    let forced = service
        .cache()
        .stats()
        .refreshes(RefreshReason::Rejected)
        .started;
    assert!(
        (11..=13).contains(&forced),
        "{forced} forced refreshes in 60 s"
    );
    // Each forced refresh retried one request; all others got their 401 at once.
    assert_eq!(api.seen().len() as u64, 600 + forced);
}

// A 401 for a token of exactly the minimum age (5 s by default) replaces it.
#[tokio::test(start_paused = true)]
async fn the_minimum_token_age_ends_on_time() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    warmed(&mut handle, &cache).await;
    let first = within(cache.token()).await.unwrap();

    advance(Duration::from_secs(5) - Duration::from_millis(1)).await;
    let same = within(cache.reject(&first)).await.unwrap();
    assert_eq!(
        same.expose_access_token(),
        "first",
        "a millisecond too young"
    );
    assert!(!refresh_asked(&mut handle));

    advance(Duration::from_millis(1)).await;
    let replace = tokio::spawn({
        let cache = cache.clone();
        async move { cache.reject(&first).await }
    });
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Rejected);
    let second = within(replace).await.unwrap().unwrap();
    assert_eq!(second.expose_access_token(), "second");
    assert_eq!(cache.stats().not_replaced, 1);
}

// ===== failures: every waiter gets the error, then the cache backs off =====

#[tokio::test(start_paused = true)]
async fn a_refresher_error_reaches_every_waiter_then_backs_off() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());

    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(service.clone().oneshot(get("http://api.test/"))))
        .collect();
    until(|| service.cache().stats().waiting == 10).await;
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("the auth server is down");
    for call in calls {
        let err = within(call).await.unwrap().unwrap_err();
        let token_err = TokenError::find(&*err).expect("a token error");
        assert_eq!(token_err.kind(), TokenErrorKind::Refresher);
        assert_eq!(token_err.reason(), RefreshReason::Initial);
        let source = token_err.refresher_error().unwrap();
        assert_eq!(source.to_string(), "the auth server is down");
    }

    // During the backoff (at least half of the first second) requests fail at once.
    let err = within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap_err();
    assert!(matches!(
        TokenError::find(&*err).unwrap().kind(),
        TokenErrorKind::BackingOff { .. }
    ));
    assert!(!refresh_asked(&mut handle));
    assert!(service.cache().stats().backing_off.is_some());

    // After it, the refresher is tried again.
    advance(Duration::from_secs(1)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("first", HOUR)).await;
    assert_eq!(
        within(call).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert!(api.seen().len() == 1);
    let stats = service.cache().stats();
    assert_eq!(stats.refreshes(RefreshReason::Initial).failed, 1);
    assert_eq!(stats.refreshes(RefreshReason::Initial).succeeded, 1);
}

// The builder documents the default backoff; each wait is drawn between half and all of
// its step, so a step is told from the one before by the lower bound.
#[tokio::test(start_paused = true)]
async fn the_default_backoff_doubles_from_one_second_up_to_thirty() {
    let refresher = tower::service_fn(|_: tower_bearer::TokenRequest| async {
        Err::<tower_bearer::Token, BoxError>("the auth server is down".into())
    });
    let cache = TokenCache::new(refresher);

    for step in [1, 2, 4, 8, 16, 30, 30] {
        let step = Duration::from_secs(step);
        let err = within(cache.token()).await.unwrap_err();
        assert_eq!(err.kind(), TokenErrorKind::Refresher);
        let backing_off = cache.stats().backing_off.expect("backing off");
        assert!(
            step / 2 <= backing_off && backing_off <= step,
            "{backing_off:?} after a failure whose step is {step:?}"
        );
        advance(step).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_backoff_ends_on_time() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    let failed = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("the auth server is down");
    within(failed).await.unwrap().unwrap_err();
    let backing_off = cache.stats().backing_off.expect("backing off");

    advance(backing_off - Duration::from_millis(1)).await;
    let err = within(cache.token()).await.unwrap_err();
    assert!(
        matches!(err.kind(), TokenErrorKind::BackingOff { .. }),
        "a millisecond before its end: {err}"
    );
    assert!(!refresh_asked(&mut handle));

    advance(Duration::from_millis(1)).await;
    let call = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    answer(&mut handle, token("first", HOUR)).await;
    let first = within(call)
        .await
        .unwrap()
        .expect("the refresher was called again");
    assert_eq!(first.expose_access_token(), "first");
}

// A refusal's replacement that failed leaves the refused token marked as refused: the
// refresher is told, when the backoff lets the cache try again, that the token was
// refused, not that it expired.
#[tokio::test(start_paused = true)]
async fn a_refused_token_whose_replacement_failed_is_replaced_as_refused() {
    let (service, mut handle, api) = refused_first().await;

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (asked, respond) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Rejected);
    respond.send_error("the auth server is down");
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(
        TokenError::find(&*err).unwrap().kind(),
        TokenErrorKind::Refresher
    );

    advance(Duration::from_secs(1)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(
        within(call).await.unwrap().unwrap().status(),
        StatusCode::OK
    );

    assert_eq!(asked.reason(), RefreshReason::Rejected);
    assert_eq!(asked.previous().unwrap().expose_access_token(), "first");
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    let stats = service.cache().stats();
    assert_eq!(stats.refreshes(RefreshReason::Rejected).started, 2);
    assert_eq!(stats.refreshes(RefreshReason::Expired).started, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_background_refresh_leaves_the_valid_token_in_use() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer_without_jitter(refresher).layer(api.clone());
    warmed(&mut handle, service.cache()).await;
    advance(HOUR - Duration::from_secs(4 * 60)).await;

    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    let (asked, respond) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Ahead);
    respond.send_error("flaky");
    until(|| {
        service
            .cache()
            .stats()
            .refreshes(RefreshReason::Ahead)
            .failed
            == 1
    })
    .await;

    for _ in 0..10 {
        let response = within(service.clone().oneshot(get("http://api.test/")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(api.tokens().iter().all(|t| t == "Bearer first"));
    assert!(
        !refresh_asked(&mut handle),
        "the backoff holds background refreshes too"
    );

    // Once the backoff has passed, the next request starts another background refresh.
    advance(Duration::from_secs(1)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Ahead);
}

#[tokio::test(start_paused = true)]
async fn a_background_refresh_after_a_failed_one_starts_as_its_backoff_ends() {
    let (refresher, mut handle) = refresher();
    let service = layer_without_jitter(refresher).layer(Api::open());
    let ahead = || service.cache().stats().refreshes(RefreshReason::Ahead);
    warmed(&mut handle, service.cache()).await;
    advance(HOUR - Duration::from_secs(4 * 60)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("flaky");
    until(|| ahead().failed == 1).await;
    let backing_off = service.cache().stats().backing_off.expect("backing off");

    advance(backing_off - Duration::from_millis(1)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    assert_eq!(ahead().started, 1, "a millisecond before the backoff ends");

    advance(Duration::from_millis(1)).await;
    within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap();
    assert_eq!(ahead().started, 2, "as the backoff ends");
    let (asked, _respond) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Ahead);
}

// ===== cancellation: a refresh runs in its own task, whatever its requesters do =====

#[tokio::test(start_paused = true)]
async fn dropping_the_request_that_started_a_refresh_does_not_cancel_it() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());

    let mut starter = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(starter.poll());
    let others: Vec<_> = (0..5)
        .map(|_| tokio::spawn(service.clone().oneshot(get("http://api.test/"))))
        .collect();
    drop(starter);

    answer(&mut handle, token("first", HOUR)).await;
    for call in others {
        assert_eq!(
            within(call).await.unwrap().unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(api.tokens(), vec!["Bearer first"; 5]);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_outside_the_layer_does_not_poison_the_refresh() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .layer(layer(refresher))
        .service(api.clone());

    let first = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    // The refresher takes longer than the caller's timeout.
    advance(Duration::from_secs(1)).await;
    let err = within(first).await.unwrap().unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());

    let second = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    tokio::task::yield_now().await;
    respond.send_response(token("first", HOUR));
    assert_eq!(
        within(second).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(api.tokens(), ["Bearer first"]);
    assert!(!refresh_asked(&mut handle));
}

// A future dropped while it waits for the replacement after a 401.
#[tokio::test(start_paused = true)]
async fn dropping_a_request_waiting_for_its_retry_token_does_not_cancel_the_refresh() {
    let (service, mut handle, api) = refused_first().await;

    let mut rejected = tokio_test::task::spawn(service.clone().oneshot(get("http://api.test/")));
    assert_pending!(rejected.poll());
    let (asked, respond) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Rejected);
    let waiting = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    drop(rejected);
    respond.send_response(token("second", HOUR));

    assert_eq!(
        within(waiting).await.unwrap().unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
}

// A panicking refresher fails its waiters instead of leaving them waiting.
#[tokio::test(start_paused = true)]
async fn a_refresher_that_panics_fails_its_waiters() {
    let refresher = tower::service_fn(|_| async {
        if true {
            panic!("refresher bug");
        }
        Ok::<_, BoxError>(token("never", HOUR))
    });
    let service = BearerAuthLayer::new(refresher, Scope::any()).layer(Api::open());
    let err = within(service.clone().oneshot(get("http://api.test/")))
        .await
        .unwrap_err();
    assert_eq!(
        TokenError::find(&*err).unwrap().kind(),
        TokenErrorKind::Abandoned
    );
    assert!(!service.cache().stats().refreshing);
}

// ===== what the layer leaves alone: a request with its own Authorization, other origins =====

#[tokio::test(start_paused = true)]
async fn a_request_with_its_own_authorization_passes_through() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher).layer(api.clone());

    let mut request = get("http://api.test/");
    request
        .headers_mut()
        .insert(AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
    within(service.oneshot(request)).await.unwrap();

    assert_eq!(api.tokens(), ["Basic dXNlcjpwYXNz"]);
    assert!(!refresh_asked(&mut handle), "no token was needed");
}

#[tokio::test(start_paused = true)]
async fn a_request_with_its_own_authorization_passes_through_as_it_came_while_a_token_is_held() {
    let (refresher, mut handle) = refresher();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = tower::service_fn({
        let seen = seen.clone();
        move |request: http::Request<_>| {
            seen.lock().unwrap().push(request.headers().clone());
            async { Ok::<_, BoxError>(http::Response::new(Full::<Bytes>::default())) }
        }
    });
    let service = layer(refresher).layer(inner);
    warmed(&mut handle, service.cache()).await;

    let mut request = get("http://api.test/");
    let headers = request.headers_mut();
    headers.insert("accept", "application/json".parse().unwrap());
    let mut secret: http::HeaderValue = "Basic dXNlcjpwYXNz".parse().unwrap();
    secret.set_sensitive(true);
    headers.insert(AUTHORIZATION, secret);
    headers.append(AUTHORIZATION, "Other scheme".parse().unwrap());
    headers.insert("x-after", "1".parse().unwrap());
    let sent = headers.clone();
    within(service.clone().oneshot(request)).await.unwrap();
    within(service.oneshot(get("http://api.test/")))
        .await
        .unwrap();

    let seen = seen.lock().unwrap();
    let in_order = |headers: &http::HeaderMap| -> Vec<_> {
        headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone(), value.is_sensitive()))
            .collect()
    };
    assert_eq!(in_order(&seen[0]), in_order(&sent), "untouched, in order");
    assert_eq!(
        seen[1][AUTHORIZATION], "Bearer first",
        "the next one gets the token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_outside_the_scope_carries_no_token() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = layer(refresher)
        .scope(Scope::origin("https://api.test").unwrap())
        .layer(api.clone());

    within(
        service
            .clone()
            .oneshot(get("https://uploads.example.net/presigned?sig=abc")),
    )
    .await
    .unwrap();
    within(service.clone().oneshot(get("http://api.test/downgraded")))
        .await
        .unwrap();
    let call = tokio::spawn(service.clone().oneshot(get("https://api.test/videos")));
    answer(&mut handle, token("first", HOUR)).await;
    within(call).await.unwrap().unwrap();

    let seen: Vec<_> = api.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(seen, [None, None, Some("Bearer first".to_owned())]);
}

// ===== composing with tower: readiness, Buffer, ConcurrencyLimit, Send + Sync =====

#[tokio::test(start_paused = true)]
async fn poll_ready_is_the_inner_services_and_the_retry_waits_for_a_ready_clone() {
    let (refresher, mut refreshes) = refresher();
    let (inner, mut api) = tower_test::mock::pair::<
        http::Request<tower_bearer::ReplayBody<http_body_util::Full<bytes::Bytes>>>,
        http::Response<http_body_util::Full<bytes::Bytes>>,
    >();
    let mut service = layer(refresher).layer(inner);
    warmed(&mut refreshes, service.cache()).await;
    advance(Duration::from_secs(10)).await;

    api.allow(0);
    let mut ready = tokio_test::task::spawn(());
    assert_pending!(ready.enter(|cx, _| service.poll_ready(cx)));
    api.allow(1);
    assert_ready!(ready.enter(|cx, _| service.poll_ready(cx))).unwrap();

    let mut call = tokio_test::task::spawn(service.call(get("http://api.test/")));
    assert_pending!(call.poll());
    let (request, respond) = within(api.next_request()).await.unwrap();
    assert_eq!(request.headers()[AUTHORIZATION], "Bearer first");
    let mut unauthorized = http::Response::new(Default::default());
    *unauthorized.status_mut() = StatusCode::UNAUTHORIZED;
    respond.send_response(unauthorized);
    assert_pending!(call.poll());
    answer(&mut refreshes, token("second", HOUR)).await;
    until(|| service.cache().stats().generation == 2).await;

    // The retry's service is a clone, driven ready before it is called: it waits for capacity.
    assert_pending!(call.poll());
    assert!(!refresh_asked(&mut refreshes));
    api.allow(1);
    assert_pending!(call.poll());
    let (retried, respond) = within(api.next_request()).await.unwrap();
    assert_eq!(service.cache().stats().retried, 1);
    assert_eq!(retried.headers()[AUTHORIZATION], "Bearer second");
    respond.send_response(http::Response::new(Default::default()));
    assert_eq!(assert_ready!(call.poll()).unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn works_behind_buffer_and_concurrency_limit() {
    let (refresher, mut handle) = refresher();
    let api = Api::open();
    let service = ServiceBuilder::new()
        .buffer(64)
        .concurrency_limit(4)
        .layer(layer(refresher))
        .service(api.clone());

    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(service.clone().oneshot(get("http://api.test/"))))
        .collect();
    answer(&mut handle, token("first", HOUR)).await;
    for call in calls {
        assert_eq!(
            within(call).await.unwrap().unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(api.tokens(), vec!["Bearer first"; 20]);
}

#[test]
fn services_and_futures_are_send_sync_and_static() {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>(_: &T) {}
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    type Inner = Api;
    type Body = http_body_util::Full<bytes::Bytes>;

    send_sync_static::<BearerAuth<Inner>>();
    send_sync_static::<BearerAuthLayer>();
    send_sync_static::<TokenCache>();
    send_sync_static::<TokenError>();
    send_sync_static::<tower_bearer::ReplayBody<Body>>();
    // With an inner service whose future is Sync, so is the layer's.
    let (refresher_a, _handle_a) = refresher();
    let mut service = layer(refresher_a).layer(tower::service_fn(|_: http::Request<_>| {
        std::future::ready(Ok::<_, BoxError>(http::Response::new(Body::default())))
    }));
    send_sync(&service.call(get("http://api.test/")));

    let (refresher, _handle) = refresher();
    let mut service = layer(refresher).layer(Api::open());
    send_static(&service.call(get("http://api.test/")));
}

#[tokio::test(start_paused = true)]
async fn reject_outside_http_replaces_the_token_once() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    warmed(&mut handle, &cache).await;
    let first = within(cache.token()).await.unwrap();

    // Too young to blame: the same token comes back.
    assert_eq!(
        within(cache.reject(&first))
            .await
            .unwrap()
            .expose_access_token(),
        "first"
    );
    advance(Duration::from_secs(10)).await;
    let replace = {
        let (cache, first) = (cache.clone(), first.clone());
        tokio::spawn(async move { cache.reject(&first).await })
    };
    let again = {
        let (cache, first) = (cache.clone(), first.clone());
        tokio::spawn(async move { cache.reject(&first).await })
    };
    answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(
        within(replace)
            .await
            .unwrap()
            .unwrap()
            .expose_access_token(),
        "second"
    );
    assert_eq!(
        within(again).await.unwrap().unwrap().expose_access_token(),
        "second"
    );
    assert!(!refresh_asked(&mut handle));
    assert_eq!(cache.stats().not_replaced, 1);
}

#[tokio::test(start_paused = true)]
async fn a_token_that_has_already_expired_is_a_refresh_failure() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    let call = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    answer(&mut handle, token("stale", Duration::ZERO)).await;
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::ExpiredToken);
    assert_eq!(cache.stats().generation, 0);
}

#[tokio::test(start_paused = true)]
async fn stats_say_how_old_the_token_is_and_how_long_it_has_left() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    assert_eq!((cache.stats().age, cache.stats().expires_in), (None, None));

    warmed(&mut handle, &cache).await;
    advance(Duration::from_secs(10 * 60)).await;

    let stats = cache.stats();
    assert_eq!(stats.age, Some(Duration::from_secs(10 * 60)));
    assert_eq!(stats.expires_in, Some(Duration::from_secs(50 * 60)));
}

// ===== refreshes that never answer: a runtime shutting down, a refresher that hangs =====

// A refresh whose task is dropped unrun (its runtime is shutting down) ends, telling
// its waiters, rather than leaving them waiting.
#[test]
fn a_refresh_on_a_runtime_that_has_shut_down_fails_instead_of_hanging() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    drop(runtime);

    let (refresher, _handle) = refresher();
    let cache = TokenCache::new(refresher);
    let _runtime = handle.enter();
    let mut token = tokio_test::task::spawn(cache.token());
    let err = assert_ready!(token.poll()).unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Abandoned);
    assert!(!cache.stats().refreshing);
}

// A refresher that never answers fails its waiters at the refresh timeout, and the
// cache backs off before trying again.
#[tokio::test(start_paused = true)]
async fn a_refresher_that_never_answers_times_out() {
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::builder(refresher)
        .refresh_timeout(Duration::from_secs(10))
        .build();
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(Api::open());

    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, _never_answered) = next_refresh(&mut handle).await;
    advance(Duration::from_secs(10)).await;
    let err = within(call).await.unwrap().unwrap_err();
    assert_eq!(
        TokenError::find(&*err).unwrap().kind(),
        TokenErrorKind::TimedOut {
            after: Duration::from_secs(10)
        }
    );
    let stats = cache.stats();
    assert!(!stats.refreshing);
    assert!(stats.backing_off.is_some());
    assert_eq!(stats.refreshes(RefreshReason::Initial).failed, 1);
}
