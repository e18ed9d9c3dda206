//! reqwest over loopback: a reqwest-middleware client sends requests over real sockets to a
//! hyper server on 127.0.0.1, with keep-alive, through `BearerAuthMiddleware` (defaults, or
//! retry off), or through a middleware that inserts a static `Authorization` header (the
//! floor), that middleware behind reqwest-retry's `RetryTransientMiddleware` (the floor of a
//! middleware that retries: it copies every request before its first send), or with no
//! middleware at all (the floor of the harness).
//!
//! ```text
//! cargo bench --features reqwest --bench reqwest
//! ```
//!
//! The server runs on a thread and a current-thread runtime of its own; the client on
//! another. Eight requests are in flight at a time (eight pooled connections); the figure is
//! requests per second, and the tables give each one's ratio to the static header, round by
//! round, then interleaved (every variant in turn, 1,000 requests at a time, sixty times),
//! which a machine loaded from elsewhere disturbs least. The server checks the token on every
//! request, as an API would.
//!
//! Instruction counts do not move with the machine's load. In the profile mode the client's
//! chain ends in a middleware that answers 200 on the spot (no sockets), and one variant sends
//! 10,000 requests; the count divided by 10,000 is its cost per request:
//!
//! ```text
//! cargo bench --features reqwest --bench reqwest --no-run
//! REQWEST_PROFILE=bearer_defaults valgrind --tool=callgrind \
//!     --toggle-collect='*profiled_send*' target/release/deps/reqwest-<hash>
//! ```

mod common;
#[path = "common/token_server.rs"]
mod token_server;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, USER_AGENT};
use http::{Extensions, HeaderValue, StatusCode};
use reqwest::ResponseBuilderExt;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use tokio::runtime::Runtime;
use tower_bearer::reqwest::BearerAuthMiddleware;
use tower_bearer::{Scope, TokenCache};

use common::{
    Contender, Recorder, access_token, authorization, bench_round, interleaved, warm_cache,
};
use token_server::Server;

const IN_FLIGHT: u64 = 8;
const SAMPLES: usize = 10;
/// Over loopback the load from elsewhere moves figures most: more, shorter rounds.
const ROUNDS: usize = 5;
const VARIANTS: [&str; 5] = [
    "bare",
    "static_header",
    "static_header_retry",
    "bearer_retry_off",
    "bearer_defaults",
];
/// The variant every ratio is taken to.
const FLOOR: &str = "static_header";

// ===== the client side =====

/// The floor: a middleware that inserts the same header into every request.
struct StaticHeader(HeaderValue);

#[async_trait::async_trait]
impl Middleware for StaticHeader {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        request.headers_mut().insert(AUTHORIZATION, self.0.clone());
        next.run(request, extensions).await
    }
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT as usize)
        .tcp_nodelay(true)
        .build()
        .expect("a reqwest client")
}

