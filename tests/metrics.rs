//! Every metric the cache reports, recorded by metrics-util's debugging recorder through one
//! scenario: a first token while two requests wait, a refresh ahead, a revocation and its
//! retry, a retry refused again, a failed refresh and its backoff, a store outage and its
//! end, a request out of scope, a DPoP nonce challenge, and a replica taking the token from
//! the store.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use http::{Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_bearer::store::MemoryStore;
use tower_bearer::{BearerAuthLayer, Scope, TokenCache};

/// A metric's name and its labels, `name{label=value,…}` in label order.
type Series = String;

/// What the recorder has seen so far. A snapshot resets counters and gauges, so they are
/// summed across snapshots here (the gauges the cache sets, rather than moves, are taken as
/// they were last set).
#[derive(Default)]
struct Recorded {
    counters: BTreeMap<Series, u64>,
    gauges: BTreeMap<Series, f64>,
    histograms: BTreeMap<Series, Vec<f64>>,
    units: BTreeMap<String, String>,
}

impl Recorded {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, unit, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if let Some(unit) = unit {
                self.units
                    .insert(key.name().to_owned(), unit.as_str().to_owned());
            }
            let labels: Vec<_> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let series = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.counters.entry(series).or_default() += n,
                DebugValue::Gauge(v) if key.name() == "tower_bearer.token.expires_at" => {
                    if v.0 != 0.0 {
                        self.gauges.insert(series, v.0);
                    }
                }
                DebugValue::Gauge(v) => *self.gauges.entry(series).or_default() += v.0,
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(series)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.0)),
            }
        }
    }

    fn counter(&self, series: &str) -> u64 {
        self.counters.get(series).copied().unwrap_or(0)
    }

    fn gauge(&self, series: &str) -> f64 {
        self.gauges.get(series).copied().unwrap_or(0.0)
    }
}

fn unauthorized(www_authenticate: &'static str) -> Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = Response::new(http_body_util::Full::default());
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
        .headers_mut()
        .insert("www-authenticate", www_authenticate.parse().unwrap());
    response
}

#[tokio::test(start_paused = true)]
async fn every_metric_through_a_scenario() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let mut seen = Recorded::default();

    let store = MemoryStore::new();
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::builder(refresher)
        .name("api")
        .store(store.clone())
        .backoff(Duration::from_secs(10), Duration::from_secs(10))
        .store_timeout(Duration::from_millis(100))
        // The scenario steps into the refresh-ahead window at its start.
        .refresh_jitter(0.0)
        .build();
    // Refuses ACCESS-2 (a revocation) and ACCESS-4 (refused however new).
    let api = Api::new(|auth| auth == Some("Bearer ACCESS-2") || auth == Some("Bearer ACCESS-4"));
    let service = BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(api);

    // The first token, while two requests wait.
    let first = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let second = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    until(|| cache.stats().waiting == 2).await;
    seen.take(&snapshotter);
    assert_eq!(seen.gauge("tower_bearer.refresh.waiters{cache=api}"), 2.0);
    advance(Duration::from_millis(250)).await;
    respond.send_response(token("ACCESS-1", HOUR));
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    seen.take(&snapshotter);
    assert_eq!(seen.gauge("tower_bearer.refresh.waiters{cache=api}"), 0.0);
    let expires_at = seen.gauge("tower_bearer.token.expires_at{cache=api}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (expires_at - (now + 3600.0)).abs() < 60.0,
        "{expires_at} vs {now}"
    );
    assert_eq!(
        seen.histograms["tower_bearer.refresh.duration{cache=api,reason=initial,outcome=success}"],
        [0.25]
    );

    // A refresh ahead of expiry, in the background; then the server revokes its token.
    advance(HOUR - Duration::from_secs(4 * 60)).await;
    service
        .clone()
        .oneshot(get("http://api.test/"))
        .await
        .unwrap();
    answer(&mut handle, token("ACCESS-2", HOUR)).await;
    until(|| cache.stats().generation == 2).await;
    advance(Duration::from_secs(10)).await;
    let revoked = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("ACCESS-3", HOUR)).await;
    assert_eq!(revoked.await.unwrap().unwrap().status(), StatusCode::OK);

    // A token refused however new: replaced once, and its retry is refused too.
    advance(Duration::from_secs(10)).await;
    let rejecting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.reject(&token("ACCESS-3", HOUR)).await }
    });
    answer(&mut handle, token("ACCESS-4", HOUR)).await;
    rejecting.await.unwrap().unwrap();
    advance(Duration::from_secs(10)).await;
    let refused = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("ACCESS-4", HOUR)).await;
    assert_eq!(
        refused.await.unwrap().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Past expiry, the refresh fails; a request during the backoff is left without a token.
    advance(2 * HOUR).await;
    let failed = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    let (_, respond) = next_refresh(&mut handle).await;
    respond.send_error("down");
    assert!(failed.await.unwrap().is_err());
    assert!(
        service
            .clone()
            .oneshot(get("http://api.test/"))
            .await
            .is_err()
    );

    // The store goes down: the next refresh is this cache's alone; then it comes back.
    advance(Duration::from_secs(11)).await;
    store.set_unavailable(true);
    let alone = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("ACCESS-6", HOUR)).await;
    alone.await.unwrap().unwrap();
    store.set_unavailable(false);
    advance(2 * HOUR).await;
    let back = tokio::spawn(service.clone().oneshot(get("http://api.test/")));
    answer(&mut handle, token("ACCESS-7", HOUR)).await;
    back.await.unwrap().unwrap();

    // A request outside the layer's scope, and an answer asking for a DPoP nonce.
    let scoped = BearerAuthLayer::from_cache(
        cache.clone(),
        Scope::origin("http://elsewhere.test").unwrap(),
    )
    .layer(Api::open());
    scoped.oneshot(get("http://api.test/")).await.unwrap();
    let nonce = BearerAuthLayer::from_cache(cache.clone(), Scope::any())
        .layer(Api::refusing("ACCESS-7", || {
            unauthorized(r#"DPoP error="use_dpop_nonce""#)
        }));
    nonce.oneshot(get("http://api.test/")).await.unwrap();

    // Another replica takes the token this one published.
    let (idle, _idle) = common::refresher();
    let replica = TokenCache::builder(idle)
        .name("replica")
        .store(store)
        .build();
    replica.token().await.unwrap();

    seen.take(&snapshotter);
    let expected_counters = [
        (
            "tower_bearer.refreshes{cache=replica,reason=initial,outcome=success}",
            1,
        ),
        ("tower_bearer.store.events{cache=replica,event=adopted}", 1),
        (
            "tower_bearer.refreshes{cache=api,reason=initial,outcome=success}",
            1,
        ),
        (
            "tower_bearer.refreshes{cache=api,reason=ahead,outcome=success}",
            1,
        ),
        (
            "tower_bearer.refreshes{cache=api,reason=rejected,outcome=success}",
            3,
        ),
        (
            "tower_bearer.refreshes{cache=api,reason=expired,outcome=error}",
            1,
        ),
        (
            "tower_bearer.refreshes{cache=api,reason=expired,outcome=success}",
            2,
        ),
        // ACCESS-2, ACCESS-3 reported by `reject`, ACCESS-4 twice; the nonce challenge is no
        // refusal.
        ("tower_bearer.tokens.refused{cache=api}", 4),
        ("tower_bearer.retries{cache=api,cause=refused}", 2),
        ("tower_bearer.retries.refused{cache=api}", 1),
        ("tower_bearer.dpop.nonce_challenges{cache=api}", 1),
        (
            "tower_bearer.requests.without_token{cache=api,cause=backing_off}",
            1,
        ),
        (
            "tower_bearer.requests.without_token{cache=api,cause=out_of_scope}",
            1,
        ),
        // Every refresh but the one during the outage; every one of those but the failed one
        // published.
        ("tower_bearer.store.events{cache=api,event=lease_won}", 7),
        ("tower_bearer.store.events{cache=api,event=published}", 6),
        ("tower_bearer.store.events{cache=api,event=error}", 1),
        ("tower_bearer.store.events{cache=api,event=unavailable}", 1),
        ("tower_bearer.store.events{cache=api,event=available}", 1),
    ];
    let expected: BTreeMap<String, u64> = expected_counters
        .iter()
        .map(|(series, n)| (series.to_string(), *n))
        .collect();
    let counters: BTreeMap<String, u64> = seen
        .counters
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| (s.clone(), *n))
        .collect();
    assert_eq!(counters, expected);

    let durations: usize = seen.histograms.values().map(Vec::len).sum();
    assert_eq!(durations, 9, "one per refresh");
    assert_eq!(seen.gauge("tower_bearer.refresh.waiters{cache=api}"), 0.0);
    assert_eq!(seen.units["tower_bearer.refresh.duration"], "seconds");
    assert_eq!(seen.units["tower_bearer.token.expires_at"], "seconds");
    assert_eq!(seen.units["tower_bearer.refreshes"], "count");

    // The stats say the same.
    let stats = cache.stats();
    assert_eq!(stats.unauthorized, 4);
    assert_eq!(stats.retried, 2);
    assert_eq!(stats.total().succeeded + stats.total().failed, 8);
}

