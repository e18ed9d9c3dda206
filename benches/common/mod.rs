//! What the benchmarks (and the allocation test) share: the request, the token, the inner
//! service, the stacks being compared, and the two hand-written caches they are compared with.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use http::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, HOST, USER_AGENT};
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use tower::{BoxError, Layer, Service, service_fn};
use tower_bearer::{
    BearerAuth, BearerAuthLayer, KeyedAuth, KeyedAuthLayer, Scope, Token, TokenCache, TokenRequest,
};
use tower_http::auth::AddAuthorization;

/// The request every variant sends: a GET with a path and query, four ordinary headers (set
/// the way client code usually sets them, from `&str`) and an empty body.
pub fn request() -> Request<Empty<Bytes>> {
    request_to(
        "https://ws.api.video/videos?currentPage=1&pageSize=25",
        "ws.api.video",
    )
}

/// The same request, to another address.
pub fn request_to(uri: &str, host: &str) -> Request<Empty<Bytes>> {
    Request::get(uri)
        .header(HOST, host)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, "tower-bearer-bench/0.1")
        .header(ACCEPT_ENCODING, "gzip, br")
        .body(Empty::new())
        .expect("a valid request")
}

/// An access token shaped and sized like api.video's: a 900-character JWT (header, payload
/// and signature in base64url).
pub fn access_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut part = |len: usize| -> String {
        (0..len)
            .map(|_| {
                // xorshift: a fixed, deterministic filler, not a secret.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % 64) as usize] as char
            })
            .collect()
    };
    let token = format!(
        "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
        part(520),
        part(342)
    );
    assert_eq!(token.len(), 900);
    token
}

pub const HOUR: Duration = Duration::from_secs(3600);

// ===== the inner service =====

/// The inner service: answers 200 with an empty body at once, whatever the request's body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The request (with its header) must really be built and handed over.
        std::hint::black_box(&request);
        ready(Ok(Response::new(Empty::new())))
    }
}

// ===== the stacks =====

/// The variants compared, in the order they are reported.
pub const VARIANTS: [&str; 9] = [
    "bare",
    "add_authorization",
    "rwlock",
    "bearer_retry_off",
    "bearer_defaults",
    "keyed",
    "keyed_by_origin",
    "tower_retry",
    "naive_mutex",
];

/// The variant every ratio is taken to.
pub const FLOOR: &str = "add_authorization";

/// A refresher that hands out `access_token()` for an hour and counts its calls.
pub fn refresher(
    calls: Arc<AtomicUsize>,
    latency: Duration,
    lifetime: Duration,
) -> impl Service<
    TokenRequest,
    Response = Token,
    Error = BoxError,
    Future = impl Future<Output = Result<Token, BoxError>> + Send + 'static,
> + Send
+ 'static {
    let access = Arc::<str>::from(access_token());
    service_fn(move |_: TokenRequest| {
        calls.fetch_add(1, Ordering::SeqCst);
        let access = access.clone();
        async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok::<_, BoxError>(Token::bearer(&*access)?.expires_in(lifetime))
        }
    })
}

/// A cache holding a valid one-hour token.
///
/// Its token is fetched on a runtime that lives as long as the process, as a service's runtime
/// does: a runtime that shuts down rings the alarm of every token fetched on it, and from then
/// on the hot path reads the clock for each request.
pub fn warm_cache() -> TokenCache {
    warm(TokenCache::new(refresher(
        Arc::default(),
        Duration::ZERO,
        HOUR,
    )))
}

/// `cache` with its first token fetched on the runtime [`warm_cache`] uses.
pub fn warm(cache: TokenCache) -> TokenCache {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    runtime
        .block_on(cache.token())
        .expect("the refresher hands out a token");
    cache
}

pub fn add_authorization<S>(inner: S) -> AddAuthorization<S> {
    AddAuthorization::bearer(inner, &access_token()).as_sensitive(true)
}

pub fn bearer_retry_off<S>(inner: S, cache: &TokenCache) -> BearerAuth<S> {
    BearerAuthLayer::from_cache(cache.clone(), Scope::any())
        .retry_unauthorized(false)
        .layer(inner)
}

pub fn bearer_defaults<S>(inner: S, cache: &TokenCache) -> BearerAuth<S> {
    BearerAuthLayer::from_cache(cache.clone(), Scope::any()).layer(inner)
}

