//! Storm: 10,000 concurrent requests arrive at an expired token.
//!
//! Each iteration builds a fresh cache whose first token lives 50 ms, lets it expire, then
//! spawns 10,000 requests at once on a 2-worker runtime and waits for all of them. The
//! refresher takes 100 ms (a realistic round trip to an auth endpoint) and counts its calls:
//! the storm must cost exactly one. The figure is the time from the first spawn to the last
//! completion, compared with the refresher's own latency (target: within 10 % of it).
//!
//! Compared with the naive `Arc<tokio::sync::Mutex<Option<(HeaderValue, Instant)>>>` cache
//! (the lock held across its refresh, so it too refreshes once) and with two floors: the same
//! 10,000 requests through the bare inner service, with no token at all (the harness), and the
//! same requests each waiting for one shared signal sent when a 100 ms pause ends, then going
//! to the bare service (what any single flight costs, before it does anything about tokens).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, measurement::WallTime};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_bearer::{BearerAuthLayer, Scope, Token, TokenCache, TokenRequest};

use common::*;

const REQUESTS: usize = 10_000;
const REFRESH_LATENCY: Duration = Duration::from_millis(100);
const FIRST_LIFETIME: Duration = Duration::from_millis(50);
const SAMPLES: usize = 10;

/// What one storm measured.
#[derive(Clone, Copy, Default)]
struct Outcome {
    elapsed: Duration,
    /// How long the refresh itself took (the refresher's sleep, as the runtime served it).
    refresh: Duration,
    /// From the refresh's end to the last request's: waking the waiters and sending.
    tail: Duration,
    refresher_calls: usize,
}

fn storm(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let recorder = Recorder::default();
    let outcomes = std::cell::RefCell::new(Vec::<(&str, Outcome)>::new());

    let mut group = c.benchmark_group("storm_10000");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut bench = |name: &'static str, scenario: fn() -> _| {
        bench(&mut group, &runtime, &recorder, name, scenario, |o| {
            outcomes.borrow_mut().push((name, o))
        })
    };
    bench("bare_no_token", bare_storm);
    bench("one_signal", one_signal_storm);
    bench("bearer_defaults", bearer_storm);
    bench("naive_mutex", naive_storm);
    group.finish();

    print_storms(&recorder, &outcomes.borrow());
}

type Scenario = fn() -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>>;

fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    recorder: &Recorder,
    name: &str,
    scenario: Scenario,
    mut keep: impl FnMut(Outcome),
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The storm's driver runs on a worker, like the requests it spawns.
                let outcome = runtime
                    .block_on(runtime.spawn(scenario()))
                    .expect("the storm panicked");
                total += outcome.elapsed;
                keep(outcome);
            }
            recorder.record(name, iters, total)
        })
    });
}

/// When the refresh ended, and how long it took.
type RefreshTimes = Arc<std::sync::Mutex<(Option<Instant>, Duration)>>;

fn refreshed(times: &RefreshTimes, start: Instant) {
    *times.lock().unwrap() = (Some(Instant::now()), start.elapsed());
}

/// Spawns every request through a clone of `service`, waits for all of them, and says when
/// they started and ended.
async fn spawn_all<S>(service: S) -> (Instant, Instant)
where
    S: Service<http::Request<http_body_util::Empty<bytes::Bytes>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: std::fmt::Debug + Send,
{
    let requests: Vec<_> = (0..REQUESTS).map(|_| request()).collect();
    let start = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| tokio::spawn(service.clone().oneshot(request)))
        .collect();
    for task in tasks {
        task.await
            .expect("a request panicked")
            .expect("a request failed");
    }
    (start, Instant::now())
}

/// What a storm measured, from its times and the refresh's.
fn outcome((start, end): (Instant, Instant), times: &RefreshTimes, calls: usize) -> Outcome {
    let (refreshed_at, refresh) = *times.lock().unwrap();
    Outcome {
        elapsed: end - start,
        refresh,
        tail: refreshed_at.map_or(Duration::ZERO, |at| end.saturating_duration_since(at)),
        refresher_calls: calls,
    }
}

fn bare_storm() -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let (start, end) = spawn_all(Ok200).await;
        Outcome {
            elapsed: end - start,
            ..Outcome::default()
        }
    })
}

fn one_signal_storm() -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let refresh = RefreshTimes::default();
        let (signal, waiting) = tokio::sync::watch::channel(false);
        let service = service_fn(move |request| {
            let mut waiting = waiting.clone();
            async move {
                waiting
                    .wait_for(|sent| *sent)
                    .await
                    .expect("the signal is sent");
                Ok200.call(request).await
            }
        });
        let pause = {
            let refresh = refresh.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                tokio::time::sleep(REFRESH_LATENCY).await;
                refreshed(&refresh, start);
                signal.send_replace(true);
            })
        };
        let times = spawn_all(service).await;
        pause.await.expect("the pause ends");
        outcome(times, &refresh, 0)
    })
}