#[tokio::test(start_paused = true)]
async fn an_unnamed_cache_is_labelled_default() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let (refresher, mut handle) = refresher();
    let cache = TokenCache::new(refresher);
    let got = tokio::spawn({
        let cache = cache.clone();
        async move { cache.token().await }
    });
    answer(&mut handle, token("ACCESS-1", HOUR)).await;
    got.await.unwrap().unwrap();
    let mut seen = Recorded::default();
    seen.take(&snapshotter);
    assert_eq!(
        seen.counter("tower_bearer.refreshes{cache=default,reason=initial,outcome=success}"),
        1
    );
}

/// A failed refresh is named by how it failed: too slow, answered with a token already
/// expired, or never answered (the refresher panicked).
#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_named_by_how_it_failed() {
    use tower::{BoxError, service_fn};
    use tower_bearer::{Token, TokenRequest};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let slow = TokenCache::builder(service_fn(|_: TokenRequest| {
        std::future::pending::<Result<Token, BoxError>>()
    }))
    .name("slow")
    .refresh_timeout(Duration::from_secs(1))
    .build();
    let expired = TokenCache::builder(service_fn(|_: TokenRequest| async {
        Ok::<_, BoxError>(Token::bearer("t")?.expires_in(Duration::ZERO))
    }))
    .name("expired")
    .build();
    let panicked = TokenCache::builder(service_fn(|_: TokenRequest| async {
        if true {
            panic!("a refresher that panics");
        }
        Ok::<_, BoxError>(Token::bearer("t")?)
    }))
    .name("panicked")
    .build();
    for cache in [&slow, &expired, &panicked] {
        assert!(within(cache.token()).await.is_err());
    }
    let mut seen = Recorded::default();
    seen.take(&snapshotter);
    for (cache, outcome) in [
        ("slow", "timed_out"),
        ("expired", "expired_token"),
        ("panicked", "abandoned"),
    ] {
        let series =
            format!("tower_bearer.refreshes{{cache={cache},reason=initial,outcome={outcome}}}");
        assert_eq!(seen.counter(&series), 1, "{series}: {:?}", seen.counters);
    }
}