/// The APIs a keyed layer's requests go to, as a user's key function would name them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    Videos,
}

/// [`KeyedAuthLayer`] with its defaults, one key (the API, read from the URI's host), whose
/// cache is `cache`: what choosing the token per request adds to `bearer_defaults`.
pub fn keyed<S>(inner: S, cache: &TokenCache) -> KeyedAuth<S, Api> {
    let cache = cache.clone();
    KeyedAuthLayer::new(
        |request| match request.uri().host() {
            Some("ws.api.video") => Some(Api::Videos),
            _ => None,
        },
        move |_: &Api| Ok((cache.clone(), Scope::any())),
    )
    .layer(inner)
}

/// [`KeyedAuthLayer::by_origin`], whose key is the origin's text, made for every request.
pub fn keyed_by_origin<S>(inner: S, cache: &TokenCache) -> KeyedAuth<S, String> {
    let cache = cache.clone();
    KeyedAuthLayer::by_origin(move |_| Ok(cache.clone())).layer(inner)
}

/// tower's `Retry` around `AddAuthorization`, with a policy that sends a request refused with
/// a 401 once more: the floor of any layer that retries, which has to copy each request before
/// its first send (`Policy::clone_request`, a clone of the head: method, URI, version, header
/// map and extensions).
pub fn tower_retry<S>(inner: S) -> tower::retry::Retry<RetryUnauthorized, AddAuthorization<S>> {
    tower::retry::Retry::new(
        RetryUnauthorized { retried: false },
        add_authorization(inner),
    )
}

/// Sends a request refused with a 401 once more.
#[derive(Clone, Copy, Debug)]
pub struct RetryUnauthorized {
    retried: bool,
}

impl<B: Clone, ResBody, E> tower::retry::Policy<Request<B>, Response<ResBody>, E>
    for RetryUnauthorized
{
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<B>,
        result: &mut Result<Response<ResBody>, E>,
    ) -> Option<Self::Future> {
        let refused = matches!(result, Ok(response) if response.status() == 401);
        (refused && !self.retried).then(|| {
            self.retried = true;
            ready(())
        })
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}

/// A naive cache with a valid one-hour token.
pub fn warm_naive_cache() -> NaiveCache {
    let value = authorization(&access_token());
    NaiveCache::new(Some((value, Instant::now() + HOUR)), never_called())
}

fn never_called() -> RefreshFn {
    Arc::new(|| Box::pin(async { Err::<(HeaderValue, Instant), _>("not expected".into()) }))
}

pub fn authorization(access: &str) -> HeaderValue {
    let mut value = HeaderValue::try_from(format!("Bearer {access}")).expect("a valid header");
    value.set_sensitive(true);
    value
}

// ===== the lock a user would write =====

/// A `std::sync::RwLock` cache with a valid one-hour token.
pub fn warm_rwlock_cache() -> RwLockCache {
    let value = authorization(&access_token());
    RwLockCache::new(Some((value, Instant::now() + HOUR)), never_called())
}

/// The cache a user writes in ten minutes, and the floor `BearerAuth` with retry off is held
/// to: a `std::sync::RwLock` around the header and its expiry, read-locked by every request,
/// which checks the expiry against `Instant::now()` and clones the header out. Only a request
/// that finds the token expired goes to the refresher (a boxed future, no single flight);
/// the others send the inner service's own future, as a layer with a fast path does.
#[derive(Clone)]
pub struct RwLockCache {
    slot: Arc<RwLock<Option<(HeaderValue, Instant)>>>,
    refresh: RefreshFn,
}

impl RwLockCache {
    pub fn new(initial: Option<(HeaderValue, Instant)>, refresh: RefreshFn) -> Self {
        RwLockCache {
            slot: Arc::new(RwLock::new(initial)),
            refresh,
        }
    }

    pub fn layer<S>(&self, inner: S) -> RwLockAuth<S> {
        RwLockAuth {
            inner,
            cache: self.clone(),
        }
    }

