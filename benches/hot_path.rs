//! The hot path: what one request costs when the token is valid.
//!
//! One request (a GET with a path and query, four ordinary headers, an empty body) through an
//! inner service that answers a ready 200, nine ways: the bare inner service, tower-http's
//! `AddAuthorization::bearer` (a static header: the floor), the cache a user would write (a
//! `std::sync::RwLock<Option<(HeaderValue, Instant)>>` read with a clock check per request:
//! the floor of retry off), `BearerAuth` with retry-on-401 off, `BearerAuth` with its
//! defaults, `KeyedAuth` with its defaults (a key function matching the URI's host, one key)
//! and keyed by origin (the origin's text made for each request), tower's `Retry` around `AddAuthorization` (a policy that retries a 401 once: the
//! floor of any layer that retries, which copies each request before sending it), and the
//! naive `Arc<tokio::sync::Mutex<Option<..>>>` cache. Each request is driven by hand (one poll with a no-op waker), so no runtime's
//! scheduling is in the figure; requests are built outside the timed stretches.
//!
//! After criterion's own report, a table gives each variant's ns/request and its ratio to
//! `AddAuthorization` in the same round (the group runs three times over), and a second one
//! the same figures measured interleaved: every variant in turn, three hundred times, which a
//! machine loaded from elsewhere disturbs least.
//!
//! For instruction counts (stable on a loaded machine), one variant at a time:
//!
//! ```text
//! HOT_PATH_PROFILE=bearer_retry_off valgrind --tool=callgrind \
//!     --toggle-collect='*profiled_send*' target/release/deps/hot_path-<hash>
//! ```
//!
//! sends 100,000 requests of that variant and nothing else; the collected instruction count
//! divided by 100,000 is the cost of one request.

mod common;

use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use http::Request;
use http_body_util::Empty;
use tower::Service;

use common::*;

const SAMPLES: usize = 30;
/// The group runs this many times over; ratios are taken within each round, so a burst of
/// load from elsewhere moves one round's figures, and the median shows it.
const ROUNDS: usize = 3;

fn hot_path(c: &mut Criterion) {
    let recorder = Recorder::default();
    let cache = warm_cache();
    let naive = warm_naive_cache();
    let rwlock = warm_rwlock_cache();

    let mut group = c.benchmark_group("hot_path");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(SAMPLES);
    for round in 1..=ROUNDS {
        let (g, r) = (&mut group, &recorder);
        bench(g, r, "bare", round, Ok200);
        bench(g, r, "add_authorization", round, add_authorization(Ok200));
        bench(g, r, "rwlock", round, rwlock.layer(Ok200));
        bench(
            g,
            r,
            "bearer_retry_off",
            round,
            bearer_retry_off(Ok200, &cache),
        );
        bench(
            g,
            r,
            "bearer_defaults",
            round,
            bearer_defaults(Ok200, &cache),
        );
        bench(g, r, "keyed", round, keyed(Ok200, &cache));
        bench(
            g,
            r,
            "keyed_by_origin",
            round,
            keyed_by_origin(Ok200, &cache),
        );
        bench(g, r, "tower_retry", round, tower_retry(Ok200));
        bench(g, r, "naive_mutex", round, naive.layer(Ok200));
    }
    group.finish();

    recorder.print_rounds(
        "hot path, one thread: ns per request, ratio to AddAuthorization in the same round",
        "ns/req",
        false,
        &VARIANTS,
        FLOOR,
        ROUNDS,
        SAMPLES,
    );
    // Unless criterion only tested the functions, or a filter left the floor out.
    if recorder
        .ns_per_iter(&format!("{FLOOR}/1"), SAMPLES)
        .is_some()
    {
        let mut bare = Ok200;
        let mut add = add_authorization(Ok200);
        let mut lock = rwlock.layer(Ok200);
        let mut retry_off = bearer_retry_off(Ok200, &cache);
        let mut defaults = bearer_defaults(Ok200, &cache);
        let mut keyed = keyed(Ok200, &cache);
        let mut by_origin = keyed_by_origin(Ok200, &cache);
        let mut retry = tower_retry(Ok200);
        let mut naive = naive.layer(Ok200);
        let mut contenders: [Contender<'_>; 9] = [
            ("bare", Box::new(move |n| send_timed(&mut bare, n))),
            (
                "add_authorization",
                Box::new(move |n| send_timed(&mut add, n)),
            ),
            ("rwlock", Box::new(move |n| send_timed(&mut lock, n))),
            (
                "bearer_retry_off",
                Box::new(move |n| send_timed(&mut retry_off, n)),
            ),
            (
                "bearer_defaults",
                Box::new(move |n| send_timed(&mut defaults, n)),
            ),
            ("keyed", Box::new(move |n| send_timed(&mut keyed, n))),
            (
                "keyed_by_origin",
                Box::new(move |n| send_timed(&mut by_origin, n)),
            ),
            ("tower_retry", Box::new(move |n| send_timed(&mut retry, n))),
            ("naive_mutex", Box::new(move |n| send_timed(&mut naive, n))),
        ];
        interleaved(
            "hot path, interleaved: 300 rounds of 5,000 requests per variant, in turn",
            "ns/req",
            false,
            FLOOR,
            &mut contenders,
            300,
            5_000,
        );
    }
    assert_eq!(
        cache.stats().total().started,
        1,
        "the token was valid throughout"
    );
}

