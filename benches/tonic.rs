//! tonic unary over loopback: tonic-health's generated client calls `grpc.health.v1.Health/
//! Check` on a tonic server on 127.0.0.1, one HTTP/2 connection, six ways: with no token at
//! all (the floor of the harness); through a tonic `Interceptor` that adds a static token (the
//! floor: what a user writes without this crate); through an interceptor that reads the cache
//! a user would write (a `std::sync::RwLock<Option<(MetadataValue, Instant)>>`, with a clock
//! check per call); through that interceptor and the retry a tonic user writes by hand (on
//! UNAUTHENTICATED, refresh and send the message again, once); and through `GrpcAuthLayer`,
//! retry off or with its defaults.
//!
//! The server runs on a thread and a current-thread runtime of its own, and checks the token
//! of every call, as an API would; the client on another. Eight calls are in flight at a time;
//! the figure is calls per second. Criterion measures each variant in a few short rounds, and
//! a second table gives the same measured interleaved (every variant in turn, 500 calls at a
//! time, sixty times), which a machine loaded from elsewhere disturbs least.
//!
//! Instruction counts do not move with the machine's load; one variant at a time:
//!
//! ```text
//! cargo bench --bench tonic --no-run
//! TONIC_PROFILE=grpc_auth valgrind --tool=callgrind target/release/deps/tonic-<hash>
//! ```
//!
//! sends 1,000 calls of that variant, one at a time, and nothing else; the whole process is
//! counted (client, server, setup), so the total over 1,000 is an upper bound of a call's cost,
//! and the difference of two variants' totals over 1,000 is the difference of their costs.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use http::HeaderValue;
use http::header::AUTHORIZATION;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::client::GrpcService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::server::NamedService;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Server as TonicServer};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{BoxError, Layer, Service, ServiceBuilder};
use tower_bearer::tonic::GrpcAuthLayer;
use tower_bearer::{BearerAuthLayer, Scope};

use common::{HOUR, Recorder, access_token, authorization, bench_round, interleaved, warm_cache};

const IN_FLIGHT: u64 = 8;
const SAMPLES: usize = 10;
const ROUNDS: usize = 3;
const FLOOR: &str = "interceptor";
const VARIANTS: [&str; 6] = [
    "bare",
    "interceptor",
    "rwlock_interceptor",
    "rwlock_interceptor_retry",
    "grpc_auth_retry_off",
    "grpc_auth",
];

// ===== the server =====

/// A tonic server on 127.0.0.1 serving tonic-health, answering UNAUTHENTICATED to a call
/// whose token is not the expected one (a call with none is let through, for `bare`). It
/// stops when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(expected: HeaderValue) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a server runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let (_, health) = tonic_health::server::health_reporter();
                let health = Checked {
                    inner: health,
                    expected,
                };
                TonicServer::builder()
                    .tcp_nodelay(true)
                    .add_service(health)
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the server runs");
            });
        });
        Server {
            addr: addr_rx.recv().expect("the server's address"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's token check, in front of the health service.
#[derive(Clone)]
struct Checked<S> {
    inner: S,
    expected: HeaderValue,
}

impl<S: NamedService> NamedService for Checked<S> {
    const NAME: &'static str = S::NAME;
}

/// Boxed: the same cost for every variant, and the server's, not the client's.
type CheckedFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S> Service<http::Request<Body>> for Checked<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = CheckedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.headers().get(AUTHORIZATION) {
            Some(token) if *token != self.expected => {
                let refusal = Status::unauthenticated("not the expected token").into_http();
                Box::pin(std::future::ready(Ok(refusal)))
            }
            _ => Box::pin(self.inner.call(request)),
        }
    }
}

// ===== the client side =====

/// A static token in each call's metadata: what a tonic user writes without this crate.
#[derive(Clone)]
struct StaticToken(MetadataValue<Ascii>);

impl Interceptor for StaticToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The cache a tonic user writes: the token's metadata value and its expiry behind a
/// `std::sync::RwLock`, read by an interceptor with a clock check per call.
#[derive(Clone)]
struct RwLockToken(Arc<RwLock<Option<Expiring>>>);