fn bearer_storm() -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let refresh = RefreshTimes::default();
        let refresher = {
            let (calls, refresh) = (calls.clone(), refresh.clone());
            let access = Arc::<str>::from(access_token());
            service_fn(move |_: TokenRequest| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                let (access, refresh) = (access.clone(), refresh.clone());
                async move {
                    if first {
                        return Token::bearer(&*access).map(|t| t.expires_in(FIRST_LIFETIME));
                    }
                    let start = Instant::now();
                    tokio::time::sleep(REFRESH_LATENCY).await;
                    refreshed(&refresh, start);
                    Token::bearer(&*access).map(|t| t.expires_in(HOUR))
                }
            })
        };
        let cache = TokenCache::new(refresher);
        cache.token().await.expect("the first token");
        tokio::time::sleep(FIRST_LIFETIME + Duration::from_millis(10)).await;
        let service = BearerAuthLayer::from_cache(cache, Scope::any()).layer(Ok200);

        let times = spawn_all(service).await;
        let refresher_calls = calls.load(Ordering::SeqCst) - 1;
        assert_eq!(refresher_calls, 1, "the storm cost one refresh");
        outcome(times, &refresh, refresher_calls)
    })
}

fn naive_storm() -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> {
    Box::pin(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let refresh = RefreshTimes::default();
        let refresh_fn: RefreshFn = {
            let (calls, refresh) = (calls.clone(), refresh.clone());
            let value = authorization(&access_token());
            Arc::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                let (value, refresh) = (value.clone(), refresh.clone());
                Box::pin(async move {
                    let start = Instant::now();
                    tokio::time::sleep(REFRESH_LATENCY).await;
                    refreshed(&refresh, start);
                    Ok((value, Instant::now() + HOUR))
                })
            })
        };
        // Expired: a request checks `now < expiry`.
        let expired = Instant::now();
        let naive = NaiveCache::new(Some((authorization(&access_token()), expired)), refresh_fn);

        let times = spawn_all(naive.layer(Ok200)).await;
        let refresher_calls = calls.load(Ordering::SeqCst);
        assert_eq!(
            refresher_calls, 1,
            "the lock made the refresh single flight"
        );
        outcome(times, &refresh, refresher_calls)
    })
}

fn print_storms(recorder: &Recorder, outcomes: &[(&str, Outcome)]) {
    let names = [
        "bare_no_token",
        "one_signal",
        "bearer_defaults",
        "naive_mutex",
    ];
    if names
        .iter()
        .any(|n| recorder.per_iter(n, SAMPLES).len() < SAMPLES)
    {
        return;
    }
    println!(
        "\nstorm: {REQUESTS} concurrent requests at an expired token, refresher latency \
         {REFRESH_LATENCY:?} (2 worker threads)"
    );
    println!(
        "  {:<16} {:>8} {:>10} {:>8} {:>16} {:>14} {:>10}",
        "variant", "min ms", "median ms", "max ms", "× refresh taken", "tail ms (med)", "refreshes"
    );
    for name in names {
        let ms: Vec<f64> = recorder
            .per_iter(name, SAMPLES)
            .iter()
            .map(|ns| ns / 1e6)
            .collect();
        let (min, max) = ms
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let mine: Vec<&Outcome> = outcomes
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, o)| o)
            .collect();
        let measured = &mine[mine.len().saturating_sub(SAMPLES)..];
        let (ratio, tail) = if name == "bare_no_token" {
            ("-".to_owned(), "-".to_owned())
        } else {
            // Each storm against its own refresh, over the measured ones.
            let ratios: Vec<f64> = measured
                .iter()
                .map(|o| o.elapsed.as_secs_f64() / o.refresh.as_secs_f64())
                .collect();
            let tails: Vec<f64> = measured
                .iter()
                .map(|o| o.tail.as_secs_f64() * 1e3)
                .collect();
            (
                format!("{:.3}", median(&ratios)),
                format!("{:.2}", median(&tails)),
            )
        };
        let calls = mine.iter().map(|o| o.refresher_calls).max().unwrap_or(0);
        println!(
            "  {name:<16} {min:>8.2} {:>10.2} {max:>8.2} {ratio:>16} {tail:>14} {calls:>10}",
            median(&ms)
        );
    }
    println!();
}

fn main() {
    // No plots: drawing them takes longer than measuring (`--plotting-backend plotters`
    // brings them back).
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    storm(&mut criterion);
    criterion.final_summary();
}
