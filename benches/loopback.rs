//! Loopback: a hyper-util client sends requests over real sockets to a hyper server on
//! 127.0.0.1, with keep-alive, through `BearerAuth` (defaults, or retry off) or
//! `AddAuthorization`, or with no header at all (the floor of the harness).
//!
//! The server runs on a thread and a current-thread runtime of its own; the client on
//! another. Eight requests are in flight at a time (eight pooled connections); the figure is
//! requests per second, and the table gives each one's ratio to `AddAuthorization` round by
//! round; a second table gives the same measured interleaved (every variant in turn, 1,000
//! requests at a time, sixty times), which a machine loaded from elsewhere disturbs least.
//! The server checks the token on every request, as an API would.
//!
//! Instruction counts do not move with the machine's load; one variant at a time:
//!
//! ```text
//! cargo bench --bench loopback --no-run
//! LOOPBACK_PROFILE=bearer_retry_off valgrind --tool=callgrind --separate-threads=yes \
//!     target/release/deps/loopback-<hash>
//! ```
//!
//! sends 1,000 requests of that variant, one at a time, and nothing else; the client's thread
//! (the first file) and the server's are counted apart, setup included, so compare variants by
//! the difference of their counts.

mod common;
#[path = "common/token_server.rs"]
mod token_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::runtime::Runtime;
use tower::{BoxError, Service, ServiceExt};
use tower_bearer::ReplayBody;

use common::*;
use token_server::Server;

const IN_FLIGHT: u64 = 8;
const SAMPLES: usize = 10;
/// Over loopback the load from elsewhere moves figures most: more, shorter rounds.
const ROUNDS: usize = 5;
const LOOPBACK_VARIANTS: [&str; 4] = [
    "bare",
    "add_authorization",
    "bearer_retry_off",
    "bearer_defaults",
];

// ===== the client side =====

fn client<B>() -> Client<HttpConnector, B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IN_FLIGHT as usize)
        .build(connector)
}