/// A token's metadata value, and when it expires.
type Expiring = (MetadataValue<Ascii>, Instant);

impl RwLockToken {
    fn new(value: MetadataValue<Ascii>) -> Self {
        RwLockToken(Arc::new(RwLock::new(Some((value, Instant::now() + HOUR)))))
    }

    /// What the user's refresh does: here, the same token for another hour (the server never
    /// refuses it, and the bench checks that this is never called).
    async fn refresh(&self) -> Result<(), Status> {
        let mut slot = self.0.write().expect("not poisoned");
        let value = slot.as_ref().map(|(value, _)| value.clone());
        *slot = value.map(|value| (value, Instant::now() + HOUR));
        REFRESHED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

static REFRESHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Interceptor for RwLockToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = {
            let slot = self.0.read().expect("not poisoned");
            match &*slot {
                Some((value, expires)) if Instant::now() < *expires => value.clone(),
                _ => return Err(Status::unauthenticated("no valid token")),
            }
        };
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// The retry a tonic user writes by hand around a generated client: on UNAUTHENTICATED,
/// refresh the token and send the message again, once.
#[derive(Clone)]
struct Retrying {
    client: HealthClient<InterceptedService<Channel, RwLockToken>>,
    token: RwLockToken,
}

impl Retrying {
    async fn check(
        &mut self,
        request: HealthCheckRequest,
    ) -> Result<tonic::Response<HealthCheckResponse>, Status> {
        match self.client.check(request.clone()).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                self.token.refresh().await?;
                self.client.check(request).await
            }
            answer => answer,
        }
    }
}

/// A client the bench calls `Check` with.
trait Check: Clone + Send + 'static {
    fn check_serving(&mut self) -> impl Future<Output = ()> + Send;
}

impl<T> Check for HealthClient<T>
where
    T: GrpcService<Body> + Clone + Send + 'static,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
    T::Future: Send,
{
    async fn check_serving(&mut self) {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        self.check(request).await.expect("SERVING");
    }
}

impl Check for Retrying {
    async fn check_serving(&mut self) {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        self.check(request).await.expect("SERVING");
    }
}

/// Sends `iters` Check calls, `IN_FLIGHT` at a time, and returns how long they took.
fn send_all(runtime: &Runtime, client: &impl Check, iters: u64) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..IN_FLIGHT {
            let count = iters / IN_FLIGHT + u64::from(k < iters % IN_FLIGHT);
            let mut client = client.clone();
            tasks.spawn(async move {
                for _ in 0..count {
                    client.check_serving().await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a client task panicked");
        }
        start.elapsed()
    })
}

type Sender<'a> = Box<dyn Fn(u64) -> Duration + 'a>;