    /// The header, if the token has not expired.
    #[inline]
    pub fn valid(&self) -> Option<HeaderValue> {
        let slot = self.slot.read().expect("not poisoned");
        match &*slot {
            Some((value, expires)) if Instant::now() < *expires => Some(value.clone()),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct RwLockAuth<S> {
    inner: S,
    cache: RwLockCache,
}

impl<S, B> Service<Request<B>> for RwLockAuth<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = RwLockFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(value) = self.cache.valid() {
            request.headers_mut().insert(AUTHORIZATION, value);
            return RwLockFuture::Sent {
                future: self.inner.call(request),
            };
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        RwLockFuture::Refreshing {
            future: Box::pin(async move {
                let (value, expires) = (cache.refresh)().await?;
                *cache.slot.write().expect("not poisoned") = Some((value.clone(), expires));
                request.headers_mut().insert(AUTHORIZATION, value);
                std::future::poll_fn(|cx| inner.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                inner.call(request).await.map_err(Into::into)
            }),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`RwLockAuth`]'s future: the inner service's, or the refresh that comes first.
    #[project = RwLockFutureProj]
    pub enum RwLockFuture<F, T> {
        Sent { #[pin] future: F },
        Refreshing { future: BoxFuture<Result<T, BoxError>> },
    }
}

impl<F, T, E> Future for RwLockFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RwLockFutureProj::Sent { future } => future.poll(cx).map_err(Into::into),
            RwLockFutureProj::Refreshing { future } => future.as_mut().poll(cx),
        }
    }
}

// ===== the naive cache =====

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How the naive cache gets a token: a closure returning a boxed future.
pub type RefreshFn =
    Arc<dyn Fn() -> BoxFuture<Result<(HeaderValue, Instant), BoxError>> + Send + Sync>;

/// The design most hand-written code uses: a `tokio::sync::Mutex` around the token and its
/// expiry, locked by every request, held across the refresh (which makes the refresh single
/// flight: everyone else queues on the lock), and an `async move` block boxed per request.
#[derive(Clone)]
pub struct NaiveCache {
    slot: Arc<tokio::sync::Mutex<Option<(HeaderValue, Instant)>>>,
    refresh: RefreshFn,
}

impl NaiveCache {
    pub fn new(initial: Option<(HeaderValue, Instant)>, refresh: RefreshFn) -> Self {
        NaiveCache {
            slot: Arc::new(tokio::sync::Mutex::new(initial)),
            refresh,
        }
    }

    pub fn layer<S>(&self, inner: S) -> NaiveAuth<S> {
        NaiveAuth {
            inner,
            cache: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct NaiveAuth<S> {
    inner: S,
    cache: NaiveCache,
}

impl<S, B> Service<Request<B>> for NaiveAuth<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        Box::pin(async move {
            let value = {
                let mut slot = cache.slot.lock().await;
                match &*slot {
                    Some((value, expires)) if Instant::now() < *expires => value.clone(),
                    _ => {
                        let (value, expires) = (cache.refresh)().await?;
                        *slot = Some((value.clone(), expires));
                        value
                    }
                }
            };
            request.headers_mut().insert(AUTHORIZATION, value);
            inner.call(request).await.map_err(Into::into)
        })
    }
}

// ===== driving a ready service by hand =====

/// Sends one request through `service` and returns the response, polling with a no-op
/// waker: every variant answers on the first poll when the token is valid and nothing
/// else holds what it needs.
#[inline]
pub fn send_now<S, B>(service: &mut S, request: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    send_with(service, request, None)
}

/// Like [`send_now`], but a request that has to wait (the naive cache's lock, held by
/// another thread) parks this thread until `waker` is woken, as a blocking client would.
#[inline]
pub fn send_with<S, B>(service: &mut S, request: Request<B>, waker: Option<&Waker>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(waker.unwrap_or(Waker::noop()));
    let wait = || match waker {
        Some(_) => std::thread::park(),
        None => panic!("the request did not complete on its first poll"),
    };
    loop {
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(err)) => panic!("the service failed: {err:?}"),
            Poll::Pending => wait(),
        }
    }
    let mut future = std::pin::pin!(service.call(request));
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => return response,
            Poll::Ready(Err(err)) => panic!("the request failed: {err:?}"),
            Poll::Pending => wait(),
        }
    }
}

