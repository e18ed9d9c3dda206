//! Contention: the hot path with both cores issuing requests at once, each thread through its
//! own clone of the service, every clone reading the same shared cache (the crate's, or the
//! `std::sync::RwLock` one a user would write), or for `AddAuthorization`, cloning the same
//! header value.
//!
//! The figure is ns per request on each thread while the other runs too; the table gives its
//! ratio to `AddAuthorization` under the same load, round by round, and a second table the
//! same measured interleaved (every variant in turn, a hundred times).

mod common;

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use http::Request;
use http_body_util::Empty;
use tower::Service;

use common::*;

const THREADS: usize = 2;
const SAMPLES: usize = 20;
const ROUNDS: usize = 3;

fn contention(c: &mut Criterion) {
    let recorder = Recorder::default();
    let cache = warm_cache();
    let naive = warm_naive_cache();
    let rwlock = warm_rwlock_cache();

    let mut group = c.benchmark_group("contention_2_threads");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
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
        bench(g, r, "naive_mutex", round, naive.layer(Ok200));
    }
    group.finish();

    recorder.print_rounds(
        "contention, 2 threads on one cache: ns per request on each thread, \
         ratio to AddAuthorization in the same round",
        "ns/req",
        false,
        &VARIANTS,
        FLOOR,
        ROUNDS,
        SAMPLES,
    );
    // Unless criterion only tested the functions, or a filter left the floor out. The naive
    // cache is left out: at tens of microseconds a request it would take most of the time.
    if recorder
        .ns_per_iter(&format!("{FLOOR}/1"), SAMPLES)
        .is_some()
    {
        let bare = Ok200;
        let add = add_authorization(Ok200);
        let lock = rwlock.layer(Ok200);
        let retry_off = bearer_retry_off(Ok200, &cache);
        let defaults = bearer_defaults(Ok200, &cache);
        let mut contenders: [Contender<'_>; 5] = [
            ("bare", Box::new(|n| contended(&bare, n))),
            ("add_authorization", Box::new(|n| contended(&add, n))),
            ("rwlock", Box::new(|n| contended(&lock, n))),
            ("bearer_retry_off", Box::new(|n| contended(&retry_off, n))),
            ("bearer_defaults", Box::new(|n| contended(&defaults, n))),
        ];
        interleaved(
            "contention, interleaved: 100 rounds of 20,000 requests per thread and variant",
            "ns/req",
            false,
            FLOOR,
            &mut contenders,
            100,
            20_000,
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
    service: S,
) where
    S: Service<Request<Empty<Bytes>>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    bench_round(group, recorder, name, round, |iters| {
        contended(&service, iters)
    });
}

/// Each of `THREADS` threads sends `iters` requests through its own clone of `service`,
/// all starting together; the result is the mean of the threads' timed sends.
fn contended<S>(service: &S, iters: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>> + Clone + Send,
    S::Error: std::fmt::Debug,
{
    let start = Barrier::new(THREADS);
    let total: Duration = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let mut service = service.clone();
                let start = &start;
                scope.spawn(move || {
                    let waker = thread_waker();
                    start.wait();
                    send_timed_with(&mut service, iters, Some(&waker))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker panicked"))
            .sum()
    });
    total / THREADS as u32
}

fn main() {
    // No plots: drawing them takes longer than measuring (`--plotting-backend plotters`
    // brings them back).
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    contention(&mut criterion);
    criterion.final_summary();
}