fn tonic_unary(c: &mut Criterion) {
    let access = access_token();
    let token = authorization(&access);
    let server = Server::start(token.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let channel: Channel = runtime.block_on(async {
        Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("a channel")
    });
    let cache = warm_cache();
    let metadata: MetadataValue<Ascii> = format!("Bearer {access}").parse().unwrap();

    let bare = HealthClient::new(channel.clone());
    let interceptor =
        HealthClient::with_interceptor(channel.clone(), StaticToken(metadata.clone()));
    let rwlock = RwLockToken::new(metadata);
    let rwlock_interceptor = HealthClient::with_interceptor(channel.clone(), rwlock.clone());
    let rwlock_retry = Retrying {
        client: rwlock_interceptor.clone(),
        token: rwlock,
    };
    let retry_off = HealthClient::new(
        GrpcAuthLayer::from(
            BearerAuthLayer::from_cache(cache.clone(), Scope::any()).retry_unauthorized(false),
        )
        .layer(channel.clone()),
    );
    let grpc_auth = HealthClient::new(
        ServiceBuilder::new()
            .layer(GrpcAuthLayer::from_cache(cache.clone(), Scope::any()))
            .service(channel),
    );

    let runtime = &runtime;
    let senders: [(&str, Sender<'_>); 6] = [
        ("bare", Box::new(|n| send_all(runtime, &bare, n))),
        (
            "interceptor",
            Box::new(|n| send_all(runtime, &interceptor, n)),
        ),
        (
            "rwlock_interceptor",
            Box::new(|n| send_all(runtime, &rwlock_interceptor, n)),
        ),
        (
            "rwlock_interceptor_retry",
            Box::new(|n| send_all(runtime, &rwlock_retry, n)),
        ),
        (
            "grpc_auth_retry_off",
            Box::new(|n| send_all(runtime, &retry_off, n)),
        ),
        ("grpc_auth", Box::new(|n| send_all(runtime, &grpc_auth, n))),
    ];

    let recorder = Recorder::default();
    let mut group = c.benchmark_group("tonic_unary");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(SAMPLES);
    for round in 1..=ROUNDS {
        for (name, send) in &senders {
            bench_round(&mut group, &recorder, name, round, send);
        }
    }
    group.finish();
    recorder.print_rounds(
        &format!(
            "tonic unary, {IN_FLIGHT} calls in flight on one HTTP/2 connection: calls/s, ratio \
             to the interceptor in the same round"
        ),
        "calls/s",
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
        let mut contenders: Vec<common::Contender<'_>> = senders
            .iter()
            .map(|(name, send)| {
                let run: Box<dyn FnMut(u64) -> Duration + '_> = Box::new(send);
                (*name, run)
            })
            .collect();
        interleaved(
            "tonic unary, interleaved: 60 rounds of 500 calls per variant, in turn",
            "calls/s",
            true,
            FLOOR,
            &mut contenders,
            60,
            500,
        );
    }
    assert_eq!(cache.stats().unauthorized, 0, "the server took the token");
    assert!(
        !REFRESHED.load(std::sync::atomic::Ordering::Relaxed),
        "the server took the token"
    );
}

/// `PROFILED_CALLS` calls on one client, one at a time.
fn sequential(runtime: &Runtime, mut client: impl Check) {
    runtime.block_on(async {
        for _ in 0..PROFILED_CALLS {
            client.check_serving().await;
        }
    });
}

/// Calls sent in profiling mode.
const PROFILED_CALLS: u64 = 1_000;

/// Profiling mode: `PROFILED_CALLS` calls of one variant, one at a time, and nothing else.
/// Run it under callgrind once per variant: the server's work and the setup are the same for
/// every variant, so the difference of two totals over `PROFILED_CALLS` is the difference of
/// their cost per call, whatever the machine's load.
fn profile(variant: &str) {
    let access = access_token();
    let server = Server::start(authorization(&access));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let channel: Channel = runtime.block_on(async {
        Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("a channel")
    });
    let cache = warm_cache();
    let metadata: MetadataValue<Ascii> = format!("Bearer {access}").parse().unwrap();
    match variant {
        "bare" => sequential(&runtime, HealthClient::new(channel)),
        "interceptor" => sequential(
            &runtime,
            HealthClient::with_interceptor(channel, StaticToken(metadata)),
        ),
        "rwlock_interceptor" => sequential(
            &runtime,
            HealthClient::with_interceptor(channel, RwLockToken::new(metadata)),
        ),
        "rwlock_interceptor_retry" => {
            let token = RwLockToken::new(metadata);
            let client = HealthClient::with_interceptor(channel, token.clone());
            sequential(&runtime, Retrying { client, token })
        }
        "grpc_auth_retry_off" => {
            let layer =
                BearerAuthLayer::from_cache(cache.clone(), Scope::any()).retry_unauthorized(false);
            sequential(
                &runtime,
                HealthClient::new(GrpcAuthLayer::from(layer).layer(channel)),
            )
        }
        "grpc_auth" => sequential(
            &runtime,
            HealthClient::new(
                GrpcAuthLayer::from_cache(cache.clone(), Scope::any()).layer(channel),
            ),
        ),
        other => panic!("TONIC_PROFILE={other}: expected one of {VARIANTS:?}"),
    }
    println!("{variant}: sent {PROFILED_CALLS} calls");
}

fn main() {
    if let Ok(variant) = std::env::var("TONIC_PROFILE") {
        profile(&variant);
        return;
    }
    // No plots: drawing them takes longer than measuring.
    let mut criterion = Criterion::default().without_plots().configure_from_args();
    tonic_unary(&mut criterion);
    criterion.final_summary();
}