/// Sends `iters` requests, `IN_FLIGHT` at a time, and returns how long they took.
fn send_all<S>(runtime: &Runtime, service: &S, uri: &str, host: &str, iters: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..IN_FLIGHT {
            let count = iters / IN_FLIGHT + u64::from(k < iters % IN_FLIGHT);
            let mut service = service.clone();
            let (uri, host) = (uri.to_owned(), host.to_owned());
            tasks.spawn(async move {
                for _ in 0..count {
                    let service = service.ready().await.expect("ready");
                    let response = service
                        .call(request_to(&uri, &host))
                        .await
                        .expect("a response");
                    assert_eq!(response.status(), StatusCode::OK);
                    // Read to the end, so the connection goes back to the pool.
                    response.into_body().collect().await.expect("the body");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a client task panicked");
        }
        start.elapsed()
    })
}

fn loopback(c: &mut Criterion) {
    let token = authorization(&access_token());
    let server = Server::start(token.clone());
    let uri = format!("http://{}/videos?currentPage=1&pageSize=25", server.addr);
    let host = server.addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let cache = warm_cache();

    let bare = client::<Empty<Bytes>>();
    let add = add_authorization(client::<Empty<Bytes>>());
    let retry_off = bearer_retry_off(client::<ReplayBody<Empty<Bytes>>>(), &cache);
    let bearer = bearer_defaults(client::<ReplayBody<Empty<Bytes>>>(), &cache);

    let recorder = Recorder::default();
    let mut group = c.benchmark_group("loopback");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(SAMPLES);
    for round in 1..=ROUNDS {
        let mut bench = |name: &str, send: &dyn Fn(u64) -> Duration| {
            bench_round(&mut group, &recorder, name, round, send)
        };
        bench("bare", &|iters| {
            send_all(&runtime, &bare, &uri, &host, iters)
        });
        bench("add_authorization", &|iters| {
            send_all(&runtime, &add, &uri, &host, iters)
        });
        bench("bearer_retry_off", &|iters| {
            send_all(&runtime, &retry_off, &uri, &host, iters)
        });
        bench("bearer_defaults", &|iters| {
            send_all(&runtime, &bearer, &uri, &host, iters)
        });
    }
    group.finish();

    recorder.print_rounds(
        &format!(
            "loopback, {IN_FLIGHT} requests in flight over keep-alive connections: requests/s, \
             ratio to AddAuthorization in the same round"
        ),
        "req/s",
        true,
        &LOOPBACK_VARIANTS,
        FLOOR,
        ROUNDS,
        SAMPLES,
    );
    // Unless criterion only tested the functions, or a filter left the floor out.
    if recorder
        .ns_per_iter(&format!("{FLOOR}/1"), SAMPLES)
        .is_some()
    {
        let (runtime, uri, host) = (&runtime, uri.as_str(), host.as_str());
        let (bare, add, retry_off, bearer) = (&bare, &add, &retry_off, &bearer);
        let mut contenders: [Contender<'_>; 4] = [
            (
                "bare",
                Box::new(move |n| send_all(runtime, bare, uri, host, n)),
            ),
            (
                "add_authorization",
                Box::new(move |n| send_all(runtime, add, uri, host, n)),
            ),
            (
                "bearer_retry_off",
                Box::new(move |n| send_all(runtime, retry_off, uri, host, n)),
            ),
            (
                "bearer_defaults",
                Box::new(move |n| send_all(runtime, bearer, uri, host, n)),
            ),
        ];
        interleaved(
            "loopback, interleaved: 60 rounds of 1,000 requests per variant, in turn",
            "req/s",
            true,
            FLOOR,
            &mut contenders,
            60,
            1_000,
        );
    }
    assert_eq!(cache.stats().unauthorized, 0, "the server took the token");
    drop(server);
}

// ===== the profile mode: one variant, one request at a time, for callgrind =====

/// Requests sent in the profile mode.
const PROFILED_REQUESTS: u64 = 1_000;

/// `LOOPBACK_PROFILE=<variant>`: sends `PROFILED_REQUESTS` requests of that variant, one at a
/// time, and nothing else (see the module documentation).
fn profile(variant: &str) {
    let server = Server::start(authorization(&access_token()));
    let uri = format!("http://{}/videos?currentPage=1&pageSize=25", server.addr);
    let host = server.addr.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let cache = warm_cache();
    let (uri, host) = (uri.as_str(), host.as_str());
    match variant {
        "bare" => sequential(&runtime, client::<Empty<Bytes>>(), uri, host),
        "add_authorization" => sequential(
            &runtime,
            add_authorization(client::<Empty<Bytes>>()),
            uri,
            host,
        ),
        "bearer_retry_off" => sequential(
            &runtime,
            bearer_retry_off(client::<ReplayBody<Empty<Bytes>>>(), &cache),
            uri,
            host,
        ),
        "bearer_defaults" => sequential(
            &runtime,
            bearer_defaults(client::<ReplayBody<Empty<Bytes>>>(), &cache),
            uri,
            host,
        ),
        other => panic!("LOOPBACK_PROFILE={other}: expected one of {LOOPBACK_VARIANTS:?}"),
    }
    assert_eq!(cache.stats().unauthorized, 0, "the server took the token");
    println!("{variant}: sent {PROFILED_REQUESTS} requests");
}

/// `PROFILED_REQUESTS` requests through `service`, one at a time.
fn sequential<S>(runtime: &Runtime, mut service: S, uri: &str, host: &str)
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>>,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        for _ in 0..PROFILED_REQUESTS {
            let response = service
                .ready()
                .await
                .expect("ready")
                .call(request_to(uri, host))
                .await
                .expect("a response");
            assert_eq!(response.status(), StatusCode::OK);
            response.into_body().collect().await.expect("the body");
        }
    });
}

fn main() {
    if let Ok(variant) = std::env::var("LOOPBACK_PROFILE") {
        profile(&variant);
        return;
    }
    // No plots: drawing them takes longer than measuring (`--plotting-backend plotters`
    // brings them back).
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    loopback(&mut criterion);
    criterion.final_summary();
}