fn bench<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    recorder: &Recorder,
    name: &str,
    round: usize,
    mut service: S,
) where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    bench_round(group, recorder, name, round, |iters| {
        send_timed(&mut service, iters)
    });
}

// ===== profile mode =====

const PROFILED_REQUESTS: usize = 100_000;

fn profile(variant: &str) {
    let cache = warm_cache();
    let naive = warm_naive_cache();
    let rwlock = warm_rwlock_cache();
    match variant {
        "bare" => profile_with(Ok200),
        "add_authorization" => profile_with(add_authorization(Ok200)),
        "rwlock" => profile_with(rwlock.layer(Ok200)),
        "bearer_retry_off" => profile_with(bearer_retry_off(Ok200, &cache)),
        "bearer_defaults" => profile_with(bearer_defaults(Ok200, &cache)),
        "keyed" => profile_with(keyed(Ok200, &cache)),
        "keyed_by_origin" => profile_with(keyed_by_origin(Ok200, &cache)),
        "tower_retry" => profile_with(tower_retry(Ok200)),
        "naive_mutex" => profile_with(naive.layer(Ok200)),
        other => panic!("HOT_PATH_PROFILE={other}: expected one of {VARIANTS:?}"),
    }
    println!("{variant}: sent {PROFILED_REQUESTS} requests");
}

fn profile_with<S>(mut service: S)
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    // Built and dropped in chunks as in the timed benchmark, so the allocator works alike.
    let mut requests = Vec::with_capacity(CHUNK);
    let mut responses = Vec::with_capacity(CHUNK);
    let mut left = PROFILED_REQUESTS;
    while left > 0 {
        let n = left.min(CHUNK);
        requests.extend((0..n).map(|_| request()));
        for request in requests.drain(..) {
            responses.push(profiled_send(&mut service, request));
        }
        responses.clear();
        left -= n;
    }
}

/// The one function callgrind collects in profile mode.
#[inline(never)]
fn profiled_send<S>(service: &mut S, request: Request<Empty<Bytes>>) -> S::Response
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    send_now(service, request)
}

fn main() {
    if let Ok(variant) = std::env::var("HOT_PATH_PROFILE") {
        profile(&variant);
        return;
    }
    // No plots: drawing them takes longer than measuring (`--plotting-backend plotters`
    // brings them back).
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    hot_path(&mut criterion);
    criterion.final_summary();
}