/// A waker that unparks the thread that made it.
pub fn thread_waker() -> Waker {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

// ===== timing in chunks =====

/// Requests built ahead of each timed stretch: building them is not what is measured.
///
/// Few, so that freeing them stays in the allocator's per-thread cache (glibc keeps 7 blocks
/// of a size) as it does for a client that builds and sends one request at a time. With
/// hundreds built ahead, frees spill into the shared bins, cost twice as much, and depend on
/// what the heap went through before (criterion's analysis of the previous function).
pub const CHUNK: usize = 6;

/// Sends `iters` requests through `service`, timing only the sends (the inner service drops
/// each request, which is timed; the responses are dropped outside the timed stretch). The
/// clock's own cost, once per stretch, is taken off.
pub fn send_timed<S>(service: &mut S, iters: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    send_timed_with(service, iters, None)
}

/// [`send_timed`], with [`send_with`]'s `waker`.
pub fn send_timed_with<S>(service: &mut S, iters: u64, waker: Option<&Waker>) -> Duration
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let mut requests = Vec::with_capacity(CHUNK);
    let mut responses = Vec::with_capacity(CHUNK);
    let mut total = Duration::ZERO;
    let mut stretches = 0;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK as u64);
        requests.extend((0..n).map(|_| request()));
        let start = Instant::now();
        for request in requests.drain(..) {
            responses.push(send_with(service, request, waker));
        }
        total += start.elapsed();
        stretches += 1;
        responses.clear();
        left -= n;
    }
    total.saturating_sub(timer_overhead() * stretches)
}

/// What timing an empty stretch measures: one clock read and a subtraction.
pub fn timer_overhead() -> Duration {
    static OVERHEAD: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *OVERHEAD.get_or_init(|| {
        // The smallest of many batches: the overhead itself, without preemptions.
        (0..50)
            .map(|_| {
                let mut total = Duration::ZERO;
                for _ in 0..2_000 {
                    let start = Instant::now();
                    total += std::hint::black_box(start).elapsed();
                }
                total / 2_000
            })
            .min()
            .expect("50 batches")
    })
}

// ===== the figures printed after criterion's =====

/// One call of an `iter_custom` routine: the iterations asked for, and the time they took.
type Sample = (u64, Duration);

/// Keeps what each benchmark function measured, to print figures and ratios side by side
/// once a group is done: criterion reports each function on its own.
#[derive(Default)]
pub struct Recorder {
    runs: std::cell::RefCell<Vec<(String, Vec<Sample>)>>,
}

impl Recorder {
    /// Records one call of an `iter_custom` routine, and passes its duration on.
    pub fn record(&self, id: &str, iters: u64, elapsed: Duration) -> Duration {
        let mut runs = self.runs.borrow_mut();
        match runs.iter_mut().find(|(n, _)| n == id) {
            Some((_, calls)) => calls.push((iters, elapsed)),
            None => runs.push((id.to_owned(), vec![(iters, elapsed)])),
        }
        elapsed
    }

    /// The measurement samples of `id`: criterion calls the routine for its warm-up first,
    /// then once per sample. `None` for a function that did not run, or ran in criterion's
    /// test mode (`--test`, one call).
    fn samples(&self, id: &str, sample_size: usize) -> Option<Vec<Sample>> {
        let runs = self.runs.borrow();
        let (_, calls) = runs.iter().find(|(n, _)| n == id)?;
        (calls.len() >= sample_size).then(|| calls[calls.len() - sample_size..].to_vec())
    }

    /// Nanoseconds per iteration, as criterion estimates it for linear sampling: the slope of
    /// time against iterations over the measurement samples.
    pub fn ns_per_iter(&self, id: &str, sample_size: usize) -> Option<f64> {
        let samples = self.samples(id, sample_size)?;
        let (xy, xx) = samples
            .iter()
            .fold((0.0, 0.0), |(xy, xx), (iters, elapsed)| {
                let x = *iters as f64;
                (xy + x * elapsed.as_nanos() as f64, xx + x * x)
            });
        Some(xy / xx)
    }

    /// Each measurement sample's time per iteration, in nanoseconds.
    pub fn per_iter(&self, id: &str, sample_size: usize) -> Vec<f64> {
        self.samples(id, sample_size)
            .unwrap_or_default()
            .iter()
            .map(|(iters, elapsed)| elapsed.as_nanos() as f64 / *iters as f64)
            .collect()
    }