/// The clients compared; with `canned`, each ends in [`Canned`] instead of the network.
fn variants(cache: &TokenCache, canned: bool) -> [(&'static str, ClientWithMiddleware); 5] {
    let token = authorization(&access_token());
    let auth = || BearerAuthMiddleware::from_cache(cache.clone(), Scope::any());
    let build = |builder: ClientBuilder| match canned {
        true => builder.with(Canned).build(),
        false => builder.build(),
    };
    let client = || ClientBuilder::new(reqwest_client());
    [
        ("bare", build(client())),
        (
            "static_header",
            build(client().with(StaticHeader(token.clone()))),
        ),
        (
            "static_header_retry",
            build(
                client()
                    .with(RetryTransientMiddleware::new_with_policy(
                        ExponentialBackoff::builder().build_with_max_retries(1),
                    ))
                    .with(StaticHeader(token)),
            ),
        ),
        (
            "bearer_retry_off",
            build(client().with(auth().retry_unauthorized(false))),
        ),
        ("bearer_defaults", build(client().with(auth()))),
    ]
}

/// Sends `iters` requests, `IN_FLIGHT` at a time, and returns how long they took.
fn send_all(runtime: &Runtime, client: &ClientWithMiddleware, url: &str, iters: u64) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..IN_FLIGHT {
            let count = iters / IN_FLIGHT + u64::from(k < iters % IN_FLIGHT);
            let (client, url) = (client.clone(), url.to_owned());
            tasks.spawn(async move {
                for _ in 0..count {
                    // The request the other benches send: a path and query, three ordinary
                    // headers (reqwest adds `Host`), no body.
                    let response = client
                        .get(&url)
                        .header(ACCEPT, "application/json")
                        .header(USER_AGENT, "tower-bearer-bench/0.1")
                        .header(ACCEPT_ENCODING, "gzip, br")
                        .send()
                        .await
                        .expect("a response");
                    assert_eq!(response.status(), StatusCode::OK);
                    // Read to the end, so the connection goes back to the pool.
                    response.bytes().await.expect("the body");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a client task panicked");
        }
        start.elapsed()
    })
}

fn reqwest_loopback(c: &mut Criterion) {
    let server = Server::start(authorization(&access_token()));
    let url = format!("http://{}/videos?currentPage=1&pageSize=25", server.addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let cache = warm_cache();
    let clients = variants(&cache, false);

    let recorder = Recorder::default();
    let mut group = c.benchmark_group("reqwest");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(SAMPLES);
    for round in 1..=ROUNDS {
        for (name, client) in &clients {
            bench_round(&mut group, &recorder, name, round, &|iters| {
                send_all(&runtime, client, &url, iters)
            });
        }
    }
    group.finish();

    recorder.print_rounds(
        &format!(
            "reqwest, {IN_FLIGHT} requests in flight over keep-alive connections: requests/s, \
             ratio to the static header in the same round"
        ),
        "req/s",
        true,
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
        let (runtime, url) = (&runtime, url.as_str());
        let mut contenders: Vec<Contender<'_>> = clients
            .iter()
            .map(|(name, client)| {
                let send: Box<dyn FnMut(u64) -> Duration + '_> =
                    Box::new(move |n| send_all(runtime, client, url, n));
                (*name, send)
            })
            .collect();
        interleaved(
            "reqwest, interleaved: 60 rounds of 1,000 requests per variant, in turn",
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

// ===== the profile mode: one variant, in process, for callgrind =====

/// The end of the chain in the profile mode: a 200 for every request, made on the spot, so
/// that what is counted is the client's and the middleware's work, not the network's.
struct Canned;

#[async_trait::async_trait]
impl Middleware for Canned {
    async fn handle(
        &self,
        request: reqwest::Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let response = http::Response::builder()
            .url(request.url().clone())
            .body(Bytes::new())
            .expect("a response");
        Ok(reqwest::Response::from(response))
    }
}

/// `REQWEST_PROFILE=<variant>`: sends 10,000 requests of that variant to [`Canned`] inside
/// `profiled_send`, and nothing else (see the module documentation).
fn profile(variant: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let cache = warm_cache();
    let clients = variants(&cache, true);
    let Some((_, client)) = clients.iter().find(|(name, _)| *name == variant) else {
        panic!("REQWEST_PROFILE: one of {VARIANTS:?}");
    };
    let url = "http://127.0.0.1:8080/videos?currentPage=1&pageSize=25";
    // Warm: the first requests fill the allocator's caches and the client's.
    runtime.block_on(send(client, url, 1_000));
    profiled_send(&runtime, client, url, 10_000);
}

#[inline(never)]
fn profiled_send(runtime: &Runtime, client: &ClientWithMiddleware, url: &str, n: u64) {
    runtime.block_on(send(client, url, n));
}

async fn send(client: &ClientWithMiddleware, url: &str, n: u64) {
    for _ in 0..n {
        let response = client
            .get(url)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "tower-bearer-bench/0.1")
            .header(ACCEPT_ENCODING, "gzip, br")
            .send()
            .await
            .expect("a response");
        std::hint::black_box(response);
    }
}

fn main() {
    if let Ok(variant) = std::env::var("REQWEST_PROFILE") {
        profile(&variant);
        return;
    }
    // No plots: drawing them takes longer than measuring (`--plotting-backend plotters`
    // brings them back).
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    reqwest_loopback(&mut criterion);
    criterion.final_summary();
}
