//! No token ever shows: not in `Debug` or `Display` of any public type or error, not in any
//! `tracing` event at TRACE level, and the header carrying it is marked sensitive.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_bearer::{BearerAuthLayer, ReplayBody, TokenCache, TokenError};

const ACCESS: [&str; 3] = [
    "ACCESS-0-f1b2c3d4e5",
    "ACCESS-1-a9b8c7d6e5",
    "ACCESS-2-0011223344",
];
const REFRESH: &str = "REFRESH-def50200cafe";

/// Everything written by the `tracing` subscriber this test installs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_secret(text: &str) {
    for secret in ACCESS.iter().chain([&REFRESH]) {
        assert!(!text.contains(secret), "{secret} leaked into: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn no_token_in_debug_display_or_trace_output() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    // The test's runtime is single-threaded: the refresh tasks log on this thread too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    let api = Api::rejecting(ACCESS[0]);
    let sensitive = Arc::new(Mutex::new(Vec::new()));
    let recording = {
        let sensitive = sensitive.clone();
        tower::service_fn(move |request: Request<ReplayBody<Full<bytes::Bytes>>>| {
            sensitive
                .lock()
                .unwrap()
                .push(request.headers()[AUTHORIZATION].is_sensitive());
            let mut api = api.clone();
            async move { api.call(request).await }
        })
    };
    let layer = BearerAuthLayer::from_cache(cache.clone());
    let mut service = layer.clone().layer(recording);

    // Initial refresh, a refused token, a forced refresh and a retry.
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(
        &mut handle,
        token(ACCESS[0], HOUR).with_refresh_token(REFRESH),
    )
    .await;
    assert_eq!(
        call.await.unwrap().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    advance(Duration::from_secs(10)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let asked = answer(
        &mut handle,
        token(ACCESS[1], HOUR).with_refresh_token(REFRESH),
    )
    .await;
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);

    // A background refresh that fails, then a failure every waiter sees.
    advance(HOUR - Duration::from_secs(60)).await;
    service
        .clone()
        .oneshot(get("http://api.test/"))
        .await
        .unwrap();
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error(format!("refused {}", "without secrets"));
    until(|| cache.stats().backing_off.is_some()).await;
    advance(Duration::from_secs(60)).await;
    let call = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("down");
    let err = call.await.unwrap().unwrap_err();
    let token_err = TokenError::find(&*err).unwrap().clone();

    let token = token(ACCESS[2], HOUR).with_refresh_token(REFRESH);
    let future = service.call(get("http://api.test/"));
    let debug = format!(
        "{token:?} {asked:?} {cache:?} {:?} {layer:?} {service:?} {future:?} {err:?} {err} \
         {token_err:?} {token_err} {:?} {:?}",
        cache.stats(),
        Response::new(ReplayBody::new(Full::new(bytes::Bytes::from_static(
            ACCESS[2].as_bytes()
        ))))
        .body(),
        tower_bearer::Scope::any(),
    );
    assert_no_secret(&debug);

    let trace = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(trace.contains("token refresh started"), "{trace}");
    assert!(trace.contains("401"), "{trace}");
    assert!(trace.contains("token refresh failed"), "{trace}");
    // The refresher's own error is logged, not just its outermost wrapper.
    assert!(trace.contains("causes=down"), "{trace}");
    assert_no_secret(&trace);

    assert!(sensitive.lock().unwrap().iter().all(|s| *s));
    assert!(!sensitive.lock().unwrap().is_empty());
}