    /// Prints, for each variant, its figure in each round (`{variant}/{round}`): time per
    /// iteration, or with `per_second` iterations per second; its ratio to `floor`'s in the
    /// same round, and the median of those ratios.
    #[allow(clippy::too_many_arguments)]
    pub fn print_rounds(
        &self,
        title: &str,
        unit: &str,
        per_second: bool,
        variants: &[&str],
        floor: &str,
        rounds: usize,
        sample_size: usize,
    ) {
        let figure = |variant: &str, round: usize| {
            let ns = self.ns_per_iter(&format!("{variant}/{round}"), sample_size)?;
            Some(if per_second { 1e9 / ns } else { ns })
        };
        // Only what ran in every round (a filter on the command line may leave some out).
        let complete = |v: &&str| (1..=rounds).all(|r| figure(v, r).is_some());
        if !complete(&floor) {
            return;
        }
        let variants: Vec<&str> = variants.iter().copied().filter(complete).collect();
        println!("\n{title}");
        println!(
            "  {:<20} {:>16} {:>30} {:>9}",
            "variant",
            format!("{unit} (median)"),
            format!("× {floor}, each round"),
            "median"
        );
        for variant in &variants {
            let figures: Vec<f64> = (1..=rounds).map(|r| figure(variant, r).unwrap()).collect();
            let ratios: Vec<f64> = (1..=rounds)
                .map(|r| figure(variant, r).unwrap() / figure(floor, r).unwrap())
                .collect();
            let each = ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" ");
            println!(
                "  {variant:<20} {:>16.1} {each:>30} {:>8.3}×",
                median(&figures),
                median(&ratios)
            );
        }
        println!();
    }
}

/// Measures `send` as criterion's function `{name}/{round}` of `group`, which gives it a number
/// of iterations and takes the time they took; `recorder` keeps both for the tables.
pub fn bench_round(
    group: &mut BenchmarkGroup<'_, WallTime>,
    recorder: &Recorder,
    name: &str,
    round: usize,
    mut send: impl FnMut(u64) -> Duration,
) {
    let id = format!("{name}/{round}");
    group.bench_function(&id, |b| {
        b.iter_custom(|iters| recorder.record(&id, iters, send(iters)))
    });
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

// ===== interleaved: every variant in turn, many times =====

/// A variant to interleave: its name, and a routine that runs `iters` iterations and says
/// how long they took.
pub type Contender<'a> = (&'a str, Box<dyn FnMut(u64) -> Duration + 'a>);

/// Runs every contender for `iters` iterations, in turn, `rounds` times (starting each round
/// with the next one), and prints each one's median time per iteration and its ratio to
/// `floor`'s in the same round: median and interquartile range over the rounds. A last column
/// gives the ratio of each one's fastest round to the floor's fastest round.
///
/// Criterion measures one function after another, seconds apart, and a burst of load from
/// elsewhere lands on one of them; here a burst lands on one round of all of them, and the
/// ratio taken within the round cancels most of it. On a machine loaded from elsewhere for
/// most of the run the fastest rounds are the ones nothing else disturbed: load only ever adds
/// time.
pub fn interleaved(
    title: &str,
    unit: &str,
    per_second: bool,
    floor: &str,
    contenders: &mut [Contender<'_>],
    rounds: usize,
    iters: u64,
) {
    let n = contenders.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let elapsed = (contenders[i].1)(iters);
            times[i].push(elapsed.as_nanos() as f64 / iters as f64);
        }
    }
    let floor_at = contenders
        .iter()
        .position(|(name, _)| *name == floor)
        .expect("the floor is a contender");
    let figure = |ns: f64| if per_second { 1e9 / ns } else { ns };
    let fastest = |i: usize| times[i].iter().copied().fold(f64::INFINITY, f64::min);
    println!("\n{title}");
    println!(
        "  {:<24} {:>14} {:>16} {:>14} {:>14}",
        "variant",
        format!("{unit} (median)"),
        format!("× {floor} (median)"),
        "interquartile",
        "× (fastest)"
    );
    for (i, (name, _)) in contenders.iter().enumerate() {
        let mut ratios: Vec<f64> = (0..rounds)
            .map(|r| figure(times[i][r]) / figure(times[floor_at][r]))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let values: Vec<f64> = times[i].iter().map(|&ns| figure(ns)).collect();
        println!(
            "  {name:<24} {:>14.1} {:>15.3}× {:>14} {:>13.3}×",
            median(&values),
            median(&ratios),
            format!("{:.3}–{:.3}", ratios[rounds / 4], ratios[rounds * 3 / 4]),
            figure(fastest(i)) / figure(fastest(floor_at)),
        );
    }
    println!();
}
