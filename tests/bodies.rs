//! Request and response bodies through the middleware (behaviour 7): what is replayed, what
//! is streamed, what is never buffered, and what becomes of a 401's body.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use tokio::time::advance;
use tokio_test::assert_pending;
use tower::{BoxError, Layer, ServiceExt};
use tower_bearer::{BearerAuthLayer, RefreshReason, ReplayBody, Scope, TokenCache};
use tower_test::mock;

type Streaming = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A cache holding `first`, old enough for a 401 to replace it.
async fn cache_with_first(handle: &mut RefreshHandle, refresher: Refresher) -> TokenCache {
    let cache = TokenCache::new(refresher);
    let warm = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    answer(handle, token("first", HOUR)).await;
    warm.await.unwrap().unwrap();
    advance(Duration::from_secs(10)).await;
    cache
}

#[tokio::test(start_paused = true)]
async fn a_retried_body_arrives_byte_identical() {
    let (refresher, mut handle) = refresher();
    let cache = cache_with_first(&mut handle, refresher).await;
    let api = Api::rejecting("first");
    let service = BearerAuthLayer::from_cache(cache, Scope::any()).layer(api.clone());

    let body = r#"{"title":"Maths","description":"ünïcode ✓","tags":["a","b"]}"#;
    let call = tokio::spawn(service.oneshot(post("http://api.test/videos", body)));
    answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);

    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body == body));
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_not_retried_but_the_token_is_still_replaced() {
    let (refresher, mut handle) = refresher();
    let cache = cache_with_first(&mut handle, refresher).await;
    let api = Api::rejecting("first");
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any())
        .replay_limit(8)
        .layer(api.clone());

    // Over the limit by its size hint.
    let response = service
        .clone()
        .oneshot(post("http://api.test/videos", "nine bytes"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let asked = answer(&mut handle, token("second", HOUR)).await;
    assert_eq!(asked.reason(), RefreshReason::Rejected);

    // The next request has the new token.
    service
        .clone()
        .oneshot(get("http://api.test/videos"))
        .await
        .unwrap();
    assert_eq!(api.tokens(), ["Bearer first", "Bearer second"]);
    assert_eq!(cache.stats().retried, 0);
}

#[tokio::test(start_paused = true)]
async fn a_body_streaming_past_the_limit_is_not_retried() {
    let (refresher, mut handle) = refresher();
    let cache = cache_with_first(&mut handle, refresher).await;
    let api = Api::rejecting("first");
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any())
        .replay_limit(8)
        .layer(api.clone());

    // No size hint: the limit is found while streaming.
    let (mut tx, body) = Channel::<Bytes, BoxError>::new(4);
    let call = tokio::spawn(
        service.clone().oneshot(
            Request::post("http://api.test/upload")
                .body(body.boxed())
                .unwrap(),
        ),
    );
    tx.send_data(Bytes::from_static(b"12345")).await.unwrap();
    tx.send_data(Bytes::from_static(b"67890")).await.unwrap();
    drop(tx);
    let response = call.await.unwrap().unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.seen()[0].body, "1234567890");
    assert_eq!(api.seen().len(), 1);
    assert_eq!(
        cache.stats().refreshes(RefreshReason::Rejected).started,
        1,
        "the token is still replaced for the requests that follow"
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_streams_the_body_as_it_is_produced() {
    let (refresher, mut handle) = refresher();
    let cache = cache_with_first(&mut handle, refresher).await;
    let (inner, mut api) = mock::pair::<Request<ReplayBody<Streaming>>, Response<Full<Bytes>>>();
    let service = BearerAuthLayer::from_cache(cache, Scope::any()).layer(inner);

    let (mut tx, body) = Channel::<Bytes, BoxError>::new(1);
    let mut call = tokio_test::task::spawn(
        service.oneshot(
            Request::post("http://api.test/upload")
                .body(body.boxed())
                .unwrap(),
        ),
    );
    assert_pending!(call.poll());

    // The inner service has the request before the caller has produced any of the body.
    let (request, respond) = api.next_request().await.unwrap();
    let mut body = request.into_body();
    tx.send_data(Bytes::from_static(b"one")).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "one");
    tx.send_data(Bytes::from_static(b"two")).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "two");
    drop(tx);
    assert!(body.frame().await.is_none());
    respond.send_response(Response::new(Full::default()));
    call.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_401_body_is_read_while_the_new_token_is_fetched_and_dropped_before_the_retry() {
    let (refresher, mut handle) = refresher();
    let cache = cache_with_first(&mut handle, refresher).await;
    let (inner, mut api) = mock::pair::<Request<ReplayBody<Full<Bytes>>>, Response<Streaming>>();
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(inner);

    let mut call = tokio_test::task::spawn(service.oneshot(get("http://api.test/videos")));
    assert_pending!(call.poll());
    let (_, respond) = api.next_request().await.unwrap();
    let (mut unauthorized, body) = Channel::<Bytes, BoxError>::new(1);
    let mut response = Response::new(body.boxed());
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    respond.send_response(response);
    assert_pending!(call.poll());
    let (asked, refreshed) = next_refresh(&mut handle).await;
    assert_eq!(asked.reason(), RefreshReason::Rejected);

    // While the refresh is in flight, the 401's body is read as it arrives: a channel of one
    // slot accepts the second chunk only once the first has been taken.
    unauthorized
        .send_data(Bytes::from_static(b"{\"status\":"))
        .await
        .unwrap();
    assert_pending!(call.poll());
    unauthorized
        .send_data(Bytes::from_static(b"401"))
        .await
        .unwrap();
    assert_pending!(call.poll());
    unauthorized
        .send_data(Bytes::from_static(b"}"))
        .await
        .unwrap();

    refreshed.send_response(token("second", HOUR));
    until(|| cache.stats().generation == 2).await;
    assert_pending!(call.poll());
    let (retried, respond) = api.next_request().await.unwrap();
    assert_eq!(retried.headers()[AUTHORIZATION], "Bearer second");
    // The 401's body was let go before the retry was sent: its connection is free for it.
    assert!(
        unauthorized
            .send_data(Bytes::from_static(b"more"))
            .await
            .is_err()
    );

    respond.send_response(Response::new(
        Full::new(Bytes::from_static(b"ok"))
            .map_err(Into::into)
            .boxed(),
    ));
    let response = call.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.body().is_end_stream());
}
